//! Reads of kernel memory through the load-time offsets: task identity, credentials, names.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, generated},
    programs::TracePointContext,
    EbpfContext,
};
use sensor_common::{offsets::optional, Creds, TaskIds};

use crate::maps::{off, settings, OFFSETS};

/// `AT_FDCWD`: a relative pathname is taken against the working directory.
pub const AT_FDCWD: i32 = -100;

/// A kernel address read from kernel memory (`struct task_struct *`, `struct file *`, ...).
pub type KPtr = *const u8;

/// Reads a `T` at `base + offset`; `None` when the address cannot be read.
#[inline(always)]
pub fn read<T: Copy>(base: KPtr, offset: usize) -> Option<T> {
    if base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset) as *const T).ok() }
}

/// Reads a `T` at `base + offset`, all zeros when the address cannot be read.
///
/// No branch on the outcome: the helper zeroes the destination itself on failure. Kernels
/// before about 6.3 keep a stack slot holding a known zero apart from one holding an unknown
/// value when pruning, so a `match` on every read doubles the states to verify; the fork
/// program built that way exceeds 6.1's budget of 1M instructions.
#[inline(always)]
pub fn get<T: Copy>(base: KPtr, offset: usize) -> T {
    let mut value = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: the helper writes `size_of::<T>()` bytes to `value`, the read bytes or zeros, and
    // never faults; any bit pattern is a valid `T` for the plain integer types used here.
    unsafe {
        generated::bpf_probe_read_kernel(
            value.as_mut_ptr().cast(),
            core::mem::size_of::<T>() as u32,
            base.wrapping_add(offset).cast(),
        );
        value.assume_init()
    }
}

/// Reads a pointer field with [`get`]; null when unreadable.
#[inline(always)]
pub fn get_ptr(base: KPtr, offset: usize) -> KPtr {
    get::<u64>(base, offset) as KPtr
}

/// Reads a pointer field; a null pointer is `None`.
#[inline(always)]
pub fn read_ptr(base: KPtr, offset: usize) -> Option<KPtr> {
    let p: u64 = read(base, offset)?;
    (p != 0).then_some(p as KPtr)
}

/// True when `tgid` is the sensor's own process.
#[inline(always)]
pub fn is_self(tgid: u32) -> bool {
    let me = settings().self_tgid;
    me != 0 && me == tgid
}

/// Thread-group id of `task`.
#[inline(always)]
pub fn tgid(task: KPtr) -> u32 {
    get(task, off!(task_tgid))
}

/// Boot-time start of the group leader of `task`, the time half of its identity.
#[inline(always)]
pub fn leader_start(task: KPtr) -> u64 {
    get(
        get_ptr(task, off!(task_group_leader)),
        off!(task_start_boottime),
    )
}

/// Identity of `task` and of its real parent (zeros where unreadable).
#[inline(always)]
pub fn task_ids(task: KPtr) -> TaskIds {
    let parent = get_ptr(task, off!(task_real_parent));
    TaskIds {
        tid: get(task, off!(task_pid)),
        tgid: tgid(task),
        ppid: tgid(parent),
        _pad: 0,
        start_boottime: leader_start(task),
        parent_start_boottime: leader_start(parent),
    }
}

/// Real credentials of `task`, with the audit login uid and session where the kernel has them.
#[inline(always)]
pub fn creds(task: KPtr) -> Creds {
    let cred = get_ptr(task, off!(task_real_cred));
    let mut c = Creds {
        uid: get(cred, off!(cred_uid)),
        gid: get(cred, off!(cred_gid)),
        euid: get(cred, off!(cred_euid)),
        egid: get(cred, off!(cred_egid)),
        loginuid: u32::MAX,
        sessionid: u32::MAX,
    };
    if present(optional::AUDIT_IDS) {
        c.loginuid = get(task, off!(task_loginuid));
        c.sessionid = get(task, off!(task_sessionid));
    }
    c
}

/// `task->comm`.
#[inline(always)]
pub fn comm(task: KPtr) -> [u8; 16] {
    get(task, off!(task_comm))
}

/// Whether the running kernel has the optional fields of `bit`.
#[inline(always)]
pub fn present(bit: u32) -> bool {
    // SAFETY: `OFFSETS` is a plain static; volatile only prevents constant folding.
    let bits = unsafe { core::ptr::read_volatile(&OFFSETS.present) };
    bits & bit != 0
}

/// The open file behind descriptor `fd` of `task`, if there is one.
#[inline(always)]
pub fn fd_file(task: KPtr, fd: i32) -> Option<KPtr> {
    if fd < 0 {
        return None;
    }
    let fdt = read_ptr(task, off!(task_files)).and_then(|f| read_ptr(f, off!(files_fdt)))?;
    let max: u32 = read(fdt, off!(fdtable_max_fds))?;
    if fd as u32 >= max {
        return None;
    }
    let fds = read_ptr(fdt, off!(fdtable_fd))?;
    read_ptr(fds, fd as usize * 8)
}

