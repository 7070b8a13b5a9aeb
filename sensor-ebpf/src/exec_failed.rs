//! Failed exec: `syscalls/sys_exit_execve` and `syscalls/sys_exit_execveat`, as tracepoints.
//!
//! An exec that fails leaves no new image, so `sched_process_exec` never fires: the syscall's
//! exit is the only place the attempt shows. The per-syscall tracepoints run for exec alone,
//! where `raw_syscalls/sys_exit` would run on every syscall of the host. They need tracefs,
//! which the collector mounts when it is missing. An exec that failed returns before touching
//! the caller's saved registers, so the arguments are read from them, and the filename and
//! argv from the caller's memory, still its own. A relative filename comes with the directory
//! it was taken against, rebuilt from the kernel's objects (the working directory, or the file
//! behind `dirfd`). Syscall tracepoints date from 2.6.33; `bpf_task_pt_regs` from 5.15.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_task_btf, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_user,
        generated::{bpf_probe_read_user_str, bpf_task_pt_regs},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{
    exec_failed_flags as flags, kind, offsets::optional, ExecFailedRecord, EXEC_SCRATCH,
    FAILED_ARGS_BUF, FAILED_ARGS_MAX, FAILED_ARG_READ, PATH_BUF, PATH_SPAN,
};

use crate::{
    kernel::{
        comm, creds, fd_file, is_self, present, read, read_ptr, str_len, task_ids, KPtr, AT_FDCWD,
    },
    maps::{count_lost, off, output, COPY_LEN, SCRATCH},
    path::write_path,
};

const HEADER: usize = core::mem::size_of::<ExecFailedRecord>();

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    let _ = try_exec_failed(&ctx, false);
    0
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    let _ = try_exec_failed(&ctx, true);
    0
}

fn try_exec_failed(ctx: &TracePointContext, execveat: bool) -> Option<()> {
    if !present(optional::SYSCALL_ARGS) {
        return None;
    }
    // SAFETY: plain helper calls; the registers are the current task's, saved at syscall entry.
    let task = unsafe { bpf_get_current_task_btf() } as KPtr;
    // SAFETY: as above.
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as KPtr;
    let ret: i64 = read(regs, off!(pt_regs_ret))?;
    if ret >= 0 {
        return None;
    }
    let ids = task_ids(task);
    if is_self(ids.tgid) {
        return None;
    }
    let arg = |offset: usize| read::<u64>(regs, offset).unwrap_or(0);
    let (dirfd, filename, argv, at_flags) = if execveat {
        let (a0, a1, a2, a4) = (
            off!(pt_regs_arg0),
            off!(pt_regs_arg1),
            off!(pt_regs_arg2),
            off!(pt_regs_arg4),
        );
        (arg(a0) as i32, arg(a1), arg(a2), arg(a4) as u32)
    } else {
        (
            AT_FDCWD,
            arg(off!(pt_regs_arg0)),
            arg(off!(pt_regs_arg1)),
            0,
        )
    };

    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = SCRATCH.get_ptr_mut(cpu) else {
        count_lost();
        return None;
    };
    let buf = buf as *mut u8;
    // SAFETY: `buf` is this CPU's scratch slot, EXEC_SCRATCH bytes, aligned for the map value;
    // programs do not nest on one CPU.
    let rec = unsafe { &mut *(buf as *mut ExecFailedRecord) };
    rec.header.kind = kind::EXEC_FAILED;
    // SAFETY: plain helper call.
    rec.header.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    rec.ids = ids;
    rec.creds = creds(task);
    // SAFETY: plain helper call; the current task is the caller.
    rec.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    rec.ret = ret;
    rec.dirfd = dirfd;
    rec.at_flags = at_flags;
    rec.comm = comm(task);
    rec.flags = if execveat { flags::EXECVEAT } else { 0 };

    let dst = buf.wrapping_add(HEADER);
    // SAFETY: `dst` has PATH_REGION >= PATH_BUF bytes of room; the helper never faults.
    let n = unsafe { bpf_probe_read_user_str(dst.cast(), PATH_BUF as u32, filename as *const _) };
    let filename_len = if n >= 0 { str_len(n) } else { 0 };
    if n < 0 {
        rec.flags |= flags::FILENAME_UNREADABLE;
    } else if filename_len >= PATH_BUF {
        rec.flags |= flags::FILENAME_TRUNCATED;
    }
    rec.filename_len = filename_len as u32;
    let mut at = HEADER + (filename_len & (PATH_SPAN - 1));

    // SAFETY: `dst` is inside the scratch slot; the filename's first byte, or 0 if unread.
    let relative = filename_len > 1 && unsafe { *dst } != b'/';
    rec.base_len = 0;
    if relative {
        let base = if dirfd == AT_FDCWD {
            read_ptr(task, off!(task_fs)).map(|fs| fs.wrapping_add(off!(fs_pwd)))
        } else {
            fd_file(task, dirfd).map(|file| file.wrapping_add(off!(file_f_path)))
        };
        if let Some(base) = base {
            let written = write_path(base, buf.wrapping_add(at & (PATH_SPAN * 2 - 1)));
            if written.truncated {
                rec.flags |= flags::BASE_TRUNCATED;
            }
            rec.base_len = written.len as u32;
            at += written.len & (PATH_SPAN - 1);
        }
    }

    let args_len = copy_argv(rec, argv, buf.wrapping_add(at & (PATH_SPAN * 4 - 1)));
    let size = at + args_len;
    rec.header.size = size as u32;
    // SAFETY: `size` is below EXEC_SCRATCH (asserted in sensor-common); the mask restates that
    // for the verifier, which otherwise rejects the length as unbounded.
    let data = unsafe { core::slice::from_raw_parts(buf, size & (EXEC_SCRATCH - 1)) };
    output(ctx, data);
    Some(())
}

