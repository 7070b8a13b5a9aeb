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
    /// File-integrity monitoring.
    pub fim: FimConfig,
    /// Fileless-attack findings: memory made executable, memfd and deleted-binary execs,
    /// writes into other processes.
    pub memory: MemoryConfig,
    /// Audit records of rule-selected syscalls; on when the table is present (or
    /// `sensor --audit-log` is given), with the built-in rules when it names none.
    pub audit: Option<crate::audit::AuditConfig>,
    /// Set by `sensor --rebuild-baseline`: discard the FIM baseline database and scan anew.
    #[serde(skip)]
    pub rebuild_baseline: bool,
}

/// File-integrity monitoring: what is watched and how hard the sensor works at it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FimConfig {
    /// Absolute paths of files and directory trees (recursive) to watch; `*` and `?` in a
    /// component are expanded at each scan (`/home/*/.ssh`). Empty: FIM is off.
    pub paths: Vec<String>,
    /// Globs of paths left out (`/etc/**/*.swp`); `*` does not cross `/`, `**` does.
    pub exclude: Vec<String>,
    /// Largest file hashed; a larger one's events say the hash was skipped.
    pub max_hash_bytes: u64,
    /// Threads that hash files, at idle I/O priority.
    pub hash_workers: usize,
    /// Files and directories the kernel watches at most.
    pub max_watched: u32,
    /// Size of FIM's own kernel ring buffer, a power of two of at least 4096 bytes.
    pub ring_buffer_bytes: u32,
    /// Milliseconds a file changed without a close (a mapping, a writer that keeps it open)
    /// must stay quiet before it is hashed and reported.
    pub settle_ms: u64,
}

/// The watch set used when the configuration has no `[fim]` table: what a Linux server's
/// integrity baseline (PCI DSS 11.5, CIS) covers.
pub const DEFAULT_FIM_PATHS: &[&str] = &[
    // Accounts and authentication.
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/login.defs",
    "/etc/pam.d",
    "/etc/security",
    "/etc/sudoers",
    "/etc/sudoers.d",
    // SSH daemon configuration and authorized keys.
    "/etc/ssh",
    "/root/.ssh",
    "/home/*/.ssh",
    // Scheduled jobs.
    "/etc/crontab",
    "/etc/cron.d",
    "/etc/cron.hourly",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/var/spool/cron",
    // Services.
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/init.d",
    // Dynamic loader.
    "/etc/ld.so.preload",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    // Kernel modules.
    "/etc/modprobe.d",
    "/etc/modules",
    "/etc/modules-load.d",
    // System binaries and boot.
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/boot",
];

impl Default for FimConfig {
    fn default() -> Self {
        Self {
            paths: DEFAULT_FIM_PATHS.iter().map(|p| p.to_string()).collect(),
            exclude: Vec::new(),
            max_hash_bytes: 64 * 1024 * 1024,
            hash_workers: 2,
            max_watched: 262_144,
            ring_buffer_bytes: 4 * 1024 * 1024,
            settle_ms: 1000,
        }
    }
}

/// Fileless-attack findings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Attach the memory and cross-process hooks and raise their alerts.
    pub enabled: bool,
    /// Alerts per process and rule per minute; the rest are counted and the count is carried
    /// by the next alert that goes out.
    pub alerts_per_minute: u32,
    /// Suppressions, each matched on what the kernel reported. Replaces the default list when
    /// given; see README.
    pub allow: Vec<AllowEntry>,
}

/// One suppression: an alert is not raised when every field given matches it exactly.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    /// Why it is here (for people; not matched).
    #[serde(default)]
    pub reason: String,
    /// Rule name (`memory-executable-anonymous`, ...); unset: every memory rule.
    pub rule: Option<String>,
    /// `process.executable` as the kernel reports it (the loaded file, not argv).
    pub executable: Option<String>,
    /// For exec rules: the executable the process ran before this exec.
    pub previous_executable: Option<String>,
    /// `process.parent.executable`.
    pub parent_executable: Option<String>,
    /// For memfd rules: the memfd's name, without `memfd:`.
    pub memfd_name: Option<String>,
}

/// Suppressions that apply when `[memory] allow` is absent: programs that make executable
/// memory as their normal work, matched on the executable the kernel loaded.
pub fn default_allow() -> Vec<AllowEntry> {
    let jit = |exe: &str, why: &str| AllowEntry {
        reason: why.into(),
        rule: Some("memory-executable-anonymous".into()),
        executable: Some(exe.into()),
        ..AllowEntry::default()
    };
    vec![
        jit(
            "/usr/bin/node",
            "V8 compiles JavaScript into anonymous executable memory",
        ),
        jit(
            "/usr/bin/nodejs",
            "V8 compiles JavaScript into anonymous executable memory",
        ),
        jit("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "HotSpot JIT"),
        jit("/usr/lib/jvm/java-21-openjdk-amd64/bin/java", "HotSpot JIT"),
        AllowEntry {
            reason: "runc copies itself into a memfd and re-executes from it (CVE-2019-5736)"
                .into(),
            rule: Some("exec-from-memory".into()),
            previous_executable: Some("/usr/bin/runc".into()),
            memfd_name: Some("runc_cloned:/proc/self/exe".into()),
            ..AllowEntry::default()
        },
        AllowEntry {
            reason: "runc copies itself into a memfd and re-executes from it (CVE-2019-5736)"
                .into(),
            rule: Some("exec-from-memory".into()),
            previous_executable: Some("/usr/sbin/runc".into()),
            memfd_name: Some("runc_cloned:/proc/self/exe".into()),
            ..AllowEntry::default()
        },
    ]
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            alerts_per_minute: 10,
            allow: default_allow(),
        }
    }
}

