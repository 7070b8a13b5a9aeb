//! Records written by the programs into the ring buffer.
//!
//! Layout rules: `#[repr(C)]`, explicit padding, no `bool`, sizes asserted at compile time so
//! the kernel and user sides cannot drift apart.

/// Capacity of the argv copy in an exec record; the copy is `min(args_max, ARGS_BUF - 1)`.
pub const ARGS_BUF: usize = 128 * 1024;
/// Room for one path's components; longer paths keep their tail and set a truncation flag.
pub const PATH_BUF: usize = 4096;
/// Largest single component read (`NAME_MAX` plus its terminator).
pub const NAME_READ: usize = 256;
/// One path region: the component area plus room for the last component read.
pub const PATH_REGION: usize = PATH_BUF + NAME_READ;
/// Components walked per path before giving up (the tail is kept, the flag set).
pub const PATH_COMPONENTS: u32 = 80;
/// Each path region starts at an offset masked to this span, so the verifier can bound it.
pub const PATH_SPAN: usize = 8192;
/// Size of the per-CPU scratch buffer an exec record is assembled in: the fixed part, four
/// path regions and argv all fit below it, and it is a power of two so a length masked with
/// `EXEC_SCRATCH - 1` is provably inside it.
pub const EXEC_SCRATCH: usize = 256 * 1024;
const _: () = assert!(
    core::mem::size_of::<ExecRecord>()
        + 4 * PATH_SPAN
        + PATH_REGION
        + ARGS_BUF
        + ENV_KEPT * ENV_READ
        <= EXEC_SCRATCH
);
const _: () = assert!(
    core::mem::size_of::<ExecRecord>() + 4 * PATH_SPAN + PATH_REGION + ENV_KEPT * ENV_READ
        < EXEC_SCRATCH / 2
);

/// Record kinds, the first field of every record.
pub mod kind {
    pub const FORK: u32 = 1;
    pub const EXEC: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const EXEC_FAILED: u32 = 4;
    /// A file was created in a watched directory by an open (`O_CREAT`).
    pub const FIM_CREATE: u32 = 5;
    /// The last writer of a watched file closed it (`close`, or `dup2`/`dup3` over it).
    pub const FIM_CLOSE: u32 = 6;
    /// A watched file's change time moved outside a namespace or attribute syscall: its
    /// content changed (a write, a mapping, asynchronous I/O).
    pub const FIM_CHANGE: u32 = 7;
    /// A namespace or attribute syscall (unlink, rename, link, chmod, ...) changed a watched
    /// file or directory; sent at the syscall's exit with its arguments.
    pub const FIM_SYSCALL: u32 = 8;
    /// A watched file was opened for writing; the record carries the name it was opened by.
    pub const FIM_OPEN: u32 = 9;
    /// A memory or cross-process operation of interest (see [`mem_op`](crate::mem_op)).
    pub const MEM: u32 = 10;
    /// A syscall selected by an audit rule (see [`AuditRecord`](crate::AuditRecord)).
    pub const AUDIT: u32 = 11;
}

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordHeader {
    /// One of [`kind`].
    pub kind: u32,
    /// Total bytes of the record, header and variable data included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was made.
    pub boot_ns: u64,
}

/// Who a task is: thread id, process id, and the start times that make the pair unique.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskIds {
    pub tid: u32,
    pub tgid: u32,
    /// Thread-group id of the real parent.
    pub ppid: u32,
    pub _pad: u32,
    /// Boot-time start of the thread-group leader, in ns.
    pub start_boottime: u64,
    /// Boot-time start of the real parent's thread-group leader, in ns.
    pub parent_start_boottime: u64,
}

/// Credentials as the kernel holds them (`real_cred`), plus audit identity.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// `u32::MAX` when unset or when the kernel has no audit support.
    pub loginuid: u32,
    /// `u32::MAX` when unset or when the kernel has no audit support.
    pub sessionid: u32,
}

/// Flags of a [`ForkRecord`].
pub mod fork_flags {
    /// The child shares the parent's thread group (a thread, `CLONE_THREAD`).
    pub const THREAD: u32 = 1 << 0;
    /// The child shares the parent's address space (`CLONE_VM`).
    pub const SHARED_VM: u32 = 1 << 1;
    /// The parent waits for the child to exec or exit (`CLONE_VFORK`).
    pub const VFORK: u32 = 1 << 2;
}

