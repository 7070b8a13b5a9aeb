//! File integrity: which watched file or directory changed, by whom, through which call.
//!
//! The collector fills [`WATCHED`] with the device and inode of every watched file and
//! directory, so a file is recognised by identity whatever name reaches it: a hard link
//! elsewhere, a bind mount, a relative or dirfd-relative path, a renamed parent. Four hooks:
//!
//! - `fim_open_exit`, `fim_close_exit`, `fim_dup_exit` (exits of the open, close and dup
//!   families): descriptors open for writing on watched files are followed, and when the last
//!   writer of one goes away the collector compares the content, which covers every way of
//!   writing through a descriptor (the write family, mappings, splice, copy_file_range, AIO).
//! - `fim_ctime_*` (the inode change-time tracepoints, 6.13+): every change to an inode moves
//!   its ctime. Inside a namespace or attribute syscall the watched object is remembered for the
//!   syscall's exit. Inside an open, a new inode followed by its watched directory is a file
//!   created there: watched and reported at once, so no hook runs on every open. Anywhere else
//!   a watched file's content changed, which is reported at once (writers that never close,
//!   mappings that outlive their descriptor, io_uring).
//! - `fim_syscall_exit` (exit of unlink, rename, link, chmod, ...): when the syscall touched a
//!   watched object, one record with its arguments, names as passed with the directory each is
//!   taken against, rebuilt from the kernel's objects.
//!
//! An unwatched file costs one hash lookup in each hook, and nothing is sent for it.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task_btf,
        bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        generated::{bpf_probe_read_user_str, bpf_task_pt_regs},
    },
    macros::{btf_tracepoint, fentry, map, tracepoint},
    maps::{HashMap, LruHashMap},
    programs::{BtfTracePointContext, FEntryContext, TracePointContext},
};
use sensor_common::{
    fim_flags, kind, offsets::optional, watch, CloseSent, FileKey, FimRecord, SyscallPaths,
    Touched, EXEC_SCRATCH, FIM_TOUCHED, PATH_BUF, PATH_SPAN,
};

use crate::{
    kernel::{
        comm, creds, current, exit_ret, fd_cloexec, fd_file, get, get_ptr, is_self,
        leader_start, masked, present, reg, regs, str_len, syscall_nr, task_ids, KPtr, AT_FDCWD,
    },
    maps::{count_lost, off, FIM_EVENTS, SCRATCH},
    path::write_path,
};

/// Watched files and directories by identity; values are bits of [`watch`]. Sized by the
/// collector (`fim.max_watched`).
#[map]
pub static WATCHED: HashMap<FileKey, u32> = HashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// Namespace and attribute syscalls whose exit is hooked, by number, with where their names
/// are; filled by the collector for the syscalls it attached.
#[map]
pub static FIM_SYSCALLS: HashMap<u32, SyscallPaths> = HashMap::with_max_entries(128, 0);

/// The process image (`mm`) whose executable path was last sent, by process id: a process
/// closing watched files in a loop sends its path once, not per record.
#[map]
static EXE_SENT: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// When the last close record of each watched file went out, and the closes left out since.
/// A file closed in a loop sends one record per millisecond; the collector reads the count and
/// checks the file once more after a burst, so the last change is never missed. Read by the
/// collector, hence public.
#[map]
pub static CLOSE_SENT: LruHashMap<FileKey, CloseSent> = LruHashMap::with_max_entries(8192, 0);

/// What an open in progress has changed, by thread id: an inode given its first change time
/// (a file being made) and a watched directory whose entries changed. Both within
/// [`CREATE_WINDOW_NS`] make a create in that directory.
#[map]
static OPENING: LruHashMap<u32, Opening> = LruHashMap::with_max_entries(8192, 0);

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Opening {
    newborn: FileKey,
    newborn_at: u64,
    dir_at: u64,
}

/// One create takes microseconds; changes farther apart belong to different opens.
const CREATE_WINDOW_NS: u64 = 1_000_000;

/// Close records at most this often per file.
const CLOSE_EVERY_NS: u64 = 1_000_000;

/// Watched objects touched by the syscall a thread is in, by thread id, until its exit.
#[map]
static PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(8192, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    nr: u32,
    len: u32,
    /// `struct inode *` of each touched object, to read its link count at the exit.
    inodes: [u64; FIM_TOUCHED],
    touched: [Touched; FIM_TOUCHED],
}

/// `f_mode` bits.
const FMODE_WRITE: u32 = 1 << 1;

