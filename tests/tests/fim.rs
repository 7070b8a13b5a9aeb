//! File-integrity scenarios on the real kernel: the FIM cases of `shared/cases/` as written,
//! every kind of change, the evasions the kernel's identity filter defeats, and the baseline
//! across restarts.
//!
//! Each test watches its tree and a marker directory; creating a marker file and waiting for
//! its event flushes every FIM event made before it.

use sensor_tests::*;
use serde_json::Value;

/// Configuration watching `paths` and the test's marker directory (made here).
fn config(test: &str, paths: &[&str]) -> (String, String) {
    let marks = format!("/tmp/fim-mark-{test}");
    bash(&format!("rm -rf {marks} && mkdir -p {marks}"));
    let list: Vec<String> = paths
        .iter()
        .copied()
        .chain([marks.as_str()])
        .map(|p| format!("{p:?}"))
        .collect();
    (format!("[fim]\npaths = [{}]\n", list.join(", ")), marks)
}

/// Runs `script`, then waits for a marker; returns the script's output and the FIM events
/// about paths under `under`.
fn trigger(sensor: &Sensor, marks: &str, under: &str, script: &str) -> (String, Vec<Value>) {
    let out = bash(script);
    let events = sensor.fim_mark(&format!("{marks}/{}", marker("done")));
    let fim = file_events(&events)
        .into_iter()
        .filter(|e| {
            let p = file_path(e);
            p.starts_with(under) || fim_str(e, "old_path").starts_with(under)
        })
        .cloned()
        .collect();
    (out, fim)
}

