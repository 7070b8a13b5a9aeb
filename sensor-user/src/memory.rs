//! Fileless-attack findings: alerts raised on exec and memory events that show a technique.
//!
//! In: events of the process stage. Out: alert events (`event.kind: alert`) that copy the
//! triggering event and add the rule, the ATT&CK technique and the evidence (for memory made
//! executable, a hash of the region's first page and whether it holds an ELF header, read
//! from the process now). Suppressions come from `[memory] allow`, matched on what the kernel
//! reported; repeats per process and rule are rate-limited and counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sensor_proto::v1::{Event, MemoryDetail, RuleDetail};
use sha2::{Digest, Sha256};

use crate::config::{AllowEntry, MemoryConfig};
use crate::process::memory::ptrace_writes;

/// A finding: its name, ATT&CK technique, severity and what it says.
struct Rule {
    name: &'static str,
    technique_id: &'static str,
    technique_name: &'static str,
    severity: u32,
    says: &'static str,
}

const EXEC_FROM_MEMORY: Rule = Rule {
    name: "exec-from-memory",
    technique_id: "T1620",
    technique_name: "Reflective Code Loading",
    severity: 73,
    says: "a program was executed from a memfd: it exists in memory only",
};
const EXEC_DELETED: Rule = Rule {
    name: "exec-deleted-binary",
    technique_id: "T1070.004",
    technique_name: "Indicator Removal: File Deletion",
    severity: 47,
    says: "a program was executed from a file that no longer has a name",
};
const ANONYMOUS: Rule = Rule {
    name: "memory-executable-anonymous",
    technique_id: "T1620",
    technique_name: "Reflective Code Loading",
    severity: 73,
    says: "anonymous memory was made executable",
};
const FILE_IN_MEMORY: Rule = Rule {
    name: "memory-executable-file-in-memory",
    technique_id: "T1620",
    technique_name: "Reflective Code Loading",
    severity: 73,
    says: "memory backed by a memfd, tmpfs or deleted file was made executable",
};
const PTRACE_WRITE: Rule = Rule {
    name: "ptrace-write",
    technique_id: "T1055.008",
    technique_name: "Process Injection: Ptrace System Calls",
    severity: 73,
    says: "a process wrote into another process with ptrace",
};
const VM_WRITE: Rule = Rule {
    name: "process-vm-write",
    technique_id: "T1055",
    technique_name: "Process Injection",
    severity: 73,
    says: "a process wrote into another process with process_vm_writev",
};
const LD_PRELOAD: Rule = Rule {
    name: "loader-preload",
    technique_id: "T1574.006",
    technique_name: "Hijack Execution Flow: Dynamic Linker Hijacking",
    severity: 73,
    says: "a program was started with a library to preload or audit from outside the system library directories",
};
const PROC_MEM: Rule = Rule {
    name: "proc-mem-write",
    technique_id: "T1055.009",
    technique_name: "Process Injection: Proc Memory",
    severity: 73,
    says: "a process opened another process's memory file for writing",
};

const ALL: [&Rule; 8] = [
    &LD_PRELOAD,
    &EXEC_FROM_MEMORY,
    &EXEC_DELETED,
    &ANONYMOUS,
    &FILE_IN_MEMORY,
    &PTRACE_WRITE,
    &VM_WRITE,
    &PROC_MEM,
];

/// Names of the rules, for the configuration's checks.
pub const RULES: [&str; 8] = [
    LD_PRELOAD.name,
    EXEC_FROM_MEMORY.name,
    EXEC_DELETED.name,
    ANONYMOUS.name,
    FILE_IN_MEMORY.name,
    PTRACE_WRITE.name,
    VM_WRITE.name,
    PROC_MEM.name,
];

const WINDOW: Duration = Duration::from_secs(60);
/// Rate-limit entries kept at most; the oldest windows go first.
const MAX_WINDOWS: usize = 16384;
const PAGE: usize = 4096;

/// Alerts of one rule for one process in the current minute.
struct Window {
    start: Instant,
    sent: u32,
    suppressed: u64,
}

/// Raises alerts on events.
pub struct Findings {
    enabled: bool,
    allow: Vec<AllowEntry>,
    per_minute: u32,
    windows: HashMap<(String, &'static str), Window>,
    /// Alerts left out by the rate limit, and by a suppression, since start.
    pub rate_limited: u64,
    pub allowed: u64,
}

impl Findings {
    pub fn new(config: &MemoryConfig) -> Self {
        Self {
            enabled: config.enabled,
            allow: config.allow.clone(),
            per_minute: config.alerts_per_minute,
            windows: HashMap::new(),
            rate_limited: 0,
            allowed: 0,
        }
    }

