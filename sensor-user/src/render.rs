//! JSON rendering of events with Elastic Common Schema names, as nested objects.
//!
//! Byte strings that are valid UTF-8 are written unchanged. Others use a lossless escape: each
//! byte that is not part of valid UTF-8 becomes `\xNN` and a literal backslash becomes `\\`;
//! the field's name is listed in `sensor.escaped` so a reader knows to unescape it. Fields ECS
//! lacks live under `sensor`.

use sensor_proto::v1::{AuditDetail, Event, FileDetail, FileState, MemoryDetail, Process};
use serde_json::{json, Map, Value};

/// Renders `event` as one JSON object.
pub fn to_json(event: &Event) -> Value {
    let mut escaped = Vec::new();
    let mut out = Map::new();
    out.insert("@timestamp".into(), json!(rfc3339(event.time_unix_nano)));
    let (category, kind) = match event.action.as_str() {
        "fork" | "exec" => ("process", "start"),
        "exit" => ("process", "end"),
        "file-created" | "file-linked" => ("file", "creation"),
        "file-deleted" => ("file", "deletion"),
        a if a.starts_with("file-") => ("file", "change"),
        "mmap" | "mprotect" | "memfd-create" => ("process", "change"),
        "ptrace" | "process-vm-writev" | "proc-mem-open" => ("process", "access"),
        _ if event.audit.is_some() => audit_category(&event.action),
        _ => ("host", "info"),
    };
    let mut ev = json!({
        "kind": event.kind,
        "category": [category],
        "type": [kind],
        "action": event.action,
        "sequence": event.sequence,
    });
    if !event.outcome.is_empty() {
        ev["outcome"] = json!(event.outcome);
    }
    out.insert("event".into(), ev);
    out.insert(
        "host".into(),
        json!({"name": event.host_name, "boot": {"id": event.boot_id}}),
    );

    let mut sensor = Map::new();
    if let Some(p) = &event.process {
        out.insert("process".into(), process(p, &mut escaped));
        sensor.insert("process".into(), process_extra(p));
        if !p.truncated_fields.is_empty() {
            sensor.insert("truncated".into(), json!(p.truncated_fields));
        }
    }
    if let Some(exec) = &event.exec {
        let mut e = Map::new();
        e.insert(
            "filename".into(),
            text(&exec.filename, "sensor.exec.filename", &mut escaped),
        );
        if !exec.interpreter.is_empty() {
            let v = text(&exec.interpreter, "sensor.exec.interpreter", &mut escaped);
            e.insert("interpreter".into(), v);
        }
        if !exec.script.is_empty() {
            e.insert(
                "script".into(),
                text(&exec.script, "sensor.exec.script", &mut escaped),
            );
        }
        if !exec.previous_executable.is_empty() {
            let v = text(
                &exec.previous_executable,
                "sensor.exec.previous_executable",
                &mut escaped,
            );
            e.insert("previous_executable".into(), v);
        }
        if exec.env_scan_incomplete {
            e.insert("env_scan_incomplete".into(), json!(true));
        }
        if exec.loader_invoked {
            e.insert("loader_invoked".into(), json!(true));
            let program = text(
                &exec.loaded_program,
                "sensor.exec.loaded_program",
                &mut escaped,
            );
            e.insert("loaded_program".into(), program);
            if !exec.loader_preload.is_empty() {
                let v = list(
                    &exec.loader_preload,
                    "sensor.exec.loader_preload",
                    &mut escaped,
                );
                e.insert("loader_preload".into(), v);
            }
        }
        if exec.calling_tid != 0 {
            e.insert("calling_tid".into(), json!(exec.calling_tid));
        }
        if let Some(a) = &exec.attempt {
            let mut m = json!({
                "error": a.error,
                "errno": a.errno,
                "syscall": a.syscall,
                "args": list(&a.args, "sensor.exec.attempt.args", &mut escaped),
                "args_count": a.args_count,
                "args_truncated": a.args_truncated,
                "args_count_capped": a.args_count_capped,
                "args_unreadable": a.args_unreadable,
            });
            if a.syscall == "execveat" {
                m["dirfd"] = json!(a.dirfd);
                m["flags"] = json!(a.flags);
            }
            e.insert("attempt".into(), m);
            if !a.path.is_empty() {
                out.insert(
                    "file".into(),
                    json!({"path": text(&a.path, "file.path", &mut escaped)}),
                );
            }
        }
        sensor.insert("exec".into(), Value::Object(e));
    }
    if let Some(fork) = &event.fork {
        sensor.insert(
            "fork".into(),
            json!({
                "thread": fork.thread,
                "shared_vm": fork.shared_vm,
                "vfork": fork.vfork,
                "syscall": fork.syscall,
                "child_tid": fork.child_tid,
            }),
        );
    }
    if let Some(f) = &event.file {
        out.insert("file".into(), file(f, &mut escaped));
        sensor.insert("fim".into(), fim_extra(f, &mut escaped));
    }
    if let Some(rule) = &event.rule {
        out.insert(
            "rule".into(),
            json!({"name": rule.name, "description": rule.description}),
        );
        out.insert("message".into(), json!(rule.description));
        out["event"]["severity"] = json!(rule.severity);
        if !rule.technique_id.is_empty() {
            out.insert(
                "threat".into(),
                json!({
                    "framework": "MITRE ATT&CK",
                    "technique": {"id": rule.technique_id, "name": rule.technique_name},
                }),
            );
        }
        if rule.suppressed_before != 0 {
            sensor.insert(
                "alerts_suppressed_before".into(),
                json!(rule.suppressed_before),
            );
        }
    }
    if let Some(m) = &event.memory {
        if m.syscall == "open" {
            out.insert(
                "file".into(),
                json!({"path": text(&m.path, "file.path", &mut escaped), "inode": m.inode}),
            );
        }
        sensor.insert("memory".into(), memory(m, &mut escaped));
    }
    if let Some(a) = &event.audit {
        audit(a, &mut out, &mut sensor, &mut escaped);
    }
    if !event.tags.is_empty() {
        out.insert("tags".into(), json!(event.tags));
    }
    if let Some(lost) = &event.lost {
        let mut l = json!({"count": lost.count, "source": lost.source});
        if let Some(cpu) = lost.cpu {
            l["cpu"] = json!(cpu);
        }
        sensor.insert("lost".into(), l);
    }
    if !escaped.is_empty() {
        sensor.insert("escaped".into(), json!(escaped));
    }
    out.insert("sensor".into(), Value::Object(sensor));
    Value::Object(out)
}

