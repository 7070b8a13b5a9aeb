//! Exec: `sched_process_exec`, as tp_btf.
//!
//! Chosen over `sys_enter_execve` because it fires once the new image is in place: the
//! executable is the file the kernel actually loaded (`bprm->file`), argv is read from the new
//! image's argument area (written by the kernel, so always faulted in), and `bprm->argc` is the
//! true count. Available since 5.5 (tp_btf); the tracepoint itself dates from 3.4.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        generated::{
            bpf_loop, bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
            bpf_probe_read_user_str,
        },
    },
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use aya_log_ebpf::debug;
use sensor_common::{
    exec_flags, kind, offsets::optional, ExecRecord, ARGS_BUF, ENV_KEPT, ENV_READ, ENV_SCAN_MAX,
    EXEC_SCRATCH, PATH_BUF, PATH_SPAN,
};

use crate::{
    kernel::{comm, creds, is_self, present, read, read_ptr, syscall_nr, task_ids, tty_name, KPtr},
    maps::{count_lost, off, output, settings, SCRATCH},
    path::write_path,
};

const HEADER: usize = core::mem::size_of::<ExecRecord>();

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exec::<true>(&ctx);
    0
}

/// The same without the environment scan, for kernels without `bpf_loop` (before 5.17).
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec_plain(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exec::<false>(&ctx);
    0
}

#[inline(always)]
fn try_exec<const ENV: bool>(ctx: &BtfTracePointContext) -> Option<()> {
    let task: KPtr = ctx.arg(0);
    let old_tid: u32 = ctx.arg(1);
    let bprm: KPtr = ctx.arg(2);
    let ids = task_ids(task);
    if is_self(ids.tgid) {
        return None;
    }
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = SCRATCH.get_ptr_mut(cpu) else {
        count_lost();
        return None;
    };
    let buf = buf as *mut u8;
    let rec = buf as *mut ExecRecord;
    // SAFETY: `buf` is this CPU's scratch slot, EXEC_SCRATCH bytes, aligned for the map value.
    let rec = unsafe { &mut *rec };
    rec.header.kind = kind::EXEC;
    // SAFETY: plain helper call.
    rec.header.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    rec.ids = ids;
    rec.creds = creds(task);
    rec.old_tid = old_tid;
    rec.argc = read::<i32>(bprm, off!(bprm_argc)).unwrap_or(0) as u32;
    // SAFETY: plain helper call; in exec the current task is `task`.
    rec.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    rec.comm = comm(task);
    rec.tty = tty_name(task);
    rec.syscall_nr = syscall_nr(task);
    rec._pad = 0;
    rec.flags = 0;
    let mut at = HEADER;

    let file = read_ptr(bprm, off!(bprm_file));
    describe_file(rec, file);
    let exe = write_path(
        file.unwrap_or(core::ptr::null())
            .wrapping_add(off!(file_f_path)),
        region(buf, at),
    );
    rec.exe_len = exe.len as u32;
    if exe.truncated {
        rec.flags |= exec_flags::EXE_TRUNCATED;
    }
    at += exe.len & (PATH_SPAN - 1);

    let cwd_len = match read_ptr(task, off!(task_fs)) {
        Some(fs) => {
            let cwd = write_path(fs.wrapping_add(off!(fs_pwd)), region(buf, at));
            if cwd.truncated {
                rec.flags |= exec_flags::CWD_TRUNCATED;
            }
            cwd.len
        }
        None => 0,
    };
    rec.cwd_len = cwd_len as u32;
    at += cwd_len & (PATH_SPAN - 1);

    let filename = read_ptr(bprm, off!(bprm_filename));
    let (len, cut) = read_string(filename, region(buf, at));
    rec.filename_len = len as u32;
    if cut {
        rec.flags |= exec_flags::FILENAME_TRUNCATED;
    }
    at += len & (PATH_SPAN - 1);

    // The syscall number is gone by now (the new image's registers are set up), but an
    // execveat through a descriptor leaves the name it generated.
    if present(optional::FDPATH) && read_ptr(bprm, off!(bprm_fdpath)).is_some() {
        rec.flags |= exec_flags::EXECVEAT_FD;
    }

    let interp = read_ptr(bprm, off!(bprm_interp));
    rec.interp_len = 0;
    if interp.is_some() && interp != filename {
        rec.flags |= exec_flags::INTERPRETED;
        let (len, cut) = read_string(interp, region(buf, at));
        rec.interp_len = len as u32;
        if cut {
            rec.flags |= exec_flags::INTERP_TRUNCATED;
        }
        at += len & (PATH_SPAN - 1);
    }

    rec.env_len = 0;
    rec.env_count = 0;
    if ENV {
        at += loader_env(rec, task, at);
    }

    let args = copy_args(rec, task, region(buf, at));
    if rec.flags & exec_flags::NO_ARGS != 0 {
        debug!(ctx, "exec without an argument area to read");
    }
    at += args;
    rec.header.size = at as u32;
    // SAFETY: `at` is below EXEC_SCRATCH (asserted in sensor-common); the mask restates that
    // for the verifier, which otherwise rejects the length as unbounded.
    let data = unsafe { core::slice::from_raw_parts(buf, at & (EXEC_SCRATCH - 1)) };
    output(ctx, data);
    Some(())
}