const HEADER: usize = core::mem::size_of::<FimRecord>();
/// Every variable-data offset is masked to this span: a no-op (the data ends below it) that
/// gives the verifier a bound.
const DATA_MASK: usize = 8 * PATH_SPAN - 1;

/// Offsets of the return value and first argument in a classic syscall tracepoint's record.
const TP_SYSCALL_NR: usize = 8;
const TP_RET_OR_ARG0: usize = 16;

/// A descriptor of a process: the key of [`WRITERS`].
#[repr(C)]
#[derive(Clone, Copy)]
struct Fd {
    tgid: u32,
    fd: u32,
}

/// A descriptor open for writing on a watched file.
#[repr(C)]
#[derive(Clone, Copy)]
struct Writer {
    key: FileKey,
    inode: u64,
    file: u64,
    /// Start of the process that holds the descriptor: an entry left by a process that
    /// exited is not taken for one of a later process given the same id.
    start: u64,
    /// For a descriptor closed at exec, the address space it was opened in (else 0): an
    /// entry left by an exec that closed it is not taken for the new program's descriptor.
    mm: u64,
}

impl Writer {
    #[inline(always)]
    fn new(task: KPtr, fd: u32, key: FileKey, inode: u64, file: u64) -> Self {
        let mm = if fd_cloexec(task, fd) {
            get_ptr(task, off!(task_mm)) as u64
        } else {
            0
        };
        Writer {
            key,
            inode,
            file,
            start: leader_start(task),
            mm,
        }
    }

    /// Whether this entry still describes a descriptor of `task` (see the fields).
    #[inline(always)]
    fn current(&self, task: KPtr) -> bool {
        self.start == leader_start(task)
            && (self.mm == 0 || self.mm == get_ptr(task, off!(task_mm)) as u64)
    }
}

/// Descriptors open for writing on watched files, filled at the exits of the open family and
/// of the dup family (`fcntl(F_DUPFD)` included), emptied at the exits of `close` and
/// `dup2`/`dup3`. Everything is done at syscall exits: a program at any syscall's entry puts a
/// check on the entry of every syscall of the host (measured: 2.3% off a loop of small
/// writes), the exits are checked already. Descriptors closed otherwise (`close_range`, exec,
/// exit) leave entries that [`Writer::current`] or the next open of the number replaces; their
/// changes are reported when the change time settles.
#[map]
static WRITERS: LruHashMap<Fd, Writer> = LruHashMap::with_max_entries(16384, 0);

/// Open records at most this often per file (the name a file is written through rarely
/// changes within a burst).
#[map]
static OPEN_SENT: LruHashMap<FileKey, CloseSent> = LruHashMap::with_max_entries(8192, 0);

/// Exit of the open family: a descriptor open for writing on a watched file is remembered.
#[tracepoint]
pub fn fim_open_exit(ctx: TracePointContext) -> u32 {
    let _ = try_open_exit(&ctx);
    0
}

fn try_open_exit(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: every syscall exit record has `long ret` at this offset.
    let ret = exit_ret(ctx);
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task_btf() } as KPtr;
    let file = fd_file(task, ret as i32)?;
    let mode: u32 = get(file, off!(file_f_mode));
    if mode & FMODE_WRITE == 0 {
        return None;
    }
    let inode = get_ptr(file, off!(file_f_inode));
    let key = inode_key(inode);
    // SAFETY: the value is copied out at once.
    let flags = unsafe { WATCHED.get(key) }.copied()?;
    if flags & watch::FILE == 0 {
        return None;
    }
    let fd = Fd {
        tgid: bpf_get_current_pid_tgid() as u32,
        fd: ret as u32,
    };
    let writer = Writer::new(task, ret as u32, key, inode as u64, file as u64);
    let _ = WRITERS.insert(fd, writer, 0);
    if !coalesced(&OPEN_SENT, key) {
        send(kind::FIM_OPEN, task, key, file);
    }
    Some(())
}

/// Exit of `close`: the descriptor's file, if watched, lost a writer.
#[tracepoint]
pub fn fim_close_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: every syscall exit record has `long ret` at this offset.
    if exit_ret(&ctx) == 0 {
        let task = current();
        let fd = reg(regs(task), off!(pt_regs_arg0));
        let _ = closed(task, fd as u32);
    }
    0
}

/// Exit of `dup`: a copy of a writer's descriptor is a writer too.
#[tracepoint]
pub fn fim_dup_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: every syscall exit record has `long ret` at this offset.
    if let ret @ 0.. = exit_ret(&ctx) {
        let task = current();
        let old = reg(regs(task), off!(pt_regs_arg0));
        copied(task, old as u32, ret as u32);
    }
    0
}