/// Copies the attempted argv (an array of user pointers ending in null) to `dst`, which has
/// FAILED_ARGS_BUF + FAILED_ARG_READ bytes of room; returns the bytes copied and fills in
/// `argc`, `args_len` and the argument flags of `rec`.
///
/// The running length lives in `COPY_LEN` and the count and flags in `rec`, all map memory:
/// the verifier does not track values loaded from maps, so each iteration starts from the same
/// state and is pruned instead of being explored once per possible length.
#[inline(always)]
fn copy_argv(rec: &mut ExecFailedRecord, argv: u64, dst: *mut u8) -> usize {
    let rec = rec as *mut ExecFailedRecord;
    let Some(len) = COPY_LEN.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: `len` is this CPU's COPY_LEN slot and `rec` this CPU's scratch record; volatile
    // accesses keep both in map memory (see above).
    unsafe {
        core::ptr::write_volatile(len, 0);
        core::ptr::write_volatile(&mut (*rec).argc, 0);
    }
    let mut ended = false;
    for i in 0..FAILED_ARGS_MAX {
        let slot = (argv as *const u64).wrapping_add(i as usize);
        // SAFETY: the helper checks the user address and fails instead of faulting.
        let Ok(ptr) = (unsafe { bpf_probe_read_user(slot) }) else {
            set_flag(rec, flags::ARGS_UNREADABLE);
            break;
        };
        if ptr == 0 {
            ended = true;
            break;
        }
        // SAFETY: as for `len` above.
        unsafe { core::ptr::write_volatile(&mut (*rec).argc, (*rec).argc + 1) };
        // SAFETY: as above.
        let cut = unsafe { core::ptr::read_volatile(&(*rec).flags) } & flags::ARGS_TRUNCATED;
        if cut != 0 {
            // The copy is full; go on counting.
            continue;
        }
        // SAFETY: as above.
        let at = unsafe { core::ptr::read_volatile(len) } as usize;
        if at >= FAILED_ARGS_BUF {
            set_flag(rec, flags::ARGS_TRUNCATED);
            continue;
        }
        // The mask is a no-op (at < FAILED_ARGS_BUF) that bounds the destination for the
        // verifier ("invalid access to map value" without it).
        let at = at & (FAILED_ARGS_BUF - 1);
        // SAFETY: `dst + at` has FAILED_ARG_READ bytes of room; the helper never faults.
        let n = unsafe {
            bpf_probe_read_user_str(
                dst.wrapping_add(at).cast(),
                FAILED_ARG_READ as u32,
                ptr as *const _,
            )
        };
        if n < 0 {
            set_flag(rec, flags::ARGS_UNREADABLE);
            break;
        }
        // SAFETY: as for `len` above.
        unsafe { core::ptr::write_volatile(len, (at + str_len(n)) as u64) };
        if n as usize >= FAILED_ARG_READ {
            // This argument filled its read and may be cut: keep what came, copy no more.
            set_flag(rec, flags::ARGS_TRUNCATED | flags::LAST_ARG_CUT);
        }
    }
    // SAFETY: as for `len` above.
    let unreadable = unsafe { core::ptr::read_volatile(&(*rec).flags) } & flags::ARGS_UNREADABLE;
    if !ended && unreadable == 0 {
        set_flag(rec, flags::ARGC_CAPPED);
    }
    // SAFETY: as above.
    let copied = unsafe { core::ptr::read_volatile(len) } as usize & (FAILED_ARGS_BUF * 2 - 1);
    // SAFETY: as above.
    unsafe { (*rec).args_len = copied as u32 };
    copied
}

#[inline(always)]
fn set_flag(rec: *mut ExecFailedRecord, bit: u32) {
    // SAFETY: `rec` is this CPU's scratch record (see `copy_argv`).
    unsafe {
        core::ptr::write_volatile(
            &mut (*rec).flags,
            core::ptr::read_volatile(&(*rec).flags) | bit,
        )
    };
}
