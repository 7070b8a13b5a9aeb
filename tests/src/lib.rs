//! Harness for kernel tests: starts the real `sensor` binary, runs triggers, and reads back the
//! JSON lines it wrote.
//!
//! A test that cannot start the sensor (not root, no binary) skips with the reason, except in
//! CI (`CI` set), where it fails: kernel tests must run there.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long a test waits for the sensor to be ready or for a marker to arrive. Generous: a
/// guest kernel under emulation (`cargo xtask vmtest`) verifies and runs everything many times
/// slower than the host, and only a failing test waits this long.
pub const WAIT: Duration = Duration::from_secs(240);

/// Directory of the release binaries (`cargo xtask test` builds them first).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("SENSOR_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"))
}

/// Whether this process may load eBPF programs (is root). Outside CI a test that cannot skips
/// with the reason; in CI (`CI` set) it fails instead.
pub fn can_load(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip_or_fail(test, "not root");
    false
}

fn skip_or_fail(test: &str, reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "kernel test {test} cannot run in CI: {reason}"
    );
    eprintln!("skipped {test}: {reason}");
}

/// A running sensor, stopped (SIGTERM) when dropped.
pub struct Sensor {
    child: Child,
    dir: PathBuf,
    pub socket: String,
    json: PathBuf,
}

