//! Memory and cross-process operations, each at its syscall's exit (the arguments from the
//! caller's saved registers, the outcome from the return value):
//!
//! - `mem_mmap_exit`, `mem_mprotect_exit`: memory made executable that no file on disk
//!   explains: anonymous, writable and executable at once, or backed by a file on tmpfs (a
//!   memfd, `/dev/shm`) or one with no name left. Ordinary file-backed code mappings (the
//!   loader mapping a library) are filtered out here. The protection an `mprotect` replaced
//!   comes from [`PROTS`], which follows anonymous mappings from their `mmap`.
//! - `mem_memfd_exit`: `memfd_create`, with the name and flags.
//! - `mem_ptrace_exit`: `ptrace` requests that attach to or write into another process.
//! - `mem_vm_writev_exit`: `process_vm_writev`.
//! - `mem_open_exit` (open family): an open for writing of a procfs `mem` file, by any of its
//!   names (`/proc/<pid>/mem`, `/proc/<pid>/task/<tid>/mem`), recognised by the file's
//!   filesystem and dentry name, not by the path string.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns,
        generated::{bpf_probe_read_user, bpf_probe_read_user_str},
    },
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use sensor_common::{
    kind, mem_op, MemRecord, EXEC_SCRATCH, MEM_PAGE, NAME_READ, PATH_SPAN, PROT_UNKNOWN,
};

use crate::{
    kernel::{
        comm, creds, current, exit_ret, fd_file, get, get_ptr, is_self, reg, regs, str_len,
        task_ids, KPtr,
    },
    maps::{off, output, SCRATCH},
    path::write_path,
};

const HEADER: usize = core::mem::size_of::<MemRecord>();

const PROT_WRITE: u64 = 0x2;
const PROT_EXEC: u64 = 0x4;
const MAP_ANONYMOUS: u64 = 0x20;
const FMODE_WRITE: u32 = 0x2;
const TMPFS_MAGIC: u32 = 0x0102_1994;
const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;
const PROC_SUPER_MAGIC: u32 = 0x9fa0;

/// `ptrace` requests reported: attaching, and every way of writing into the tracee.
const PTRACE_REQUESTS: [u64; 8] = [
    4,      // PTRACE_POKETEXT
    5,      // PTRACE_POKEDATA
    6,      // PTRACE_POKEUSER
    13,     // PTRACE_SETREGS
    15,     // PTRACE_SETFPREGS
    16,     // PTRACE_ATTACH
    0x4205, // PTRACE_SETREGSET
    0x4206, // PTRACE_SEIZE
];

/// A region of a process: the key of [`PROTS`].
#[repr(C)]
#[derive(Clone, Copy)]
struct Region {
    tgid: u32,
    _pad: u32,
    start: u64,
}

/// Protection of anonymous mappings by their start, from `mmap` and later `mprotect`s of the
/// same start, so an `mprotect` that adds execute can say what it replaced. Least recently
/// used entries go first; a miss reports the previous protection as unknown.
#[map]
static PROTS: LruHashMap<Region, u32> = LruHashMap::with_max_entries(65536, 0);

/// Executable-memory records per process and second at most; the rest are counted and the
/// count rides on the next record that goes out (a JIT makes pages executable thousands of
/// times a second).
const EXEC_RECORDS_PER_SEC: u32 = 64;

/// Per process: the current second's start, records sent in it, records left out since the
/// last one sent.
#[repr(C)]
#[derive(Clone, Copy)]
struct Budget {
    second: u64,
    sent: u32,
    skipped: u32,
}

#[map]
static BUDGETS: LruHashMap<u32, Budget> = LruHashMap::with_max_entries(8192, 0);

/// Whether an executable-memory record of the current process may go out now; `Some(left
/// out before it)` when it may.
#[inline(always)]
fn budget() -> Option<u32> {
    let tgid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let second = now / 1_000_000_000;
    let Some(b) = BUDGETS.get_ptr_mut(tgid) else {
        let fresh = Budget {
            second,
            sent: 1,
            skipped: 0,
        };
        let _ = BUDGETS.insert(tgid, fresh, 0);
        return Some(0);
    };
    // SAFETY: an LRU entry stays valid for the program's run; a race with another thread of
    // the process only blurs the counts.
    let b = unsafe { &mut *b };
    if b.second != second {
        b.second = second;
        b.sent = 0;
    }
    if b.sent >= EXEC_RECORDS_PER_SEC {
        b.skipped += 1;
        return None;
    }
    b.sent += 1;
    Some(core::mem::take(&mut b.skipped))
}


#[inline(always)]
fn ret(ctx: &TracePointContext) -> Option<i64> {
    Some(exit_ret(ctx))
}