/// `fcntl` commands that copy a descriptor.
const F_DUPFD: u64 = 0;
const F_DUPFD_CLOEXEC: u64 = 1030;

/// Exit of `fcntl`: `F_DUPFD` and `F_DUPFD_CLOEXEC` copy a descriptor as `dup` does (a shell
/// saves its output this way around a redirection).
#[tracepoint]
pub fn fim_fcntl_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: every syscall exit record has `long ret` at this offset.
    if let ret @ 0.. = exit_ret(&ctx) {
        let task = current();
        let regs = regs(task);
        let cmd = reg(regs, off!(pt_regs_arg1));
        if cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC {
            let old = reg(regs, off!(pt_regs_arg0));
            copied(task, old as u32, ret as u32);
        }
    }
    0
}

/// Exit of `dup2` and `dup3`: whatever the new descriptor held before was closed, and the new
/// descriptor is a writer when the old one was.
#[tracepoint]
pub fn fim_dup2_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: every syscall exit record has `long ret` at this offset.
    let ret = exit_ret(&ctx);
    if ret < 0 {
        return 0;
    }
    let task = current();
    let old = reg(regs(task), off!(pt_regs_arg0));
    if old as u32 != ret as u32 {
        let _ = closed(task, ret as u32);
        copied(task, old as u32, ret as u32);
    }
    0
}
/// Descriptor `new` of the current process is a copy of `old`: a writer when `old` is one.
#[inline(always)]
fn copied(task: KPtr, old: u32, new: u32) {
    let tgid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let Some(w) = (unsafe { WRITERS.get(Fd { tgid, fd: old }) }).copied() else {
        return;
    };
    if w.current(task) {
        let copy = Writer::new(task, new, w.key, w.inode, w.file);
        let _ = WRITERS.insert(Fd { tgid, fd: new }, copy, 0);
    }
}

/// Descriptor `fd` of the current process is gone: when it was a writer of a watched file and
/// the last one, the change is complete and a close record goes out.
#[inline(always)]
fn closed(task: KPtr, fd: u32) -> Option<()> {
    let at = Fd {
        tgid: bpf_get_current_pid_tgid() as u32,
        fd,
    };
    // SAFETY: the value is copied out before the entry is removed.
    let w = unsafe { WRITERS.get(at) }.copied()?;
    let _ = WRITERS.remove(at);
    if !w.current(task) || !last_writer(&w) {
        // Left by an earlier program or process; or another descriptor (a dup, a child's
        // copy) or a mapping still holds the file: the change is complete at the last close,
        // or reported when its change time settles.
        return None;
    }
    if !coalesced(&CLOSE_SENT, w.key) {
        send(kind::FIM_CLOSE, task, w.key, core::ptr::null());
    }
    Some(())
}

/// Whether the file a closed descriptor held has no writer left. `close` releases the file
/// before it returns (6.14+), which leaves the inode's writer count at 0; `dup2` and older
/// kernels' `close` defer the release to the return to user space, when the file's own count
/// is already at none.
#[inline(always)]
fn last_writer(w: &Writer) -> bool {
    let writers: i32 = get(w.inode as KPtr, off!(inode_i_writecount));
    if writers == 0 {
        return true;
    }
    let file = w.file as KPtr;
    if present(optional::FILE_REF) {
        // `file_ref_t`: 0 is one reference, negative (released, dead) is none.
        get::<i64>(file, off!(file_f_ref)) < 0
    } else if present(optional::FILE_COUNT) {
        get::<i64>(file, off!(file_f_count)) == 0
    } else {
        true
    }
}

/// Whether a record about `key` went out less than [`CLOSE_EVERY_NS`] ago (then this one is
/// counted as left out instead); otherwise the time is recorded and the record goes out.
#[inline(always)]
fn coalesced(sent: &LruHashMap<FileKey, CloseSent>, key: FileKey) -> bool {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    match sent.get_ptr_mut(key) {
        // SAFETY: an LRU entry stays valid for the program's run; a race with another CPU only
        // blurs the count, which the collector treats as "closed again".
        Some(s) if now.wrapping_sub(unsafe { (*s).at }) < CLOSE_EVERY_NS => {
            // SAFETY: as above.
            unsafe { (*s).skipped += 1 };
            true
        }
        // SAFETY: as above.
        Some(s) => {
            unsafe { (*s).at = now };
            false
        }
        None => {
            let _ = sent.insert(
                key,
                CloseSent {
                    at: now,
                    skipped: 0,
                },
                0,
            );
            false
        }
    }
}