/// Whether descriptor `fd` of `task` is closed when the task executes a new program.
#[inline(always)]
pub fn fd_cloexec(task: KPtr, fd: u32) -> bool {
    let word = read_ptr(task, off!(task_files))
        .and_then(|f| read_ptr(f, off!(files_fdt)))
        .and_then(|fdt| read_ptr(fdt, off!(fdtable_close_on_exec)))
        .and_then(|bits| read::<u64>(bits, (fd as usize / 64) * 8));
    word.is_some_and(|w| (w >> (fd % 64)) & 1 == 1)
}

/// Bytes a successful `bpf_probe_read_user_str` wrote, NUL included, from its return value.
/// Some kernels (6.1 among them) return 0 instead of 1 for an empty string, the NUL written all
/// the same, so 0 counts as the empty string; without this, 6.1 cut argv at its first `""`.
/// Branch-free on purpose: a branch here doubles the states of every loop iteration and made
/// the verifier take 2.5 times as long.
#[inline(always)]
pub fn str_len(n: i64) -> usize {
    // For n = 0, (n - 1) >> 63 is -1 and the low bit makes it 1; for n >= 1 it adds nothing.
    (n | (((n - 1) >> 63) & 1)) as usize
}

/// `v & mask`, masked after the value has gone through the stack, so LLVM cannot fold the mask
/// into the computation of `v`. Folded, `str_len(n) & mask` becomes `(n & mask) | carry`, and
/// 6.1's verifier loses the bound at the `|`: "math between map_value pointer and register
/// with unbounded min value is not allowed" at the next pointer step.
#[inline(always)]
pub fn masked(v: usize, mask: usize) -> usize {
    // SAFETY: a read of a local through a valid reference.
    unsafe { core::ptr::read_volatile(&v) & mask }
}

/// Offset of `long ret` in a syscall-exit tracepoint record.
const TP_EXIT_RET: usize = 16;

/// The return value of a syscall-exit tracepoint, loaded from the record directly: no helper
/// call, for hooks that run on every open, close, mmap or mprotect of the host.
#[inline(always)]
pub fn exit_ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: every syscall exit record has `long ret` at this offset, 8-byte aligned; the
    // verifier checks the load against the record's size.
    unsafe { *(ctx.as_ptr() as *const u8).add(TP_EXIT_RET).cast::<i64>() }
}

/// A saved register of the task, loaded directly: `regs` comes from `bpf_task_pt_regs` as a
/// BTF pointer, so the verifier checks the offset (a constant of the frozen offsets) against
/// `struct pt_regs` and makes the load fault-safe, without the cost of a helper call.
#[inline(always)]
pub fn reg(regs: KPtr, offset: usize) -> u64 {
    // SAFETY: see above; a bad offset is refused at load, not read at run time.
    unsafe { core::ptr::read_volatile(regs.add(offset).cast::<u64>()) }
}

/// The current task.
#[inline(always)]
pub fn current() -> KPtr {
    // SAFETY: plain helper call.
    unsafe { generated::bpf_get_current_task_btf() as KPtr }
}

/// The user registers of `task`, saved at syscall entry: the syscall's arguments.
#[inline(always)]
pub fn regs(task: KPtr) -> KPtr {
    // SAFETY: plain helper call on a task pointer the kernel gave.
    unsafe { generated::bpf_task_pt_regs(task as *mut _) as KPtr }
}

/// Name of the controlling terminal (`pts0`, `tty1`), empty when there is none.
#[inline(always)]
pub fn tty_name(task: KPtr) -> [u8; 32] {
    let mut name = [0u8; 32];
    if !present(optional::TTY) {
        return name;
    }
    let tty = read_ptr(task, off!(task_signal)).and_then(|s| read_ptr(s, off!(signal_tty)));
    if let Some(tty) = tty {
        let src = tty.wrapping_add(off!(tty_name));
        // SAFETY: `name` is 32 bytes on the stack; the helper never faults.
        unsafe {
            generated::bpf_probe_read_kernel_str(name.as_mut_ptr().cast(), name.len() as u32, src.cast())
        };
    }
    name
}

/// The syscall `task` is in, from its saved registers; `u32::MAX` when unknown.
#[inline(always)]
pub fn syscall_nr(task: KPtr) -> u32 {
    if !present(optional::SYSCALL_NR) {
        return u32::MAX;
    }
    read::<u64>(regs(task), off!(pt_regs_syscall_nr)).map_or(u32::MAX, |nr| nr as u32)
}
