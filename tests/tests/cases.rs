//! The process-area scenarios of `shared/cases/`, run as written against the real sensor.
//!
//! Each test runs the case's Reproduce block as its trigger, then a unique marker exec, and
//! asserts on the events the sensor wrote up to the marker.

use sensor_tests::*;
use serde_json::Value;

/// The number after `label` in the trigger's output (`shell pid 123`).
fn printed(out: &str, label: &str) -> u32 {
    let at = out
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in {out}"))
        + label.len();
    out[at..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{label}` in {out}"))
}

fn execs<'a>(events: &'a [Value], exe: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"]["kind"] == "event")
        .filter(|e| action(e) == "exec" && process_str(e, "executable") == exe)
        .collect()
}

fn entity(e: &Value) -> &str {
    e["process"]["entity_id"].as_str().unwrap()
}

/// Actions about the process image of `exec` (threads left out), in sequence order.
fn lifecycle<'a>(events: &'a [Value], exec: &Value) -> Vec<&'a str> {
    let mut seen: Vec<(u64, &str)> = about(events, entity(exec))
        .into_iter()
        .filter(|e| e["event"]["kind"] == "event")
        .filter(|e| !e["sensor"]["fork"]["thread"].as_bool().unwrap_or(false))
        .map(|e| (e["event"]["sequence"].as_u64().unwrap(), action(e)))
        .collect();
    seen.sort_by_key(|(s, _)| *s);
    seen.into_iter().map(|(_, a)| a).collect()
}

fn exit_of<'a>(events: &'a [Value], exec: &Value) -> &'a Value {
    let exit = about(events, entity(exec))
        .into_iter()
        .find(|e| action(e) == "exit");
    exit.unwrap_or_else(|| panic!("no exit for {exec}"))
}

#[test]
fn case_01_memfd_exec_names_the_memfd() {
    let Some(sensor) = Sensor::start("case01") else {
        return;
    };

    let (out, events) = trigger(
        &sensor,
        "case01",
        r#"
rm -rf /tmp/case-01 && mkdir -p /tmp/case-01 && cd /tmp/case-01
/usr/bin/python3 - <<'EOF'
import os
fd = os.memfd_create("payload", 0)
with open("/usr/bin/sleep", "rb") as f:
    os.write(fd, f.read())
print("python pid", os.getpid(), "memfd", fd)
pid = os.fork()
if pid == 0:
    os.execve(fd, ["kworker/0:1", "0.2"], {})
os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    os.execv(f"/proc/self/fd/{fd}", ["sshd", "0.2"])
os.waitpid(pid, 0)
EOF
cd / && rm -rf /tmp/case-01"#,
    );

    let python = printed(&out, "python pid");
    let python_exec = events
        .iter()
        .find(|e| action(e) == "exec" && e["process"]["pid"] == python);
    let python_entity = entity(python_exec.expect("python's exec")).to_string();
    let memfd = execs(&events, "/memfd:payload (deleted)");
    assert_eq!(memfd.len(), 2, "both execs name the memfd");
    // Exec'd by descriptor number, the second one's comm is that number as text.
    let fd = printed(&out, "memfd").to_string();
    for (e, argv0, comm) in [
        (memfd[0], "kworker/0:1", "memfd:payload"),
        (memfd[1], "sshd", fd.as_str()),
    ] {
        assert_eq!(args(e), [argv0, "0.2"]);
        assert_eq!(e["process"]["args_count"], 2);
        assert_eq!(process_str(e, "name"), comm, "name is the kernel's comm");
        assert_eq!(e["process"]["parent"]["pid"], python);
        assert_eq!(e["process"]["parent"]["entity_id"], python_entity.as_str());
        assert_eq!(e["process"]["parent"]["executable"], "/usr/bin/python3.11");
        let exe = &e["sensor"]["process"]["exe"];
        assert_eq!((&exe["memfd"], &exe["nlink"]), (&true.into(), &0.into()));
        assert_eq!(exe["memfd_name"], "payload");
        assert_eq!(lifecycle(&events, e), ["fork", "exec", "exit"]);
        assert_eq!(exit_of(&events, e)["process"]["exit_code"], 0);

        // Each exec raises an alert on the exec's process, with what an allowlist needs.
        let alerts: Vec<&Value> = about(&events, entity(e))
            .into_iter()
            .filter(|a| a["event"]["kind"] == "alert")
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let alert = alerts[0];
        assert_eq!(alert["rule"]["name"], "exec-from-memory");
        assert_eq!(alert["threat"]["technique"]["id"], "T1620");
        assert_eq!(alert["process"]["entity_id"], entity(e));
        assert_eq!(
            alert["process"]["parent"]["executable"],
            "/usr/bin/python3.11"
        );
        assert_eq!(alert["sensor"]["memory"]["memfd_name"], "payload");
        assert_eq!(alert["sensor"]["memory"]["backing"], "memfd");
        assert_eq!(
            alert["sensor"]["exec"]["previous_executable"], "/usr/bin/python3.11",
            "the image that exec'd the memfd"
        );
    }
}

#[test]
fn case_02_identity_comes_from_the_loaded_file() {
    let Some(sensor) = Sensor::start("case02") else {
        return;
    };

    let (out, events) = trigger(
        &sensor,
        "case02",
        r#"
rm -rf /tmp/case-02 && mkdir -p /tmp/case-02 && cd /tmp/case-02
echo "shell pid $BASHPID"
ln -s /usr/bin/cat systemd-logind
./systemd-logind /etc/shadow >/dev/null
cp /usr/bin/cat sshd
./sshd /etc/shadow >/dev/null
/usr/bin/../bin/id -u >/dev/null
cd /usr/bin && ./id -u >/dev/null
cd /tmp/case-02
/usr/bin/python3 -c 'import os; os.execv("/usr/bin/id", ["/usr/sbin/sshd", "-u"])' >/dev/null
cd / && rm -rf /tmp/case-02"#,
    );

    let shell = printed(&out, "shell pid");
    let expected: [(&str, &[&str], &str, &str); 5] = [
        (
            "/usr/bin/cat",
            &["./systemd-logind", "/etc/shadow"],
            "systemd-logind",
            "/tmp/case-02",
        ),
        (
            "/tmp/case-02/sshd",
            &["./sshd", "/etc/shadow"],
            "sshd",
            "/tmp/case-02",
        ),
        (
            "/usr/bin/id",
            &["/usr/bin/../bin/id", "-u"],
            "id",
            "/tmp/case-02",
        ),
        ("/usr/bin/id", &["./id", "-u"], "id", "/usr/bin"),
        (
            "/usr/bin/id",
            &["/usr/sbin/sshd", "-u"],
            "id",
            "/tmp/case-02",
        ),
    ];
    for (exe, argv, name, cwd) in expected {
        let found = execs(&events, exe).into_iter().find(|e| args(e) == argv);
        let e = found.unwrap_or_else(|| panic!("no exec of {exe} with {argv:?}"));
        assert_eq!(process_str(e, "name"), name, "{argv:?}");
        assert_eq!(process_str(e, "working_directory"), cwd, "{argv:?}");
        assert_eq!(e["process"]["parent"]["pid"], shell, "{argv:?}");
    }
}

#[test]
fn case_03_shebang_script_reports_the_kernel_argv_and_the_script() {
    let Some(sensor) = Sensor::start("case03") else {
        return;
    };

    let (out, events) = trigger(
        &sensor,
        "case03",
        r#"
rm -rf /tmp/case-03 && mkdir -p /tmp/case-03 && cd /tmp/case-03
printf '#!/bin/sh\nid -u\n' > with-shebang.sh
printf 'id -u\n' > no-shebang.sh
chmod +x with-shebang.sh no-shebang.sh
bash -c 'echo "runner pid $$"; ./with-shebang.sh arg1; ./no-shebang.sh arg2; exit 0'
cd / && rm -rf /tmp/case-03"#,
    );

    let runner = printed(&out, "runner pid");
    let s1 = events
        .iter()
        .find(|e| action(e) == "exec" && args(e) == ["/bin/sh", "./with-shebang.sh", "arg1"])
        .expect("exec of the script");
    assert_eq!(process_str(s1, "executable"), "/usr/bin/dash");
    assert_eq!(s1["process"]["args_count"], 3);
    assert_eq!(s1["process"]["parent"]["pid"], runner);
    assert_eq!(process_str(s1, "name"), "with-shebang.sh");
    assert_eq!(
        s1["sensor"]["exec"]["script"],
        "/tmp/case-03/with-shebang.sh"
    );
    assert_eq!(lifecycle(&events, s1), ["fork", "exec", "exit"]);
    let id = execs(&events, "/usr/bin/id");
    let id = id
        .iter()
        .find(|e| e["process"]["parent"]["pid"] == s1["process"]["pid"]);
    let id = id.expect("id run by the script");
    assert_eq!(args(id), ["id", "-u"]);
    assert_eq!(exit_of(&events, id)["process"]["exit_code"], 0);
    assert_eq!(exit_of(&events, s1)["process"]["exit_code"], 0);

    // Without `#!` the exec fails with ENOEXEC and bash runs the script in the child itself.
    let s2 = events
        .iter()
        .find(|e| e["sensor"]["exec"]["filename"] == "./no-shebang.sh")
        .expect("failed exec of the script without a shebang");
    assert_eq!(s2["event"]["action"], "exec");
    assert_eq!(s2["event"]["outcome"], "failure");
    assert_eq!(s2["sensor"]["exec"]["attempt"]["error"], "ENOEXEC");
    assert_eq!(s2["file"]["path"], "/tmp/case-03/no-shebang.sh");
    assert_eq!(process_str(s2, "executable"), "/usr/bin/bash");
    assert_eq!(s2["process"]["parent"]["pid"], runner);
    assert_eq!(lifecycle(&events, s2), ["fork", "exec", "exit"]);
    assert_eq!(exit_of(&events, s2)["process"]["exit_code"], 0);
    let id2 = execs(&events, "/usr/bin/id");
    let id2 = id2
        .iter()
        .find(|e| e["process"]["parent"]["pid"] == s2["process"]["pid"]);
    let id2 = id2.expect("id run by bash for the script");
    assert_eq!(args(id2), ["id", "-u"]);
    assert_eq!(id2["process"]["parent"]["executable"], "/usr/bin/bash");
    assert_eq!(
        id2["process"]["parent"]["entity_id"],
        s2["process"]["entity_id"]
    );
    assert_eq!(exit_of(&events, id2)["process"]["exit_code"], 0);
}

#[test]
fn case_04_short_lived_processes_are_complete_and_ordered() {
    let Some(sensor) = Sensor::start("case04") else {
        return;
    };

    let (out, events) = trigger(
        &sensor,
        "case04",
        r#"
rm -rf /tmp/case-04 && mkdir -p /tmp/case-04 && cd /tmp/case-04
echo "loop shell pid $BASHPID"
for i in $(seq 1 500); do /bin/true "marker-$i"; done
/usr/bin/python3 - <<'EOF'
import os
print("python pid", os.getpid())
kids = []
for i in range(200):
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/true", ["true", f"fast-{i}"])
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
EOF
cd / && rm -rf /tmp/case-04"#,
    );

    let shell = printed(&out, "loop shell pid");
    let python = printed(&out, "python pid");
    let shell_fork = events
        .iter()
        .find(|e| e["process"]["pid"] == shell && action(e) == "fork");
    let shell_entity = &shell_fork.expect("fork of the loop shell")["process"]["entity_id"];
    let python_exec = events
        .iter()
        .find(|e| e["process"]["pid"] == python && action(e) == "exec");
    let python_entity = &python_exec.expect("exec of python")["process"]["entity_id"];
    let (mut loop_seen, mut fast_seen) = (vec![0; 501], vec![0; 200]);
    for e in execs(&events, "/usr/bin/true") {
        let a = args(e);
        let (parent, parent_entity) = match a.as_slice() {
            [p, m] if p == "/bin/true" && m.starts_with("marker-") => {
                loop_seen[m["marker-".len()..].parse::<usize>().unwrap()] += 1;
                (shell, shell_entity)
            }
            [p, m] if p == "true" && m.starts_with("fast-") => {
                fast_seen[m["fast-".len()..].parse::<usize>().unwrap()] += 1;
                (python, python_entity)
            }
            _ => continue,
        };
        assert_eq!(e["process"]["parent"]["pid"], parent, "{a:?}");
        assert_eq!(&e["process"]["parent"]["entity_id"], parent_entity, "{a:?}");
        assert_eq!(lifecycle(&events, e), ["fork", "exec", "exit"], "{a:?}");
        assert_eq!(exit_of(&events, e)["process"]["exit_code"], 0, "{a:?}");
    }
    assert!(
        loop_seen[1..].iter().all(|&n| n == 1),
        "each loop exec exactly once"
    );
    assert!(
        fast_seen.iter().all(|&n| n == 1),
        "each python exec exactly once"
    );
    // Other tests run beside this one, so only the case's own images are checked here.
    let ours = ["/usr/bin/true", "/usr/bin/python3.11"];
    for e in events
        .iter()
        .filter(|e| action(e) == "exec" && ours.contains(&process_str(e, "executable").as_str()))
    {
        assert!(!args(e).is_empty(), "{e}");
        let parent = e["process"]["parent"]["pid"].as_u64();
        assert!(parent.is_some_and(|p| p > 1), "a real parent: {e}");
    }
}

#[test]
fn case_05_exec_burst_under_load_loses_nothing_and_a_slow_subscriber_is_told() {
    let Some(sensor) = Sensor::start_with_config("case05", "subscriber_queue = 512\n") else {
        return;
    };
    let slow_out = std::env::temp_dir().join(format!("case05-slow-{}", std::process::id()));
    let go = std::env::temp_dir().join(format!("case05-go-{}", std::process::id()));
    // The slow subscriber reads nothing until the burst is over, however long it takes.
    let mut slow = std::process::Command::new("/bin/bash")
        .arg("-c")
        .arg(format!(
            "{} --server {} events --json | (until [ -e {go} ]; do sleep 0.2; done; cat > {})",
            bin_dir().join("sensorctl").display(),
            sensor.socket,
            slow_out.display(),
            go = go.display(),
        ))
        .spawn()
        .expect("slow subscriber");
    std::thread::sleep(std::time::Duration::from_millis(500));

    let (out, events) = trigger(
        &sensor,
        "case05",
        r#"
rm -rf /tmp/case-05 && mkdir -p /tmp/case-05/churn && cd /tmp/case-05
echo "shell pid $BASHPID"
N=2000 /usr/bin/python3 - <<'EOF'
import os, time, multiprocessing as mp
N = int(os.environ["N"])
def churn(w):
    for i in range(N):
        p = f"/tmp/case-05/churn/w{w}-{i}"
        with open(p, "w") as f:
            f.write("x")
        os.unlink(p)
ps = [mp.Process(target=churn, args=(w,)) for w in range(4)]
for p in ps:
    p.start()
time.sleep(0.05)
os.system("/usr/bin/cat /etc/shadow > /dev/null")
for p in ps:
    p.join()
EOF
for i in $(seq 1 1000); do /usr/bin/true "storm-$i" & done; wait
/usr/bin/true flood-done
cd / && rm -rf /tmp/case-05"#,
    );

    let shell = printed(&out, "shell pid");
    let cat = with_arg(&events, "exec", "/etc/shadow");
    let cat = cat
        .iter()
        .find(|e| process_str(e, "executable") == "/usr/bin/cat");
    let cat = cat.expect("marker delivered");
    assert_eq!(args(cat), ["/usr/bin/cat", "/etc/shadow"]);
    let mut seen = vec![0; 1001];
    for e in execs(&events, "/usr/bin/true") {
        let a = args(e);
        let Some(k) = a.get(1).and_then(|m| m.strip_prefix("storm-")) else {
            continue;
        };
        seen[k.parse::<usize>().unwrap()] += 1;
        assert_eq!(e["process"]["parent"]["pid"], shell);
        assert_eq!(exit_of(&events, e)["process"]["exit_code"], 0);
    }
    assert!(
        seen[1..].iter().all(|&n| n == 1),
        "each storm exec exactly once"
    );
    assert!(!with_arg(&events, "exec", "flood-done").is_empty());
    assert!(
        events.iter().all(|e| action(e) != "lost"),
        "the fast subscriber lost nothing"
    );

    std::fs::write(&go, "").expect("release the slow subscriber");
    std::thread::sleep(std::time::Duration::from_secs(3));
    drop(sensor);
    let _ = std::fs::remove_file(&go);
    let _ = slow.wait();
    let slow_events = std::fs::read_to_string(&slow_out).unwrap_or_default();
    let _ = std::fs::remove_file(&slow_out);
    let told = slow_events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|e| {
            let lost = &e["sensor"]["lost"];
            action(&e) == "lost"
                && lost["source"] == "subscriber"
                && lost["count"].as_u64() > Some(0)
        });
    assert!(
        told,
        "the slow subscriber is told how many events it missed"
    );
}