#[btf_tracepoint(function = "ctime_ns_xchg")]
pub fn fim_ctime_ns_xchg(ctx: BtfTracePointContext) -> i32 {
    let _ = try_ctime(&ctx);
    0
}

#[btf_tracepoint(function = "ctime_xchg_skip")]
pub fn fim_ctime_xchg_skip(ctx: BtfTracePointContext) -> i32 {
    let _ = try_ctime(&ctx);
    0
}

#[btf_tracepoint(function = "inode_set_ctime_to_ts")]
pub fn fim_inode_set_ctime_to_ts(ctx: BtfTracePointContext) -> i32 {
    let _ = try_ctime(&ctx);
    0
}

fn try_ctime(ctx: &BtfTracePointContext) -> Option<()> {
    // The first argument of all three tracepoints is the `struct inode *`.
    inode_changed(ctx.arg(0))
}

/// One inode changing, from whichever hook saw it: remembered for the syscall's exit, counted
/// towards a create inside an open, or reported as a content change of a watched file.
#[inline(always)]
fn inode_changed(inode: KPtr) -> Option<()> {
    if inode.is_null() {
        return None;
    }
    let key = inode_key(inode);
    // SAFETY: the value is copied out at once.
    let watched = unsafe { WATCHED.get(key) }.copied();
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task_btf() } as KPtr;
    let nr = syscall_nr(task);
    // SAFETY: the value is copied out at once.
    let names = unsafe { FIM_SYSCALLS.get(nr) }.copied();
    let flags = match (watched, names) {
        (_, Some(n)) if n.flags & SyscallPaths::OPENS != 0 => {
            return opened(task, key, watched, &n);
        }
        (Some(flags), None) => {
            if flags & watch::FILE != 0 {
                send(kind::FIM_CHANGE, task, key, core::ptr::null());
            }
            return Some(());
        }
        (Some(flags), Some(_)) => flags,
        // A directory being made: kept as a candidate, watched at the exit if its parent is.
        (None, Some(n)) if n.flags & SyscallPaths::ADDS_DIR != 0 => 0,
        (None, _) => return None,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let entry = Touched {
        key,
        nlink: 0,
        flags,
    };
    match PENDING.get_ptr_mut(tid) {
        // SAFETY: the entry is this thread's; only this thread's programs touch it.
        Some(p) if unsafe { (*p).nr } == nr => {
            // SAFETY: as above.
            let p = unsafe { &mut *p };
            let len = p.len as usize;
            for i in 0..FIM_TOUCHED {
                if i < len && p.touched[i].key == key {
                    return Some(());
                }
            }
            if let (Some(slot), Some(ptr)) = (p.touched.get_mut(len), p.inodes.get_mut(len)) {
                *slot = entry;
                *ptr = inode as u64;
                p.len += 1;
            }
        }
        _ => {
            let mut p = Pending {
                nr,
                len: 1,
                inodes: [0; FIM_TOUCHED],
                touched: [Touched::default(); FIM_TOUCHED],
            };
            p.inodes[0] = inode as u64;
            p.touched[0] = entry;
            let _ = PENDING.insert(tid, p, 0);
        }
    }
    Some(())
}

// The same inode changes on kernels without the `timestamp` tracepoints (before 6.13), seen at
// the entry of the functions that make them. The security hooks are called across files from
// the VFS, so no call of theirs is inlined away; each takes the inodes the operation changes.

/// Mode, owner, timestamps and size (chmod, chown, utimes, truncate): the dentry changed.
#[fentry(function = "notify_change")]
pub fn fim_notify_change(ctx: FEntryContext) -> i32 {
    let _ = dentry_changed(ctx.arg(1));
    0
}

/// unlink: the directory and the file losing a link.
#[fentry(function = "security_inode_unlink")]
pub fn fim_inode_unlink(ctx: FEntryContext) -> i32 {
    let _ = inode_changed(ctx.arg(0));
    let _ = dentry_changed(ctx.arg(1));
    0
}

/// rmdir: the parent and the directory removed.
#[fentry(function = "security_inode_rmdir")]
pub fn fim_inode_rmdir(ctx: FEntryContext) -> i32 {
    let _ = inode_changed(ctx.arg(0));
    let _ = dentry_changed(ctx.arg(1));
    0
}

