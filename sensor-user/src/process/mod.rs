//! Process stage: turns decoded records into events, keeping the process table current.
//!
//! In: [`Record`]s in ring-buffer order. Out: `sensor.v1.Event`s with process identity, parent
//! links and, for exit, what the process was. Everything about the event itself comes from the
//! kernel record; the table only names parents and fills in the image at exit.

mod exec_failed;
pub mod identity;
mod loader;
pub mod memory;
pub mod seed;
pub mod table;

use std::time::Instant;

use sensor_common::{fork_flags, Creds, ExecRecord, ExitRecord, ForkRecord, TaskIds};
use sensor_proto::v1::{Event, ExecDetail, FileFacts, ForkDetail, Parent, Process};

use crate::decode::{Exec, Record};
use identity::Host;
use table::{Proc, ProcessTable};

/// `statfs` magic numbers of filesystems an executable should not normally come from.
const TMPFS_MAGIC: u32 = 0x0102_1994;
const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;

/// Builds events from records.
pub struct Tracker {
    pub host: Host,
    pub table: ProcessTable,
    /// Fileless-attack findings on the events made here.
    pub findings: crate::memory::Findings,
    /// Audit rules in force, when audit is on.
    pub audit: Option<crate::audit::RuleSet>,
    alerts: Vec<Event>,
    /// Audit events made from exec events, published after them.
    derived: Vec<Event>,
}

impl Tracker {
    pub fn new(host: Host, table: ProcessTable, findings: crate::memory::Findings) -> Self {
        Self {
            host,
            table,
            findings,
            audit: None,
            alerts: Vec::new(),
            derived: Vec::new(),
        }
    }