/// A task was created: `sched_process_fork`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    pub header: RecordHeader,
    /// The creating task (its `tid` is the calling thread).
    pub parent: TaskIds,
    /// The new task; for a thread, `start_boottime` is its group leader's.
    pub child: TaskIds,
    /// Boot-time start of the new task itself.
    pub child_task_start: u64,
    pub cgroup_id: u64,
    pub creds: Creds,
    /// Bits of [`fork_flags`].
    pub flags: u32,
    /// Syscall number the parent was in, or `u32::MAX` when unknown.
    pub syscall_nr: u32,
    pub comm: [u8; 16],
}

/// Flags of an [`ExecRecord`].
pub mod exec_flags {
    /// argv was longer than the configured cap; the copy is a prefix.
    pub const ARGS_TRUNCATED: u32 = 1 << 0;
    /// The executable path was cut; its tail is kept.
    pub const EXE_TRUNCATED: u32 = 1 << 1;
    /// The working directory was cut; its tail is kept.
    pub const CWD_TRUNCATED: u32 = 1 << 2;
    /// The filename as passed was cut.
    pub const FILENAME_TRUNCATED: u32 = 1 << 3;
    /// The kernel ran an interpreter (`bprm->interp` differs from `bprm->filename`).
    pub const INTERPRETED: u32 = 1 << 4;
    /// The interpreter name was cut.
    pub const INTERP_TRUNCATED: u32 = 1 << 5;
    /// The task had no user memory to read argv from.
    pub const NO_ARGS: u32 = 1 << 6;
    /// The environment scan stopped before its end (more variables than it reads).
    pub const ENV_INCOMPLETE: u32 = 1 << 7;
    /// A loader variable was longer than the copy (`ENV_READ`) and was cut.
    pub const ENV_TRUNCATED: u32 = 1 << 8;
    /// The exec was an execveat through a directory descriptor or `AT_EMPTY_PATH` (fexecve):
    /// the kernel generated its `/dev/fd/N` name.
    pub const EXECVEAT_FD: u32 = 1 << 9;
}

/// Room for one environment variable read by the exec hook's scan.
pub const ENV_READ: usize = 4096;
/// Loader variables copied into an exec record at most.
pub const ENV_KEPT: usize = 4;
/// Environment variables the exec hook's scan reads at most.
pub const ENV_SCAN_MAX: u32 = 65536;

/// A successful exec: `sched_process_exec`, in the new image.
///
/// Variable data follows the fixed part, in this order: executable path, working directory,
/// filename as passed, interpreter name, the loader variables of the environment (`env_len`
/// bytes, NUL-separated `NAME=value`: `LD_PRELOAD`, `LD_AUDIT`, `LD_LIBRARY_PATH`), then argv
/// (`args_len` bytes, NUL-separated). Paths
/// built from dentries are stored leaf first, each component NUL-terminated, so a cut path
/// keeps its tail; the filename and interpreter are plain strings as the caller passed them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: RecordHeader,
    pub ids: TaskIds,
    pub creds: Creds,
    pub exe_ino: u64,
    pub cgroup_id: u64,
    /// Thread id that called exec (differs from `ids.tid` when a non-leader thread exec'd).
    pub old_tid: u32,
    /// True argument count, `bprm->argc`.
    pub argc: u32,
    /// Bytes of the whole argv area in the new image.
    pub args_total: u32,
    pub args_len: u32,
    pub exe_len: u32,
    pub cwd_len: u32,
    pub filename_len: u32,
    pub interp_len: u32,
    /// Bits of [`exec_flags`].
    pub flags: u32,
    pub exe_nlink: u32,
    /// Device of the executable's filesystem, kernel encoding (`MAJOR << 20 | MINOR`).
    pub exe_dev: u32,
    /// `s_magic` of the executable's filesystem (tmpfs/shm origin).
    pub exe_fs_magic: u32,
    pub comm: [u8; 16],
    pub tty: [u8; 32],
    pub env_len: u32,
    /// Environment variables the scan read.
    pub env_count: u32,
    /// The syscall that made the exec (`execve` or `execveat`), from the saved registers;
    /// `u32::MAX` when unknown.
    pub syscall_nr: u32,
    pub _pad: u32,
}