/// Pointer to offset `at` of the scratch slot; `at` is re-bounded for the verifier.
#[inline(always)]
fn region(buf: *mut u8, at: usize) -> *mut u8 {
    buf.wrapping_add(at & (EXEC_SCRATCH / 2 - 1))
}

/// Inode facts of the executable: number, device, link count, filesystem magic.
#[inline(always)]
fn describe_file(rec: &mut ExecRecord, file: Option<KPtr>) {
    let inode = file.and_then(|f| read_ptr(f, off!(file_f_inode)));
    let Some(inode) = inode else {
        return;
    };
    rec.exe_ino = read(inode, off!(inode_i_ino)).unwrap_or(0);
    rec.exe_nlink = read(inode, off!(inode_i_nlink)).unwrap_or(0);
    if let Some(sb) = read_ptr(inode, off!(inode_i_sb)) {
        rec.exe_dev = read(sb, off!(sb_s_dev)).unwrap_or(0);
        rec.exe_fs_magic = read::<u64>(sb, off!(sb_s_magic)).unwrap_or(0) as u32;
    }
}

/// Copies a kernel string of up to PATH_BUF bytes to `dst`; returns its length with the NUL
/// and whether it filled the room (so may be cut).
#[inline(always)]
fn read_string(src: Option<KPtr>, dst: *mut u8) -> (usize, bool) {
    let Some(src) = src else {
        return (0, false);
    };
    // SAFETY: `dst` has PATH_REGION >= PATH_BUF bytes of room; the helper never faults.
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), PATH_BUF as u32, src.cast()) };
    if n <= 0 {
        return (0, false);
    }
    (n as usize, n as usize >= PATH_BUF)
}

/// One environment variable being looked at, per CPU (too large for the stack).
#[map]
static ENV_VAR: PerCpuArray<[u8; ENV_READ]> = PerCpuArray::with_max_entries(1, 0);

/// State of the environment scan, shared with [`env_step`] through `bpf_loop`.
#[repr(C)]
struct EnvScan {
    /// Next byte of the environment area to read, and its end.
    pos: u64,
    end: u64,
    /// Where the kept variables go in this CPU's scratch slot (the callback looks the slot up
    /// itself: a pointer passed through this struct is not one older verifiers follow).
    at: u64,
    /// Bytes kept so far, variables kept, variables read.
    kept: u64,
    kept_vars: u64,
    read: u64,
    /// The last read stopped inside a variable longer than ENV_READ.
    inside: u64,
    flags: u64,
}

/// Copies the loader variables (`LD_PRELOAD`, `LD_AUDIT`, `LD_LIBRARY_PATH`) of the new image's
/// environment, wherever they sit in it: every variable is looked at, up to ENV_SCAN_MAX of
/// them (beyond, the record says the scan was incomplete). Returns the bytes copied.
/// A function of its own (a BPF subprogram): inlined into the exec program, 6.1's verifier
/// refused the bpf_loop call's arguments ("invalid read from stack").
#[inline(never)]
fn loader_env(rec: &mut ExecRecord, task: KPtr, at: usize) -> usize {
    let Some(mm) = read_ptr(task, off!(task_mm)) else {
        return 0;
    };
    let mut scan = EnvScan {
        pos: read(mm, off!(mm_env_start)).unwrap_or(0),
        end: read(mm, off!(mm_env_end)).unwrap_or(0),
        at: at as u64,
        kept: 0,
        kept_vars: 0,
        read: 0,
        inside: 0,
        flags: 0,
    };
    // SAFETY: `env_step` is a static function taking the context it is given here, which
    // lives on this stack for the whole loop.
    let done = unsafe {
        bpf_loop(
            ENV_SCAN_MAX,
            env_step as *mut _,
            (&mut scan as *mut EnvScan).cast(),
            0,
        )
    };
    if done >= ENV_SCAN_MAX as i64 && scan.pos < scan.end {
        scan.flags |= exec_flags::ENV_INCOMPLETE as u64;
    }
    rec.flags |= scan.flags as u32;
    rec.env_len = scan.kept as u32;
    rec.env_count = scan.read as u32;
    scan.kept as usize
}

