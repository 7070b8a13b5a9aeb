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
        }
    }
    // The working directory as the kernel had it, when a name was taken against it; the
    // table's is the one of the last exec and may be stale, so it is not given instead.
    for (which, base) in [&a.base0, &a.base1].into_iter().enumerate() {
        if raw.flags & (sensor_common::audit_flags::BASE_IS_CWD << which) != 0 {
            process.working_directory = base.bytes.clone();
            if base.truncated {
                let field = "process.working_directory".into();
                process.truncated_fields.push(field);
            }
            break;
        }
    }

    let paths = paths(a);
    let keys = keys(rules, raw.rules, process.pid, &process.executable, &paths);
    if keys.is_empty() {
        return None;
    }
    let name = syscalls::name(raw.nr);
    let mut event = tracker.base(&name, raw.header.boot_ns);
    event.outcome = outcome(raw.ret).into();
    event.tags = keys.clone();
    event.audit = Some(AuditDetail {
        decoded: args::decode(&name, &raw.args).into_iter().collect(),
        args_missing: raw.flags & sensor_common::audit_flags::ARGS_MISSING != 0,
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

/// The names of an audit record, each made absolute against the directory it was taken
/// against: its directory descriptor's path, or the working directory. An empty name with a
/// descriptor (`AT_EMPTY_PATH`) is the descriptor's file.
fn paths(a: &Audit) -> Vec<AuditPath> {
    use sensor_common::audit_flags as f;
    let flags = a.raw.flags;
    let cwd = (!a.cwd.truncated).then_some(a.cwd.bytes.as_slice());
    let spec = syscalls::decoding(a.raw.nr);
    let mut out = Vec::new();
    let none = sensor_common::SyscallPaths::NONE;
    let names = [
        (&a.name0, &a.base0, spec.paths.path0),
        (&a.name1, &a.base1, spec.paths.path1),
    ];
    for (which, (name, base, slot)) in names.into_iter().enumerate() {
        if slot == none {
            continue;
        }
        let bad_dirfd = flags & (f::BAD_DIRFD << which) != 0;
        let unreadable = name.is_empty() && flags & f::NAME_UNREADABLE != 0;
        if name.is_empty() && base.bytes.is_empty() && !unreadable {
            continue;
        }
        let path = if bad_dirfd && !name.starts_with(b"/") {
            Vec::new()
        } else if name.is_empty() && !base.truncated {
            base.bytes.clone()
        } else {
            resolve(name, base, cwd)
        };
        out.push(AuditPath {
            path,
            name: name.clone(),
            unreadable,
            truncated: flags & (f::NAME_TRUNCATED << which) != 0,
        });
    }
    out
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
    let mut paths = vec![AuditPath {
        name: exec
            .exec
            .as_ref()
            .map(|e| e.filename.clone())
            .unwrap_or_default(),
        path: name,
        unreadable: false,
        truncated: false,
    }];
    let script = exec
        .exec
        .as_ref()
        .is_some_and(|e| !e.interpreter.is_empty());
    if script && attempt.is_none() {
        // The file named was a script: the image loaded is its interpreter, a name of its own.
        paths.push(AuditPath {
            name: process.executable.clone(),
            path: process.executable.clone(),
            unreadable: false,
            truncated: false,
        });
    }
    let keys = keys(rules, passed, process.pid, &process.executable, &paths);
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
        args_missing: false,
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
/// without repeats. A path prefix matches a name as written (dots collapsed) or with the
/// symbolic links of its directory resolved in process `pid`'s root.
fn keys(
    rules: &RuleSet,
    bits: u64,
    pid: u32,
    executable: &[u8],
    paths: &[AuditPath],
) -> Vec<String> {
    let mut resolved: Option<Vec<Vec<u8>>> = None;
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
            // A name that could not be made absolute (a directory too deep to rebuild, a bad
            // descriptor) might be under the prefix: recorded rather than dropped.
            Some(prefix) => {
                paths
                    .iter()
                    .any(|p| p.path.is_empty() || p.path.starts_with(prefix))
                    || resolved
                        .get_or_insert_with(|| {
                            paths
                                .iter()
                                .filter_map(|p| resolve_links(pid, &p.path))
                                .collect()
                        })
                        .iter()
                        .any(|p| p.starts_with(prefix))
            }
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
    let joined = if name.starts_with(b"/") {
        crate::process::absolute(b"/", name)
    } else if !base.bytes.is_empty() {
        if base.truncated {
            return Vec::new();
        }
        crate::process::absolute(&base.bytes, name)
    } else {
        match cwd {
            Some(cwd) if !cwd.is_empty() => crate::process::absolute(cwd, name),
            _ => return Vec::new(),
        }
    };
    collapse_dots(&joined)
}

/// `path` with the symbolic links of its directory resolved as process `pid` sees them
/// (through its root, so a container's paths stay its own); `None` when the directory is gone
/// or the process has exited. Racy by nature: it looks after the syscall.
fn resolve_links(pid: u32, path: &[u8]) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let split = path.iter().rposition(|&b| b == b'/')?;
    let (dir, leaf) = path.split_at(split);
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    let root_real = std::fs::canonicalize(&root).ok()?;
    let dir_real = std::fs::canonicalize(root.join(std::ffi::OsStr::from_bytes(
        dir.strip_prefix(b"/").unwrap_or(dir),
    )))
    .ok()?;
    let inside = dir_real.strip_prefix(&root_real).ok()?;
    let mut out = b"/".to_vec();
    out.extend_from_slice(inside.as_os_str().as_bytes());
    if out.len() > 1 {
        out.extend_from_slice(leaf);
    } else {
        out = leaf.to_vec();
    }
    Some(out)
}

/// An absolute path with `..` components taken back over the component before them, as the
/// kernel does when no symbolic link is on the way (`/tmp/../etc/x` is `/etc/x`).
fn collapse_dots(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        if part == b".." {
            parts.pop();
        } else {
            parts.push(part);
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for part in parts {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
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