/// Bytes of attempted argv copied for a failed exec; more is cut and flagged.
pub const FAILED_ARGS_BUF: usize = 32 * 1024;
/// Largest single attempted argument read; a longer one is cut and flagged.
pub const FAILED_ARG_READ: usize = 4096;
/// Argument pointers read from a failed exec's argv; past it the count is a lower bound.
pub const FAILED_ARGS_MAX: u32 = 1024;
const _: () = assert!(
    core::mem::size_of::<ExecFailedRecord>() + 2 * PATH_SPAN + FAILED_ARGS_BUF + FAILED_ARG_READ
        <= EXEC_SCRATCH / 2
);

/// Flags of an [`ExecFailedRecord`].
pub mod exec_failed_flags {
    /// The attempt was `execveat` (else `execve`).
    pub const EXECVEAT: u32 = 1 << 0;
    /// The attempted argv did not fit [`super::FAILED_ARGS_BUF`]; the copy is a prefix.
    pub const ARGS_TRUNCATED: u32 = 1 << 1;
    /// argv had more than [`super::FAILED_ARGS_MAX`] pointers; `argc` is a lower bound.
    pub const ARGC_CAPPED: u32 = 1 << 2;
    /// argv (or one of its strings) could not be read from the caller's memory.
    pub const ARGS_UNREADABLE: u32 = 1 << 3;
    /// The filename could not be read from the caller's memory.
    pub const FILENAME_UNREADABLE: u32 = 1 << 4;
    /// The filename filled its buffer and may be cut.
    pub const FILENAME_TRUNCATED: u32 = 1 << 5;
    /// The last copied argument filled its read and is a prefix (also sets `ARGS_TRUNCATED`).
    pub const LAST_ARG_CUT: u32 = 1 << 6;
    /// The base directory path was cut; its tail is kept.
    pub const BASE_TRUNCATED: u32 = 1 << 7;
}

/// An exec that failed: the syscall returned an error and the caller's image is unchanged.
///
/// Variable data follows the fixed part: the filename as passed (`filename_len` bytes with its
/// NUL, from the caller's memory), the directory a relative filename is taken against
/// (`base_len` bytes, leaf first like every dentry path: the working directory, or the
/// directory `dirfd` refers to; empty for an absolute filename), then the attempted argv
/// (`args_len` bytes, NUL-separated, from the caller's memory).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecFailedRecord {
    pub header: RecordHeader,
    pub ids: TaskIds,
    pub creds: Creds,
    pub cgroup_id: u64,
    /// The syscall's return value, a negative errno.
    pub ret: i64,
    /// `dirfd` of an `execveat`.
    pub dirfd: i32,
    /// `flags` of an `execveat`.
    pub at_flags: u32,
    /// Arguments counted in the attempted argv (see `ARGC_CAPPED`).
    pub argc: u32,
    pub args_len: u32,
    pub filename_len: u32,
    pub base_len: u32,
    /// Bits of [`exec_failed_flags`].
    pub flags: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

/// A thread group ended: the last thread of the process passed `sched_process_exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: RecordHeader,
    /// `tid` is the thread that exited last.
    pub ids: TaskIds,
    /// Wait status as the kernel keeps it: `code << 8 | signal`.
    pub exit_code: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

/// Identity of a file the kernel side watches: its filesystem's device and its inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    /// `super_block.s_dev`, kernel encoding (`MAJOR << 20 | MINOR`).
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// Values of the watched-file map.
pub mod watch {
    /// A watched file (any type but directory): its content and attributes are watched.
    pub const FILE: u32 = 1 << 0;
    /// A watched directory: files created, removed or renamed in it are reported.
    pub const DIR: u32 = 1 << 1;
    /// With `DIR`: a directory on the way to a watched path (its parent, or an ancestor of a
    /// watched tree that does not exist yet). The kernel reports creates in it all the same,
    /// and the collector keeps only the names that lead to a watched path.
    pub const PARTIAL: u32 = 1 << 2;
}