/// ECS category and type of an audited syscall.
fn audit_category(syscall: &str) -> (&'static str, &'static str) {
    match syscall {
        "execve" | "execveat" => ("process", "start"),
        "socket" | "connect" | "bind" | "listen" | "accept" | "accept4" => {
            ("network", "connection")
        }
        s if s.starts_with("set") && (s.contains("uid") || s.contains("gid")) => ("iam", "change"),
        "setgroups" | "capset" => ("iam", "change"),
        "init_module" | "finit_module" | "delete_module" | "kexec_load" | "kexec_file_load"
        | "bpf" => ("driver", "change"),
        "unlink" | "unlinkat" | "rmdir" => ("file", "deletion"),
        s if s.contains("chmod") || s.contains("chown") || s.contains("xattr") => {
            ("file", "change")
        }
        s if s.starts_with("rename") || s.starts_with("open") || s == "creat" => ("file", "change"),
        _ => ("host", "change"),
    }
}

/// `sensor.audit`, and the ECS fields an audited syscall fills: `file.path` for its first
/// name, `destination` (connect) or `source` (bind, accept) for its socket address.
fn audit(
    a: &AuditDetail,
    out: &mut Map<String, Value>,
    sensor: &mut Map<String, Value>,
    escaped: &mut Vec<&'static str>,
) {
    let paths: Vec<Value> = a
        .paths
        .iter()
        .map(|p| {
            let mut v = json!({
                "name": text(&p.name, "sensor.audit.paths.name", escaped),
                "path": text(&p.path, "sensor.audit.paths.path", escaped),
            });
            if p.unreadable {
                v["unreadable"] = json!(true);
            }
            if p.truncated {
                v["truncated"] = json!(true);
            }
            v
        })
        .collect();
    let mut m = json!({
        "syscall": a.syscall,
        "syscall_nr": a.syscall_nr,
        "arch": a.arch,
        "exit": a.exit,
        "args": a.args.iter().map(|v| format!("0x{v:x}")).collect::<Vec<_>>(),
        "suid": a.suid,
        "sgid": a.sgid,
        "fsuid": a.fsuid,
        "fsgid": a.fsgid,
        "keys": a.keys,
        "paths": paths,
    });
    if !a.errno.is_empty() {
        m["errno"] = json!(a.errno);
    }
    if a.args_missing {
        m["args_missing"] = json!(true);
    }
    if !a.decoded.is_empty() {
        let sorted: std::collections::BTreeMap<_, _> = a.decoded.iter().collect();
        m["decoded"] = json!(sorted);
    }
    if let Some(first) = a.paths.first().filter(|p| !p.path.is_empty()) {
        if !out.contains_key("file") {
            out.insert(
                "file".into(),
                json!({"path": text(&first.path, "file.path", escaped)}),
            );
        }
    }
    if let Some(s) = &a.socket {
        let mut addr = json!({"family": s.family});
        if !s.address.is_empty() {
            addr["ip"] = json!(s.address);
            addr["address"] = json!(s.address);
            addr["port"] = json!(s.port);
        }
        if !s.path.is_empty() {
            addr["address"] = json!(escape(&s.path));
        }
        let side = if matches!(a.syscall.as_str(), "connect" | "sendto" | "sendmsg") {
            "destination"
        } else {
            "source"
        };
        out.insert(side.into(), addr);
        m["socket_family"] = json!(s.family);
    }
    sensor.insert("audit".into(), m);
}