#[test]
fn case_06_long_and_numerous_arguments_are_exact_or_flagged() {
    let Some(sensor) = Sensor::start("case06") else {
        return;
    };

    let (_, events) = trigger(
        &sensor,
        "case06",
        r#"
rm -rf /tmp/case-06 && mkdir -p /tmp/case-06 && cd /tmp/case-06
bash -c "$(printf '%*s' 3000 '')echo padded-payload-ran"
/bin/echo $(/usr/bin/python3 -c 'print(" ".join(["A" * 100000] * 5))') >/dev/null
/usr/bin/python3 -c 'import subprocess; subprocess.run(["/bin/true"] + [f"a{i}" for i in range(5000)])'
d=/tmp/case-06/$(printf 'd%.0s' $(seq 200)); mkdir -p "$d"
e="$d/$(printf 'e%.0s' $(seq 200))"; cp /usr/bin/echo "$e"
"$e" known-arg-1 known-arg-2
cd / && rm -rf /tmp/case-06"#,
    );

    let padded = format!("{}echo padded-payload-ran", " ".repeat(3000));
    let bash1 = with_arg(&events, "exec", &padded);
    let bash1 = bash1.first().expect("padded payload exact");
    assert_eq!(args(bash1), ["bash", "-c", padded.as_str()]);
    assert_eq!(bash1["sensor"]["process"]["args_truncated"], false);

    let echo = execs(&events, "/usr/bin/echo");
    let big = echo
        .iter()
        .find(|e| e["process"]["args_count"] == 6)
        .expect("echo with 6 args");
    assert_eq!(
        big["sensor"]["process"]["args_truncated"], true,
        "the cut is flagged"
    );
    assert_eq!(big["sensor"]["process"]["args_bytes_total"], 500_015);
    let kept = args(big);
    assert_eq!(kept[0], "/bin/echo", "an exact prefix is kept");
    assert!(kept[1..]
        .iter()
        .all(|a| a.len() == 100_000 && a.bytes().all(|b| b == b'A')));

    let many = execs(&events, "/usr/bin/true");
    let many = many
        .iter()
        .find(|e| e["process"]["args_count"] == 5001)
        .expect("5001 args");
    let expected: Vec<String> = std::iter::once("/bin/true".to_string())
        .chain((0..5000).map(|i| format!("a{i}")))
        .collect();
    assert_eq!(args(many), expected);

    let long = format!("/tmp/case-06/{}/{}", "d".repeat(200), "e".repeat(200));
    assert_eq!(long.len(), 414);
    let e = execs(&events, &long);
    let e = e.first().expect("exec of the 414-byte path");
    assert_eq!(args(e), [long.as_str(), "known-arg-1", "known-arg-2"]);
}

