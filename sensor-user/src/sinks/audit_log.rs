//! auditd log sink: audit events written as `/var/log/audit/audit.log` holds them, so the
//! audit tools (`ausearch -if`, `aureport -if`) and parsers of that format read them unchanged.
//!
//! One event is a group of records sharing `msg=audit(<seconds>.<millis>:<serial>)`: SYSCALL,
//! then EXECVE for an exec, CWD, a PATH per name, SOCKADDR, PROCTITLE. Values that auditd
//! would hex-encode (spaces, quotes, control or non-ASCII bytes) are hex-encoded the same way.
//! The file is rotated by size: `log` becomes `log.1`, `log.1` becomes `log.2`, and so on.

use std::{
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use sensor_proto::v1::Event;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::{audit::syscalls, stats::Stats};

/// The kernel's cap on the command line in a PROCTITLE record.
const PROCTITLE_MAX: usize = 128;

/// Bytes of arguments written per EXECVE record, as the kernel's audit does; an argument
/// longer than that is written in pieces (`a1_len=`, `a1[0]=`, `a1[1]=`, ...).
const EXECVE_ARGS_MAX: usize = 7500;

/// Where and how much to write.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub keep: u32,
}

/// The open log with its size so far.
pub struct Log {
    target: Target,
    out: BufWriter<File>,
    size: u64,
}

