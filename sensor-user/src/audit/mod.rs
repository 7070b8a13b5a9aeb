//! Audit correlator: syscalls the rules select, as events with auditd's context.
//!
//! In: audit records from the kernel (the rules' kernel filters already decided) and exec
//! events (exec is audited from the exec records). Out: events whose `event.action` is the
//! syscall's name and whose `tags` are the matching rules' keys, with the decoded arguments in
//! `audit`; `sinks::audit_log` writes them in auditd's format.

pub mod args;
pub mod rules;
pub mod sockaddr;
pub mod syscalls;

use sensor_common::{AuditRule, Creds};
use sensor_proto::v1::{AuditDetail, AuditPath, Event};

use crate::{decode::Audit, process::Tracker};
pub use rules::{AuditConfig, RuleSet};

/// The audit event for a kernel audit record; `None` when no rule's collector-side filters
/// (executable, path prefix) hold.
pub fn from_record(tracker: &Tracker, rules: &RuleSet, a: &Audit) -> Option<Event> {
    let raw = &a.raw;
    let mut process = tracker.identity(&raw.ids);
    crate::process::set_creds(&mut process, &raw.creds);
    process.cgroup_id = raw.cgroup_id;
    process.tty = String::from_utf8_lossy(&crate::process::comm(&raw.tty)).into_owned();
    process.name = crate::process::comm(&raw.comm);
    if let Some(known) = tracker.table.get(raw.ids.tgid) {
        if known.entity_id == process.entity_id {
            process.executable = known.executable.clone();
            process.args = known.args.clone();
            process.args_count = known.args_count;
            process.working_directory = known.cwd.clone();
        }
    }
    if !a.cwd.bytes.is_empty() {
        process.working_directory = a.cwd.bytes.clone();
        if a.cwd.truncated {
            process
                .truncated_fields
                .push("process.working_directory".into());
        }
    }

    let cwd = (!a.cwd.truncated).then_some(a.cwd.bytes.as_slice());
    let unreadable = raw.flags & sensor_common::audit_flags::NAME_UNREADABLE != 0;
    let truncated = raw.flags & sensor_common::audit_flags::NAME_TRUNCATED != 0;
    let mut paths = Vec::new();
    for (name, base) in [(&a.name0, &a.base0), (&a.name1, &a.base1)] {
        if name.is_empty() {
            continue;
        }
        paths.push(AuditPath {
            path: resolve(name, base, cwd),
            name: name.clone(),
            unreadable: false,
            truncated,
        });
    }
    let spec = syscalls::decoding(raw.nr);
    if unreadable && paths.is_empty() && spec.paths.path0 != sensor_common::SyscallPaths::NONE {
        paths.push(AuditPath {
            unreadable: true,
            ..AuditPath::default()
        });
    }

    let keys = keys(rules, raw.rules, &process.executable, &paths);
    if keys.is_empty() {
        return None;
    }
    let name = syscalls::name(raw.nr);
    let mut event = tracker.base(&name, raw.header.boot_ns);
    event.outcome = outcome(raw.ret).into();
    event.tags = keys.clone();
    event.audit = Some(AuditDetail {
        decoded: args::decode(&name, &raw.args).into_iter().collect(),
        syscall: name,
        syscall_nr: raw.nr,
        arch: syscalls::ARCH.1.into(),
        exit: raw.ret,
        errno: errno(raw.ret),
        args: raw.args.to_vec(),
        suid: raw.suid,
        sgid: raw.sgid,
        fsuid: raw.fsuid,
        fsgid: raw.fsgid,
        paths,
        socket: (!a.sockaddr.is_empty()).then(|| sockaddr::decode(&a.sockaddr)),
        keys,
    });
    event.process = Some(process);
    Some(event)
}