/// `sensor.memory`: the operation and its evidence; empty fields are left out.
fn memory(m: &MemoryDetail, escaped: &mut Vec<&'static str>) -> Value {
    let mut o = Map::new();
    o.insert("syscall".into(), json!(m.syscall));
    o.insert("result".into(), json!(m.result));
    let mut put = |key: &str, v: Value, keep: bool| {
        if keep {
            o.insert(key.into(), v);
        }
    };
    put(
        "address",
        json!(format!("{:#x}", m.address)),
        m.address != 0,
    );
    put("length", json!(m.length), m.length != 0);
    put("protection", json!(m.protection), !m.protection.is_empty());
    let prev = !m.previous_protection.is_empty();
    put("previous_protection", json!(m.previous_protection), prev);
    put("flags", json!(m.flags), m.flags != 0);
    put("backing", json!(m.backing), !m.backing.is_empty());
    if !m.path.is_empty() {
        put("path", text(&m.path, "sensor.memory.path", escaped), true);
    }
    if !m.memfd_name.is_empty() {
        let name = text(&m.memfd_name, "sensor.memory.memfd_name", escaped);
        put("memfd_name", name, true);
    }
    put("inode", json!(m.inode), m.inode != 0);
    put(
        "link_count",
        json!(m.nlink),
        !m.backing.is_empty() && m.backing != "anonymous",
    );
    put(
        "ptrace_request",
        json!(m.ptrace_request),
        !m.ptrace_request.is_empty(),
    );
    if m.target_pid != 0 {
        let mut t = json!({"pid": m.target_pid});
        if !m.target_entity_id.is_empty() {
            t["entity_id"] = json!(m.target_entity_id);
        }
        if !m.target_executable.is_empty() {
            let exe = text(
                &m.target_executable,
                "sensor.memory.target.executable",
                escaped,
            );
            t["executable"] = exe;
        }
        put("target", t, true);
    }
    if !m.previous_executable.is_empty() {
        let exe = text(
            &m.previous_executable,
            "sensor.memory.previous_executable",
            escaped,
        );
        put("previous_executable", exe, true);
    }
    if !m.first_page_sha256.is_empty() {
        put(
            "first_page",
            json!({"sha256": m.first_page_sha256, "elf": m.starts_with_elf}),
            true,
        );
    }
    put(
        "left_out_before",
        json!(m.left_out_before),
        m.left_out_before != 0,
    );
    let unreadable = !m.region_unreadable.is_empty();
    put("region_unreadable", json!(m.region_unreadable), unreadable);
    Value::Object(o)
}