impl Sensor {
    /// Starts the sensor with the default configuration; `None` if the test must skip.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with_config(test, "")
    }

    /// Starts the sensor with extra TOML configuration.
    pub fn start_with_config(test: &str, toml: &str) -> Option<Self> {
        Self::start_with_state(test, toml, None)
    }

    /// Starts the sensor with extra TOML configuration and, when given, a `state_dir` that
    /// outlives this sensor (for tests across restarts).
    pub fn start_with_state(test: &str, toml: &str, state: Option<&Path>) -> Option<Self> {
        let bin = bin_dir().join("sensor");
        if !bin.exists() {
            skip_or_fail(test, &format!("{} is not built", bin.display()));
            return None;
        }
        if !can_load(test) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("sensor-test-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let config = dir.join("sensor.toml");
        let state = state.map_or_else(|| dir.join("state"), Path::to_path_buf);
        std::fs::write(
            &config,
            format!("state_dir = {:?}\n{toml}", state.display().to_string()),
        )
        .expect("write config");
        let socket = format!("unix:{}", dir.join("sensor.sock").display());
        let json = dir.join("events.json");
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args(["--listen", &socket, "--json-out"])
            .arg(&json)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sensor.log")).expect("log file"))
            .spawn()
            .expect("spawn sensor");
        let mut sensor = Self {
            child,
            dir,
            socket,
            json,
        };
        sensor.wait_ready();
        Some(sensor)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sensor exited early with {status}: {}", self.log());
            }
            if self.ctl(&["status"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sensor not ready after {WAIT:?}: {}", self.log());
    }

    /// Runs `sensorctl --server <this sensor> <args>`.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin_dir().join("sensorctl"))
            .args(["--server", &self.socket])
            .args(args)
            .output()
            .expect("run sensorctl")
    }

    /// Starts `sensorctl events --json` in the background, writing to `name` in the test dir.
    pub fn subscribe(&self, name: &str) -> Subscriber {
        let path = self.dir.join(name);
        let child = Command::new(bin_dir().join("sensorctl"))
            .args(["--server", &self.socket, "events", "--json"])
            .stdout(std::fs::File::create(&path).expect("subscriber file"))
            .spawn()
            .expect("spawn sensorctl events");
        // The stream is live once an exec made after the call arrives on it; a fixed pause is
        // too short on a slow guest kernel.
        let probe = marker("subscribed");
        let deadline = Instant::now() + WAIT;
        while !read_lines(&path)
            .iter()
            .any(|e| action(e) == "exec" && args(e).contains(&probe))
        {
            assert!(Instant::now() < deadline, "subscription never went live");
            bash(&format!("/usr/bin/true {probe}"));
            std::thread::sleep(Duration::from_millis(200));
        }
        Subscriber { child, path }
    }

    /// The sensor's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sensor.log")).unwrap_or_default()
    }

    /// Every event written so far.
    pub fn events(&self) -> Vec<Value> {
        read_lines(&self.json)
    }

    /// Waits until an `exec` whose args contain `marker` is written; returns all events.
    pub fn events_until_marker(&self, marker: &str) -> Vec<Value> {
        wait_for_marker(&self.json, marker, &self.log())
    }

    /// Creates the file `path` (in a watched directory) and waits until its `file-created`
    /// event is written; returns every event so far. FIM events leave in the order their
    /// kernel records came, so every change made before the marker is in.
    pub fn fim_mark(&self, path: &str) -> Vec<Value> {
        bash(&format!("echo mark > {path}"));
        let deadline = Instant::now() + WAIT;
        loop {
            let events = read_lines(&self.json);
            if events
                .iter()
                .any(|e| action(e) == "file-created" && file_path(e) == path)
            {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "FIM marker {path} never arrived; {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the FIM baseline scan has finished.
    pub fn wait_fim_ready(&self) {
        let deadline = Instant::now() + WAIT;
        while self.status()["fim"]["baseline"] != "ready" {
            assert!(Instant::now() < deadline, "FIM baseline never ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The sensor's status, as `sensorctl status` prints it.
    pub fn status(&self) -> Value {
        let out = self.ctl(&["status"]);
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }
}

/// How long a stopped sensor may take to exit before the test fails.
const EXIT_WAIT: Duration = Duration::from_secs(60);

impl Drop for Sensor {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + EXIT_WAIT;
        let exited = loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break true,
                Ok(None) if Instant::now() > deadline => break false,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            return;
        }
        assert!(
            exited,
            "sensor did not exit within {EXIT_WAIT:?} of SIGTERM: {}",
            self.log()
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `sensorctl events --json` process.
pub struct Subscriber {
    child: Child,
    path: PathBuf,
}

impl Subscriber {
    /// Waits until an exec carrying `marker` arrives on this stream; returns all its events.
    pub fn events_until_marker(&self, marker: &str) -> Vec<Value> {
        wait_for_marker(&self.path, marker, "")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_marker(path: &Path, marker: &str, log: &str) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = read_lines(path);
        if events
            .iter()
            .any(|e| action(e) == "exec" && args(e).iter().any(|a| a == marker))
        {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "marker {marker} never arrived in {}; {log}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every complete line of `path` as JSON. A last line without its newline is still being
/// written (the sink flushes in blocks) and is left for the next read.
fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read(path).unwrap_or_default();
    let complete = text
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1);
    text[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!("invalid JSON line ({e}): {}", String::from_utf8_lossy(l))
            })
        })
        .collect()
}

/// `event.action`.
pub fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

/// `process.args` as exact bytes (escaped values decoded).
pub fn args_bytes(e: &Value) -> Vec<Vec<u8>> {
    let escaped = is_escaped(e, "process.args");
    e["process"]["args"]
        .as_array()
        .map(|a| a.iter().map(|v| decode(v, escaped)).collect())
        .unwrap_or_default()
}

/// `process.args` as text (lossy for non-UTF-8).
pub fn args(e: &Value) -> Vec<String> {
    args_bytes(e)
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// A byte-string field of `process`, decoded (`executable`, `working_directory`, `name`).
pub fn process_bytes(e: &Value, field: &str) -> Vec<u8> {
    decode(
        &e["process"][field],
        is_escaped(e, &format!("process.{field}")),
    )
}

/// A byte-string field of `process` as text.
pub fn process_str(e: &Value, field: &str) -> String {
    String::from_utf8_lossy(&process_bytes(e, field)).into_owned()
}

fn is_escaped(e: &Value, field: &str) -> bool {
    e["sensor"]["escaped"]
        .as_array()
        .is_some_and(|a| a.iter().any(|f| f == field))
}

fn decode(v: &Value, escaped: bool) -> Vec<u8> {
    let s = v.as_str().unwrap_or("");
    if escaped {
        sensor_user::render::unescape(s).expect("valid escape")
    } else {
        s.as_bytes().to_vec()
    }
}

/// `file.path` as exact text (escaped values decoded, lossy for non-UTF-8).
pub fn file_path(e: &Value) -> String {
    String::from_utf8_lossy(&decode(&e["file"]["path"], is_escaped(e, "file.path"))).into_owned()
}

/// FIM events (`file-*` actions, alerts included), in output order.
pub fn file_events(events: &[Value]) -> Vec<&Value> {
    let mut out: Vec<&Value> = events
        .iter()
        .filter(|e| action(e).starts_with("file-"))
        .collect();
    out.sort_by_key(|e| e["event"]["sequence"].as_u64());
    out
}

/// Hex sha256 of `bytes`, as `file.hash.sha256` carries it.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Events of `action` whose args contain `needle`.
pub fn with_arg<'a>(events: &'a [Value], action_name: &str, needle: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| action(e) == action_name && args(e).iter().any(|a| a == needle))
        .collect()
}

/// Events about the process `entity_id`.
pub fn about<'a>(events: &'a [Value], entity_id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["process"]["entity_id"] == entity_id)
        .collect()
}

/// Runs `script` with bash, panicking with its output if it fails; returns stdout.
pub fn bash(script: &str) -> String {
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "trigger failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique marker for this test run.
pub fn marker(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Runs `script` with bash, then a marker exec; returns the script's stdout and every event
/// the sensor wrote up to the marker.
pub fn trigger(sensor: &Sensor, name: &str, script: &str) -> (String, Vec<Value>) {
    let done = marker(name);
    let out = bash(&format!("{script}\n/usr/bin/true {done}"));
    (out, sensor.events_until_marker(&done))
}