/// rename: both directories, the object moved and the one it replaces, if any.
#[fentry(function = "security_inode_rename")]
pub fn fim_inode_rename(ctx: FEntryContext) -> i32 {
    let _ = inode_changed(ctx.arg(0));
    let _ = dentry_changed(ctx.arg(1));
    let _ = inode_changed(ctx.arg(2));
    let _ = dentry_changed(ctx.arg(3));
    0
}

/// link: the file gaining a name and the directory the name goes in.
#[fentry(function = "security_inode_link")]
pub fn fim_inode_link(ctx: FEntryContext) -> i32 {
    let _ = dentry_changed(ctx.arg(0));
    let _ = inode_changed(ctx.arg(1));
    0
}

/// The directory a name is made in (create, mkdir, mknod, symlink), all first argument.
#[fentry(function = "security_inode_create")]
pub fn fim_inode_create(ctx: FEntryContext) -> i32 {
    let _ = inode_changed(ctx.arg(0));
    0
}

#[fentry(function = "security_inode_mkdir")]
pub fn fim_inode_mkdir(ctx: FEntryContext) -> i32 {
    let _ = inode_changed(ctx.arg(0));
    0
}

#[fentry(function = "security_inode_mknod")]
pub fn fim_inode_mknod(ctx: FEntryContext) -> i32 {
    let _ = inode_changed(ctx.arg(0));
    0
}

#[fentry(function = "security_inode_symlink")]
pub fn fim_inode_symlink(ctx: FEntryContext) -> i32 {
    let _ = inode_changed(ctx.arg(0));
    0
}

/// A new inode given its name: the file an open creates, the directory a mkdir makes (tmpfs
/// and most filesystems). Not `security_d_instantiate`, which every lookup that reads a
/// dentry from disk also calls: a cold lookup under a watched directory would pass for a
/// create there.
#[fentry(function = "d_instantiate")]
pub fn fim_d_instantiate(ctx: FEntryContext) -> i32 {
    let _ = inode_changed(ctx.arg(1));
    0
}

/// [`fim_d_instantiate`] for the filesystems that name a new inode while it is still locked
/// (ext4, btrfs).
#[fentry(function = "d_instantiate_new")]
pub fn fim_d_instantiate_new(ctx: FEntryContext) -> i32 {
    let _ = inode_changed(ctx.arg(1));
    0
}

/// Extended attributes set or removed (the dentry is the second argument before and after
/// 6.3's idmap change).
#[fentry(function = "security_inode_setxattr")]
pub fn fim_inode_setxattr(ctx: FEntryContext) -> i32 {
    let _ = dentry_changed(ctx.arg(1));
    0
}

#[fentry(function = "security_inode_removexattr")]
pub fn fim_inode_removexattr(ctx: FEntryContext) -> i32 {
    let _ = dentry_changed(ctx.arg(1));
    0
}

/// POSIX ACLs set or removed: from 6.2 they go around the xattr hooks and `notify_change`,
/// the filesystem changing mode and times itself.
#[fentry(function = "security_inode_set_acl")]
pub fn fim_inode_set_acl(ctx: FEntryContext) -> i32 {
    let _ = dentry_changed(ctx.arg(1));
    0
}

#[fentry(function = "security_inode_remove_acl")]
pub fn fim_inode_remove_acl(ctx: FEntryContext) -> i32 {
    let _ = dentry_changed(ctx.arg(1));
    0
}

/// Content written through a descriptor or a mapping: the write family, fallocate and
/// page faults on shared mappings move the file's times through one of these two.
#[fentry(function = "file_update_time")]
pub fn fim_file_update_time(ctx: FEntryContext) -> i32 {
    let _ = file_written(ctx.arg(0));
    0
}

#[fentry(function = "file_modified")]
pub fn fim_file_modified(ctx: FEntryContext) -> i32 {
    let _ = file_written(ctx.arg(0));
    0
}

/// The same for writes that carry a kiocb (XFS, 6.0+), which reach neither of the two.
#[fentry(function = "kiocb_modified")]
pub fn fim_kiocb_modified(ctx: FEntryContext) -> i32 {
    let iocb: KPtr = ctx.arg(0);
    let _ = file_written(get_ptr(iocb, off!(kiocb_ki_filp)));
    0
}

/// [`inode_changed`] for a write through `file`. These run on every write of the host, and a
/// write matters only to a watched file, so an unwatched one costs one lookup.
#[inline(always)]
fn file_written(file: KPtr) -> Option<()> {
    let inode = get_ptr(file, off!(file_f_inode));
    // SAFETY: only presence is read.
    unsafe { WATCHED.get(inode_key(inode)) }?;
    inode_changed(inode)
}