    /// Audit events made from the events since the last call, in order.
    pub fn take_derived(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.derived)
    }

    /// Alerts raised by the events made since the last call, in order.
    pub fn take_alerts(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.alerts)
    }

    /// The event for a process record, updating the table on the way; `None` for records of
    /// other stages (file integrity has a ring buffer and a thread of its own).
    pub fn handle(&mut self, record: &Record) -> Option<Event> {
        let now = Instant::now();
        let event = match record {
            Record::Fork(fork) => self.fork(fork, now),
            Record::Exec(exec) => self.exec(exec, now),
            Record::ExecFailed(failed) => self.exec_failed(failed),
            Record::Exit(exit) => self.exit(exit, now),
            Record::Mem(m) => self.memory(m),
            Record::Audit(a) => {
                let rules = self.audit.as_ref()?;
                return crate::audit::from_record(self, rules, a);
            }
            Record::Fim(_) => return None,
        };
        if let Some(rules) = &self.audit {
            let nr = match record {
                // After the exec the registers no longer name the syscall; an execveat
                // through a descriptor says so by the name the kernel generated for it.
                Record::Exec(exec) if exec.raw.syscall_nr == u32::MAX => {
                    let fd = exec.raw.flags & sensor_common::exec_flags::EXECVEAT_FD != 0;
                    crate::audit::syscalls::number(if fd { "execveat" } else { "execve" })
                }
                Record::Exec(exec) => Some(exec.raw.syscall_nr),
                Record::ExecFailed(f) => crate::audit::syscalls::number(
                    if f.flag(sensor_common::exec_failed_flags::EXECVEAT) {
                        "execveat"
                    } else {
                        "execve"
                    },
                ),
                _ => None,
            };
            if let Some(derived) = nr.and_then(|nr| crate::audit::from_exec(rules, &event, nr)) {
                self.derived.push(derived);
            }
        }
        if let Some(alert) = self.findings.alert(&event, now) {
            self.alerts.push(alert);
        }
        Some(event)
    }

    pub(crate) fn base(&self, action: &str, boot_ns: u64) -> Event {
        Event {
            time_unix_nano: self.host.wall_ns(boot_ns),
            kind: "event".into(),
            action: action.into(),
            host_name: self.host.name.clone(),
            boot_id: self.host.boot_id.clone(),
            ..Event::default()
        }
    }

    /// Process fields that come straight from the kernel's identity of a task.
    pub(crate) fn identity(&self, ids: &TaskIds) -> Process {
        Process {
            pid: ids.tgid,
            tid: ids.tid,
            entity_id: self.host.entity_id(ids.tgid, ids.start_boottime),
            start_unix_nano: self.host.wall_ns(ids.start_boottime),
            parent: Some(self.parent(ids)),
            ..Process::default()
        }
    }

    fn parent(&self, ids: &TaskIds) -> Parent {
        let known = self.table.get(ids.ppid);
        Parent {
            pid: ids.ppid,
            entity_id: self.host.entity_id(ids.ppid, ids.parent_start_boottime),
            executable: known.map(|p| p.executable.clone()).unwrap_or_default(),
            name: known.map(|p| p.name.clone()).unwrap_or_default(),
        }
    }

    fn fork(&mut self, rec: &ForkRecord, now: Instant) -> Event {
        let mut event = self.base("fork", rec.header.boot_ns);
        let thread = rec.flags & fork_flags::THREAD != 0;
        let mut process = self.identity(&rec.child);
        process.tid = rec.child.tid;
        set_creds(&mut process, &rec.creds);
        process.cgroup_id = rec.cgroup_id;
        // The child runs its parent's image until it execs.
        let image = self.table.get(rec.parent.tgid).cloned();
        if let Some(image) = &image {
            fill_image(&mut process, image);
        }
        process.name = comm(&rec.comm);
        if !thread {
            let proc = Proc {
                entity_id: process.entity_id.clone(),
                ppid: rec.child.ppid,
                parent_entity_id: process
                    .parent
                    .as_ref()
                    .map(|p| p.entity_id.clone())
                    .unwrap_or_default(),
                name: process.name.clone(),
                start_wall_ns: process.start_unix_nano,
                exited: false,
                ..image.unwrap_or_default()
            };
            self.table.insert(rec.child.tgid, proc, now);
        }
        event.fork = Some(ForkDetail {
            thread,
            shared_vm: rec.flags & fork_flags::SHARED_VM != 0,
            vfork: rec.flags & fork_flags::VFORK != 0,
            syscall: syscall_name(rec.syscall_nr).into(),
            child_tid: rec.child.tid,
        });
        event.process = Some(process);
        event
    }

    fn exec(&mut self, exec: &Exec, now: Instant) -> Event {
        let rec: &ExecRecord = &exec.raw;
        let mut event = self.base("exec", rec.header.boot_ns);
        event.outcome = "success".into();
        let mut process = self.identity(&rec.ids);
        set_creds(&mut process, &rec.creds);
        process.cgroup_id = rec.cgroup_id;
        process.tty = String::from_utf8_lossy(&comm(&rec.tty)).into_owned();
        process.name = comm(&rec.comm);
        process.executable = exec.executable.bytes.clone();
        let memfd = memfd_name(&exec.executable.bytes, rec.exe_fs_magic);
        if rec.exe_nlink == 0 && !exec.executable.truncated {
            // As the kernel's own d_path does for an unlinked file.
            process.executable.extend_from_slice(b" (deleted)");
        }
        process.executable_file = Some(FileFacts {
            inode: rec.exe_ino,
            device: rec.exe_dev,
            nlink: rec.exe_nlink,
            fs_magic: rec.exe_fs_magic,
            on_tmpfs: rec.exe_fs_magic == TMPFS_MAGIC || rec.exe_fs_magic == HUGETLBFS_MAGIC,
            memfd_name: memfd.unwrap_or_default(),
        });
        process.args = exec.args.clone();
        process.env_vars = exec.loader_env.clone();
        if rec.flags & sensor_common::exec_flags::ENV_TRUNCATED != 0 {
            process.truncated_fields.push("process.env_vars".into());
        }
        process.args_count = rec.argc;
        process.args_truncated = exec.args_truncated;
        process.args_bytes_total = rec.args_total;
        process.working_directory = exec.cwd.bytes.clone();
        for (cut, field) in [
            (exec.executable.truncated, "process.executable"),
            (exec.cwd.truncated, "process.working_directory"),
            (exec.args_truncated, "process.args"),
        ] {
            if cut {
                process.truncated_fields.push(field.into());
            }
        }
        let script = match &exec.interpreter {
            Some(_) if !exec.cwd.truncated => absolute(&exec.cwd.bytes, &exec.filename),
            _ => Vec::new(),
        };
        event.exec = Some(ExecDetail {
            filename: exec.filename.clone(),
            interpreter: exec.interpreter.clone().unwrap_or_default(),
            calling_tid: if rec.old_tid != rec.ids.tid {
                rec.old_tid
            } else {
                0
            },
            script,
            attempt: None,
            previous_executable: self
                .table
                .get(rec.ids.tgid)
                .map(|p| p.executable.clone())
                .unwrap_or_default(),
            env_scan_incomplete: rec.flags & sensor_common::exec_flags::ENV_INCOMPLETE != 0,
            ..ExecDetail::default()
        });
        if let Some(detail) = event.exec.as_mut() {
            loader::describe(&process.executable, &exec.args, detail);
        }

        let entry = Proc {
            entity_id: process.entity_id.clone(),
            ppid: rec.ids.ppid,
            parent_entity_id: process
                .parent
                .as_ref()
                .map(|p| p.entity_id.clone())
                .unwrap_or_default(),
            executable: process.executable.clone(),
            name: process.name.clone(),
            args: process.args.clone(),
            args_count: process.args_count,
            cwd: process.working_directory.clone(),
            start_wall_ns: process.start_unix_nano,
            exited: false,
        };
        self.table.insert(rec.ids.tgid, entry, now);
        event.process = Some(process);
        event
    }

    fn exit(&mut self, rec: &ExitRecord, now: Instant) -> Event {
        let mut event = self.base("exit", rec.header.boot_ns);
        let mut process = self.identity(&rec.ids);
        if let Some(image) = self.table.get(rec.ids.tgid) {
            if image.entity_id == process.entity_id {
                fill_image(&mut process, image);
            }
        }
        if process.name.is_empty() {
            process.name = comm(&rec.comm);
        }
        let signal = rec.exit_code & 0x7f;
        if signal != 0 {
            process.exit_signal = Some(signal);
        } else {
            process.exit_code = Some(((rec.exit_code >> 8) & 0xff) as i32);
        }
        self.table.exit(rec.ids.tgid, now);
        event.process = Some(process);
        event
    }
}