/// The audit event for an exec event (successful or failed) made by syscall `nr`; `None`
/// when no rule selects it.
pub fn from_exec(rules: &RuleSet, exec: &Event, nr: u32) -> Option<Event> {
    let process = exec.process.as_ref()?;
    let attempt = exec.exec.as_ref().and_then(|e| e.attempt.as_ref());
    let ret = attempt.map_or(0, |a| -i64::from(a.errno));
    let creds = Creds {
        uid: process.uid,
        gid: process.gid,
        euid: process.euid,
        egid: process.egid,
        loginuid: process.loginuid.unwrap_or(u32::MAX),
        sessionid: process.session_id.unwrap_or(u32::MAX),
    };
    let candidates = rules.naming(nr);
    let mut passed = 0;
    for (i, rule) in rules.rules.iter().enumerate() {
        if candidates & (1 << i) != 0 && kernel_filters_hold(&rule.kernel, ret, &creds) {
            passed |= 1 << i;
        }
    }
    if passed == 0 {
        return None;
    }
    let name = match (attempt, exec.exec.as_ref()) {
        (Some(a), _) => a.path.clone(),
        (None, Some(e)) => crate::process::absolute(&process.working_directory, &e.filename),
        (None, None) => Vec::new(),
    };
    let paths = vec![AuditPath {
        name: exec
            .exec
            .as_ref()
            .map(|e| e.filename.clone())
            .unwrap_or_default(),
        path: name,
        unreadable: false,
        truncated: false,
    }];
    let keys = keys(rules, passed, &process.executable, &paths);
    if keys.is_empty() {
        return None;
    }

    let mut event = exec.clone();
    event.action = syscalls::name(nr);
    event.outcome = outcome(ret).into();
    event.tags = keys.clone();
    if let Some(p) = event.process.as_mut() {
        if let Some(a) = attempt {
            // A failed exec leaves the caller's image; its attempted argv is what was run.
            p.args = a.args.clone();
            p.args_count = a.args_count;
        }
    }
    event.audit = Some(AuditDetail {
        syscall: syscalls::name(nr),
        syscall_nr: nr,
        arch: syscalls::ARCH.1.into(),
        exit: ret,
        errno: errno(ret),
        args: Vec::new(),
        paths,
        keys,
        // Saved and filesystem ids equal the effective ones right after an exec.
        suid: process.euid,
        sgid: process.egid,
        fsuid: process.euid,
        fsgid: process.egid,
        socket: None,
        decoded: Default::default(),
    });
    Some(event)
}

/// The same decision the kernel side makes on a rule's outcome and id ranges.
pub fn kernel_filters_hold(rule: &AuditRule, ret: i64, c: &Creds) -> bool {
    let outcome_ok = match rule.outcome {
        AuditRule::SUCCESS => ret >= 0,
        AuditRule::FAILURE => ret < 0,
        _ => true,
    };
    let within = |bit: u8, r: [u32; 2], v: u32| rule.ranges & bit == 0 || (r[0] <= v && v <= r[1]);
    outcome_ok
        && within(AuditRule::UID, rule.uid, c.uid)
        && within(AuditRule::AUID, rule.auid, c.loginuid)
        && within(AuditRule::EUID, rule.euid, c.euid)
        && within(AuditRule::GID, rule.gid, c.gid)
}

/// Keys of the rules in `bits` whose executable and path-prefix filters hold, in rule order,
/// without repeats.
fn keys(rules: &RuleSet, bits: u64, executable: &[u8], paths: &[AuditPath]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for (i, rule) in rules.rules.iter().enumerate() {
        if bits & (1 << i) == 0 {
            continue;
        }
        if rule.executable.as_deref().is_some_and(|e| e != executable) {
            continue;
        }
        let prefix_ok = match rule.path_prefix.as_deref() {
            None => true,
            Some(prefix) => paths.iter().any(|p| p.path.starts_with(prefix)),
        };
        if prefix_ok && !keys.contains(&rule.key) {
            keys.push(rule.key.clone());
        }
    }
    keys
}

/// `name` made absolute: against `base` (a directory descriptor's path) when there is one,
/// else against the working directory; empty when the directory is unknown.
fn resolve(name: &[u8], base: &crate::decode::KernelPath, cwd: Option<&[u8]>) -> Vec<u8> {
    if name.starts_with(b"/") {
        return crate::process::absolute(b"/", name);
    }
    if !base.bytes.is_empty() {
        if base.truncated {
            return Vec::new();
        }
        return crate::process::absolute(&base.bytes, name);
    }
    match cwd {
        Some(cwd) if !cwd.is_empty() => crate::process::absolute(cwd, name),
        _ => Vec::new(),
    }
}

fn outcome(ret: i64) -> &'static str {
    if ret >= 0 {
        "success"
    } else {
        "failure"
    }
}

/// `ENOENT` for -2; empty for success or an unknown number.
fn errno(ret: i64) -> String {
    if !(-4095..0).contains(&ret) {
        return String::new();
    }
    ::syscalls::Errno::new((-ret) as i32)
        .name_and_description()
        .map_or_else(String::new, |(name, _)| name.to_string())
}

#[cfg(test)]
mod tests;