/// This CPU's scratch slot as a zeroed record with the common fields filled, or `None` for
/// the sensor's own activity.
#[inline(always)]
fn record(task: KPtr, op: u32) -> Option<(*mut u8, &'static mut MemRecord)> {
    let ids = task_ids(task);
    if is_self(ids.tgid) {
        return None;
    }
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let buf = SCRATCH.get_ptr_mut(cpu)? as *mut u8;
    // SAFETY: the slot is EXEC_SCRATCH bytes, aligned for the map value; programs do not nest
    // on one CPU.
    let rec = unsafe { &mut *(buf as *mut MemRecord) };
    // SAFETY: as above; every field of MemRecord is an integer, for which zeros are valid.
    unsafe { core::ptr::write_bytes(buf, 0, HEADER) };
    rec.header.kind = kind::MEM;
    // SAFETY: plain helper call.
    rec.header.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    rec.ids = ids;
    rec.creds = creds(task);
    rec.comm = comm(task);
    rec.op = op;
    rec.prev_prot = PROT_UNKNOWN;
    Some((buf, rec))
}

/// Copies the first page of the region at `addr` after the fixed part, when it is in memory
/// (a page never touched is not, and reads as missing); returns the bytes copied.
#[inline(always)]
fn copy_page(buf: *mut u8, rec: &mut MemRecord, addr: u64) -> usize {
    // SAFETY: the destination has MEM_PAGE bytes inside the scratch slot; the helper fails
    // instead of faulting on a source that is not present.
    let r = unsafe {
        bpf_probe_read_user(
            buf.wrapping_add(HEADER).cast(),
            MEM_PAGE as u32,
            addr as *const _,
        )
    };
    rec.page_len = if r == 0 { MEM_PAGE as u32 } else { 0 };
    rec.page_len as usize
}

/// Sends the record with `extra` bytes of variable data.
#[inline(always)]
fn send(ctx: &TracePointContext, buf: *mut u8, rec: &mut MemRecord, extra: usize) {
    let size = HEADER + (extra & (2 * PATH_SPAN - 1));
    rec.header.size = size as u32;
    // SAFETY: `size` is below EXEC_SCRATCH; the mask restates it for the verifier.
    let data = unsafe { core::slice::from_raw_parts(buf, size & (EXEC_SCRATCH - 1)) };
    output(ctx, data);
}

/// Writes the dentry path of `file` `at` bytes after the fixed part.
#[inline(always)]
fn file_path(buf: *mut u8, rec: &mut MemRecord, file: KPtr, at: usize) -> usize {
    let dst = buf.wrapping_add(HEADER + (at & MEM_PAGE));
    let written = write_path(file.wrapping_add(off!(file_f_path)), dst);
    rec.path_len = written.len as u32;
    rec.truncated = written.truncated as u32;
    written.len
}

#[tracepoint]
pub fn mem_mmap_exit(ctx: TracePointContext) -> u32 {
    let _ = try_mmap(&ctx);
    0
}

fn try_mmap(ctx: &TracePointContext) -> Option<()> {
    let addr = ret(ctx)?;
    if (-4095..0).contains(&addr) {
        return None;
    }
    let task = current();
    let regs = regs(task);
    let prot = reg(regs, off!(pt_regs_arg2));
    let flags = reg(regs, off!(pt_regs_arg3));
    let anonymous = flags & MAP_ANONYMOUS != 0;
    if anonymous {
        let region = Region {
            tgid: bpf_get_current_pid_tgid() as u32,
            _pad: 0,
            start: addr as u64,
        };
        let _ = PROTS.insert(region, prot as u32, 0);
    }
    if prot & PROT_EXEC == 0 {
        return None;
    }
    let len = reg(regs, off!(pt_regs_arg1));
    let fd = reg(regs, off!(pt_regs_arg4));
    let file = if anonymous {
        None
    } else {
        fd_file(task, fd as i32)
    };
    let (mut nlink, mut magic, mut ino) = (0u32, 0u32, 0u64);
    if let Some(file) = file {
        let inode = get_ptr(file, off!(file_f_inode));
        nlink = get(inode, off!(inode_i_nlink));
        magic = get(get_ptr(inode, off!(inode_i_sb)), off!(sb_s_magic));
        ino = get(inode, off!(inode_i_ino));
        let odd = nlink == 0 || magic == TMPFS_MAGIC || magic == HUGETLBFS_MAGIC;
        if !odd && prot & PROT_WRITE == 0 {
            // A file with a name on a real filesystem: a library or program being loaded.
            return None;
        }
    }
    let skipped = budget()?;
    let (buf, rec) = record(task, mem_op::MMAP)?;
    rec.skipped = skipped;
    rec.ret = addr;
    rec.addr = addr as u64;
    rec.len = len;
    rec.prot = prot as u32;
    rec.flags = flags;
    rec.fd = if anonymous { -1 } else { fd as i32 };
    rec.file_nlink = nlink;
    rec.file_magic = magic;
    rec.file_ino = ino;
    let page = copy_page(buf, rec, addr as u64);
    let path = match file {
        Some(file) => file_path(buf, rec, file, page),
        None => 0,
    };
    send(ctx, buf, rec, page + path);
    Some(())
}

#[tracepoint]
pub fn mem_mprotect_exit(ctx: TracePointContext) -> u32 {
    let _ = try_mprotect(&ctx);
    0
}