    /// The alert `event` raises, if any.
    pub fn alert(&mut self, event: &Event, now: Instant) -> Option<Event> {
        if !self.enabled || event.kind != "event" {
            return None;
        }
        let mut evidence = event.memory.clone().unwrap_or_default();
        let rule = match event.action.as_str() {
            "exec" => exec_rule(event, &mut evidence)?,
            _ => memory_rule(event, &evidence)?,
        };
        if self.allowed_by_config(rule, event, &evidence) {
            self.allowed += 1;
            return None;
        }
        let process = event.process.as_ref()?;
        let suppressed_before = self.admit(&process.entity_id, rule.name, now)?;
        // The kernel copies the page at the syscall when it is in memory; otherwise (a page
        // never touched yet) it is read from the process now.
        if matches!(event.action.as_str(), "mmap" | "mprotect")
            && evidence.first_page_sha256.is_empty()
        {
            read_first_page(process.pid, evidence.address, &mut evidence);
        }
        let mut alert = event.clone();
        alert.kind = "alert".into();
        alert.memory = Some(evidence);
        alert.rule = Some(RuleDetail {
            name: rule.name.into(),
            description: rule.says.into(),
            severity: rule.severity,
            technique_id: rule.technique_id.into(),
            technique_name: rule.technique_name.into(),
            suppressed_before,
        });
        Some(alert)
    }

    fn allowed_by_config(&self, rule: &Rule, event: &Event, evidence: &MemoryDetail) -> bool {
        let process = event.process.as_ref();
        let exe = process.map(|p| p.executable.as_slice()).unwrap_or_default();
        let parent = process
            .and_then(|p| p.parent.as_ref())
            .map(|p| p.executable.as_slice())
            .unwrap_or_default();
        let is =
            |want: &Option<String>, have: &[u8]| want.as_ref().is_none_or(|w| w.as_bytes() == have);
        self.allow.iter().any(|a| {
            a.rule.as_deref().is_none_or(|r| r == rule.name)
                && is(&a.executable, exe)
                && is(&a.previous_executable, &evidence.previous_executable)
                && is(&a.parent_executable, parent)
                && is(&a.memfd_name, &evidence.memfd_name)
        })
    }