/// One step of the environment scan: reads the variable at `pos` and keeps it when it is a
/// loader variable. Returns 1 to stop.
#[inline(never)]
extern "C" fn env_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the EnvScan that `loader_env` passed to bpf_loop.
    let scan = unsafe { &mut *(ctx as *mut EnvScan) };
    if scan.pos >= scan.end {
        return 1;
    }
    let Some(var) = ENV_VAR.get_ptr_mut(0) else {
        return 1;
    };
    let var = var as *mut u8;
    // SAFETY: `var` has ENV_READ bytes; the helper fails instead of faulting.
    let n = unsafe { bpf_probe_read_user_str(var.cast(), ENV_READ as u32, scan.pos as *const _) };
    if n <= 0 {
        return 1;
    }
    let n = n as u64;
    let continued = scan.inside != 0;
    // A read that filled the room stopped inside the variable: the next starts at its rest.
    let full = n >= ENV_READ as u64;
    scan.pos += if full { n - 1 } else { n };
    scan.inside = full as u64;
    if continued {
        return 0;
    }
    scan.read += 1;
    // SAFETY: `var` holds at least the NUL the helper wrote; 16 bytes are in bounds.
    let head: [u8; 16] = unsafe { core::ptr::read_unaligned(var as *const [u8; 16]) };
    let loader = head.starts_with(b"LD_PRELOAD=")
        || head.starts_with(b"LD_AUDIT=")
        || head.starts_with(b"LD_LIBRARY_PATH=");
    if !loader || scan.kept_vars >= ENV_KEPT as u64 {
        return 0;
    }
    if full {
        scan.flags |= exec_flags::ENV_TRUNCATED as u64;
    }
    let len = n & (ENV_READ as u64 - 1);
    let len = if full { ENV_READ as u64 } else { len };
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = SCRATCH.get_ptr_mut(cpu) else {
        return 1;
    };
    let at = ((scan.at + scan.kept) as usize) & (EXEC_SCRATCH / 2 - 1);
    let dst = (buf as *mut u8).wrapping_add(at);
    // SAFETY: `dst` is inside the scratch slot with ENV_READ bytes of room (asserted layout);
    // the helper never faults.
    unsafe { bpf_probe_read_kernel(dst.cast(), len as u32, var as *const _) };
    if full {
        // SAFETY: as above; the copy is ENV_READ bytes, so its last byte is in bounds.
        unsafe { *dst.wrapping_add(ENV_READ - 1) = 0 };
    }
    scan.kept += len;
    scan.kept_vars += 1;
    0
}

/// Copies argv from the new image's argument area; returns the bytes copied.
#[inline(always)]
fn copy_args(rec: &mut ExecRecord, task: KPtr, dst: *mut u8) -> usize {
    rec.args_len = 0;
    rec.args_total = 0;
    let Some(mm) = read_ptr(task, off!(task_mm)) else {
        rec.flags |= exec_flags::NO_ARGS;
        return 0;
    };
    let start: u64 = read(mm, off!(mm_arg_start)).unwrap_or(0);
    let end: u64 = read(mm, off!(mm_arg_end)).unwrap_or(0);
    if end <= start {
        rec.flags |= exec_flags::NO_ARGS;
        return 0;
    }
    let total = (end - start) as usize;
    let cap = settings().args_max as usize;
    let mut n = if total < cap { total } else { cap };
    if n > ARGS_BUF - 1 {
        n = ARGS_BUF - 1;
    }
    // The mask repeats the bound above in a form the verifier tracks through to the helper's
    // size argument ("R2 unbounded memory access" without it).
    let n = n & (ARGS_BUF - 1);
    // SAFETY: `dst` has ARGS_BUF bytes of room (asserted layout); the helper never faults.
    let r = unsafe { bpf_probe_read_user(dst.cast(), n as u32, start as *const _) };
    if r != 0 {
        rec.flags |= exec_flags::NO_ARGS;
        return 0;
    }
    rec.args_total = total as u32;
    rec.args_len = n as u32;
    if n < total {
        rec.flags |= exec_flags::ARGS_TRUNCATED;
    }
    n
}