#[test]
fn case_07_empty_arguments_and_unfaulted_pages() {
    let Some(sensor) = Sensor::start("case07") else {
        return;
    };

    let (_, events) = trigger(
        &sensor,
        "case07",
        r#"
rm -rf /tmp/case-07 && mkdir -p /tmp/case-07 && cd /tmp/case-07
cat > rodata_exec.c <<'EOF'
#include <unistd.h>
int main(void) {
    static char *const av[] = {"/usr/bin/id", "-u", (char *)0};
    execve("/usr/bin/id", av, (char *const *)0);
    return 1;
}
EOF
gcc -O2 -o rodata_exec rodata_exec.c
./rodata_exec
/usr/bin/python3 -c 'import os; os.execv("/bin/echo", ["echo", "", "x", ""])'
/bin/ls "" /etc >/dev/null 2>&1 || true
cd / && rm -rf /tmp/case-07"#,
    );

    let rodata = execs(&events, "/tmp/case-07/rodata_exec");
    let rodata = rodata.first().expect("exec of rodata_exec");
    let id = about(&events, entity(rodata))
        .into_iter()
        .find(|e| action(e) == "exec" && process_str(e, "executable") == "/usr/bin/id");
    let id = id.expect("id replaces rodata_exec with the same entity id");
    assert_eq!(args(id), ["/usr/bin/id", "-u"]);
    assert_eq!(id["process"]["pid"], rodata["process"]["pid"]);

    let echo = execs(&events, "/usr/bin/echo");
    let echo = echo
        .iter()
        .find(|e| args(e).first().is_some_and(|a| a == "echo"));
    let echo = echo.expect("echo with empty args");
    assert_eq!(args(echo), ["echo", "", "x", ""]);
    assert_eq!(echo["process"]["args_count"], 4);

    let ls = execs(&events, "/usr/bin/ls");
    let ls = ls
        .iter()
        .find(|e| args(e) == ["/bin/ls", "", "/etc"])
        .expect("ls with an empty arg");
    assert_eq!(ls["process"]["args_count"], 3);
    assert_eq!(exit_of(&events, ls)["process"]["exit_code"], 2);
    // Other tests run beside this one; a capped argv (case 06) is a prefix by design.
    for e in events
        .iter()
        .filter(|e| action(e) == "exec" && e["sensor"]["process"]["args_truncated"] == false)
    {
        assert_eq!(
            e["process"]["args_count"],
            args(e).len(),
            "count matches the array: {e}"
        );
    }
}