fn fill_image(process: &mut Process, image: &Proc) {
    process.executable = image.executable.clone();
    process.name = image.name.clone();
    process.args = image.args.clone();
    process.args_count = image.args_count;
    process.working_directory = image.cwd.clone();
}

pub(crate) fn set_creds(process: &mut Process, creds: &Creds) {
    process.uid = creds.uid;
    process.gid = creds.gid;
    process.euid = creds.euid;
    process.egid = creds.egid;
    process.loginuid = audit_id(creds.loginuid);
    process.session_id = audit_id(creds.sessionid);
}

/// `path` made absolute against `cwd`, with `.` components and doubled slashes removed. `..`
/// is kept: without the filesystem it cannot be resolved safely through symlinks.
pub(crate) fn absolute(cwd: &[u8], path: &[u8]) -> Vec<u8> {
    let joined = if path.starts_with(b"/") {
        path.to_vec()
    } else {
        [cwd, b"/", path].concat()
    };
    let mut out = Vec::with_capacity(joined.len());
    for part in joined
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
    {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// `u32::MAX` is the kernel's "unset" for audit ids.
fn audit_id(v: u32) -> Option<u32> {
    (v != u32::MAX).then_some(v)
}

/// A fixed-size kernel name up to its NUL.
pub(crate) fn comm(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..end].to_vec()
}

/// The name given to `memfd_create`, when `path` is a memfd on the kernel's internal tmpfs.
fn memfd_name(path: &[u8], fs_magic: u32) -> Option<Vec<u8>> {
    if fs_magic != TMPFS_MAGIC && fs_magic != HUGETLBFS_MAGIC {
        return None;
    }
    path.strip_prefix(b"/memfd:").map(<[u8]>::to_vec)
}

/// Name of a clone-family syscall number on this architecture.
fn syscall_name(nr: u32) -> &'static str {
    #[cfg(target_arch = "x86_64")]
    const NAMES: &[(u32, &str)] = &[(56, "clone"), (57, "fork"), (58, "vfork"), (435, "clone3")];
    #[cfg(target_arch = "aarch64")]
    const NAMES: &[(u32, &str)] = &[(220, "clone"), (435, "clone3")];
    NAMES
        .iter()
        .find(|(n, _)| *n == nr)
        .map_or("", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_path_is_made_absolute() {
        assert_eq!(
            absolute(b"/tmp/case-03", b"./with-shebang.sh"),
            b"/tmp/case-03/with-shebang.sh"
        );
        assert_eq!(absolute(b"/tmp", b"/usr//bin/./x"), b"/usr/bin/x");
        assert_eq!(absolute(b"/", b"x"), b"/x");
    }

    #[test]
    fn memfd_name_needs_tmpfs() {
        assert_eq!(
            memfd_name(b"/memfd:payload", TMPFS_MAGIC),
            Some(b"payload".to_vec())
        );
        assert_eq!(
            memfd_name(b"/memfd:payload", 0xef53),
            None,
            "a real file named so on ext4"
        );
    }

    /// A tracker on a made-up host with an empty table.
    pub(crate) fn test_tracker() -> Tracker {
        let host = Host {
            name: "h".into(),
            boot_id: "b".into(),
            boot_wall_ns: 0,
            ns_per_tick: 1,
        };
        let findings = crate::memory::Findings::new(&crate::config::MemoryConfig::default());
        Tracker::new(
            host,
            ProcessTable::new(64, std::time::Duration::ZERO),
            findings,
        )
    }

    #[test]
    fn exit_status_splits_code_and_signal() {
        let mut tracker = test_tracker();
        // SAFETY: all-zero bytes are a valid ExitRecord.
        let mut rec: ExitRecord = unsafe { std::mem::zeroed() };

        rec.exit_code = 7 << 8;
        let normal = tracker.handle(&Record::Exit(rec)).unwrap().process.unwrap();
        rec.exit_code = 9;
        let killed = tracker.handle(&Record::Exit(rec)).unwrap().process.unwrap();

        assert_eq!((normal.exit_code, normal.exit_signal), (Some(7), None));
        assert_eq!((killed.exit_code, killed.exit_signal), (None, Some(9)));
    }
}
