//! Syscall names and numbers of this architecture (from the `syscalls` crate), and where each
//! audited syscall passes its names and socket address.

use std::str::FromStr;

use ::syscalls::Sysno;
use sensor_common::{AuditSyscall, SyscallPaths};

/// auditd's architecture token for this machine (`AUDIT_ARCH_*`), and its name.
#[cfg(target_arch = "x86_64")]
pub const ARCH: (&str, &str) = ("c000003e", "x86_64");
#[cfg(target_arch = "aarch64")]
pub const ARCH: (&str, &str) = ("c00000b7", "aarch64");

const N: u8 = SyscallPaths::NONE;

/// Where a syscall's arguments hold names and a socket address.
#[derive(Debug, Clone, Copy)]
pub struct Decoding {
    pub paths: SyscallPaths,
    pub sockaddr: u8,
    pub socklen: u8,
    pub flags: u8,
}

/// What a name does to the file it names, as auditd's `nametype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameType {
    Normal,
    Create,
    Delete,
}

impl NameType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Create => "CREATE",
            Self::Delete => "DELETE",
        }
    }
}

/// Names: (syscall, first name, its dirfd, second name, its dirfd, what each does).
const NAMES: &[(&str, [u8; 4], [NameType; 2])] = {
    use NameType::*;
    &[
        ("open", [0, N, N, N], [Normal, Normal]),
        ("openat", [1, 0, N, N], [Normal, Normal]),
        ("openat2", [1, 0, N, N], [Normal, Normal]),
        ("creat", [0, N, N, N], [Create, Normal]),
        ("truncate", [0, N, N, N], [Normal, Normal]),
        ("chmod", [0, N, N, N], [Normal, Normal]),
        ("fchmodat", [1, 0, N, N], [Normal, Normal]),
        ("fchmodat2", [1, 0, N, N], [Normal, Normal]),
        ("chown", [0, N, N, N], [Normal, Normal]),
        ("lchown", [0, N, N, N], [Normal, Normal]),
        ("fchownat", [1, 0, N, N], [Normal, Normal]),
        ("setxattr", [0, N, N, N], [Normal, Normal]),
        ("lsetxattr", [0, N, N, N], [Normal, Normal]),
        ("removexattr", [0, N, N, N], [Normal, Normal]),
        ("lremovexattr", [0, N, N, N], [Normal, Normal]),
        ("unlink", [0, N, N, N], [Delete, Normal]),
        ("unlinkat", [1, 0, N, N], [Delete, Normal]),
        ("rmdir", [0, N, N, N], [Delete, Normal]),
        ("rename", [0, N, 1, N], [Delete, Create]),
        ("renameat", [1, 0, 3, 2], [Delete, Create]),
        ("renameat2", [1, 0, 3, 2], [Delete, Create]),
        ("link", [0, N, 1, N], [Normal, Create]),
        ("linkat", [1, 0, 3, 2], [Normal, Create]),
        ("symlink", [1, N, N, N], [Create, Normal]),
        ("symlinkat", [2, 1, N, N], [Create, Normal]),
        ("mkdir", [0, N, N, N], [Create, Normal]),
        ("mkdirat", [1, 0, N, N], [Create, Normal]),
        ("mknod", [0, N, N, N], [Create, Normal]),
        ("mknodat", [1, 0, N, N], [Create, Normal]),
        ("mount", [0, N, 1, N], [Normal, Normal]),
        ("umount2", [0, N, N, N], [Normal, Normal]),
        ("chroot", [0, N, N, N], [Normal, Normal]),
        ("chdir", [0, N, N, N], [Normal, Normal]),
        ("pivot_root", [0, N, 1, N], [Normal, Normal]),
        ("acct", [0, N, N, N], [Normal, Normal]),
        ("swapon", [0, N, N, N], [Normal, Normal]),
        ("swapoff", [0, N, N, N], [Normal, Normal]),
    ]
};

/// Socket addresses: (syscall, address argument, length argument, flags of
/// `AuditSyscall`).
const SOCKADDRS: &[(&str, u8, u8, u8)] = &[
    ("connect", 1, 2, 0),
    ("bind", 1, 2, 0),
    ("accept", 1, 2, AuditSyscall::LEN_IS_POINTER),
    ("accept4", 1, 2, AuditSyscall::LEN_IS_POINTER),
    ("sendto", 4, 5, 0),
    ("sendmsg", 1, 1, AuditSyscall::MSGHDR),
];

/// The number of syscall `name` on this architecture.
pub fn number(name: &str) -> Option<u32> {
    Sysno::from_str(name).ok().map(|s| s.id() as u32)
}

/// The name of syscall `nr`, or its number as text.
pub fn name(nr: u32) -> String {
    Sysno::new(nr as usize).map_or_else(|| nr.to_string(), |s| s.name().to_string())
}

/// The names the kernel's syscall tracepoints may use for `nr` (its `SYSCALL_DEFINE` name),
/// most likely first: the syscall's own name, or the one it is defined under
/// (`umount2` is `umount`, `sendfile` is `sendfile64`, `uname` and the stat family are
/// `newuname`, `newstat`, ...).
pub fn tracepoint_names(nr: u32) -> Vec<String> {
    let n = name(nr);
    let defined = match n.as_str() {
        "umount2" => Some("umount"),
        "sendfile" => Some("sendfile64"),
        _ => None,
    };
    match defined {
        Some(d) => vec![d.to_string()],
        None => vec![n.clone(), format!("new{n}")],
    }
}

/// Exec is audited from the exec records, not from a syscall exit.
pub fn is_exec(nr: u32) -> bool {
    matches!(name(nr).as_str(), "execve" | "execveat")
}

/// Where syscall `nr` passes names and a socket address.
pub fn decoding(nr: u32) -> Decoding {
    let n = name(nr);
    let mut d = Decoding {
        paths: SyscallPaths {
            path0: N,
            dirfd0: N,
            path1: N,
            dirfd1: N,
            fd: N,
            flags: 0,
            _pad: [0; 2],
        },
        sockaddr: N,
        socklen: N,
        flags: 0,
    };
    if let Some((_, p, _)) = NAMES.iter().find(|(s, _, _)| *s == n) {
        d.paths.path0 = p[0];
        d.paths.dirfd0 = p[1];
        d.paths.path1 = p[2];
        d.paths.dirfd1 = p[3];
    }
    if let Some(&(_, addr, len, flags)) = SOCKADDRS.iter().find(|(s, ..)| *s == n) {
        d.sockaddr = addr;
        d.socklen = len;
        d.flags = flags;
    }
    d
}

/// What the first and second names of syscall `nr` do.
pub fn name_types(nr: u32) -> [NameType; 2] {
    let n = name(nr);
    NAMES
        .iter()
        .find(|(s, _, _)| *s == n)
        .map_or([NameType::Normal; 2], |(_, _, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip_and_every_table_entry_exists() {
        let nr = number("connect").expect("connect is a syscall");

        assert_eq!(name(nr), "connect");
        assert_eq!(number("no_such_call"), None);
        for (n, _, _) in NAMES {
            assert!(number(n).is_some(), "{n} is not a syscall here");
        }
        assert_eq!(tracepoint_names(number("umount2").unwrap()), ["umount"]);
        assert_eq!(
            tracepoint_names(number("uname").unwrap()),
            ["uname", "newuname"]
        );
    }
}