fn process(p: &Process, escaped: &mut Vec<&'static str>) -> Value {
    let mut m = Map::new();
    m.insert("pid".into(), json!(p.pid));
    m.insert("thread".into(), json!({"id": p.tid}));
    m.insert("entity_id".into(), json!(p.entity_id));
    m.insert(
        "executable".into(),
        text(&p.executable, "process.executable", escaped),
    );
    m.insert("name".into(), text(&p.name, "process.name", escaped));
    m.insert("args".into(), list(&p.args, "process.args", escaped));
    m.insert("args_count".into(), json!(p.args_count));
    let command_line = p.args.join(&b' ');
    m.insert(
        "command_line".into(),
        text(&command_line, "process.command_line", escaped),
    );
    let cwd = text(&p.working_directory, "process.working_directory", escaped);
    m.insert("working_directory".into(), cwd);
    if !p.env_vars.is_empty() {
        let env = list(&p.env_vars, "process.env_vars", escaped);
        m.insert("env_vars".into(), env);
    }
    if p.start_unix_nano != 0 {
        m.insert("start".into(), json!(rfc3339(p.start_unix_nano)));
    }
    m.insert("user".into(), json!({"id": p.euid.to_string()}));
    m.insert("group".into(), json!({"id": p.egid.to_string()}));
    m.insert("real_user".into(), json!({"id": p.uid.to_string()}));
    m.insert("real_group".into(), json!({"id": p.gid.to_string()}));
    if let Some(code) = p.exit_code {
        m.insert("exit_code".into(), json!(code));
    }
    if let Some(parent) = &p.parent {
        let mut pm = Map::new();
        pm.insert("pid".into(), json!(parent.pid));
        pm.insert("entity_id".into(), json!(parent.entity_id));
        if !parent.executable.is_empty() {
            let v = text(&parent.executable, "process.parent.executable", escaped);
            pm.insert("executable".into(), v);
        }
        if !parent.name.is_empty() {
            pm.insert(
                "name".into(),
                text(&parent.name, "process.parent.name", escaped),
            );
        }
        m.insert("parent".into(), Value::Object(pm));
    }
    Value::Object(m)
}

/// `file.*` of a FIM event: the file as it is after the change (or was, when gone).
fn file(f: &FileDetail, escaped: &mut Vec<&'static str>) -> Value {
    let mut m = Map::new();
    m.insert("path".into(), text(&f.path, "file.path", escaped));
    let name = f.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
    m.insert("name".into(), text(name, "file.name", escaped));
    m.insert("inode".into(), json!(f.inode));
    m.insert(
        "device".into(),
        json!(format!("{}:{}", f.device >> 20, f.device & 0xf_ffff)),
    );
    if !f.r#type.is_empty() {
        m.insert("type".into(), json!(f.r#type));
    }
    if let Some(s) = f.state.as_ref().or(f.previous.as_ref()) {
        m.insert("size".into(), json!(s.size));
        m.insert("mode".into(), json!(format!("{:04o}", s.mode & 0o7777)));
        m.insert("uid".into(), json!(s.uid.to_string()));
        m.insert("gid".into(), json!(s.gid.to_string()));
        m.insert(
            "mtime".into(),
            json!(rfc3339(s.mtime_unix_nano.max(0) as u64)),
        );
    }
    if let Some(sha) = f
        .state
        .as_ref()
        .map(|s| &s.sha256)
        .filter(|s| !s.is_empty())
    {
        m.insert("hash".into(), json!({"sha256": sha}));
    }
    if !f.symlink_target.is_empty() {
        let v = text(&f.symlink_target, "file.target_path", escaped);
        m.insert("target_path".into(), v);
    }
    Value::Object(m)
}

/// FIM facts ECS has no field for: how the change was seen and what the file was before.
fn fim_extra(f: &FileDetail, escaped: &mut Vec<&'static str>) -> Value {
    let mut m = Map::new();
    m.insert("found_by".into(), json!(f.found_by));
    m.insert("device".into(), json!(f.device));
    m.insert("link_count".into(), json!(f.link_count));
    let paths = [
        (&f.written_path, "written_path", "sensor.fim.written_path"),
        (&f.old_path, "old_path", "sensor.fim.old_path"),
        (
            &f.existing_path,
            "existing_path",
            "sensor.fim.existing_path",
        ),
    ];
    for (bytes, key, field) in paths {
        if !bytes.is_empty() {
            m.insert(key.into(), text(bytes, field, escaped));
        }
    }
    if f.replaced_inode != 0 {
        m.insert("replaced_inode".into(), json!(f.replaced_inode));
    }
    if !f.hash_skipped.is_empty() {
        m.insert("hash_skipped".into(), json!(f.hash_skipped));
    }
    if !f.changed.is_empty() {
        m.insert("changed".into(), json!(f.changed));
    }
    if !f.syscall.is_empty() {
        m.insert("syscall".into(), json!(f.syscall));
    }
    if !f.xattr_name.is_empty() {
        m.insert("xattr_name".into(), json!(f.xattr_name));
    }
    if f.outside_watched {
        m.insert("outside_watched".into(), json!(true));
    }
    if let Some(s) = &f.state {
        m.insert("xattrs".into(), json!(s.xattrs));
    }
    if let Some(p) = &f.previous {
        m.insert("previous".into(), file_state(p));
    }
    Value::Object(m)
}

fn file_state(s: &FileState) -> Value {
    let mut v = json!({
        "inode": s.inode,
        "size": s.size,
        "mode": format!("{:04o}", s.mode & 0o7777),
        "uid": s.uid.to_string(),
        "gid": s.gid.to_string(),
        "mtime": rfc3339(s.mtime_unix_nano.max(0) as u64),
        "link_count": s.nlink,
        "xattrs": s.xattrs,
    });
    if !s.sha256.is_empty() {
        v["hash"] = json!({"sha256": s.sha256});
    }
    v
}

/// Process facts ECS has no field for.
fn process_extra(p: &Process) -> Value {
    let mut m = Map::new();
    m.insert("args_truncated".into(), json!(p.args_truncated));
    if p.args_bytes_total != 0 {
        m.insert("args_bytes_total".into(), json!(p.args_bytes_total));
    }
    if let Some(v) = p.loginuid {
        m.insert("loginuid".into(), json!(v));
    }
    if let Some(v) = p.session_id {
        m.insert("session_id".into(), json!(v));
    }
    if !p.tty.is_empty() {
        m.insert("tty".into(), json!(p.tty));
    }
    if p.cgroup_id != 0 {
        m.insert("cgroup_id".into(), json!(p.cgroup_id));
    }
    if let Some(signal) = p.exit_signal {
        m.insert("exit_signal".into(), json!(signal));
    }
    if let Some(f) = &p.executable_file {
        let mut fm = json!({
            "inode": f.inode,
            "device": f.device,
            "nlink": f.nlink,
            "deleted": f.nlink == 0,
            "fs_magic": format!("0x{:x}", f.fs_magic),
            "on_tmpfs": f.on_tmpfs,
        });
        if !f.memfd_name.is_empty() {
            fm["memfd"] = json!(true);
            fm["memfd_name"] = json!(escape(&f.memfd_name));
        }
        m.insert("exe".into(), fm);
    }
    Value::Object(m)
}

/// A byte string as JSON text, escaped (and `field` recorded) only when not UTF-8.
fn text(bytes: &[u8], field: &'static str, escaped: &mut Vec<&'static str>) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => json!(s),
        Err(_) => {
            escaped.push(field);
            json!(escape(bytes))
        }
    }
}