/// [`inode_changed`] for the inode behind a dentry; nothing for a negative one.
#[inline(always)]
fn dentry_changed(dentry: KPtr) -> Option<()> {
    if dentry.is_null() {
        return None;
    }
    inode_changed(get_ptr(dentry, off!(dentry_d_inode)))
}

/// A change-time update inside an open: part of a create (see [`OPENING`]), or the
/// truncation of a watched file.
#[inline(always)]
fn opened(task: KPtr, key: FileKey, watched: Option<u32>, names: &SyscallPaths) -> Option<()> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let mut o = OPENING.get_ptr(tid).map_or_else(Opening::default, |p| {
        // SAFETY: this thread's entry, copied out at once.
        unsafe { *p }
    });
    match watched {
        Some(flags) if flags & watch::DIR != 0 => o.dir_at = now,
        Some(flags) => {
            if flags & watch::FILE != 0 {
                send(kind::FIM_CHANGE, task, key, core::ptr::null());
            }
            return Some(());
        }
        None => {
            o.newborn = key;
            o.newborn_at = now;
        }
    }
    let fresh = |at: u64| now.wrapping_sub(at) < CREATE_WINDOW_NS;
    if fresh(o.newborn_at) && fresh(o.dir_at) {
        let _ = OPENING.remove(tid);
        // A full map leaves the file unwatched; the collector's scan of the tree finds it.
        let _ = WATCHED.insert(o.newborn, watch::FILE, 0);
        created(task, o.newborn, names);
    } else {
        let _ = OPENING.insert(tid, o, 0);
    }
    Some(())
}

/// Sends the create record of `key`: the name the open was given and the directory it is taken
/// against (the new file has no dentry yet; its first close brings the rebuilt path).
#[inline(always)]
fn created(task: KPtr, key: FileKey, names: &SyscallPaths) {
    let Some((buf, rec)) = scratch() else {
        return;
    };
    fill(rec, kind::FIM_CREATE, task);
    if is_self(rec.ids.tgid) {
        return;
    }
    rec.key = key;
    rec.syscall_nr = syscall_nr(task);
    // SAFETY: plain helper call; the registers are the current task's, saved at syscall entry.
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as KPtr;
    rec.args[0] = get(regs, off!(pt_regs_arg0));
    rec.args[1] = get(regs, off!(pt_regs_arg1));
    let mut at = HEADER;
    exe(task, buf, &mut at, rec);
    let (n, b) = name(task, names.path0, names.dirfd0, buf, &mut at, rec);
    rec.name0_len = n;
    rec.base0_len = b;
    rec.header.size = at as u32;
    // SAFETY: `at` is below EXEC_SCRATCH; the mask restates it for the verifier.
    let data = unsafe { core::slice::from_raw_parts(buf, at & (EXEC_SCRATCH - 1)) };
    emit(data);
}

#[tracepoint]
pub fn fim_syscall_exit(ctx: TracePointContext) -> u32 {
    let _ = try_syscall_exit(&ctx);
    0
}

fn try_syscall_exit(ctx: &TracePointContext) -> Option<()> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let pending = PENDING.get_ptr(tid)?;
    let sent = syscall_record(ctx, pending);
    // The entry stays readable until the program ends (RCU), so it is removed only now.
    let _ = PENDING.remove(tid);
    sent
}