/// Failed execs of case 07 (step 4) and its neighbours: another errno, `execveat` with a
/// directory fd, and an argv that lives only in never-touched read-only pages.
#[test]
fn case_07_failed_exec_is_reported_with_the_attempted_argv() {
    let Some(sensor) = Sensor::start("case07f") else {
        return;
    };

    let (out, events) = trigger(
        &sensor,
        "case07f",
        r#"
rm -rf /tmp/case-07f && mkdir -p /tmp/case-07f && cd /tmp/case-07f
printf 'not a program\n' > not-executable && chmod 0644 not-executable
cat > at_exec.c <<'EOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    static char *const av[] = {"at-argv0", "", "last", (char *)0};
    int dir = open("/tmp/case-07f", O_RDONLY | O_DIRECTORY);
    printf("at_exec pid %d dirfd %d\n", getpid(), dir);
    fflush(stdout);
    syscall(SYS_execveat, dir, "missing-relative", av, (char *const *)0, 0);
    execve("/tmp/case-07f/also-missing", av, (char *const *)0);
    return 0;
}
EOF
gcc -O2 -o at_exec at_exec.c
./at_exec
/usr/bin/python3 -c '
import os
print("python pid", os.getpid())
try:
    os.execv("/tmp/case-07/missing", ["x", "", "y"])
except OSError as e:
    print("exec failed:", e.strerror)
try:
    os.execv("/tmp/case-07f/not-executable", ["n", "-v"])
except OSError as e:
    print("exec failed:", e.strerror)'
cd / && rm -rf /tmp/case-07f"#,
    );

    let failed = |filename: &str| {
        events
            .iter()
            .find(|e| {
                action(e) == "exec"
                    && e["event"]["outcome"] == "failure"
                    && e["sensor"]["exec"]["filename"] == filename
            })
            .unwrap_or_else(|| panic!("no failed exec of {filename}"))
    };
    let missing = failed("/tmp/case-07/missing");
    let attempt = &missing["sensor"]["exec"]["attempt"];
    assert_eq!(missing["process"]["pid"], printed(&out, "python pid"));
    assert_eq!(
        process_str(missing, "executable"),
        "/usr/bin/python3.11",
        "the caller, unchanged: {missing}"
    );
    assert_eq!(attempt["error"], "ENOENT");
    assert_eq!(attempt["errno"], 2);
    assert_eq!(attempt["syscall"], "execve");
    assert_eq!(attempt["args"], serde_json::json!(["x", "", "y"]));
    assert_eq!(attempt["args_count"], 3);
    assert_eq!(exit_of(&events, missing)["process"]["exit_code"], 0);

    let denied = failed("/tmp/case-07f/not-executable");
    let attempt = &denied["sensor"]["exec"]["attempt"];
    assert_eq!(attempt["error"], "EACCES");
    assert_eq!(attempt["args"], serde_json::json!(["n", "-v"]));

    let at = failed("missing-relative");
    let attempt = &at["sensor"]["exec"]["attempt"];
    assert_eq!(at["process"]["pid"], printed(&out, "at_exec pid"));
    assert_eq!(attempt["syscall"], "execveat");
    assert_eq!(attempt["dirfd"], printed(&out, "dirfd"));
    assert_eq!(attempt["error"], "ENOENT");
    assert_eq!(
        at["file"]["path"], "/tmp/case-07f/missing-relative",
        "taken against the directory behind dirfd"
    );

    let rodata = failed("/tmp/case-07f/also-missing");
    let attempt = &rodata["sensor"]["exec"]["attempt"];
    assert_eq!(attempt["syscall"], "execve");
    assert_eq!(attempt["args_count"], 3);
    assert_eq!(attempt["args"], serde_json::json!(["at-argv0", "", "last"]));
    for e in events.iter().filter(|e| e["event"]["outcome"] == "failure") {
        let attempt = &e["sensor"]["exec"]["attempt"];
        assert!(attempt.is_object(), "a failure carries its attempt: {e}");
        if attempt["args_truncated"] == false && attempt["args_unreadable"] == false {
            assert_eq!(
                attempt["args_count"],
                attempt["args"].as_array().map_or(0, Vec::len),
                "count matches the array: {e}"
            );
        }
    }
}

