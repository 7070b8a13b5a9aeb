//! Configuration: TOML with every key optional, validated before anything starts.
//!
//! An unknown key or a bad value is an error that names the key; `sensor` exits with status 2.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The sensor's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the sensor keeps state.
    pub state_dir: PathBuf,
    /// gRPC address: `unix:/path` or `host:port`.
    pub listen: String,
    /// JSON lines destination: `-` for stdout, a path to append to; unset for none.
    pub json_out: Option<String>,
    /// Leave out the sensor's own processes and threads.
    pub exclude_self: bool,
    /// Bytes of argv copied per exec (1 ..= 131071); longer argv is cut and flagged.
    pub args_max_bytes: u32,
    /// Size of the kernel ring buffer, a power of two of at least 4096 bytes.
    pub ring_buffer_bytes: u32,
    /// Events queued per subscriber before the slowest starts losing its own events.
    pub subscriber_queue: usize,
    /// Events queued for each output sink (JSON lines) before it starts losing events.
    pub sink_queue: usize,
    /// Process table settings.
    pub process_table: ProcessTableConfig,
}

/// Bounds of the process table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessTableConfig {
    /// Entries kept at most; live processes beyond it are not tracked (counted).
    pub max_entries: usize,
    /// Seconds an exited process stays, so late events still find it.
    pub exited_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/sensor"),
            listen: "unix:/run/sensor/sensor.sock".into(),
            json_out: None,
            exclude_self: true,
            args_max_bytes: 65536,
            ring_buffer_bytes: 16 * 1024 * 1024,
            subscriber_queue: 65536,
            sink_queue: 262_144,
            process_table: ProcessTableConfig::default(),
        }
    }
}

impl Default for ProcessTableConfig {
    fn default() -> Self {
        Self {
            max_entries: 65536,
            exited_ttl_secs: 30,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config: `{key}` {problem}")]
    Value { key: &'static str, problem: String },
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<text>".into(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot: ranges and formats.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, problem: &str| {
            Err(ConfigError::Value {
                key,
                problem: problem.into(),
            })
        };
        if !(1..=131_071).contains(&self.args_max_bytes) {
            return bad("args_max_bytes", "must be between 1 and 131071");
        }
        let ring = self.ring_buffer_bytes;
        if ring < 4096 || !ring.is_power_of_two() {
            return bad(
                "ring_buffer_bytes",
                "must be a power of two of at least 4096",
            );
        }
        const QUEUE: std::ops::RangeInclusive<usize> = 1..=1 << 24;
        if !QUEUE.contains(&self.subscriber_queue) {
            return bad("subscriber_queue", "must be between 1 and 16777216");
        }
        if !QUEUE.contains(&self.sink_queue) {
            return bad("sink_queue", "must be between 1 and 16777216");
        }
        if self.process_table.max_entries < 64 {
            return bad("process_table.max_entries", "must be at least 64");
        }
        if let Err(problem) = ListenAddr::parse(&self.listen) {
            return bad("listen", &problem);
        }
        if self.json_out.as_deref() == Some("") {
            return bad("json_out", "must be `-` or a file path");
        }
        Ok(())
    }
}

/// Where the gRPC server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

impl ListenAddr {
    /// Parses `unix:/path` or `host:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("`{s}`: a unix socket path must be absolute"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        use std::net::ToSocketAddrs;
        s.to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .map(Self::Tcp)
            .ok_or_else(|| format!("`{s}`: expected `unix:/path` or `host:port`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_defaults() {
        let config = Config::from_toml("").unwrap();

        assert_eq!(config.state_dir, PathBuf::from("/var/lib/sensor"));
        assert_eq!(config.listen, "unix:/run/sensor/sensor.sock");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("args_max = 5\n").unwrap_err().to_string();

        assert!(err.contains("args_max"), "{err}");
    }

    #[test]
    fn unknown_nested_key_is_named() {
        let err = Config::from_toml("[process_table]\nttl = 5\n")
            .unwrap_err()
            .to_string();

        assert!(err.contains("ttl"), "{err}");
    }

    #[test]
    fn out_of_range_value_names_the_key() {
        let err = Config::from_toml("args_max_bytes = 0\n")
            .unwrap_err()
            .to_string();

        assert!(err.contains("`args_max_bytes`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Config::from_toml("exclude_self = \"yes\"\n")
            .unwrap_err()
            .to_string();

        assert!(err.contains("exclude_self"), "{err}");
    }

    #[test]
    fn listen_accepts_unix_and_tcp() {
        assert_eq!(
            ListenAddr::parse("unix:/run/x.sock"),
            Ok(ListenAddr::Unix("/run/x.sock".into()))
        );
        assert!(matches!(
            ListenAddr::parse("127.0.0.1:50051"),
            Ok(ListenAddr::Tcp(_))
        ));
        assert!(ListenAddr::parse("unix:relative").is_err());
        assert!(ListenAddr::parse("nonsense").is_err());
    }
}