/// The number after `label` in the script's output.
fn printed(out: &str, label: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{label}` in {out}"))
}

fn fim_str(e: &Value, field: &str) -> String {
    e["sensor"]["fim"][field].as_str().unwrap_or("").to_string()
}

fn hash(e: &Value) -> &str {
    e["file"]["hash"]["sha256"].as_str().unwrap_or("")
}

fn inode(e: &Value) -> u64 {
    e["file"]["inode"].as_u64().unwrap_or(0)
}

fn exe(e: &Value) -> String {
    process_str(e, "executable")
}

/// The first event from position `from` on with `action` on `path`: the position after it,
/// where the next search starts, and the event.
fn next<'a>(events: &'a [Value], from: usize, act: &str, path: &str) -> (usize, &'a Value) {
    events
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| action(e) == act && e["event"]["kind"] == "event" && file_path(e) == path)
        .map(|(i, e)| (i + 1, e))
        .unwrap_or_else(|| panic!("no {act} of {path} from #{from} in {}", show(events)))
}

fn show(events: &[Value]) -> String {
    let lines: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} ino={} exe={} sha={:.12}",
                e["event"]["kind"],
                action(e),
                file_path(e),
                inode(e),
                exe(e),
                hash(e)
            )
        })
        .collect();
    format!("\n{}", lines.join("\n"))
}

#[test]
fn case_10_hard_link_writes_are_attributed_to_the_watched_file() {
    let (toml, marks) = config("case10", &["/tmp/case-10/watched"]);
    let Some(sensor) = Sensor::start_with_config("case10", &toml) else {
        return;
    };
    sensor.wait_fim_ready();
    let secret = "/tmp/case-10/watched/secret.conf";
    let alias = "/tmp/case-10/elsewhere/alias";

    let (out, ev) = trigger(
        &sensor,
        &marks,
        "/tmp/case-10",
        r#"
rm -rf /tmp/case-10 && mkdir -p /tmp/case-10/watched /tmp/case-10/elsewhere
cd /tmp/case-10
echo v1 > watched/secret.conf
stat -c 'inode %i' watched/secret.conf
ln watched/secret.conf elsewhere/alias                        # 1: second name
echo v2 >> elsewhere/alias                                    # 2: append via alias
/usr/bin/python3 -c 'open("/tmp/case-10/elsewhere/alias", "r+b").write(b"V")'   # 3: overwrite
rm elsewhere/alias                                            # 4: drop the alias
echo v3 >> watched/secret.conf                                # 5: direct write
cd / && rm -rf /tmp/case-10
"#,
    );
    let ino = printed(&out, "inode ");

    let (at, created) = next(&ev, 0, "file-created", secret);
    let (at, linked) = next(&ev, at, "file-linked", alias);
    let (a2, append) = next(&ev, at, "file-modified", secret);
    let (a3, overwrite) = next(&ev, a2, "file-modified", secret);
    let (a4, unlinked) = next(&ev, a3, "file-deleted", alias);
    let (a5, direct) = next(&ev, a4, "file-modified", secret);
    assert_eq!(hash(created), sha256(b"v1\n"), "{}", show(&ev));
    assert_eq!(exe(linked), "/usr/bin/ln");
    assert_eq!(fim_str(linked, "existing_path"), secret);
    assert_eq!(linked["sensor"]["fim"]["link_count"], 2);
    assert!(
        ev.iter()
            .any(|e| e["event"]["kind"] == "alert" && action(e) == "file-linked"),
        "an alert for the name outside the tree: {}",
        show(&ev)
    );
    assert_eq!(exe(append), "/usr/bin/bash");
    assert_eq!(fim_str(append, "written_path"), alias);
    assert_eq!(hash(append), sha256(b"v1\nv2\n"));
    assert!(
        exe(overwrite).starts_with("/usr/bin/python3"),
        "{}",
        exe(overwrite)
    );
    assert_eq!(fim_str(overwrite, "written_path"), alias);
    assert_eq!(hash(overwrite), sha256(b"V1\nv2\n"));
    assert_eq!(exe(unlinked), "/usr/bin/rm");
    assert_eq!(unlinked["sensor"]["fim"]["link_count"], 1);
    assert_eq!(exe(direct), "/usr/bin/bash");
    assert_eq!(hash(direct), sha256(b"V1\nv2\nv3\n"));
    for e in [created, linked, append, overwrite, unlinked, direct] {
        assert_eq!(inode(e), ino, "{e}");
    }
    assert!(
        !ev[..a5]
            .iter()
            .any(|e| action(e) == "file-deleted" && file_path(e) == secret),
        "the watched name was never deleted before the cleanup: {}",
        show(&ev)
    );
}

#[test]
fn case_11_atomic_replace_follows_the_name_to_each_new_inode() {
    let (toml, marks) = config("case11", &["/tmp/case-11/watched"]);
    let Some(sensor) = Sensor::start_with_config("case11", &toml) else {
        return;
    };
    sensor.wait_fim_ready();
    let conf = "/tmp/case-11/watched/app.conf";

    let (out, ev) = trigger(
        &sensor,
        &marks,
        "/tmp/case-11",
        r#"
rm -rf /tmp/case-11 && mkdir -p /tmp/case-11/watched && cd /tmp/case-11
echo a > watched/app.conf;                       stat -c '0 %i %n' watched/app.conf
sed -i s/a/b/ watched/app.conf                 # 1: temp file + rename over
stat -c '1 %i %n' watched/app.conf
printf 'c\n' > watched/.app.new                # 2: explicit temp + mv -f
mv -f watched/.app.new watched/app.conf;         stat -c '2 %i %n' watched/app.conf
rm watched/app.conf && echo d > watched/app.conf   # 3: delete + recreate
stat -c '3 %i %n' watched/app.conf             #    (ext4 often reuses the number)
echo e >> watched/app.conf                     # 4: later in-place change
mv watched/app.conf app.conf.bak               # 5: moved out of the watched tree
cd / && rm -rf /tmp/case-11
"#,
    );
    let ino: Vec<u64> = (0..4).map(|i| printed(&out, &format!("{i} "))).collect();

    let temp = ev
        .iter()
        .position(|e| {
            action(e) == "file-created" && file_path(e).starts_with("/tmp/case-11/watched/sed")
        })
        .unwrap_or_else(|| panic!("no sed temporary: {}", show(&ev)));
    assert_eq!(exe(&ev[temp]), "/usr/bin/sed");
    let (at, sed) = next(&ev, temp, "file-renamed", conf);
    assert_eq!(fim_str(sed, "old_path"), file_path(&ev[temp]));
    assert_eq!((inode(sed), hash(sed)), (ino[1], sha256(b"b\n").as_str()));
    assert_eq!(sed["sensor"]["fim"]["replaced_inode"], ino[0]);
    let (at, tmp2) = next(&ev, at, "file-created", "/tmp/case-11/watched/.app.new");
    assert_eq!(exe(tmp2), "/usr/bin/bash");
    let (at, mv) = next(&ev, at, "file-renamed", conf);
    assert_eq!(exe(mv), "/usr/bin/mv");
    assert_eq!((inode(mv), hash(mv)), (ino[2], sha256(b"c\n").as_str()));
    assert_eq!(mv["sensor"]["fim"]["replaced_inode"], ino[1]);
    let renames_of_temp = ev
        .iter()
        .filter(|e| fim_str(e, "old_path") == "/tmp/case-11/watched/.app.new")
        .count();
    assert_eq!(
        renames_of_temp, 1,
        "the failed RENAME_NOREPLACE made no event"
    );
    let (at, rm) = next(&ev, at, "file-deleted", conf);
    assert_eq!((exe(rm), inode(rm)), ("/usr/bin/rm".into(), ino[2]));
    let (at, recreated) = next(&ev, at, "file-created", conf);
    assert_eq!(exe(recreated), "/usr/bin/bash");
    assert_eq!(
        (inode(recreated), hash(recreated)),
        (ino[3], sha256(b"d\n").as_str())
    );
    let (at, appended) = next(&ev, at, "file-modified", conf);
    assert_eq!(
        (inode(appended), hash(appended)),
        (ino[3], sha256(b"d\ne\n").as_str())
    );
    let (_, out_of_tree) = next(&ev, at, "file-renamed", "/tmp/case-11/app.conf.bak");
    assert_eq!(exe(out_of_tree), "/usr/bin/mv");
    assert_eq!(fim_str(out_of_tree, "old_path"), conf);
}

#[test]
fn case_12_changes_without_write_are_seen() {
    let (toml, marks) = config("case12", &["/tmp/case-12/watched"]);
    let Some(sensor) = Sensor::start_with_config("case12", &toml) else {
        return;
    };
    sensor.wait_fim_ready();

    let (_, ev) = trigger(
        &sensor,
        &marks,
        "/tmp/case-12",
        r#"
rm -rf /tmp/case-12 && mkdir -p /tmp/case-12/watched && cd /tmp/case-12
echo "original-config-line" > watched/app.conf
printf 'evil-line\n' > payload
/usr/bin/python3 - <<'EOF'
import mmap, os
os.chdir("/tmp/case-12")
fd = os.open("watched/app.conf", os.O_RDWR)               # 1: shared mmap, same size
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:8] = b"TAMPERED"; m.flush(); m.close(); os.close(fd)
src = os.open("payload", os.O_RDONLY)
flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
dst = os.open("watched/copy.conf", flags, 0o644)           # 2: copy_file_range
os.copy_file_range(src, dst, 10, 0); os.close(dst)
dst = os.open("watched/sendfile.conf", flags, 0o644)       # 3: sendfile
os.sendfile(dst, src, 0, 10); os.close(dst)
r, w = os.pipe()
os.write(w, b"evil-line\n")
dst = os.open("watched/splice.conf", flags, 0o644)         # 4: splice from a pipe
os.splice(r, dst, 10); os.close(dst)
for x in (r, w, src):
    os.close(x)
EOF
cd / && rm -rf /tmp/case-12
"#,
    );

    let (_, mapped) = next(&ev, 0, "file-modified", "/tmp/case-12/watched/app.conf");
    assert!(
        exe(mapped).starts_with("/usr/bin/python3"),
        "{}",
        exe(mapped)
    );
    assert_eq!(
        hash(mapped),
        sha256(b"TAMPERED-config-line\n"),
        "{}",
        show(&ev)
    );
    for name in ["copy", "sendfile", "splice"] {
        let path = format!("/tmp/case-12/watched/{name}.conf");
        let last = ev
            .iter()
            .rfind(|e| file_path(e) == path && !hash(e).is_empty())
            .unwrap_or_else(|| panic!("no hashed event for {path}: {}", show(&ev)));
        assert_eq!(hash(last), sha256(b"evil-line\n"), "{path}: {}", show(&ev));
        assert!(exe(last).starts_with("/usr/bin/python3"));
    }
    assert!(
        !ev.iter().any(|e| file_path(e) == "/tmp/case-12/payload"),
        "the payload was only read: {}",
        show(&ev)
    );
}

/// `uname -r`.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("kernel release")
        .trim()
        .to_string()
}

/// The `timestamp` tracepoints came with 6.13; before, FIM is fed by fentry hooks.
fn expected_inode_hooks() -> &'static str {
    let release = kernel_release();
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version >= (6, 13) {
        "timestamp-tracepoints"
    } else {
        "fentry"
    }
}

#[test]
fn every_change_kind_and_each_evasion_is_reported_on_the_watched_name() {
    let (toml, marks) = config("kinds", &["/tmp/fim-kinds/watched"]);
    bash("rm -rf /tmp/fim-kinds && mkdir -p /tmp/fim-kinds/watched/sub /tmp/fim-kinds/other");
    let Some(sensor) = Sensor::start_with_config("kinds", &toml) else {
        return;
    };
    sensor.wait_fim_ready();
    // The events below are the same whichever way this kernel shows inode changes; which way
    // it got is decided by trying, and must be the one its version has.
    let chosen = sensor.status()["hooks_chosen"]["fim.inode_changes"].clone();
    assert_eq!(
        chosen,
        expected_inode_hooks(),
        "hook set chosen on {}",
        kernel_release()
    );
    let _unmount = Unmount("/tmp/fim-kinds/other");
    let a = "/tmp/fim-kinds/watched/a";

    let (_, ev) = trigger(
        &sensor,
        &marks,
        "/tmp/fim-kinds",
        r#"
cd /tmp/fim-kinds
# A hash is read a few milliseconds after the close; shell builtins writing the same file
# back to back are closer than that, so the first steps are spaced.
echo one > watched/a; sleep 0.1
echo two >> watched/a; sleep 0.1
sed -i s/one/ONE/ watched/a
chmod 600 watched/a
chown 1234:4321 watched/a
# trusted.*, not user.*: tmpfs before 6.6 (the matrix's /tmp) refuses user attributes.
/usr/bin/python3 -c 'import os; os.setxattr("watched/a", "trusted.k", b"v")'
touch -m -d '2001-02-03 04:05:06' watched/a
truncate -s 2 watched/a
/usr/bin/python3 - <<'PYEOF'
import os
d = os.open("/tmp/fim-kinds/watched", os.O_RDONLY | os.O_DIRECTORY)
f = os.open("a", os.O_WRONLY | os.O_APPEND, dir_fd=d)   # dirfd-relative
os.write(f, b"X"); os.close(f); os.close(d)
PYEOF
mount --bind watched other
echo bind >> other/a
umount other
mv watched/sub watched/sub2
echo s > watched/sub2/f
ln -s a watched/link
mkdir watched/newdir && echo n > watched/newdir/x
echo u >> unwatched
rm watched/a
"#,
    );

    let (at, created) = next(&ev, 0, "file-created", a);
    assert_eq!(hash(created), sha256(b"one\n"), "{}", show(&ev));
    let (at, appended) = next(&ev, at, "file-modified", a);
    assert_eq!(hash(appended), sha256(b"one\ntwo\n"));
    let (at, replaced) = next(&ev, at, "file-renamed", a);
    assert_eq!(exe(replaced), "/usr/bin/sed");
    assert_eq!(hash(replaced), sha256(b"ONE\ntwo\n"));
    for (tool, what) in [
        ("chmod", "mode"),
        ("chown", "owner"),
        ("python3", "xattr"),
        ("touch", "mtime"),
    ] {
        let e = ev[at..]
            .iter()
            .find(|e| {
                action(e) == "file-attributes-changed"
                    && e["sensor"]["fim"]["changed"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|x| x == what))
            })
            .unwrap_or_else(|| panic!("no {what} change: {}", show(&ev)));
        assert!(exe(e).contains(tool), "{what}: {}", exe(e));
        assert_eq!(file_path(e), a);
    }
    let chown = ev
        .iter()
        .find(|e| e["sensor"]["fim"]["syscall"] == "fchownat")
        .unwrap_or_else(|| panic!("no chown: {}", show(&ev)));
    assert_eq!(chown["file"]["uid"], "1234");
    assert_eq!(chown["sensor"]["fim"]["previous"]["uid"], "0");
    let (at, truncated) = next(&ev, at, "file-modified", a);
    assert_eq!(hash(truncated), sha256(b"ON"), "{}", show(&ev));
    let (at, dirfd) = next(&ev, at, "file-modified", a);
    assert_eq!(hash(dirfd), sha256(b"ONX"));
    let (at, bind) = next(&ev, at, "file-modified", a);
    assert_eq!(hash(bind), sha256(b"ONXbind\n"));
    assert_eq!(fim_str(bind, "written_path"), "/tmp/fim-kinds/other/a");
    let (at, moved) = next(&ev, at, "file-renamed", "/tmp/fim-kinds/watched/sub2");
    assert_eq!(fim_str(moved, "old_path"), "/tmp/fim-kinds/watched/sub");
    let (at, inside) = next(&ev, at, "file-created", "/tmp/fim-kinds/watched/sub2/f");
    assert_eq!(hash(inside), sha256(b"s\n"));
    let (at, link) = next(&ev, at, "file-created", "/tmp/fim-kinds/watched/link");
    assert_eq!(link["file"]["type"], "symlink");
    assert_eq!(link["file"]["target_path"], "a");
    let (at, dir) = next(&ev, at, "file-created", "/tmp/fim-kinds/watched/newdir");
    assert_eq!(dir["file"]["type"], "dir");
    let (at, x) = next(&ev, at, "file-created", "/tmp/fim-kinds/watched/newdir/x");
    assert_eq!(exe(x), "/usr/bin/bash");
    assert_eq!(hash(x), sha256(b"n\n"));
    let (_, deleted) = next(&ev, at, "file-deleted", a);
    assert_eq!(exe(deleted), "/usr/bin/rm");
    assert!(
        !ev.iter().any(|e| file_path(e).ends_with("/unwatched")),
        "an unwatched file made no event: {}",
        show(&ev)
    );
}

/// Unmounts a bind mount when dropped, so a failing test leaves none behind.
struct Unmount(&'static str);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Descriptors copied by `fcntl(F_DUPFD)` and `dup` are followed to the last close, which
/// brings the name the file was written through; a descriptor an exec closed is not taken for
/// the new program's descriptor that gets its number.
#[test]
fn descriptor_copies_and_exec_closes_are_attributed_right() {
    let (toml, marks) = config("fds", &["/tmp/fim-fds/watched"]);
    bash(
        "rm -rf /tmp/fim-fds && mkdir -p /tmp/fim-fds/watched /tmp/fim-fds/elsewhere \
         && echo a > /tmp/fim-fds/watched/dup && echo b > /tmp/fim-fds/watched/exec \
         && ln /tmp/fim-fds/watched/dup /tmp/fim-fds/elsewhere/alias",
    );
    let Some(sensor) = Sensor::start_with_config("fds", &toml) else {
        return;
    };
    sensor.wait_fim_ready();

    let (out, ev) = trigger(
        &sensor,
        &marks,
        "/tmp/fim-fds",
        r#"
/usr/bin/python3 - <<'PYEOF'
import fcntl, os
f = os.open("/tmp/fim-fds/elsewhere/alias", os.O_WRONLY | os.O_APPEND)
d = fcntl.fcntl(f, fcntl.F_DUPFD, 10)
os.close(f)                     # the copy still holds the file
e = os.dup(d)
os.close(d)
os.write(e, b"via-copies\n")
os.close(e)                     # the last writer
PYEOF
/usr/bin/python3 - <<'PYEOF'
import os
os.closerange(3, 1024)          # descriptors inherited from the runner would take number 3
f = os.open("/tmp/fim-fds/watched/exec", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
os.write(f, b"before-exec\n")
print("fd", f, flush=True)
# The exec closes it; cat opens its argument on the same number and closes it.
os.execv("/usr/bin/cat", ["cat", "/etc/hostname"])
PYEOF
sleep 1.5                       # the exec's change is reported when its change time settles
cd / && rm -rf /tmp/fim-fds
"#,
    );
    assert_eq!(printed(&out, "fd "), 3, "{out}");
    let (_, copies) = next(&ev, 0, "file-modified", "/tmp/fim-fds/watched/dup");
    assert_eq!(hash(copies), sha256(b"a\nvia-copies\n"), "{}", show(&ev));
    assert_eq!(
        fim_str(copies, "written_path"),
        "/tmp/fim-fds/elsewhere/alias",
        "seen at the last close: {}",
        show(&ev)
    );
    assert!(exe(copies).starts_with("/usr/bin/python3"));
    let exec = "/tmp/fim-fds/watched/exec";
    let (_, written) = next(&ev, 0, "file-modified", exec);
    assert_eq!(hash(written), sha256(b"b\nbefore-exec\n"));
    assert!(
        exe(written).starts_with("/usr/bin/python3"),
        "the writer, not the program after the exec: {}",
        show(&ev)
    );
    assert!(
        !ev.iter()
            .any(|e| file_path(e) == exec && exe(e) == "/usr/bin/cat"),
        "{}",
        show(&ev)
    );
}

#[test]
fn changes_made_while_stopped_are_found_at_start_and_the_rest_is_quiet() {
    let state = std::path::PathBuf::from("/tmp/fim-restart-state");
    let _ = std::fs::remove_dir_all(&state);
    bash(
        "rm -rf /tmp/fim-restart && mkdir -p /tmp/fim-restart/watched && cd /tmp/fim-restart \
         && echo keep > watched/keep && echo old > watched/change",
    );
    let (toml, marks) = config("restart", &["/tmp/fim-restart/watched"]);
    let Some(first) = Sensor::start_with_state("restart1", &toml, Some(&state)) else {
        return;
    };
    first.wait_fim_ready();
    drop(first);

    bash("cd /tmp/fim-restart && echo new >> watched/change && echo hi > watched/added");
    let second = Sensor::start_with_state("restart2", &toml, Some(&state)).expect("restart");
    second.wait_fim_ready();
    let events = second.fim_mark(&format!("{marks}/{}", marker("done")));
    let scan = second.ctl(&["fim", "scan"]);
    drop(second);
    let ev: Vec<Value> = file_events(&events)
        .into_iter()
        .filter(|e| file_path(e).starts_with("/tmp/fim-restart/"))
        .cloned()
        .collect();

    let (_, changed) = next(&ev, 0, "file-modified", "/tmp/fim-restart/watched/change");
    assert_eq!(fim_str(changed, "found_by"), "scan");
    assert_eq!(hash(changed), sha256(b"old\nnew\n"));
    let previous = &changed["sensor"]["fim"]["previous"]["hash"]["sha256"];
    assert_eq!(previous, &sha256(b"old\n"));
    let (_, added) = next(&ev, 0, "file-created", "/tmp/fim-restart/watched/added");
    assert_eq!(fim_str(added, "found_by"), "scan");
    assert_eq!(hash(added), sha256(b"hi\n"));
    assert!(
        !ev.iter().any(|e| file_path(e).ends_with("/keep")),
        "the untouched file made no event: {}",
        show(&ev)
    );
    let stderr = String::from_utf8_lossy(&scan.stderr);
    let stdout = String::from_utf8_lossy(&scan.stdout);
    assert!(
        scan.status.success(),
        "nothing differs now: {stderr} {stdout}"
    );
    assert!(
        scan.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&scan.stdout)
    );
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_corrupt_baseline_is_a_clear_error_and_can_be_rebuilt() {
    if !can_load("corrupt") {
        return;
    }
    let dir = std::path::PathBuf::from("/tmp/fim-corrupt");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("state/fim.redb"), vec![0x5a; 16384]).unwrap();
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        "state_dir = \"/tmp/fim-corrupt/state\"\nlisten = \"unix:/tmp/fim-corrupt/s.sock\"\n\
         [fim]\npaths = [\"/tmp/fim-corrupt/watched\"]\n",
    )
    .unwrap();
    let sensor = bin_dir().join("sensor");

    let refused = std::process::Command::new(&sensor)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run sensor");
    let mut rebuilt = std::process::Command::new(&sensor)
        .arg("--config")
        .arg(&config)
        .arg("--rebuild-baseline")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run sensor");
    let deadline = std::time::Instant::now() + WAIT;
    let ready = loop {
        let status = std::process::Command::new(bin_dir().join("sensorctl"))
            .args(["--server", "unix:/tmp/fim-corrupt/s.sock", "status"])
            .output()
            .expect("sensorctl");
        if status.status.success() || std::time::Instant::now() > deadline {
            break status.status.success();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // SAFETY: kill only sends a signal to our own child.
    unsafe { libc::kill(rebuilt.id() as i32, libc::SIGTERM) };
    let _ = rebuilt.wait();

    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a corrupt baseline must stop the sensor"
    );
    assert!(
        stderr.contains("/tmp/fim-corrupt/state/fim.redb"),
        "{stderr}"
    );
    assert!(stderr.contains("--rebuild-baseline"), "{stderr}");
    assert!(ready, "--rebuild-baseline starts with a new baseline");
    let _ = std::fs::remove_dir_all(&dir);
}