impl MemoryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.alerts_per_minute == 0 {
            return Err(ConfigError::Value {
                key: "memory.alerts_per_minute",
                problem: "must be at least 1".into(),
            });
        }
        for (i, a) in self.allow.iter().enumerate() {
            let empty = a.executable.is_none()
                && a.previous_executable.is_none()
                && a.parent_executable.is_none()
                && a.memfd_name.is_none();
            if empty {
                return Err(ConfigError::Value {
                    key: "memory.allow",
                    problem: format!(
                        "entry {i} matches every process: give executable, \
                         previous_executable, parent_executable or memfd_name"
                    ),
                });
            }
            let known = crate::memory::RULES
                .iter()
                .any(|r| Some(*r) == a.rule.as_deref());
            if a.rule.is_some() && !known {
                return Err(ConfigError::Value {
                    key: "memory.allow",
                    problem: format!(
                        "entry {i}: unknown rule {:?} (known: {})",
                        a.rule.as_deref().unwrap_or(""),
                        crate::memory::RULES.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
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
            fim: FimConfig::default(),
            memory: MemoryConfig::default(),
            audit: None,
            rebuild_baseline: false,
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
        self.fim.validate()?;
        if let Some(audit) = &self.audit {
            audit.validate()?;
        }
        self.memory.validate()
    }

    /// The audit settings in force, when audit is on.
    pub fn audit(&self) -> Option<&crate::audit::AuditConfig> {
        self.audit.as_ref().filter(|a| a.enabled)
    }
}

impl FimConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, problem: String| Err(ConfigError::Value { key, problem });
        for path in &self.paths {
            if !path.starts_with('/') {
                return bad("fim.paths", format!("`{path}` is not an absolute path"));
            }
            if let Err(e) = glob::Pattern::new(path) {
                return bad("fim.paths", format!("`{path}`: {e}"));
            }
        }
        if let Err(e) = crate::fim::watch::exclude_set(&self.exclude) {
            return bad("fim.exclude", e);
        }
        if !(1..=64).contains(&self.hash_workers) {
            return bad("fim.hash_workers", "must be between 1 and 64".into());
        }
        if self.max_watched < 1024 {
            return bad("fim.max_watched", "must be at least 1024".into());
        }
        let ring = self.ring_buffer_bytes;
        if ring < 4096 || !ring.is_power_of_two() {
            return bad(
                "fim.ring_buffer_bytes",
                "must be a power of two of at least 4096".into(),
            );
        }
        if self.settle_ms > 600_000 {
            return bad("fim.settle_ms", "must be at most 600000".into());
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
    fn memory_suppressions_are_checked_and_name_the_key() {
        let config = Config::from_toml("").unwrap();
        assert!(config.memory.enabled);
        assert!(config
            .memory
            .allow
            .iter()
            .any(|a| a.executable.as_deref() == Some("/usr/bin/node")));

        let everyone = Config::from_toml("[memory]\nallow = [{ rule = \"ptrace-write\" }]\n");
        let rule = Config::from_toml("[memory]\nallow = [{ rule = \"x\", executable = \"/a\" }]\n");
        let key = Config::from_toml("[memory]\nallow = [{ exe = \"/a\" }]\n");
        let zero = Config::from_toml("[memory]\nalerts_per_minute = 0\n");
        for (err, needle) in [
            (everyone, "matches every process"),
            (rule, "unknown rule \"x\""),
            (key, "exe"),
            (zero, "alerts_per_minute"),
        ] {
            let err = format!("{:#}", anyhow::Error::from(err.unwrap_err()));
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let given = "[memory]\nallow = [{ rule = \"ptrace-write\", parent_executable = \"/usr/bin/gdb\" }]\n";
        let config = Config::from_toml(given).unwrap();
        assert_eq!(
            config.memory.allow.len(),
            1,
            "a list given replaces the default one"
        );
    }

    #[test]
    fn fim_defaults_apply_without_a_table_and_bad_entries_are_named() {
        let config = Config::from_toml("").unwrap();
        assert!(config.fim.paths.iter().any(|p| p == "/etc/shadow"));

        let relative = Config::from_toml("[fim]\npaths = [\"etc\"]\n").unwrap_err();
        let glob = Config::from_toml("[fim]\nexclude = [\"/a/[\"]\n").unwrap_err();
        let unknown = Config::from_toml("[fim]\npath = []\n").unwrap_err();

        assert!(relative.to_string().contains("`fim.paths`"), "{relative}");
        assert!(glob.to_string().contains("`fim.exclude`"), "{glob}");
        assert!(unknown.to_string().contains("path"), "{unknown}");
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
