//! The namespace and attribute syscalls whose exits the kernel side hooks, by architecture.
//!
//! Each entry says where the syscall passes its names (see `SyscallPaths`) and what it does
//! to a file, which decides the event the collector makes of it.

use sensor_common::SyscallPaths;

/// What a syscall does to the file it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Unlink,
    Rename,
    Link,
    Symlink,
    Mkdir,
    Mknod,
    /// Mode, owner, timestamps or extended attributes; the name says which.
    Attributes,
    /// Content through the file's size (truncate, fallocate).
    Content,
    /// The open family, for the files it creates; its exit is not hooked.
    Open,
}

/// One hooked syscall.
#[derive(Debug, Clone, Copy)]
pub struct Syscall {
    pub name: &'static str,
    pub nr: u32,
    pub op: Op,
    pub paths: SyscallPaths,
}

const N: u8 = SyscallPaths::NONE;

const fn sc(name: &'static str, nr: u32, op: Op, p: [u8; 5]) -> Syscall {
    let flags = match op {
        Op::Mkdir => SyscallPaths::ADDS_DIR,
        Op::Open => SyscallPaths::OPENS,
        _ => 0,
    };
    Syscall {
        name,
        nr,
        op,
        paths: SyscallPaths {
            path0: p[0],
            dirfd0: p[1],
            path1: p[2],
            dirfd1: p[3],
            fd: p[4],
            flags,
            _pad: [0; 2],
        },
    }
}

/// x86-64 numbers. Slots: first name, its dirfd, second name, its dirfd, file descriptor.
/// For the xattr calls the second "name" is the attribute's name.
#[cfg(target_arch = "x86_64")]
pub const SYSCALLS: &[Syscall] = &[
    sc("unlink", 87, Op::Unlink, [0, N, N, N, N]),
    sc("unlinkat", 263, Op::Unlink, [1, 0, N, N, N]),
    sc("rmdir", 84, Op::Unlink, [0, N, N, N, N]),
    sc("rename", 82, Op::Rename, [0, N, 1, N, N]),
    sc("renameat", 264, Op::Rename, [1, 0, 3, 2, N]),
    sc("renameat2", 316, Op::Rename, [1, 0, 3, 2, N]),
    sc("link", 86, Op::Link, [0, N, 1, N, N]),
    sc("linkat", 265, Op::Link, [1, 0, 3, 2, N]),
    sc("symlink", 88, Op::Symlink, [0, N, 1, N, N]),
    sc("symlinkat", 266, Op::Symlink, [0, N, 2, 1, N]),
    sc("mkdir", 83, Op::Mkdir, [0, N, N, N, N]),
    sc("mkdirat", 258, Op::Mkdir, [1, 0, N, N, N]),
    sc("mknod", 133, Op::Mknod, [0, N, N, N, N]),
    sc("mknodat", 259, Op::Mknod, [1, 0, N, N, N]),
    sc("chmod", 90, Op::Attributes, [0, N, N, N, N]),
    sc("fchmod", 91, Op::Attributes, [N, N, N, N, 0]),
    sc("fchmodat", 268, Op::Attributes, [1, 0, N, N, N]),
    sc("fchmodat2", 452, Op::Attributes, [1, 0, N, N, N]),
    sc("chown", 92, Op::Attributes, [0, N, N, N, N]),
    sc("fchown", 93, Op::Attributes, [N, N, N, N, 0]),
    sc("lchown", 94, Op::Attributes, [0, N, N, N, N]),
    sc("fchownat", 260, Op::Attributes, [1, 0, N, N, N]),
    sc("setxattr", 188, Op::Attributes, [0, N, 1, N, N]),
    sc("lsetxattr", 189, Op::Attributes, [0, N, 1, N, N]),
    sc("fsetxattr", 190, Op::Attributes, [N, N, 1, N, 0]),
    sc("setxattrat", 463, Op::Attributes, [1, 0, 3, N, N]),
    sc("removexattr", 197, Op::Attributes, [0, N, 1, N, N]),
    sc("lremovexattr", 198, Op::Attributes, [0, N, 1, N, N]),
    sc("fremovexattr", 199, Op::Attributes, [N, N, 1, N, 0]),
    sc("removexattrat", 466, Op::Attributes, [1, 0, 3, N, N]),
    sc("utime", 132, Op::Attributes, [0, N, N, N, N]),
    sc("utimes", 235, Op::Attributes, [0, N, N, N, N]),
    sc("utimensat", 280, Op::Attributes, [1, 0, N, N, 0]),
    sc("futimesat", 261, Op::Attributes, [1, 0, N, N, N]),
    sc("truncate", 76, Op::Content, [0, N, N, N, N]),
    sc("ftruncate", 77, Op::Content, [N, N, N, N, 0]),
    sc("fallocate", 285, Op::Content, [N, N, N, N, 0]),
];

/// The open family on x86-64: their names tell the kernel side where a created file's name is.
#[cfg(target_arch = "x86_64")]
pub const OPENS: &[Syscall] = &[
    sc("open", 2, Op::Open, [0, N, N, N, N]),
    sc("creat", 85, Op::Open, [0, N, N, N, N]),
    sc("openat", 257, Op::Open, [1, 0, N, N, N]),
    sc("openat2", 437, Op::Open, [1, 0, N, N, N]),
];

#[cfg(not(target_arch = "x86_64"))]
pub const OPENS: &[Syscall] = &[];

// TODO: aarch64 numbers (it has only the *at forms); until they are listed, FIM there sees
// creates and content changes but not namespace or attribute changes.
#[cfg(not(target_arch = "x86_64"))]
pub const SYSCALLS: &[Syscall] = &[];

/// The entry for syscall number `nr`.
pub fn by_nr(nr: u32) -> Option<&'static Syscall> {
    SYSCALLS.iter().find(|s| s.nr == nr)
}

/// `flags` argument bit of renameat2 that swaps the two names.
pub const RENAME_EXCHANGE: u64 = 1 << 1;
/// `flags` argument bit of unlinkat that removes a directory.
pub const AT_REMOVEDIR: u64 = 0x200;