fn try_mprotect(ctx: &TracePointContext) -> Option<()> {
    if ret(ctx)? != 0 {
        return None;
    }
    let task = current();
    let regs = regs(task);
    let start = reg(regs, off!(pt_regs_arg0));
    let prot = reg(regs, off!(pt_regs_arg2));
    let region = Region {
        tgid: bpf_get_current_pid_tgid() as u32,
        _pad: 0,
        start,
    };
    let prev = PROTS.get_ptr_mut(region).map(|p| {
        // SAFETY: an LRU entry stays valid for the program's run.
        unsafe {
            let was = *p;
            *p = prot as u32;
            was
        }
    });
    if prot & PROT_EXEC == 0 {
        return None;
    }
    let len = reg(regs, off!(pt_regs_arg1));
    let skipped = budget()?;
    let (buf, rec) = record(task, mem_op::MPROTECT)?;
    rec.skipped = skipped;
    rec.addr = start;
    rec.len = len;
    rec.prot = prot as u32;
    rec.prev_prot = prev.unwrap_or(PROT_UNKNOWN);
    rec.fd = -1;
    let page = copy_page(buf, rec, start);
    send(ctx, buf, rec, page);
    Some(())
}

#[tracepoint]
pub fn mem_memfd_exit(ctx: TracePointContext) -> u32 {
    let _ = try_memfd(&ctx);
    0
}

fn try_memfd(ctx: &TracePointContext) -> Option<()> {
    let fd = ret(ctx)?;
    let task = current();
    let regs = regs(task);
    let name = reg(regs, off!(pt_regs_arg0));
    let flags = reg(regs, off!(pt_regs_arg1));
    let (buf, rec) = record(task, mem_op::MEMFD_CREATE)?;
    rec.ret = fd;
    rec.fd = fd as i32;
    rec.flags = flags;
    // SAFETY: the helper bounds the copy by the size given and fails instead of faulting.
    let n = unsafe {
        bpf_probe_read_user_str(
            buf.wrapping_add(HEADER).cast(),
            NAME_READ as u32,
            name as *const _,
        )
    };
    let n = if n < 0 { 0 } else { str_len(n) };
    rec.path_len = n as u32;
    send(ctx, buf, rec, n);
    Some(())
}

#[tracepoint]
pub fn mem_ptrace_exit(ctx: TracePointContext) -> u32 {
    let _ = try_ptrace(&ctx);
    0
}

fn try_ptrace(ctx: &TracePointContext) -> Option<()> {
    let result = ret(ctx)?;
    let task = current();
    let regs = regs(task);
    let request = reg(regs, off!(pt_regs_arg0));
    if !PTRACE_REQUESTS.contains(&request) {
        return None;
    }
    let (buf, rec) = record(task, mem_op::PTRACE)?;
    rec.ret = result;
    rec.flags = request;
    rec.target = reg(regs, off!(pt_regs_arg1)) as u32;
    rec.addr = reg(regs, off!(pt_regs_arg2));
    rec.len = reg(regs, off!(pt_regs_arg3));
    rec.fd = -1;
    send(ctx, buf, rec, 0);
    Some(())
}

#[tracepoint]
pub fn mem_vm_writev_exit(ctx: TracePointContext) -> u32 {
    let _ = try_vm_writev(&ctx);
    0
}

fn try_vm_writev(ctx: &TracePointContext) -> Option<()> {
    let result = ret(ctx)?;
    let task = current();
    let regs = regs(task);
    let (buf, rec) = record(task, mem_op::VM_WRITEV)?;
    rec.ret = result;
    rec.target = reg(regs, off!(pt_regs_arg0)) as u32;
    rec.fd = -1;
    send(ctx, buf, rec, 0);
    Some(())
}

#[tracepoint]
pub fn mem_open_exit(ctx: TracePointContext) -> u32 {
    let _ = try_open(&ctx);
    0
}

fn try_open(ctx: &TracePointContext) -> Option<()> {
    let fd = ret(ctx)?;
    let task = current();
    let file = fd_file(task, fd as i32)?;
    let mode: u32 = get(file, off!(file_f_mode));
    if mode & FMODE_WRITE == 0 {
        return None;
    }
    let inode = get_ptr(file, off!(file_f_inode));
    let magic: u32 = get(get_ptr(inode, off!(inode_i_sb)), off!(sb_s_magic));
    if magic != PROC_SUPER_MAGIC {
        return None;
    }
    let dentry = get_ptr(file.wrapping_add(off!(file_f_path)), off!(path_dentry));
    let name: [u8; 4] = get(get_ptr(dentry, off!(dentry_d_name_name)), 0);
    if name != *b"mem\0" {
        return None;
    }
    let (buf, rec) = record(task, mem_op::PROC_MEM_OPEN)?;
    rec.ret = fd;
    rec.fd = fd as i32;
    rec.flags = mode as u64;
    rec.file_magic = magic;
    rec.file_ino = get(inode, off!(inode_i_ino));
    let extra = file_path(buf, rec, file, 0);
    send(ctx, buf, rec, extra);
    Some(())
}