/// How a namespace or attribute syscall passes its file names, by argument index; filled in
/// per architecture by the collector. `NONE` marks an unused slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallPaths {
    /// Argument holding the first pathname, and the one holding its directory descriptor
    /// (`NONE`: relative to the working directory).
    pub path0: u8,
    pub dirfd0: u8,
    /// Second pathname (rename, link, symlink targets) and its directory descriptor.
    pub path1: u8,
    pub dirfd1: u8,
    /// Argument holding a descriptor of the file itself (fchmod, ftruncate, ...).
    pub fd: u8,
    /// Bits of `SyscallPaths::ADDS_DIR`.
    pub flags: u8,
    pub _pad: [u8; 2],
}

impl SyscallPaths {
    pub const NONE: u8 = 0xff;
    /// The syscall creates a directory (mkdir): one made inside a watched directory is added
    /// to the watched set by the kernel at the syscall's exit, with its parent's bits, so
    /// files created in it at once are not missed.
    pub const ADDS_DIR: u8 = 1 << 0;
    /// The open family: its exit is not hooked. A file it creates is seen at the change-time
    /// updates the create makes (the new inode, then its directory), reported there.
    pub const OPENS: u8 = 1 << 1;
}

/// Close records of one watched file: when the last went out, and how many closes the kernel
/// left out since (it sends at most one per millisecond per file).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseSent {
    pub at: u64,
    pub skipped: u64,
}

/// Watched objects one syscall touched, at most this many are kept.
pub const FIM_TOUCHED: usize = 4;

/// One watched object a syscall touched.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Touched {
    pub key: FileKey,
    /// Link count after the syscall.
    pub nlink: u32,
    /// Bits of [`watch`] of the map entry; for a directory the syscall created inside a
    /// watched one, the bits the kernel gave it.
    pub flags: u32,
}

/// Flags of a [`FimRecord`].
pub mod fim_flags {
    /// The path of the file was cut; its tail is kept.
    pub const PATH_TRUNCATED: u32 = 1 << 0;
    /// A pathname argument could not be read from the caller's memory.
    pub const NAME_UNREADABLE: u32 = 1 << 1;
    /// A base directory was cut; its tail is kept.
    pub const BASE_TRUNCATED: u32 = 1 << 2;
    /// The executable's path was cut; its tail is kept.
    pub const EXE_TRUNCATED: u32 = 1 << 3;
    /// No executable path: this process image's was sent in an earlier record.
    pub const EXE_SENT_BEFORE: u32 = 1 << 4;
    /// The file was opened with `O_TRUNC`.
    pub const TRUNCATED_OPEN: u32 = 1 << 3;
}

/// A file-integrity record: one of the `FIM_*` [`kind`]s.
///
/// Variable data follows the fixed part: the file's path rebuilt from its dentry (`path_len`;
/// for create and close the file itself, for a syscall the file behind its `fd` argument),
/// the acting process's executable (`exe_len`), then for a syscall its two pathname arguments
/// as passed (`name0_len`, `name1_len`), each followed by the directory it is taken against
/// when relative (`base0_len`, `base1_len`). Dentry paths are leaf first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FimRecord {
    pub header: RecordHeader,
    pub ids: TaskIds,
    pub creds: Creds,
    pub cgroup_id: u64,
    /// The file created, closed or changed; zero for a syscall record.
    pub key: FileKey,
    /// The syscall's return value (syscall records).
    pub ret: i64,
    /// The syscall's first five arguments (syscall records).
    pub args: [u64; 5],
    /// Syscall number the task was in, or `u32::MAX` when unknown.
    pub syscall_nr: u32,
    /// Bits of [`fim_flags`].
    pub flags: u32,
    pub touched: [Touched; FIM_TOUCHED],
    pub touched_len: u32,
    pub path_len: u32,
    pub exe_len: u32,
    pub name0_len: u32,
    pub base0_len: u32,
    pub name1_len: u32,
    pub base1_len: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

/// Bytes of a FIM record's variable data at most: two dentry paths, two names, two bases.
pub const FIM_VARIABLE: usize = 6 * PATH_SPAN;
const _: () =
    assert!(core::mem::size_of::<FimRecord>() + FIM_VARIABLE + PATH_REGION <= EXEC_SCRATCH);