#[inline(always)]
fn syscall_record(ctx: &TracePointContext, pending: *const Pending) -> Option<()> {
    // SAFETY: `pending` is this thread's entry; only this thread's programs touch it.
    let pending = unsafe { &*pending };
    // SAFETY: every syscall exit record has these fields at these offsets.
    let nr: i32 = unsafe { ctx.read_at(TP_SYSCALL_NR) }.ok()?;
    // SAFETY: as above.
    let ret: i64 = unsafe { ctx.read_at(TP_RET_OR_ARG0) }.ok()?;
    if nr as u32 != pending.nr || ret < 0 {
        return None;
    }
    // SAFETY: the value is copied out at once.
    let names = unsafe { FIM_SYSCALLS.get(pending.nr) }.copied()?;
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task_btf() } as KPtr;

    let (buf, rec) = scratch()?;
    fill(rec, kind::FIM_SYSCALL, task);
    rec.ret = ret;
    rec.syscall_nr = pending.nr;
    rec.touched_len = pending.len;
    // Bits a directory made inside a watched one inherits (zero: no watched parent touched).
    let mut inherit = 0;
    for i in 0..FIM_TOUCHED {
        if pending.touched[i].flags & watch::DIR != 0 {
            inherit = pending.touched[i].flags & (watch::DIR | watch::PARTIAL);
        }
    }
    let mut any_watched = false;
    for i in 0..FIM_TOUCHED {
        let live = i < pending.len as usize;
        let t = &mut rec.touched[i];
        t.key = pending.touched[i].key;
        t.flags = pending.touched[i].flags;
        t.nlink = get(pending.inodes[i] as KPtr, off!(inode_i_nlink));
        if live && t.flags == 0 && inherit != 0 {
            t.flags = inherit;
            let _ = WATCHED.insert(t.key, inherit, 0);
        }
        if live && t.flags != 0 {
            any_watched = true;
        }
        if live && t.flags != 0 && t.nlink == 0 {
            // Gone from the namespace: a later file given the same inode number is not this
            // one. Removed here, in order with the kernel's own reuse of the number.
            let _ = WATCHED.remove(t.key);
        }
    }
    if !any_watched || is_self(rec.ids.tgid) {
        return None;
    }
    // SAFETY: plain helper call; the registers are the current task's, saved at syscall entry.
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as KPtr;
    rec.args[0] = get(regs, off!(pt_regs_arg0));
    rec.args[1] = get(regs, off!(pt_regs_arg1));
    rec.args[2] = get(regs, off!(pt_regs_arg2));
    rec.args[3] = get(regs, off!(pt_regs_arg3));
    rec.args[4] = get(regs, off!(pt_regs_arg4));

    let mut at = HEADER;
    let fd_file = arg_at(&rec.args, names.fd).and_then(|fd| fd_file(task, fd as i32));
    if let Some(file) = fd_file {
        let written = write_path(
            file.wrapping_add(off!(file_f_path)),
            buf.wrapping_add(at & DATA_MASK),
        );
        if written.truncated {
            rec.flags |= fim_flags::PATH_TRUNCATED;
        }
        rec.path_len = written.len as u32;
        at += written.len & (PATH_SPAN - 1);
    }
    exe(task, buf, &mut at, rec);
    let (n, b) = name(task, names.path0, names.dirfd0, buf, &mut at, rec);
    rec.name0_len = n;
    rec.base0_len = b;
    let (n, b) = name(task, names.path1, names.dirfd1, buf, &mut at, rec);
    rec.name1_len = n;
    rec.base1_len = b;

    rec.header.size = at as u32;
    // SAFETY: `at` is below EXEC_SCRATCH (asserted in sensor-common); the mask restates it.
    let data = unsafe { core::slice::from_raw_parts(buf, at & (EXEC_SCRATCH - 1)) };
    emit(data);
    Some(())
}

/// Writes the executable of `task` at `buf + *at` and advances `*at`; nothing for a task
/// without one (a kernel thread), or when this image's path went out before.
#[inline(always)]
fn exe(task: KPtr, buf: *mut u8, at: &mut usize, rec: &mut FimRecord) {
    let mm = get_ptr(task, off!(task_mm));
    let exe_file = get_ptr(mm, off!(mm_exe_file));
    if exe_file.is_null() {
        return;
    }
    let tgid = rec.ids.tgid;
    // SAFETY: the value is copied out at once.
    if unsafe { EXE_SENT.get(tgid) }.copied() == Some(mm as u64) {
        rec.flags |= fim_flags::EXE_SENT_BEFORE;
        return;
    }
    let _ = EXE_SENT.insert(tgid, mm as u64, 0);
    let written = write_path(
        exe_file.wrapping_add(off!(file_f_path)),
        buf.wrapping_add(*at & DATA_MASK),
    );
    if written.truncated {
        rec.flags |= fim_flags::EXE_TRUNCATED;
    }
    rec.exe_len = written.len as u32;
    *at += written.len & (PATH_SPAN - 1);
}

