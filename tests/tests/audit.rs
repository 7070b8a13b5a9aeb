//! Audit records on the real kernel: each rule kind selecting real syscalls, names and socket
//! addresses decoded, and the auditd-format log read back by the real `ausearch` and
//! `aureport`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use sensor_tests::*;
use serde_json::Value;

/// The audit events of `syscall`.
fn audited<'a>(events: &'a [Value], syscall: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["sensor"]["audit"]["syscall"] == syscall)
        .collect()
}

fn tags(e: &Value) -> Vec<String> {
    e["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn paths(e: &Value) -> Vec<String> {
    e["sensor"]["audit"]["paths"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|v| v["path"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn show(events: &[&Value]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "\n{} tags={:?} exit={} paths={:?} exe={} uid={}",
                action(e),
                tags(e),
                e["sensor"]["audit"]["exit"],
                paths(e),
                process_str(e, "executable"),
                e["process"]["real_user"]["id"],
            )
        })
        .collect()
}

/// A scratch directory removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(marker(name));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until the audit log at `log` holds `needle` (the log is flushed when its sink has
/// caught up); returns the log.
fn log_with(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "`{needle}` never reached {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs one of auditd's tools; panics with its output when it fails.
fn audit_tool(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (`cargo xtask setup` installs auditd): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn ausearch_reads_execs_and_connects_by_key() {
    let dir = Dir::new("audit-log");
    let log = PathBuf::from(dir.path("audit.log"));
    let config = format!(
        "[audit]\nlog = {:?}\n\
         [[audit.rules]]\nkey = \"bars_exec\"\nsyscalls = [\"execve\", \"execveat\"]\n\
         [[audit.rules]]\nkey = \"bars_net\"\nsyscalls = [\"connect\"]\n",
        log.display().to_string()
    );
    let Some(sensor) = Sensor::start_with_config("audit_log", &config) else {
        return;
    };
    let word = marker("audited-argument");

    let script = format!(
        "/bin/echo {word} 'two words' > /dev/null\n\
         /bin/echo {word}-long \"$(head -c 20000 /dev/zero | tr '\\0' x)\" > /dev/null\n\
         python3 -c \"import socket\n\
         s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
         c = socket.socket(); c.connect(s.getsockname()); print(s.getsockname()[1])\""
    );
    let (out, events) = trigger(&sensor, "audit-log", &script);
    let port: u64 = out.trim().parse().expect("port printed");
    let text = log_with(&log, &format!("a1=\"{}\"", events_marker(&events)));

    let execs: Vec<&Value> = audited(&events, "execve")
        .into_iter()
        .filter(|e| args(e).contains(&word))
        .collect();
    assert_eq!(execs.len(), 1, "{}", show(&audited(&events, "execve")));
    assert_eq!(tags(execs[0]), ["bars_exec"]);
    assert_eq!(args(execs[0]), ["/bin/echo", word.as_str(), "two words"]);
    let connects: Vec<&Value> = audited(&events, "connect")
        .into_iter()
        .filter(|e| e["destination"]["port"] == port)
        .collect();
    assert_eq!(connects.len(), 1, "{}", show(&audited(&events, "connect")));
    assert_eq!(connects[0]["destination"]["ip"], "127.0.0.1");
    assert_eq!(
        (tags(connects[0]), connects[0]["event"]["outcome"].as_str()),
        (vec!["bars_net".to_string()], Some("success"))
    );
    assert!(text.contains("key=\"bars_net\""), "{text}");

    let log = log.display().to_string();
    let exec = audit_tool("ausearch", &["-if", &log, "-k", "bars_exec", "-i"]);
    assert!(
        exec.contains(&format!("a1={word} a2=two words")),
        "ausearch shows no exec of {word}: {exec}"
    );
    assert!(exec.contains("syscall=execve"), "{exec}");
    assert!(
        exec.contains(&format!("a1={word}-long a2_len=20000 a2[0]=xxxx")),
        "a 20,000-byte argument is written in pieces ausearch reads: {exec}"
    );
    let net = audit_tool("ausearch", &["-if", &log, "-k", "bars_net", "-i"]);
    assert!(
        net.contains(&format!("laddr=127.0.0.1 lport={port}")),
        "ausearch shows no connect to 127.0.0.1:{port}: {net}"
    );
    assert!(
        net.contains("syscall=connect") && net.contains("key=bars_net"),
        "{net}"
    );
    let summary = audit_tool("aureport", &["-if", &log, "--summary"]);
    assert!(summary.contains("Summary Report"), "{summary}");
}

/// The marker exec's argument, as `trigger` ran it.
fn events_marker(events: &[Value]) -> String {
    events
        .iter()
        .rev()
        .find(|e| action(e) == "exec")
        .and_then(|e| args(e).get(1).cloned())
        .expect("marker exec")
}

#[test]
fn outcome_uid_and_executable_filters_select_only_their_syscalls() {
    let dir = Dir::new("audit-filters");
    let config = "[[audit.rules]]\nkey = \"failed_open\"\nsyscalls = [\"openat\"]\noutcome = \"failure\"\n\
         [[audit.rules]]\nkey = \"nobody_chmod\"\nsyscalls = [\"fchmodat\", \"chmod\"]\nuid = 65534\n\
         [[audit.rules]]\nkey = \"bash_connect\"\nsyscalls = [\"connect\"]\nexecutable = \"/usr/bin/bash\"\n";
    let Some(sensor) = Sensor::start_with_config("audit_filters", config) else {
        return;
    };
    let missing = dir.path("missing");
    let present = dir.path("present");
    let file = dir.path("modes");

    let script = format!(
        "echo x > {present}; cat {present} > /dev/null; cat {missing} 2>/dev/null || true\n\
         touch {file}; chmod 600 {file}; chown 65534 {file}; chmod 755 {dir}\n\
         setpriv --reuid=65534 --regid=65534 --clear-groups chmod 640 {file}\n\
         python3 -c \"import socket\n\
         s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1])\n\
         import subprocess; subprocess.run(['/usr/bin/bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/%d' % s.getsockname()[1]])\n\
         c = socket.socket(); c.connect(s.getsockname())\"",
        dir = dir.0.display()
    );
    let (_, events) = trigger(&sensor, "audit-filters", &script);

    let opens = audited(&events, "openat");
    assert!(
        opens.iter().any(|e| paths(e) == [missing.clone()]
            && e["sensor"]["audit"]["errno"] == "ENOENT"
            && tags(e) == ["failed_open"]),
        "no failed open of {missing}: {}",
        show(&opens)
    );
    assert!(
        opens
            .iter()
            .all(|e| e["sensor"]["audit"]["exit"].as_i64() < Some(0)),
        "a successful open was recorded: {}",
        show(&opens)
    );
    let chmods: Vec<&Value> = audited(&events, "fchmodat")
        .into_iter()
        .chain(audited(&events, "chmod"))
        .collect();
    assert_eq!(chmods.len(), 1, "only nobody's chmod: {}", show(&chmods));
    assert_eq!(chmods[0]["process"]["real_user"]["id"], "65534");
    assert_eq!(paths(chmods[0]), [file]);
    let connects = audited(&events, "connect");
    assert!(!connects.is_empty(), "bash's connect missing");
    assert!(
        connects
            .iter()
            .all(|e| process_str(e, "executable") == "/usr/bin/bash"),
        "connects by other programs: {}",
        show(&connects)
    );
}

#[test]
fn names_resolve_against_directory_descriptors_and_path_prefix_selects() {
    let inside = Dir::new("audit-inside");
    let outside = Dir::new("audit-outside");
    let config = format!(
        "[[audit.rules]]\nkey = \"scratch\"\n\
         syscalls = [\"rename\", \"renameat\", \"renameat2\", \"unlink\", \"unlinkat\"]\n\
         path_prefix = {:?}\n",
        format!("{}/", inside.0.display())
    );
    let Some(sensor) = Sensor::start_with_config("audit_names", &config) else {
        return;
    };

    let script = format!(
        "python3 -c \"import os\n\
         for d in ['{a}', '{b}']:\n    \
             open(d + '/old', 'w').close()\n    \
             fd = os.open(d, os.O_RDONLY)\n    \
             os.rename('old', 'new', src_dir_fd=fd, dst_dir_fd=fd)\n    \
             os.unlink('new', dir_fd=fd)\n\"",
        a = inside.0.display(),
        b = outside.0.display()
    );
    let (_, events) = trigger(&sensor, "audit-names", &script);

    let renames = audited(&events, "renameat2")
        .into_iter()
        .chain(audited(&events, "renameat"))
        .collect::<Vec<_>>();
    assert_eq!(renames.len(), 1, "{}", show(&renames));
    assert_eq!(paths(renames[0]), [inside.path("old"), inside.path("new")]);
    assert_eq!(
        renames[0]["sensor"]["audit"]["paths"][0]["name"], "old",
        "the name as passed is kept"
    );
    let unlinks = audited(&events, "unlinkat");
    assert_eq!(unlinks.len(), 1, "{}", show(&unlinks));
    assert_eq!(paths(unlinks[0]), [inside.path("new")]);
    assert_eq!(unlinks[0]["file"]["path"], inside.path("new"));
}

#[test]
fn builtin_rules_record_privilege_namespace_permission_and_network_changes() {
    let dir = Dir::new("audit-default");
    let Some(sensor) = Sensor::start_with_config("audit_default", "[audit]\n") else {
        return;
    };
    let file = dir.path("f");

    let script = format!(
        "touch {file}; chmod 700 {file}\n\
         setpriv --reuid=65534 /usr/bin/true\n\
         unshare --uts /usr/bin/true\n\
         python3 -c \"import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\""
    );
    let (_, events) = trigger(&sensor, "audit-default", &script);

    let keyed = |key: &str, syscall: &str| {
        audited(&events, syscall)
            .into_iter()
            .any(|e| tags(e).iter().any(|t| t == key))
    };
    assert!(
        keyed("perm_mod", "fchmodat") || keyed("perm_mod", "chmod"),
        "chmod"
    );
    assert!(
        keyed("privilege", "setresuid") || keyed("privilege", "setreuid"),
        "setpriv"
    );
    assert!(keyed("namespaces", "unshare"), "unshare");
    for call in ["socket", "bind", "listen"] {
        assert!(keyed("network", call), "{call}");
    }
    assert!(keyed("exec", "execve"), "exec");
    let bind = audited(&events, "bind")
        .into_iter()
        .find(|e| e["source"]["ip"] == "127.0.0.1")
        .expect("bind to 127.0.0.1 decoded");
    assert_eq!(bind["event"]["category"][0], "network");
    let decoded = |syscall: &str, arg: &str| -> Vec<String> {
        audited(&events, syscall)
            .iter()
            .filter_map(|e| {
                e["sensor"]["audit"]["decoded"][arg]
                    .as_str()
                    .map(String::from)
            })
            .collect()
    };
    assert!(decoded("unshare", "flags").contains(&"CLONE_NEWUTS".to_string()));
    let modes: Vec<String> = decoded("fchmodat", "mode")
        .into_iter()
        .chain(decoded("chmod", "mode"))
        .collect();
    assert!(modes.contains(&"0700".to_string()), "{modes:?}");
}

#[test]
fn names_and_addresses_are_the_ones_the_kernel_was_given_not_rewritten_later() {
    let dir = Dir::new("audit-race");
    let config = format!(
        "[[audit.rules]]\nkey = \"fifo\"\nsyscalls = [\"open\", \"openat\"]\n\
         path_prefix = {:?}\n\
         [[audit.rules]]\nkey = \"net\"\nsyscalls = [\"connect\"]\n",
        format!("{}/", dir.0.display())
    );
    let Some(sensor) = Sensor::start_with_config("audit_race", &config) else {
        return;
    };
    let fifo = dir.path("secret.fifo");

    // One thread blocks in open() on a FIFO, and in connect() to a listener whose backlog is
    // full, while another rewrites the name and the address in the caller's memory, then
    // lets the syscalls finish.
    let script = format!(
        "mkfifo {fifo}\n\
         python3 - <<'PY'\n\
import ctypes, os, socket, struct, threading, time\n\
libc = ctypes.CDLL(None, use_errno=True)\n\
name = ctypes.create_string_buffer(b'{fifo}', 4096)\n\
t = threading.Thread(target=lambda: libc.open(name, os.O_RDONLY)); t.start()\n\
time.sleep(0.5)\n\
ctypes.memmove(name, b'/tmp/harmless\\0', 14)\n\
w = os.open('{fifo}', os.O_WRONLY); t.join(); os.close(w)\n\
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(0); port = srv.getsockname()[1]\n\
         fill = socket.create_connection(('127.0.0.1', port))\n\
         addr = ctypes.create_string_buffer(struct.pack('=H', 2) + struct.pack('!H4s8x', port, bytes([127, 0, 0, 1])), 16)\n\
         fd = socket.socket().detach()\n\
         c = threading.Thread(target=lambda: libc.connect(fd, addr, 16)); c.start()\n\
         time.sleep(0.5)\n\
         addr[2:8] = struct.pack('!H4s', 443, bytes([1, 1, 1, 1]))\n\
         srv.settimeout(10)\n\
         for _ in range(2): srv.accept()\n\
         c.join(timeout=10)\n\
         print(port)\n\
PY"
    );
    let (out, events) = trigger(&sensor, "audit-race", &script);
    let port: u64 = out.trim().parse().expect("port printed");

    let opens: Vec<&Value> = audited(&events, "openat")
        .into_iter()
        .chain(audited(&events, "open"))
        .filter(|e| tags(e).contains(&"fifo".to_string()))
        .collect();
    assert!(
        opens.iter().any(|e| paths(e) == [fifo.clone()]),
        "the FIFO open is recorded under its real name: {}",
        show(&opens)
    );
    assert!(
        opens
            .iter()
            .all(|e| e["sensor"]["audit"]["args_read_at_exit"].is_null()),
        "{}",
        show(&opens)
    );
    let connects = audited(&events, "connect");
    let blocked: Vec<&&Value> = connects
        .iter()
        .filter(|e| e["destination"]["ip"] == "1.1.1.1" || e["destination"]["port"] == port)
        .collect();
    assert!(!blocked.is_empty(), "{}", show(&connects));
    assert!(
        blocked
            .iter()
            .all(|e| e["destination"]["ip"] == "127.0.0.1"),
        "the address connected to, not the one written later: {:?}",
        blocked
            .iter()
            .map(|e| &e["destination"])
            .collect::<Vec<_>>()
    );
}

#[test]
fn datagram_destinations_are_recorded_for_sendto_and_sendmsg() {
    let config = "[[audit.rules]]\nkey = \"udp\"\nsyscalls = [\"sendto\", \"sendmsg\"]\n";
    let Some(sensor) = Sensor::start_with_config("audit_udp", config) else {
        return;
    };

    let script = "python3 -c \"import socket\n\
         r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0))\n\
         q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); q.bind(('127.0.0.1', 0))\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.sendto(b'x', r.getsockname()); s.sendmsg([b'y'], [], 0, q.getsockname())\n\
         print(r.getsockname()[1], q.getsockname()[1])\"";
    let (out, events) = trigger(&sensor, "audit-udp", script);
    let ports: Vec<u64> = out.split_whitespace().map(|p| p.parse().unwrap()).collect();

    for (syscall, port) in [("sendto", ports[0]), ("sendmsg", ports[1])] {
        let sent = audited(&events, syscall);
        assert!(
            sent.iter().any(|e| e["destination"]["ip"] == "127.0.0.1"
                && e["destination"]["port"] == port
                && tags(e) == ["udp"]),
            "{syscall} to port {port}: {:?}",
            sent.iter().map(|e| &e["destination"]).collect::<Vec<_>>()
        );
    }
}