    /// `Some(alerts left out before this one)` when the rate limit lets it through.
    fn admit(&mut self, entity: &str, rule: &'static str, now: Instant) -> Option<u64> {
        if self.windows.len() >= MAX_WINDOWS {
            self.windows
                .retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        let w = self
            .windows
            .entry((entity.to_string(), rule))
            .or_insert(Window {
                start: now,
                sent: 0,
                suppressed: 0,
            });
        if now.duration_since(w.start) >= WINDOW {
            w.start = now;
            w.sent = 0;
        }
        if w.sent >= self.per_minute {
            w.suppressed += 1;
            self.rate_limited += 1;
            return None;
        }
        w.sent += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

/// An exec from a memfd or from a file with no name left, or one told to preload a library
/// from outside the system's library directories.
fn exec_rule(event: &Event, evidence: &mut MemoryDetail) -> Option<&'static Rule> {
    let process = event.process.as_ref()?;
    let file = process.executable_file.as_ref()?;
    if let Some(lib) = foreign_preload(event) {
        evidence.syscall = "execve".into();
        evidence.path = lib;
        return Some(&LD_PRELOAD);
    }
    evidence.syscall = "execve".into();
    if let Some(exec) = &event.exec {
        evidence.previous_executable = exec.previous_executable.clone();
    }
    evidence.path = process.executable.clone();
    evidence.inode = file.inode;
    evidence.nlink = file.nlink;
    if !file.memfd_name.is_empty() {
        evidence.backing = "memfd".into();
        evidence.memfd_name = file.memfd_name.clone();
        Some(&EXEC_FROM_MEMORY)
    } else if file.nlink == 0 {
        evidence.backing = if file.on_tmpfs {
            "tmpfs"
        } else {
            "deleted-file"
        }
        .into();
        Some(&EXEC_DELETED)
    } else {
        None
    }
}

/// Where the system keeps its libraries; a preload from anywhere else is a finding.
const SYSTEM_LIBS: &[&[u8]] = &[
    b"/lib/",
    b"/lib64/",
    b"/usr/lib/",
    b"/usr/lib64/",
    b"/usr/lib32/",
];

/// The first library an exec was told to preload or audit (`LD_PRELOAD`, `LD_AUDIT`, or the
/// loader's `--preload`/`--audit`) that is not under [`SYSTEM_LIBS`]. A bare name is looked up
/// in the system's directories by the loader and is not a finding.
fn foreign_preload(event: &Event) -> Option<Vec<u8>> {
    let process = event.process.as_ref()?;
    let from_env = process.env_vars.iter().filter_map(|v| {
        v.strip_prefix(b"LD_PRELOAD=".as_slice())
            .or_else(|| v.strip_prefix(b"LD_AUDIT=".as_slice()))
    });
    let from_env = from_env.flat_map(|list| {
        list.split(|&b| b == b':' || b == b' ')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    });
    let from_args = event.exec.iter().flat_map(|e| e.loader_preload.clone());
    from_env.chain(from_args).find(|lib| {
        let climbs = lib.windows(4).any(|w| w == b"/../");
        lib.contains(&b'/') && (climbs || !SYSTEM_LIBS.iter().any(|d| lib.starts_with(d)))
    })
}

/// A memory event that shows a technique.
fn memory_rule(event: &Event, d: &MemoryDetail) -> Option<&'static Rule> {
    if event.outcome != "success" {
        return None;
    }
    let own = |pid: u32| event.process.as_ref().is_some_and(|p| p.pid == pid);
    match event.action.as_str() {
        "mmap" | "mprotect" if d.protection.contains('x') => match d.backing.as_str() {
            "memfd" | "tmpfs" | "deleted-file" => Some(&FILE_IN_MEMORY),
            // An mprotect of a region not followed from its mmap, and gone from the maps by
            // now, is taken for anonymous: the loader's own code mappings never come here.
            "anonymous" | "unknown" => Some(&ANONYMOUS),
            // A file with a name mapped writable and executable at once.
            _ if d.protection == "rwx" => Some(&ANONYMOUS),
            _ => None,
        },
        "ptrace" if ptrace_writes(&d.ptrace_request) && !own(d.target_pid) => Some(&PTRACE_WRITE),
        "process-vm-writev" if d.result > 0 && !own(d.target_pid) => Some(&VM_WRITE),
        "proc-mem-open" if d.target_pid != 0 && !own(d.target_pid) => Some(&PROC_MEM),
        _ => None,
    }
}

/// Hashes the first page of the region at `addr` of process `pid`, read now.
fn read_first_page(pid: u32, addr: u64, d: &mut MemoryDetail) {
    let mut page = vec![0u8; PAGE];
    let local = libc::iovec {
        iov_base: page.as_mut_ptr().cast(),
        iov_len: PAGE,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: PAGE,
    };
    // SAFETY: `local` covers `page`, which outlives the call; the kernel checks `remote`.
    let n = unsafe { libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0) };
    if n <= 0 {
        d.region_unreadable = std::io::Error::last_os_error().to_string();
        return;
    }
    let page = &page[..n as usize];
    d.first_page_sha256 = crate::fim::hash::hex(&Sha256::digest(page));
    d.starts_with_elf = page.starts_with(b"\x7fELF");
}

/// Rule names with their techniques, for the README and status.
pub fn techniques() -> impl Iterator<Item = (&'static str, &'static str)> {
    ALL.iter().map(|r| (r.name, r.technique_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_proto::v1::{FileFacts, Process};

    fn exec_event(exe: &[u8], memfd: &[u8], nlink: u32) -> Event {
        Event {
            kind: "event".into(),
            action: "exec".into(),
            outcome: "success".into(),
            process: Some(Process {
                pid: 10,
                entity_id: "e10".into(),
                executable: exe.to_vec(),
                executable_file: Some(FileFacts {
                    nlink,
                    memfd_name: memfd.to_vec(),
                    ..FileFacts::default()
                }),
                ..Process::default()
            }),
            ..Event::default()
        }
    }

    #[test]
    fn memfd_exec_alerts_and_an_ordinary_exec_does_not() {
        let mut f = Findings::new(&MemoryConfig::default());
        let now = Instant::now();
        let a = f
            .alert(&exec_event(b"/memfd:payload (deleted)", b"payload", 0), now)
            .expect("alert");
        let rule = a.rule.unwrap();
        assert_eq!(
            (rule.name.as_str(), rule.technique_id.as_str()),
            ("exec-from-memory", "T1620")
        );
        assert_eq!(a.memory.unwrap().memfd_name, b"payload");
        assert!(f.alert(&exec_event(b"/usr/bin/id", b"", 1), now).is_none());
    }

    #[test]
    fn repeats_are_limited_and_counted() {
        let config = MemoryConfig {
            alerts_per_minute: 2,
            ..MemoryConfig::default()
        };
        let mut f = Findings::new(&config);
        let ev = exec_event(b"/tmp/gone (deleted)", b"", 0);
        let t0 = Instant::now();
        assert!(f.alert(&ev, t0).is_some());
        assert!(f.alert(&ev, t0).is_some());
        assert!(f.alert(&ev, t0).is_none());
        assert!(f.alert(&ev, t0).is_none());
        assert_eq!(f.rate_limited, 2);
        let next = f.alert(&ev, t0 + WINDOW).expect("a new minute");
        assert_eq!(next.rule.unwrap().suppressed_before, 2);
    }

    #[test]
    fn a_suppression_matches_every_field_it_names() {
        let config = MemoryConfig {
            allow: vec![AllowEntry {
                rule: Some("exec-from-memory".into()),
                memfd_name: Some("runc_cloned:/proc/self/exe".into()),
                previous_executable: Some("/usr/bin/runc".into()),
                ..AllowEntry::default()
            }],
            ..MemoryConfig::default()
        };
        let mut f = Findings::new(&config);
        let now = Instant::now();
        let ev = exec_event(
            b"/memfd:runc_cloned:/proc/self/exe (deleted)",
            b"runc_cloned:/proc/self/exe",
            0,
        );
        // Without the previous image it is not the runtime re-executing itself.
        assert!(f.alert(&ev, now).is_some());
        let mut runc = ev.clone();
        runc.exec = Some(sensor_proto::v1::ExecDetail {
            previous_executable: b"/usr/bin/runc".to_vec(),
            ..Default::default()
        });
        assert!(f.alert(&runc, now).is_none());
        assert_eq!(f.allowed, 1);
    }
}