/// Copies one pathname argument (`path` is its index) to `buf + *at`, then, when it is
/// relative, the directory it is taken against; returns both lengths and advances `*at`.
#[inline(always)]
fn name(
    task: KPtr,
    path: u8,
    dirfd: u8,
    buf: *mut u8,
    at: &mut usize,
    rec: &mut FimRecord,
) -> (u32, u32) {
    let Some(user) = arg_at(&rec.args, path) else {
        return (0, 0);
    };
    let dst = buf.wrapping_add(*at & DATA_MASK);
    // SAFETY: `dst` has PATH_REGION >= PATH_BUF bytes of room; the helper never faults.
    let n = unsafe { bpf_probe_read_user_str(dst.cast(), PATH_BUF as u32, user as *const _) };
    if n < 0 {
        rec.flags |= fim_flags::NAME_UNREADABLE;
        return (0, 0);
    }
    let len = masked(str_len(n), PATH_SPAN - 1);
    *at += len;
    // SAFETY: `dst` is inside the scratch slot; the name's first byte.
    if len <= 1 || unsafe { *dst } == b'/' {
        return (len as u32, 0);
    }
    let fd = arg_at(&rec.args, dirfd).map_or(AT_FDCWD, |fd| fd as i32);
    let base = if fd == AT_FDCWD {
        get_ptr(task, off!(task_fs)).wrapping_add(off!(fs_pwd))
    } else {
        match fd_file(task, fd) {
            Some(file) => file.wrapping_add(off!(file_f_path)),
            None => return (len as u32, 0),
        }
    };
    let written = write_path(base, buf.wrapping_add(*at & DATA_MASK));
    if written.truncated {
        rec.flags |= fim_flags::BASE_TRUNCATED;
    }
    let base_len = written.len & (PATH_SPAN - 1);
    *at += base_len;
    (len as u32, base_len as u32)
}

/// Argument `index` of five, `None` for [`SyscallPaths::NONE`].
#[inline(always)]
fn arg_at(args: &[u64; 5], index: u8) -> Option<u64> {
    args.get(index as usize).copied()
}

/// Sends a create, close or change record: the fixed part and, for a file, its path.
#[inline(always)]
fn send(kind: u32, task: KPtr, key: FileKey, file: KPtr) {
    if is_self(crate::kernel::tgid(task)) {
        return;
    }
    let Some((buf, rec)) = scratch() else {
        return;
    };
    fill(rec, kind, task);
    rec.key = key;
    rec.syscall_nr = syscall_nr(task);
    let mut size = HEADER;
    if !file.is_null() {
        let written = write_path(
            file.wrapping_add(off!(file_f_path)),
            buf.wrapping_add(HEADER),
        );
        if written.truncated {
            rec.flags |= fim_flags::PATH_TRUNCATED;
        }
        rec.path_len = written.len as u32;
        size += written.len & (PATH_SPAN - 1);
    }
    exe(task, buf, &mut size, rec);
    rec.header.size = size as u32;
    // SAFETY: `size` is below EXEC_SCRATCH; the mask restates it for the verifier.
    let data = unsafe { core::slice::from_raw_parts(buf, size & (EXEC_SCRATCH - 1)) };
    emit(data);
}

/// Copies a record into FIM's ring buffer; a refusal is counted in `LOST`.
#[inline(always)]
fn emit(data: &[u8]) {
    if FIM_EVENTS.output::<[u8]>(data, 0).is_err() {
        count_lost();
    }
}

/// This CPU's scratch slot, as bytes and as a record.
#[inline(always)]
fn scratch() -> Option<(*mut u8, &'static mut FimRecord)> {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = SCRATCH.get_ptr_mut(cpu) else {
        count_lost();
        return None;
    };
    let buf = buf as *mut u8;
    // SAFETY: the slot is EXEC_SCRATCH bytes, aligned for the map value; programs do not nest
    // on one CPU.
    Some((buf, unsafe { &mut *(buf as *mut FimRecord) }))
}

/// Fills the fixed fields every FIM record has and zeroes the rest.
#[inline(always)]
fn fill(rec: &mut FimRecord, kind: u32, task: KPtr) {
    rec.header.kind = kind;
    // SAFETY: plain helper call.
    rec.header.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    rec.ids = task_ids(task);
    rec.creds = creds(task);
    // SAFETY: plain helper call; the current task is `task`.
    rec.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    rec.key = FileKey::default();
    rec.ret = 0;
    for a in rec.args.iter_mut() {
        *a = 0;
    }
    rec.syscall_nr = u32::MAX;
    rec.flags = 0;
    for t in rec.touched.iter_mut() {
        *t = Touched::default();
    }
    rec.touched_len = 0;
    rec.path_len = 0;
    rec.exe_len = 0;
    rec.name0_len = 0;
    rec.base0_len = 0;
    rec.name1_len = 0;
    rec.base1_len = 0;
    rec.comm = comm(task);
}

/// Device and inode number of `inode`.
#[inline(always)]
fn inode_key(inode: KPtr) -> FileKey {
    FileKey {
        dev: get(get_ptr(inode, off!(inode_i_sb)), off!(sb_s_dev)),
        _pad: 0,
        ino: get(inode, off!(inode_i_ino)),
    }
}
