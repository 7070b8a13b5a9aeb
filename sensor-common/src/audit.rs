//! Wire types of audit records: rule-selected syscalls sent at their exit, with the rules the
//! kernel decided and what the collector needs to write auditd's records.

use crate::{Creds, RecordHeader, SyscallPaths, TaskIds, EXEC_SCRATCH, PATH_BUF, PATH_SPAN};

/// Rules the kernel side can hold; a syscall's rules are a bit set of their indices.
pub const AUDIT_RULES_MAX: u32 = 64;

/// Bytes of a socket address copied (`struct sockaddr_storage` is 128).
pub const SOCKADDR_MAX: usize = 128;

/// The filters of one rule that the kernel decides; the rest (executable, path prefix) are
/// decided by the collector on the record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditRule {
    /// One of [`AuditRule::ANY`], [`AuditRule::SUCCESS`], [`AuditRule::FAILURE`].
    pub outcome: u8,
    /// Bits of [`AuditRule::UID`] and the rest: which ranges below apply.
    pub ranges: u8,
    pub _pad: [u8; 2],
    /// Inclusive ranges, `[low, high]`.
    pub uid: [u32; 2],
    pub auid: [u32; 2],
    pub euid: [u32; 2],
    pub gid: [u32; 2],
}

impl AuditRule {
    pub const ANY: u8 = 0;
    pub const SUCCESS: u8 = 1;
    pub const FAILURE: u8 = 2;
    pub const UID: u8 = 1 << 0;
    pub const AUID: u8 = 1 << 1;
    pub const EUID: u8 = 1 << 2;
    pub const GID: u8 = 1 << 3;
}

/// One audited syscall: the rules naming it, and where its arguments hold names and a socket
/// address. Keyed by syscall number in the `AUDIT_SYSCALLS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditSyscall {
    /// Bit `i`: rule `i` of `AUDIT_RULES` names this syscall.
    pub rules: u64,
    /// Pathname arguments, as for file integrity (`fd` unused).
    pub paths: SyscallPaths,
    /// Argument holding a `struct sockaddr *`, and the one holding its length
    /// ([`SyscallPaths::NONE`] for none).
    pub sockaddr: u8,
    pub socklen: u8,
    /// Bits of [`AuditSyscall::LEN_IS_POINTER`].
    pub flags: u8,
    pub _pad: [u8; 5],
}

impl AuditSyscall {
    /// The length argument points at a `socklen_t` the kernel filled in (accept, accept4):
    /// the address is the peer's, written by the syscall.
    pub const LEN_IS_POINTER: u8 = 1 << 0;
    /// The address argument is a `struct msghdr *` holding the address and its length
    /// (sendmsg); the length argument is unused.
    pub const MSGHDR: u8 = 1 << 1;
}

/// Flags of an [`AuditRecord`].
pub mod audit_flags {
    /// The working directory was cut (its tail kept).
    pub const CWD_TRUNCATED: u32 = 1 << 0;
    /// A pathname argument could not be read from the caller's memory.
    pub const NAME_UNREADABLE: u32 = 1 << 1;
    /// The socket address could not be read.
    pub const SOCKADDR_UNREADABLE: u32 = 1 << 4;

    /// Per name (`<< 0` for the first, `<< 1` for the second): its directory descriptor is
    /// not an open file (the syscall failed with `EBADF`), so it has no directory; the name
    /// was cut (a name the kernel refused as too long); the directory it is taken against was
    /// cut.
    pub const BAD_DIRFD: u32 = 1 << 6;
    pub const NAME_TRUNCATED: u32 = 1 << 8;
    pub const BASE_TRUNCATED: u32 = 1 << 10;
    /// Per name: the directory written for it is the working directory (the name is relative
    /// to `AT_FDCWD`), not a descriptor's.
    pub const BASE_IS_CWD: u32 = 1 << 14;

    /// The names and socket address are the copies taken at the syscall's entry, the ones the
    /// kernel was given.
    pub const ARGS_FROM_ENTRY: u32 = 1 << 12;
    /// No copy from the entry was found (the sensor started mid-syscall, or the copies' map
    /// was full): the names and address are left out.
    pub const ARGS_MISSING: u32 = 1 << 13;
}

/// Names and socket address of an audited syscall, copied at its entry so the caller cannot
/// change them before the exit reads them (another thread rewriting the buffer while the
/// syscall blocks). Kept per thread in the `AUDIT_ENTRIES` map until the exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AuditEntry {
    pub nr: u32,
    /// Bytes of each name, NUL included; 0 for none, `u32::MAX` for unreadable.
    pub name_len: [u32; 2],
    /// Bytes of the address copied, or for accept the room the caller gave for it;
    /// `UNREADABLE` when the address could not be read.
    pub sockaddr_len: u32,
    pub names: [[u8; PATH_BUF]; 2],
    pub sockaddr: [u8; SOCKADDR_MAX],
}

impl AuditEntry {
    /// `name_len` of a name that could not be read.
    pub const UNREADABLE: u32 = u32::MAX;
}

/// A syscall some audit rule selected, sent at its exit. Variable data, in order: the working
/// directory (`cwd_len`; unused, 0), the first name as passed and, for a relative or empty
/// one, the directory it is taken against (`name0_len`, `base0_len`: its descriptor's path, or
/// the working directory, [`audit_flags::BASE_IS_CWD`]), the same for the second name, then
/// the socket address. Paths are dentry components, leaf first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AuditRecord {
    pub header: RecordHeader,
    pub ids: TaskIds,
    pub creds: Creds,
    pub suid: u32,
    pub sgid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    pub cgroup_id: u64,
    /// Rules whose kernel filters matched, as bits of rule indices.
    pub rules: u64,
    /// The syscall's return value.
    pub ret: i64,
    /// Arguments 0 to 4 as passed.
    pub args: [u64; 5],
    pub nr: u32,
    /// Bits of [`audit_flags`].
    pub flags: u32,
    pub comm: [u8; 16],
    /// Controlling terminal's name (`pts0`), empty for none.
    pub tty: [u8; 32],
    pub cwd_len: u32,
    pub name0_len: u32,
    pub base0_len: u32,
    pub name1_len: u32,
    pub base1_len: u32,
    pub sockaddr_len: u32,
}

const _: () = assert!(core::mem::size_of::<AuditRule>() == 36);
const _: () = assert!(core::mem::size_of::<AuditEntry>() == 16 + 2 * PATH_BUF + SOCKADDR_MAX);
const _: () = assert!(core::mem::size_of::<AuditSyscall>() == 24);
const _: () = assert!(core::mem::size_of::<AuditRecord>() == 232);
const _: () =
    assert!(core::mem::size_of::<AuditRecord>() + 8 * PATH_SPAN + SOCKADDR_MAX < EXEC_SCRATCH);

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` struct of integers with explicit padding.
unsafe impl aya::Pod for AuditRule {}
#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` struct of integers with explicit padding.
unsafe impl aya::Pod for AuditSyscall {}