/// A list of byte strings; if any is not UTF-8, all are escaped so the field has one rule.
fn list(items: &[Vec<u8>], field: &'static str, escaped: &mut Vec<&'static str>) -> Value {
    if items.iter().all(|i| std::str::from_utf8(i).is_ok()) {
        return json!(items
            .iter()
            .map(|i| String::from_utf8_lossy(i))
            .collect::<Vec<_>>());
    }
    escaped.push(field);
    json!(items.iter().map(|i| escape(i)).collect::<Vec<_>>())
}

/// The lossless escape: valid UTF-8 kept, `\` doubled, every other byte as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Reverses [`escape`]; `None` if `s` is not a valid escaped string.
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                out.push(b'\\');
                rest = tail;
            }
            [b'x', h, l, tail @ ..] => {
                out.push(u8::from_str_radix(std::str::from_utf8(&[*h, *l]).ok()?, 16).ok()?);
                rest = tail;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// RFC 3339 UTC time with nanoseconds.
fn rfc3339(unix_nano: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(unix_nano);
    humantime::format_rfc3339_nanos(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trips_and_separates_lookalikes() {
        let literal = br"\xff".to_vec();
        let byte = vec![0xff];

        let (a, b) = (escape(&literal), escape(&byte));

        assert_ne!(a, b);
        assert_eq!(unescape(&a).unwrap(), literal);
        assert_eq!(unescape(&b).unwrap(), byte);
    }

    #[test]
    fn valid_utf8_is_unchanged_and_unmarked() {
        let mut escaped = Vec::new();

        let v = text("plain-ascii é".as_bytes(), "f", &mut escaped);

        assert_eq!(v, json!("plain-ascii é"));
        assert!(escaped.is_empty());
    }

    #[test]
    fn non_utf8_argument_escapes_the_whole_list_and_marks_it() {
        let event = Event {
            action: "exec".into(),
            process: Some(Process {
                args: vec![b"/usr/bin/true".to_vec(), br"\xff".to_vec(), vec![0xff]],
                ..Process::default()
            }),
            ..Event::default()
        };

        let v = to_json(&event);

        let args: Vec<Vec<u8>> = v["process"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| unescape(a.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(args, event.process.unwrap().args);
        let escaped = v["sensor"]["escaped"].as_array().unwrap();
        assert!(escaped.contains(&json!("process.args")), "{escaped:?}");
    }
}