#[test]
fn case_08_deep_paths_are_exact_or_keep_their_tail() {
    let Some(sensor) = Sensor::start("case08") else {
        return;
    };

    let (_, events) = trigger(
        &sensor,
        "case08",
        r#"
rm -rf /tmp/case-08 && mkdir -p /tmp/case-08 && cd /tmp/case-08
/usr/bin/python3 - <<'EOF'
import os, shutil
depth = 0
def down(n):
    global depth
    for _ in range(n):
        d = f"d{depth:03d}_" + "x" * 200
        os.mkdir(d); os.chdir(d); depth += 1
def run_t(arg):
    shutil.copy("/usr/bin/true", "t")
    pid = os.fork()
    if pid == 0:
        os.execv("./t", ["./t", arg])
    os.waitpid(pid, 0)
down(2);  run_t("depth-2")
down(17); open("written.txt", "w").write("hello")
down(21); run_t("depth-40"); open("deep.txt", "w").write("hello")
EOF
cd / && rm -rf /tmp/case-08"#,
    );

    let dir = |depth: usize| {
        (0..depth).fold("/tmp/case-08".to_string(), |d, k| {
            format!("{d}/d{k:03}_{}", "x".repeat(200))
        })
    };
    let shallow = with_arg(&events, "exec", "depth-2");
    let shallow = shallow.first().expect("exec at depth 2");
    assert_eq!(process_str(shallow, "executable"), format!("{}/t", dir(2)));
    assert_eq!(process_str(shallow, "executable").len(), 426);
    assert_eq!(process_str(shallow, "working_directory"), dir(2));
    assert!(
        shallow["sensor"]["truncated"].is_null(),
        "nothing cut at 426 bytes"
    );
    assert_eq!(args(shallow), ["./t", "depth-2"]);

    let deep = with_arg(&events, "exec", "depth-40");
    let deep = deep.first().expect("exec at depth 40");
    let full = format!("{}/t", dir(40));
    let exe = process_str(deep, "executable");
    assert!(full.len() > 8000);
    let cut = deep["sensor"]["truncated"]
        .as_array()
        .expect("truncation flagged");
    assert!(cut.contains(&"process.executable".into()));
    assert!(
        full.ends_with(&format!("/{exe}")),
        "tail kept intact: {exe}"
    );
    assert!(exe.len() > 3000, "as many trailing components as fit");
    assert!(deep["sensor"]["process"]["exe"]["inode"].as_u64() > Some(0));
    assert_eq!(args(deep), ["./t", "depth-40"]);
}

