use sensor_proto::v1::{ExecAttempt, ExecDetail, Process};

use super::*;
use crate::config::Config;

fn rules(toml: &str) -> RuleSet {
    let config = Config::from_toml(toml).expect("valid config");
    RuleSet::compile(config.audit().expect("audit on")).expect("rules compile")
}

fn exec_event(uid: u32, exe: &str, failed_errno: Option<i32>) -> Event {
    Event {
        action: "exec".into(),
        process: Some(Process {
            uid,
            executable: exe.as_bytes().to_vec(),
            working_directory: b"/tmp".to_vec(),
            ..Process::default()
        }),
        exec: Some(ExecDetail {
            filename: b"./x".to_vec(),
            attempt: failed_errno.map(|errno| ExecAttempt {
                errno,
                path: b"/tmp/x".to_vec(),
                ..ExecAttempt::default()
            }),
            ..ExecDetail::default()
        }),
        ..Event::default()
    }
}

#[test]
fn bad_rules_name_the_entry_and_the_problem() {
    let cases = [
        (
            "[[audit.rules]]\nkey = \"k\"\nsyscalls = [\"nope\"]\n",
            "unknown syscall `nope`",
        ),
        (
            "[[audit.rules]]\nkey = \"\"\nsyscalls = [\"connect\"]\n",
            "key must be",
        ),
        (
            "[[audit.rules]]\nkey = \"k\"\nsyscalls = []\n",
            "names no syscalls",
        ),
        (
            "[[audit.rules]]\nkey = \"k\"\nsyscalls = [\"connect\"]\nuid = [5, 1]\n",
            "uid range [5, 1] is empty",
        ),
        (
            "[[audit.rules]]\nkey = \"k\"\nsyscalls = [\"connect\"]\noutcome = \"ok\"\n",
            "outcome \"ok\"",
        ),
    ];

    for (toml, problem) in cases {
        let err = Config::from_toml(toml).expect_err(toml).to_string();
        assert!(
            err.contains("audit.rules") && err.contains(problem),
            "{err}"
        );
    }
}

#[test]
fn without_rules_the_builtin_set_applies_and_exec_is_left_to_the_exec_records() {
    let set = rules("[audit]\n");
    let nrs: Vec<u32> = set.kernel_syscalls().iter().map(|s| s.nr).collect();

    let connect = syscalls::number("connect").unwrap();
    assert!(nrs.contains(&connect));
    assert!(!nrs.contains(&syscalls::number("execve").unwrap()));
    assert_ne!(set.naming(syscalls::number("execve").unwrap()), 0);
    let spec = set
        .kernel_syscalls()
        .into_iter()
        .find(|s| s.nr == connect)
        .unwrap();
    assert_eq!((spec.spec.sockaddr, spec.spec.socklen), (1, 2));
}

#[test]
fn exec_rules_apply_outcome_uid_and_executable_filters() {
    let set = rules(
        "[[audit.rules]]\nkey = \"fails\"\nsyscalls = [\"execve\"]\noutcome = \"failure\"\n\
         [[audit.rules]]\nkey = \"users\"\nsyscalls = [\"execve\"]\nuid = [1000, 1999]\n\
         [[audit.rules]]\nkey = \"curl\"\nsyscalls = [\"execve\"]\nexecutable = \"/usr/bin/curl\"\n",
    );
    let execve = syscalls::number("execve").unwrap();
    let tags = |e: Option<Event>| e.map(|e| e.tags).unwrap_or_default();

    let root_ok = from_exec(&set, &exec_event(0, "/usr/bin/ls", None), execve);
    let user_failed = from_exec(&set, &exec_event(1000, "/usr/bin/ls", Some(2)), execve);
    let curl = from_exec(&set, &exec_event(0, "/usr/bin/curl", None), execve);

    assert!(root_ok.is_none());
    let failed = user_failed.clone().unwrap();
    assert_eq!(tags(user_failed), ["fails", "users"]);
    assert_eq!(failed.audit.as_ref().unwrap().errno, "ENOENT");
    assert_eq!(failed.audit.unwrap().exit, -2);
    assert_eq!(tags(curl), ["curl"]);
}

#[test]
fn path_prefix_matches_names_made_absolute() {
    let set =
        rules("[[audit.rules]]\nkey = \"etc\"\nsyscalls = [\"unlink\"]\npath_prefix = \"/etc/\"\n");
    let paths = |p: &str| {
        vec![AuditPath {
            path: p.as_bytes().to_vec(),
            ..AuditPath::default()
        }]
    };

    let me = std::process::id();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("etclink");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let through_link = format!("{}/passwd", link.display());

    assert_eq!(
        keys(&set, 1, me, b"/bin/rm", &paths("/etc/passwd")),
        ["etc"]
    );
    assert!(keys(&set, 1, me, b"/bin/rm", &paths("/tmp/etc/passwd")).is_empty());
    assert_eq!(
        keys(&set, 1, me, b"/bin/rm", &paths(&through_link)),
        ["etc"]
    );
    assert_eq!(
        keys(&set, 1, me, b"/bin/rm", &paths("")),
        ["etc"],
        "unresolved: kept"
    );
    let no_base = Default::default();
    assert_eq!(resolve(b"x", &no_base, Some(b"/etc")), b"/etc/x".to_vec());
    assert_eq!(
        resolve(b"../etc/x", &no_base, Some(b"/tmp")),
        b"/etc/x".to_vec()
    );
    assert_eq!(
        resolve(b"/tmp/../../etc/./x", &no_base, None),
        b"/etc/x".to_vec()
    );
}
