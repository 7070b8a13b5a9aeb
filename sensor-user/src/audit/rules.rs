//! Audit rules: the `[audit]` table, the built-in ruleset, and their compiled form (the kernel's
//! filter tables and the filters the collector decides).

use std::path::PathBuf;

use sensor_common::{AuditRule, AuditSyscall, AUDIT_RULES_MAX};
use serde::Deserialize;

use super::syscalls;
use crate::config::ConfigError;

/// Audit records: which syscalls, and the auditd-format log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Attach the audit hooks and make audit events.
    pub enabled: bool,
    /// Rules; empty means the built-in ruleset (see README).
    pub rules: Vec<RuleConfig>,
    /// Also apply the built-in ruleset when `rules` is given.
    pub include_default_rules: bool,
    /// auditd-format log to append to (`sensor --audit-log` overrides it); unset for none.
    pub log: Option<PathBuf>,
    /// The log is rotated when it would grow past this many bytes.
    pub log_max_bytes: u64,
    /// Rotated logs kept (`audit.log.1` is the newest).
    pub log_keep: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rules: Vec::new(),
            include_default_rules: false,
            log: None,
            log_max_bytes: 8 * 1024 * 1024,
            log_keep: 5,
        }
    }
}

/// One `[[audit.rules]]` entry: a syscall is recorded when it is named here and every filter
/// given holds.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Carried on every record the rule selects (auditd's `-k`).
    pub key: String,
    /// Syscall names (`execve`, `connect`).
    pub syscalls: Vec<String>,
    /// `success`, `failure` or `any` (the default).
    pub outcome: Option<String>,
    /// A user id or an inclusive `[low, high]` range, of the real, login and effective user
    /// and the real group.
    pub uid: Option<IdRange>,
    pub auid: Option<IdRange>,
    pub euid: Option<IdRange>,
    pub gid: Option<IdRange>,
    /// The acting process's executable, exactly.
    pub executable: Option<String>,
    /// A name the syscall was given, made absolute, starts with this.
    pub path_prefix: Option<String>,
}

/// An id, or an inclusive range of ids.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(
    untagged,
    expecting = "an id (1000) or an inclusive range of ids ([1000, 1999])"
)]
pub enum IdRange {
    One(u32),
    Range([u32; 2]),
}

impl IdRange {
    fn bounds(self) -> [u32; 2] {
        match self {
            Self::One(v) => [v, v],
            Self::Range(r) => r,
        }
    }
}

/// The built-in ruleset: a CIS-style baseline of what changes who a process is, what the
/// kernel runs, and what the system is.
pub fn default_rules() -> Vec<RuleConfig> {
    const SETS: &[(&str, &[&str])] = &[
        ("exec", &["execve", "execveat"]),
        (
            "privilege",
            &[
                "setuid",
                "setgid",
                "setreuid",
                "setregid",
                "setresuid",
                "setresgid",
                "setfsuid",
                "setfsgid",
                "setgroups",
                "capset",
            ],
        ),
        ("modules", &["init_module", "finit_module", "delete_module"]),
        ("mount", &["mount", "umount2", "chroot", "pivot_root"]),
        ("namespaces", &["unshare", "setns"]),
        (
            "time-change",
            &["settimeofday", "clock_settime", "adjtimex", "clock_adjtime"],
        ),
        ("system-locale", &["sethostname", "setdomainname"]),
        ("kexec", &["kexec_load", "kexec_file_load"]),
        ("bpf", &["bpf"]),
        (
            "perm_mod",
            &[
                "chmod",
                "fchmod",
                "fchmodat",
                "fchmodat2",
                "chown",
                "fchown",
                "lchown",
                "fchownat",
                "setxattr",
                "lsetxattr",
                "fsetxattr",
                "removexattr",
                "lremovexattr",
                "fremovexattr",
            ],
        ),
        (
            "delete",
            &[
                "unlink",
                "unlinkat",
                "rename",
                "renameat",
                "renameat2",
                "rmdir",
            ],
        ),
        (
            "network",
            &["socket", "connect", "bind", "listen", "accept", "accept4"],
        ),
    ];
    SETS.iter()
        .map(|(key, names)| RuleConfig {
            key: key.to_string(),
            syscalls: names.iter().map(|n| n.to_string()).collect(),
            ..RuleConfig::default()
        })
        .collect()
}

/// A rule as the collector applies it.
#[derive(Debug, Clone)]
pub struct Rule {
    pub key: String,
    /// Syscall numbers it names.
    pub syscalls: Vec<u32>,
    /// The filters the kernel decides.
    pub kernel: AuditRule,
    pub executable: Option<Vec<u8>>,
    pub path_prefix: Option<Vec<u8>>,
}

/// The rules in force, compiled.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// One audited syscall as the loader sets it up.
pub struct KernelSyscall {
    pub nr: u32,
    /// Its exit tracepoint's possible names, most likely first (`sys_exit_umount` for
    /// `umount2`; `sys_exit_newuname` for `uname`).
    pub tracepoints: Vec<String>,
    pub spec: AuditSyscall,
}