impl Log {
    /// Opens (creating) the log for appending.
    pub fn open(target: Target) -> std::io::Result<Self> {
        if let Some(dir) = target.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&target.path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            target,
            out: BufWriter::with_capacity(256 * 1024, file),
            size,
        })
    }

    /// Appends the records of `event`, rotating first when they would pass the size limit.
    pub fn write(&mut self, event: &Event) -> std::io::Result<()> {
        let Some(text) = format_event(event) else {
            return Ok(());
        };
        if self.size > 0 && self.size + text.len() as u64 > self.target.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(text.as_bytes())?;
        self.size += text.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let numbered = |n: u32| {
            let mut p = self.target.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.target.keep == 0 {
            std::fs::remove_file(&self.target.path)?;
        } else {
            for n in (1..self.target.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.target.path, numbered(1))?;
        }
        self.out = BufWriter::with_capacity(256 * 1024, open_append(&self.target.path)?);
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Writes every audit event from `rx` until the bus closes. Blocks: run it on a thread of its
/// own.
pub fn run(
    mut rx: broadcast::Receiver<Arc<Event>>,
    mut log: Log,
    stats: Arc<Stats>,
) -> std::io::Result<()> {
    let mut failed: u64 = 0;
    loop {
        match rx.blocking_recv() {
            Ok(event) => {
                // A full or failing disk loses records, counted and logged, never the sink.
                if let Err(e) = log.write(&event) {
                    stats
                        .audit_log_write_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if failed.is_multiple_of(1000) {
                        tracing::warn!(error = %e, failed = failed + 1, "audit log write failed");
                    }
                    failed += 1;
                }
            }
            Err(RecvError::Lagged(n)) => {
                stats.dropped(n);
                tracing::warn!(missed = n, "audit log sink fell behind");
            }
            Err(RecvError::Closed) => break,
        }
        if rx.is_empty() {
            // A failed flush fails the next write too, which is counted and logged there.
            let _ = log.flush();
        }
    }
    log.flush()
}

/// The records of one audit event, each line ending in a newline; `None` for other events.
pub fn format_event(event: &Event) -> Option<String> {
    let audit = event.audit.as_ref()?;
    let process = event.process.as_ref()?;
    let secs = event.time_unix_nano / 1_000_000_000;
    let millis = (event.time_unix_nano / 1_000_000) % 1000;
    let msg = format!("msg=audit({secs}.{millis:03}:{})", event.sequence);
    let exec = matches!(audit.syscall.as_str(), "execve" | "execveat");
    let mut out = String::new();

    let arg = |i: usize| audit.args.get(i).copied().unwrap_or(0);
    let success = if audit.exit >= 0 { "yes" } else { "no" };
    let id = |v: Option<u32>| v.unwrap_or(u32::MAX);
    let tty = if process.tty.is_empty() {
        "(none)"
    } else {
        &process.tty
    };
    let key = if audit.keys.is_empty() {
        "(null)".to_string()
    } else {
        // auditd joins several keys with \x01, which makes the field hex.
        value(audit.keys.join("\x01").as_bytes())
    };
    let _ = writeln!(
        out,
        "type=SYSCALL {msg}: arch={} syscall={} success={success} exit={} a0={:x} a1={:x} \
         a2={:x} a3={:x} items={} ppid={} pid={} auid={} uid={} gid={} euid={} suid={} \
         fsuid={} egid={} sgid={} fsgid={} tty={tty} ses={} comm={} exe={} key={key}",
        syscalls::ARCH.0,
        audit.syscall_nr,
        audit.exit,
        arg(0),
        arg(1),
        arg(2),
        arg(3),
        audit.paths.len(),
        process.parent.as_ref().map_or(0, |p| p.pid),
        process.pid,
        id(process.loginuid),
        process.uid,
        process.gid,
        process.euid,
        audit.suid,
        audit.fsuid,
        process.egid,
        audit.sgid,
        audit.fsgid,
        id(process.session_id),
        value(&process.name),
        value(&process.executable),
    );
    if exec && audit.exit >= 0 {
        out.push_str(&execve_record(&msg, &process.args, process.args_count));
    }
    if !process.working_directory.is_empty() && (exec || !audit.paths.is_empty()) {
        let _ = writeln!(
            out,
            "type=CWD {msg}: cwd={}",
            value(&process.working_directory)
        );
    }
    let types = syscalls::name_types(audit.syscall_nr);
    for (i, p) in audit.paths.iter().enumerate() {
        let name = if p.path.is_empty() { &p.name } else { &p.path };
        let mut line = format!("type=PATH {msg}: item={i} name={}", value(name));
        // The loaded image's identity goes with its own name (a script's interpreter, not the
        // script).
        if exec && p.path == process.executable {
            if let Some(f) = &process.executable_file {
                let dev = f.device;
                let _ = write!(
                    line,
                    " inode={} dev={:02x}:{:02x}",
                    f.inode,
                    dev >> 20,
                    dev & 0xfffff
                );
            }
        }
        let nametype = types.get(i).copied().unwrap_or(syscalls::NameType::Normal);
        let _ = writeln!(line, " nametype={}", nametype.as_str());
        out.push_str(&line);
    }
    if let Some(s) = &audit.socket {
        let _ = writeln!(out, "type=SOCKADDR {msg}: saddr={}", hex(&s.raw));
    }
    let title = process.args.join(&0u8);
    let title = if title.is_empty() {
        process.name.clone()
    } else {
        title
    };
    let title = &title[..title.len().min(PROCTITLE_MAX)];
    let _ = writeln!(out, "type=PROCTITLE {msg}: proctitle={}", value(title));
    Some(out)
}

/// The EXECVE records: `argc`, then every argument, over as many records as the budget per
/// record needs, the way the kernel's audit writes them: an argument that fits is one field,
/// one too long for a record of its own is `aN_len=<bytes>` and hex pieces `aN[k]=`.
fn execve_record(msg: &str, args: &[Vec<u8>], argc: u32) -> String {
    let argc = argc.max(args.len() as u32);
    let head = format!("type=EXECVE {msg}:");
    let mut out = String::new();
    let mut line = format!("{head} argc={argc}");
    let mut used = 0;
    let mut push = |field: String, line: &mut String, used: &mut usize| {
        if *used + field.len() > EXECVE_ARGS_MAX && *used > 0 {
            out.push_str(line);
            out.push('\n');
            *line = head.clone();
            *used = 0;
        }
        *used += field.len();
        line.push_str(&field);
    };
    for (i, a) in args.iter().enumerate() {
        let v = value(a);
        if v.len() + 8 <= EXECVE_ARGS_MAX {
            push(format!(" a{i}={v}"), &mut line, &mut used);
            continue;
        }
        push(format!(" a{i}_len={}", a.len()), &mut line, &mut used);
        // Hex pieces of half a record each, so two fit a record with room to spare.
        for (k, piece) in a.chunks(EXECVE_ARGS_MAX / 4).enumerate() {
            push(format!(" a{i}[{k}]={}", hex(piece)), &mut line, &mut used);
        }
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// A field value as auditd writes untrusted strings: quoted when every byte is printable
/// ASCII other than space and `"`, else the bytes in upper-case hex.
pub fn value(bytes: &[u8]) -> String {
    let plain = bytes
        .iter()
        .all(|&b| (0x21..=0x7e).contains(&b) && b != b'"');
    if plain && !bytes.is_empty() {
        format!("\"{}\"", String::from_utf8_lossy(bytes))
    } else if bytes.is_empty() {
        "\"\"".into()
    } else {
        hex(bytes)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_proto::v1::{AuditDetail, AuditPath, Parent, Process, SocketAddress};

    fn connect_event() -> Event {
        Event {
            time_unix_nano: 1_700_000_000_123_456_789,
            sequence: 42,
            action: "connect".into(),
            process: Some(Process {
                pid: 10,
                uid: 1000,
                name: b"curl".to_vec(),
                executable: b"/usr/bin/curl".to_vec(),
                args: vec![b"curl".to_vec(), b"http://x y".to_vec()],
                parent: Some(Parent {
                    pid: 9,
                    ..Parent::default()
                }),
                ..Process::default()
            }),
            audit: Some(AuditDetail {
                syscall: "connect".into(),
                syscall_nr: 42,
                exit: -111,
                args: vec![3, 0x7ffd, 16],
                keys: vec!["bars_net".into()],
                socket: Some(SocketAddress {
                    raw: vec![2, 0, 0, 80, 127, 0, 0, 1],
                    ..SocketAddress::default()
                }),
                ..AuditDetail::default()
            }),
            ..Event::default()
        }
    }

    #[test]
    fn syscall_sockaddr_and_proctitle_share_one_serial() {
        let text = format_event(&connect_event()).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines
            .iter()
            .all(|l| l.contains("msg=audit(1700000000.123:42): ")));
        assert!(lines[0].starts_with("type=SYSCALL "));
        for field in [
            "syscall=42 ",
            "success=no exit=-111 ",
            "a0=3 a1=7ffd a2=10 a3=0 ",
            "ppid=9 pid=10 auid=4294967295 uid=1000 ",
            "tty=(none) ",
            "comm=\"curl\" exe=\"/usr/bin/curl\" key=\"bars_net\"",
        ] {
            assert!(lines[0].contains(field), "no `{field}` in {}", lines[0]);
        }
        assert!(lines[1].ends_with("saddr=020000507F000001"), "{}", lines[1]);
        // "curl\0http://x y": a NUL and a space, so hex.
        assert!(lines[2].ends_with("proctitle=6375726C00687474703A2F2F782079"));
    }

    #[test]
    fn long_arguments_are_split_over_records_and_none_is_left_out() {
        let big = vec![b'x'; 20_000];
        let args = vec![b"cat".to_vec(), big.clone(), b"last".to_vec()];

        let text = execve_record("msg=audit(1.000:1)", &args, 3);
        let lines: Vec<&str> = text.lines().collect();

        assert!(lines.len() >= 3, "{}", lines.len());
        assert!(lines
            .iter()
            .all(|l| l.starts_with("type=EXECVE msg=audit(1.000:1):")));
        assert!(lines.iter().all(|l| l.len() < EXECVE_ARGS_MAX + 100));
        assert!(
            lines[0].contains(" argc=3 a0=\"cat\" a1_len=20000"),
            "{}",
            &lines[0][..80]
        );
        let pieces: String = lines
            .iter()
            .flat_map(|l| l.split(' '))
            .filter(|f| f.starts_with("a1["))
            .map(|f| f.split_once('=').unwrap().1)
            .collect();
        assert_eq!(pieces, hex(&big));
        assert!(text.contains(" a2=\"last\""));
    }

    #[test]
    fn untrusted_values_are_hex_like_auditd() {
        assert_eq!(value(b"/usr/bin/ls"), "\"/usr/bin/ls\"");
        assert_eq!(value(b"a b"), "612062");
        assert_eq!(value(b"q\""), "7122");
        assert_eq!(value(b"\xff"), "FF");
    }

    #[test]
    fn paths_carry_their_nametype_and_the_log_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut event = connect_event();
        let audit = event.audit.as_mut().unwrap();
        audit.syscall = "unlink".into();
        audit.syscall_nr = syscalls::number("unlink").unwrap();
        audit.socket = None;
        audit.paths = vec![AuditPath {
            name: b"x".to_vec(),
            path: b"/tmp/x".to_vec(),
            ..AuditPath::default()
        }];
        let one = format_event(&event).unwrap();
        let target = Target {
            path: path.clone(),
            max_bytes: one.len() as u64 * 2,
            keep: 2,
        };

        let mut log = Log::open(target).unwrap();
        for _ in 0..7 {
            log.write(&event).unwrap();
        }
        log.flush().unwrap();

        assert!(
            one.contains(
                "type=PATH msg=audit(1700000000.123:42): item=0 name=\"/tmp/x\" nametype=DELETE"
            ),
            "{one}"
        );
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert_eq!(size(&path), one.len() as u64);
        assert_eq!(size(&dir.path().join("audit.log.1")), 2 * one.len() as u64);
        assert_eq!(size(&dir.path().join("audit.log.2")), 2 * one.len() as u64);
        assert!(
            !dir.path().join("audit.log.3").exists(),
            "only `keep` rotated logs"
        );
    }
}