#[test]
fn case_09_non_utf8_names_and_arguments_are_lossless() {
    let Some(sensor) = Sensor::start("case09") else {
        return;
    };
    let grpc = sensor.subscribe("grpc.json");

    let (_, events) = trigger(
        &sensor,
        "case09",
        r#"
rm -rf /tmp/case-09 && mkdir -p /tmp/case-09 && cd /tmp/case-09
/usr/bin/python3 -c 'open(b"/tmp/case-09/\xff\xfe-bad.bin", "wb").write(b"x")'
cp /usr/bin/true $'/tmp/case-09/t\xe9st'
$'/tmp/case-09/t\xe9st' $'arg\x80' plain-ascii
/usr/bin/true '\xff' $'\xff'
/usr/bin/true after-non-utf8
cd / && rm -rf /tmp/case-09"#,
    );

    let exe = b"/tmp/case-09/t\xe9st".to_vec();
    let odd = events
        .iter()
        .find(|e| action(e) == "exec" && process_bytes(e, "executable") == exe);
    let odd = odd.expect("exec of the non-UTF-8 executable");
    assert_eq!(
        args_bytes(odd),
        [exe.clone(), b"arg\x80".to_vec(), b"plain-ascii".to_vec()]
    );
    let escaped = odd["sensor"]["escaped"].as_array().expect("escape marker");
    assert!(escaped.contains(&"process.executable".into()));
    assert!(escaped.contains(&"process.args".into()));
    let lookalike = with_arg(&events, "exec", r"\xff");
    let lookalike = args_bytes(lookalike.first().expect("exec with lookalike args"));
    assert_eq!(lookalike[1], br"\xff");
    assert_eq!(lookalike[2], [0xff]);
    assert!(!with_arg(&events, "exec", "after-non-utf8").is_empty());

    let streamed = grpc.events_until_marker("after-non-utf8");
    assert!(
        streamed.iter().any(|e| args_bytes(e) == args_bytes(odd)),
        "same bytes over gRPC"
    );
}
