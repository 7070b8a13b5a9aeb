//! Fileless-attack findings on the real kernel: the memory cases of `shared/cases/` as written
//! (memfd exec is case 01 in cases.rs), ordinary programs that must stay quiet, suppressions
//! and the rate limit.

use sensor_tests::*;
use serde_json::Value;

/// The hexadecimal number after `label` in the output.
fn printed_hex(out: &str, label: &str) -> u64 {
    let at = out
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in {out}"))
        + label.len();
    let word = out[at..].split_whitespace().next().unwrap_or("");
    u64::from_str_radix(word.trim_start_matches("0x").trim_end_matches(';'), 16)
        .unwrap_or_else(|_| panic!("no hex after `{label}` in {out}"))
}

fn printed(out: &str, label: &str) -> u64 {
    let at = out
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in {out}"))
        + label.len();
    out[at..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{label}` in {out}"))
}

fn alerts(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"]["kind"] == "alert")
        .collect()
}

fn show(events: &[&Value]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "\n{} {} pid={} exe={} rule={} memory={}",
                e["event"]["kind"],
                action(e),
                e["process"]["pid"],
                process_str(e, "executable"),
                e["rule"]["name"],
                e["sensor"]["memory"]
            )
        })
        .collect()
}

fn exec_of<'a>(events: &'a [Value], exe: &str) -> &'a Value {
    events
        .iter()
        .find(|e| {
            e["event"]["kind"] == "event"
                && action(e) == "exec"
                && process_str(e, "executable") == exe
        })
        .unwrap_or_else(|| panic!("no exec of {exe}"))
}

const WX: &str = r#"
rm -rf /tmp/case-14 && mkdir -p /tmp/case-14 && cd /tmp/case-14
cat > wx.c <<'EOF'
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void) {
    unsigned char code[] = {0xb8, 0x2a, 0, 0, 0, 0xc3};          /* mov eax,42; ret */
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(p, code, sizeof code);
    __builtin___clear_cache((char *)p, (char *)p + sizeof code);
    mprotect(p, 4096, PROT_READ | PROT_EXEC);                    /* 1: RW -> RX */
    int r = ((int (*)(void))p)();
    void *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);          /* 2: RWX at once */
    printf("code returned %d; W->X page %p; RWX page %p\n", r, p, q);
    return 0;
}
EOF
gcc -O1 -o wx wx.c && ./wx
"#;

#[test]
fn case_14_write_then_execute_anonymous_memory() {
    let Some(sensor) = Sensor::start("case14") else {
        return;
    };
    let (out, events) = trigger(
        &sensor,
        "case14",
        &format!("{WX}\ncd / && rm -rf /tmp/case-14"),
    );
    let wx = exec_of(&events, "/tmp/case-14/wx");
    assert_eq!(args(wx), ["./wx"]);
    let entity = wx["process"]["entity_id"].as_str().unwrap();
    let found: Vec<&Value> = about(&events, entity)
        .into_iter()
        .filter(|e| e["event"]["kind"] == "alert")
        .collect();
    assert_eq!(
        found.len(),
        2,
        "the plain RW mmap and the loader's mappings are quiet: {}",
        show(&found)
    );
    for a in &found {
        assert_eq!(a["threat"]["technique"]["id"], "T1620");
        assert_eq!(a["rule"]["name"], "memory-executable-anonymous");
        assert_eq!(a["process"]["pid"], wx["process"]["pid"]);
        assert!(a.get("file").is_none(), "no file for anonymous memory: {a}");
        assert_eq!(a["sensor"]["memory"]["backing"], "anonymous");
        assert_eq!(a["sensor"]["memory"]["length"], 4096);
    }
    let m = &found[0]["sensor"]["memory"];
    assert_eq!(action(found[0]), "mprotect");
    let wx_page = printed_hex(&out, "W->X page ");
    assert_eq!(m["address"], format!("{wx_page:#x}"));
    assert_eq!(m["previous_protection"], "rw-");
    assert_eq!(m["protection"], "r-x");
    let mut page = vec![0u8; 4096];
    page[..6].copy_from_slice(&[0xb8, 0x2a, 0, 0, 0, 0xc3]);
    assert_eq!(
        m["first_page"]["sha256"],
        sha256(&page),
        "the code written there"
    );
    assert_eq!(m["first_page"]["elf"], false);
    let m = &found[1]["sensor"]["memory"];
    assert_eq!(action(found[1]), "mmap");
    assert_eq!(m["protection"], "rwx");
    assert_eq!(
        m["address"],
        format!("{:#x}", printed_hex(&out, "RWX page "))
    );
}

#[test]
fn case_13_each_door_into_another_process_alerts() {
    let Some(sensor) = Sensor::start("case13") else {
        return;
    };
    let script = r#"
rm -rf /tmp/case-13 && mkdir -p /tmp/case-13 && cd /tmp/case-13
cat > inject.c <<'EOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile char buf[16] = "original";
int main(void) {
    pid_t v = fork();
    if (v == 0) { char last[16] = "";
        for (int i = 0; i < 30; i++, usleep(50000))
            if (strcmp(last, (char *)buf)) { strcpy(last, (char *)buf); printf("victim sees: %s\n", last); fflush(stdout); }
        _exit(0);
    }
    printf("victim pid %d\n", v); fflush(stdout);
    long w; memcpy(&w, "POKEDAT", 8); usleep(200000);
    if (ptrace(PTRACE_ATTACH, v, 0, 0) == 0 && waitpid(v, 0, 0) == v) {
        ptrace(PTRACE_POKEDATA, v, (void *)buf, (void *)w); ptrace(PTRACE_DETACH, v, 0, 0);
    } else perror("ptrace");
    char m[] = "vm_writev"; struct iovec l = {m, sizeof m}, r = {(void *)buf, sizeof m};
    usleep(200000); if (process_vm_writev(v, &l, 1, &r, 1, 0) < 0) perror("vm_writev");
    const char *fmt[] = {"/proc/%d/mem", "/proc/%d/task/%d/mem"}, *txt[] = {"procmem", "taskmem"};
    for (int k = 0; k < 2; k++) {
        char p[64]; snprintf(p, sizeof p, fmt[k], v, v); usleep(200000); int fd = open(p, O_RDWR);
        if (fd < 0 || pwrite(fd, txt[k], 8, (off_t)(unsigned long)buf) < 0) perror(p);
        close(fd);
    }
    waitpid(v, 0, 0);
}
EOF
gcc -O1 -o inject inject.c && ./inject
cd / && rm -rf /tmp/case-13
"#;
    let (out, events) = trigger(&sensor, "case13", script);
    for seen in ["original", "POKEDAT", "vm_writev", "procmem", "taskmem"] {
        assert!(out.contains(&format!("victim sees: {seen}")), "{out}");
    }
    let inject = exec_of(&events, "/tmp/case-13/inject");
    let a = inject["process"]["pid"].as_u64().unwrap();
    let v = printed(&out, "victim pid ");
    let victim = events
        .iter()
        .find(|e| action(e) == "fork" && e["process"]["pid"] == v)
        .expect("the victim's fork");
    assert_eq!(victim["process"]["parent"]["pid"], a);
    let victim_entity = victim["process"]["entity_id"].as_str().unwrap();

    let attach = events
        .iter()
        .find(|e| {
            action(e) == "ptrace" && e["sensor"]["memory"]["ptrace_request"] == "PTRACE_ATTACH"
        })
        .expect("the attach is reported");
    assert_eq!(attach["event"]["kind"], "event");
    // Tests run side by side and every sensor sees the whole host: only inject's alerts.
    let found: Vec<&Value> = alerts(&events)
        .into_iter()
        .filter(|e| e["process"]["pid"] == a)
        .collect();
    let expect = [
        ("ptrace", "T1055.008", None),
        ("process-vm-writev", "T1055", None),
        ("proc-mem-open", "T1055.009", Some(format!("/proc/{v}/mem"))),
        (
            "proc-mem-open",
            "T1055.009",
            Some(format!("/proc/{v}/task/{v}/mem")),
        ),
    ];
    assert_eq!(found.len(), expect.len(), "{}", show(&found));
    for (alert, (act, technique, path)) in found.iter().zip(expect) {
        assert_eq!(action(alert), act, "{}", show(&found));
        assert_eq!(alert["threat"]["technique"]["id"], technique);
        assert_eq!(alert["process"]["pid"], a);
        assert_eq!(process_str(alert, "executable"), "/tmp/case-13/inject");
        let target = &alert["sensor"]["memory"]["target"];
        assert_eq!(target["pid"], v);
        assert_eq!(target["entity_id"], victim_entity);
        if let Some(path) = path {
            assert_eq!(file_path(alert), path);
        }
    }
    assert_eq!(
        found[0]["sensor"]["memory"]["ptrace_request"],
        "PTRACE_POKEDATA"
    );
    assert_eq!(found[1]["sensor"]["memory"]["result"], 10, "bytes written");
}

#[test]
fn ordinary_programs_raise_no_alert() {
    let Some(sensor) = Sensor::start("quiet") else {
        return;
    };
    let script = r#"
set -e
rm -rf /tmp/quiet && mkdir -p /tmp/quiet && cd /tmp/quiet
/usr/bin/python3 -c 'import json, re, hashlib, ctypes; print(sum(range(10**6)))'
/usr/bin/node -e 'let s = 0; for (let i = 0; i < 3e7; i++) s += i % 7; console.log(s)'
printf 'int main(void) { return 0; }\n' > t.c && gcc -O2 -o t t.c && ./t
dpkg -l > /dev/null
dpkg -s coreutils > /dev/null
fakeroot /usr/bin/true        # LD_PRELOAD of a library in the system's directories
git init -q repo && cd repo && echo x > f && git add f
git -c user.name=t -c user.email=t@t commit -qm one && git log --oneline > /dev/null && cd ..
tar czf x.tgz repo && mkdir -p out && tar xzf x.tgz -C out
cd / && rm -rf /tmp/quiet
"#;
    let (_, events) = trigger(&sensor, "quiet", script);
    let node = exec_of(&events, "/usr/bin/node");
    let entity = node["process"]["entity_id"].as_str().unwrap();
    assert!(
        about(&events, entity)
            .iter()
            .any(|e| action(e) == "mprotect" || action(e) == "mmap"),
        "V8's executable memory is seen (and allowed by default)"
    );
    // Only the programs of this script: the other tests raise alerts on purpose.
    let ours = |e: &&Value| {
        let exe = process_str(e, "executable");
        !exe.starts_with("/tmp/case-") && !exe.starts_with("/tmp/mem-allow")
    };
    let found: Vec<&Value> = alerts(&events).into_iter().filter(ours).collect();
    assert!(found.is_empty(), "{}", show(&found));
    assert!(sensor.status()["alerts_allowed"].as_u64().unwrap() > 0);
}

#[test]
fn suppressions_match_what_they_name_and_repeats_are_counted() {
    bash("rm -rf /tmp/mem-allow && mkdir -p /tmp/mem-allow");
    let toml = r#"
[memory]
alerts_per_minute = 3
allow = [
  { reason = "test", rule = "memory-executable-anonymous", executable = "/tmp/mem-allow/allowed" },
]
"#;
    let Some(sensor) = Sensor::start_with_config("memallow", toml) else {
        return;
    };
    let script = r#"
cd /tmp/mem-allow
cat > flip.c <<'EOF'
#include <sys/mman.h>
int main(void) {
    for (int i = 0; i < 10; i++) {
        char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p[0] = (char)0xc3;
        mprotect(p, 4096, PROT_READ | PROT_EXEC);
    }
    return 0;
}
EOF
gcc -O1 -o flip flip.c && cp flip allowed && ./allowed && ./flip
cd / && rm -rf /tmp/mem-allow
"#;
    let (_, events) = trigger(&sensor, "memallow", script);
    let allowed = exec_of(&events, "/tmp/mem-allow/allowed");
    let flip = exec_of(&events, "/tmp/mem-allow/flip");
    let of = |e: &Value| {
        let entity = e["process"]["entity_id"].as_str().unwrap().to_string();
        alerts(&events)
            .into_iter()
            .filter(|a| a["process"]["entity_id"] == entity.as_str())
            .count()
    };
    assert_eq!(of(allowed), 0, "the allowed executable");
    assert_eq!(
        of(flip),
        3,
        "the same code under another name, up to the limit"
    );
    let status = sensor.status();
    assert_eq!(status["alerts_rate_limited"], 7, "{status}");
    assert_eq!(status["alerts_allowed"], 10, "{status}");
    // Of these two processes only: tests running alongside make executable memory too.
    let mprotects = |exec: &Value| {
        let entity = &exec["process"]["entity_id"];
        events
            .iter()
            .filter(|e| e["event"]["kind"] == "event" && action(e) == "mprotect")
            .filter(|e| &e["process"]["entity_id"] == entity)
            .count()
    };
    assert_eq!(
        (mprotects(allowed), mprotects(flip)),
        (10, 10),
        "every operation is still an event"
    );
}

#[test]
fn loader_variables_are_found_anywhere_in_the_environment() {
    let Some(sensor) = Sensor::start("ldenv") else {
        return;
    };
    let script = r#"
rm -rf /tmp/ld-env && mkdir -p /tmp/ld-env && cd /tmp/ld-env
echo 'void __attribute__((constructor)) f(void) {}' > lib.c && gcc -shared -fPIC -o lib.so lib.c
/usr/bin/python3 - <<'EOF'
import subprocess
env = {"V%04d" % i: "x" * 60 for i in range(3000)}     # about 200 KB before it
env["LD_PRELOAD"] = "/tmp/ld-env/lib.so"
subprocess.run(["/usr/bin/true", "late-preload"], env=env, check=True)
EOF
/lib64/ld-linux-x86-64.so.2 --preload /tmp/ld-env/lib.so /usr/bin/true via-loader
LD_LIBRARY_PATH=/opt/lib /usr/bin/true library-path
cd / && rm -rf /tmp/ld-env
"#;
    let (_, events) = trigger(&sensor, "ldenv", script);
    let exec_with = |arg: &str| {
        with_arg(&events, "exec", arg)
            .into_iter()
            .find(|e| e["event"]["kind"] == "event")
            .unwrap_or_else(|| panic!("no exec with {arg}"))
    };
    let alert_of = |e: &Value| {
        about(&events, e["process"]["entity_id"].as_str().unwrap())
            .into_iter()
            .find(|a| a["event"]["kind"] == "alert")
            .cloned()
    };
    let late = exec_with("late-preload");
    assert_eq!(
        late["process"]["env_vars"][0],
        "LD_PRELOAD=/tmp/ld-env/lib.so",
        "refused: {}",
        sensor.status()["hooks_refused"]
    );
    assert!(late["sensor"]["exec"]["env_scan_incomplete"].is_null());
    let alert = alert_of(late).expect("an alert for the preload");
    assert_eq!(alert["rule"]["name"], "loader-preload");
    assert_eq!(alert["threat"]["technique"]["id"], "T1574.006");
    assert_eq!(alert["sensor"]["memory"]["path"], "/tmp/ld-env/lib.so");

    let loader = exec_with("via-loader");
    assert_eq!(loader["sensor"]["exec"]["loader_invoked"], true);
    assert_eq!(loader["sensor"]["exec"]["loaded_program"], "/usr/bin/true");
    assert!(alert_of(loader).is_some(), "--preload is a preload too");

    let path = exec_with("library-path");
    assert_eq!(path["process"]["env_vars"][0], "LD_LIBRARY_PATH=/opt/lib");
    assert!(
        alert_of(path).is_none(),
        "a library path alone is telemetry"
    );
}

#[test]
fn deleted_binaries_and_memfd_mappings_alert_and_memfd_create_is_an_event() {
    let Some(sensor) = Sensor::start("memfile") else {
        return;
    };
    let script = r#"
rm -rf /tmp/mem-file && mkdir -p /tmp/mem-file && cd /tmp/mem-file
/usr/bin/python3 - <<'EOF'
import mmap, os, shutil
# A program whose file is deleted before it runs.
shutil.copy("/usr/bin/true", "/tmp/mem-file/gone")
fd = os.open("/tmp/mem-file/gone", os.O_RDONLY)
os.unlink("/tmp/mem-file/gone")
pid = os.fork()
if pid == 0:
    os.execve(fd, ["gone", "deleted-run"], {})
os.waitpid(pid, 0)
# Code in a memfd, mapped executable.
m = os.memfd_create("jit-blob", 0)
os.write(m, b"\xc3" + b"\0" * 4095)
region = mmap.mmap(m, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC)
print("memfd mapped", flush=True)
# The page is not faulted in, so the kernel cannot copy it at the syscall: the collector
# reads it from the process when it raises the alert, which needs the process alive.
import time; time.sleep(1)
EOF
cd / && rm -rf /tmp/mem-file
"#;
    let (out, events) = trigger(&sensor, "memfile", script);
    assert!(out.contains("memfd mapped"), "{out}");
    let gone = with_arg(&events, "exec", "deleted-run");
    let exec = gone
        .iter()
        .find(|e| e["event"]["kind"] == "event")
        .expect("the exec of the deleted file");
    assert_eq!(
        process_str(exec, "executable"),
        "/tmp/mem-file/gone (deleted)"
    );
    let alert = gone
        .iter()
        .find(|e| e["event"]["kind"] == "alert")
        .unwrap_or_else(|| panic!("no alert: {}", show(&gone)));
    assert_eq!(alert["rule"]["name"], "exec-deleted-binary");
    assert_eq!(alert["threat"]["technique"]["id"], "T1070.004");

    let created = events
        .iter()
        .find(|e| action(e) == "memfd-create" && e["sensor"]["memory"]["memfd_name"] == "jit-blob")
        .expect("memfd_create is an event");
    assert_eq!(created["event"]["outcome"], "success");
    let mapped: Vec<&Value> = alerts(&events)
        .into_iter()
        .filter(|e| action(e) == "mmap" && e["sensor"]["memory"]["memfd_name"] == "jit-blob")
        .collect();
    assert_eq!(mapped.len(), 1, "{}", show(&mapped));
    let m = &mapped[0]["sensor"]["memory"];
    assert_eq!(
        mapped[0]["rule"]["name"],
        "memory-executable-file-in-memory"
    );
    assert_eq!(m["backing"], "memfd");
    assert_eq!(m["protection"], "r-x");
    let mut page = vec![0u8; 4096];
    page[0] = 0xc3;
    assert_eq!(m["first_page"]["sha256"], sha256(&page), "{m}");
}