/// What a [`MemRecord`] reports.
pub mod mem_op {
    /// `memfd_create`; `flags` are its flags, the variable data its name.
    pub const MEMFD_CREATE: u32 = 1;
    /// `mmap` making executable memory: anonymous, writable and executable, or backed by a
    /// file on tmpfs or one with no name left.
    pub const MMAP: u32 = 2;
    /// `mprotect` adding execute permission.
    pub const MPROTECT: u32 = 3;
    /// `ptrace` attaching to or writing into another process; `flags` is the request.
    pub const PTRACE: u32 = 4;
    /// `process_vm_writev`; `ret` is the bytes written.
    pub const VM_WRITEV: u32 = 5;
    /// An open for writing of a process's `mem` file in procfs; the data is its path.
    pub const PROC_MEM_OPEN: u32 = 6;
}

/// `prev_prot` when the protection before an `mprotect` is not known.
pub const PROT_UNKNOWN: u32 = u32::MAX;

/// A memory or cross-process operation, sent at the syscall's exit. Variable data: for memory
/// made executable, the region's first page as it was then (`page_len` bytes, 0 when not
/// present in memory); then a name or path (`path_len` bytes): the memfd name as passed, or the
/// dentry path (leaf first) of the file behind a mapping or of the procfs `mem` file opened.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemRecord {
    pub header: RecordHeader,
    pub ids: TaskIds,
    pub creds: Creds,
    /// One of [`mem_op`].
    pub op: u32,
    /// Protection asked for (`mmap`, `mprotect`).
    pub prot: u32,
    /// The syscall's return value.
    pub ret: i64,
    /// Start of the region (`mmap`'s result, `mprotect`'s argument) or `ptrace`'s address.
    pub addr: u64,
    /// Length of the region, or `ptrace`'s data word.
    pub len: u64,
    /// `mmap` or `memfd_create` flags, the `ptrace` request, or the open flags.
    pub flags: u64,
    /// Protection of the region before an `mprotect`, or [`PROT_UNKNOWN`].
    pub prev_prot: u32,
    /// The `mmap` descriptor.
    pub fd: i32,
    /// Process the operation is aimed at (`ptrace`, `process_vm_writev`).
    pub target: u32,
    /// The backing file's link count, filesystem magic and inode (`mmap` of a file).
    pub file_nlink: u32,
    pub file_magic: u32,
    pub path_len: u32,
    pub file_ino: u64,
    /// Bit 0: the path or name was cut.
    pub truncated: u32,
    pub page_len: u32,
    /// Executable-memory records of this process left out since the last one (a per-process
    /// limit per second).
    pub skipped: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

/// Bytes of a region copied into a [`MemRecord`].
pub const MEM_PAGE: usize = 4096;

const _: () = assert!(core::mem::size_of::<MemRecord>() == 176);
const _: () = assert!(core::mem::size_of::<MemRecord>() + MEM_PAGE + PATH_REGION <= EXEC_SCRATCH);
const _: () = assert!(core::mem::size_of::<RecordHeader>() == 16);
const _: () = assert!(core::mem::size_of::<TaskIds>() == 32);
const _: () = assert!(core::mem::size_of::<Creds>() == 24);
const _: () = assert!(core::mem::size_of::<ForkRecord>() == 144);
const _: () = assert!(core::mem::size_of::<ExecRecord>() == 200);
const _: () = assert!(core::mem::size_of::<ExitRecord>() == 72);
const _: () = assert!(core::mem::size_of::<ExecFailedRecord>() == 136);
const _: () = assert!(core::mem::size_of::<FileKey>() == 16);
const _: () = assert!(core::mem::size_of::<SyscallPaths>() == 8);
const _: () = assert!(core::mem::size_of::<Touched>() == 24);
const _: () = assert!(core::mem::size_of::<CloseSent>() == 16);
const _: () = assert!(core::mem::size_of::<FimRecord>() == 296);

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` struct of integers with explicit padding.
unsafe impl aya::Pod for FileKey {}
#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` struct of bytes.
unsafe impl aya::Pod for SyscallPaths {}
#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` struct of two u64.
unsafe impl aya::Pod for CloseSent {}
