//! Exec: `sched_process_exec`, as tp_btf.
//!
//! Chosen over `sys_enter_execve` because it fires once the new image is in place: the
//! executable is the file the kernel actually loaded (`bprm->file`), argv is read from the new
//! image's argument area (written by the kernel, so always faulted in), and `bprm->argc` is the
//! true count. Available since 5.5 (tp_btf); the tracepoint itself dates from 3.4.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use aya_log_ebpf::debug;
use sensor_common::{
    exec_flags, kind, offsets::optional, ExecRecord, ARGS_BUF, EXEC_SCRATCH, PATH_BUF, PATH_SPAN,
};

use crate::{
    kernel::{comm, creds, is_self, present, read, read_ptr, task_ids, KPtr},
    maps::{count_lost, off, output, settings, SCRATCH},
    path::write_path,
};

const HEADER: usize = core::mem::size_of::<ExecRecord>();

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &BtfTracePointContext) -> Option<()> {
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

/// Name of the controlling terminal (`pts0`, `tty1`), empty when there is none.
#[inline(always)]
fn tty_name(task: KPtr) -> [u8; 32] {
    let mut name = [0u8; 32];
    if !present(optional::TTY) {
        return name;
    }
    let tty = read_ptr(task, off!(task_signal)).and_then(|s| read_ptr(s, off!(signal_tty)));
    if let Some(tty) = tty {
        let src = tty.wrapping_add(off!(tty_name));
        // SAFETY: `name` is 32 bytes on the stack; the helper never faults.
        unsafe {
            bpf_probe_read_kernel_str(name.as_mut_ptr().cast(), name.len() as u32, src.cast())
        };
    }
    name
}