impl RuleSet {
    /// Compiles the configured rules (or the built-in ones); an unknown syscall or a bad
    /// filter names the entry.
    pub fn compile(config: &AuditConfig) -> Result<Self, ConfigError> {
        let mut given = config.rules.clone();
        if given.is_empty() || config.include_default_rules {
            given.extend(default_rules());
        }
        if given.len() > AUDIT_RULES_MAX as usize {
            return Err(bad(format!(
                "has {} rules (the built-in ones included), at most {AUDIT_RULES_MAX}",
                given.len()
            )));
        }
        let user_rules = config.rules.len();
        let mut rules = Vec::new();
        for (i, r) in given.iter().enumerate() {
            // Names in the built-in set that this architecture lacks are left out.
            let strict = i < user_rules;
            rules.push(compile_rule(i, r, strict)?);
        }
        Ok(Self { rules })
    }

    /// Every syscall some rule names and the bit set of those rules, in number order.
    pub fn kernel_syscalls(&self) -> Vec<KernelSyscall> {
        let mut by_nr: std::collections::BTreeMap<u32, u64> = Default::default();
        for (i, rule) in self.rules.iter().enumerate() {
            for &nr in &rule.syscalls {
                *by_nr.entry(nr).or_default() |= 1 << i;
            }
        }
        by_nr
            .into_iter()
            .filter(|(nr, _)| !syscalls::is_exec(*nr))
            .map(|(nr, rules)| {
                let decode = syscalls::decoding(nr);
                KernelSyscall {
                    nr,
                    tracepoints: syscalls::tracepoint_names(nr)
                        .iter()
                        .map(|t| format!("sys_exit_{t}"))
                        .collect(),
                    spec: AuditSyscall {
                        rules,
                        paths: decode.paths,
                        sockaddr: decode.sockaddr,
                        socklen: decode.socklen,
                        flags: decode.flags,
                        _pad: [0; 5],
                    },
                }
            })
            .collect()
    }

    /// Indices of the rules that name syscall `nr`, as a bit set.
    pub fn naming(&self, nr: u32) -> u64 {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.syscalls.contains(&nr))
            .fold(0, |bits, (i, _)| bits | 1 << i)
    }
}

fn bad(problem: String) -> ConfigError {
    ConfigError::Value {
        key: "audit.rules",
        problem,
    }
}

fn compile_rule(i: usize, r: &RuleConfig, strict: bool) -> Result<Rule, ConfigError> {
    let entry = |problem: String| bad(format!("entry {i} (key {:?}): {problem}", r.key));
    if r.key.is_empty() || r.key.len() > 31 || r.key.bytes().any(|b| b <= b' ' || b == b'"') {
        return Err(entry(
            "key must be 1 to 31 printable characters without spaces or quotes".into(),
        ));
    }
    if r.syscalls.is_empty() {
        return Err(entry("names no syscalls".into()));
    }
    let mut numbers = Vec::new();
    for name in &r.syscalls {
        match syscalls::number(name) {
            Some(nr) => numbers.push(nr),
            None if strict => return Err(entry(format!("unknown syscall `{name}`"))),
            None => {}
        }
    }
    let outcome = match r.outcome.as_deref() {
        None | Some("any") => AuditRule::ANY,
        Some("success") => AuditRule::SUCCESS,
        Some("failure") => AuditRule::FAILURE,
        Some(other) => {
            return Err(entry(format!(
                "outcome {other:?}: expected success, failure or any"
            )))
        }
    };
    let mut kernel = AuditRule {
        outcome,
        ..AuditRule::default()
    };
    for (range, bit, slot, field) in [
        (r.uid, AuditRule::UID, &mut kernel.uid, "uid"),
        (r.auid, AuditRule::AUID, &mut kernel.auid, "auid"),
        (r.euid, AuditRule::EUID, &mut kernel.euid, "euid"),
        (r.gid, AuditRule::GID, &mut kernel.gid, "gid"),
    ] {
        if let Some(range) = range {
            let b = range.bounds();
            if b[0] > b[1] {
                return Err(entry(format!("{field} range {b:?} is empty")));
            }
            *slot = b;
            kernel.ranges |= bit;
        }
    }
    for (value, field) in [
        (&r.executable, "executable"),
        (&r.path_prefix, "path_prefix"),
    ] {
        if value.as_deref().is_some_and(|v| !v.starts_with('/')) {
            return Err(entry(format!("{field} must be an absolute path")));
        }
    }
    Ok(Rule {
        key: r.key.clone(),
        syscalls: numbers,
        kernel,
        executable: r.executable.as_ref().map(|s| s.as_bytes().to_vec()),
        path_prefix: r.path_prefix.as_ref().map(|s| s.as_bytes().to_vec()),
    })
}

impl AuditConfig {
    /// Checks the rules and the log settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        RuleSet::compile(self)?;
        if self.log_max_bytes < 4096 {
            return Err(ConfigError::Value {
                key: "audit.log_max_bytes",
                problem: "must be at least 4096".into(),
            });
        }
        if self.log.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(ConfigError::Value {
                key: "audit.log",
                problem: "must be a file path".into(),
            });
        }
        Ok(())
    }
}
