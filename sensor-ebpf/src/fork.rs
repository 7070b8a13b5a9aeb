//! Task creation: `sched_process_fork`, as tp_btf.
//!
//! One tracepoint covers fork, vfork, clone and clone3, for processes and threads alike, and
//! it fires in the parent before the child can run, so the fork record is always queued ahead
//! of anything the child does. The syscall that created the child is read from the parent's
//! saved registers. tp_btf since 5.5.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_task_btf, bpf_ktime_get_boot_ns,
        generated::bpf_task_pt_regs,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use sensor_common::{fork_flags, kind, offsets::optional, ForkRecord, RecordHeader};

use crate::{
    kernel::{comm, creds, get, get_ptr, is_self, present, task_ids, KPtr},
    maps::{off, output},
};

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &BtfTracePointContext) -> Option<()> {
    let parent: KPtr = ctx.arg(0);
    let child: KPtr = ctx.arg(1);
    let parent_ids = task_ids(parent);
    if is_self(parent_ids.tgid) {
        return None;
    }
    let child_ids = task_ids(child);

    let mut flags = 0;
    if child_ids.tid != child_ids.tgid {
        flags |= fork_flags::THREAD;
    }
    let child_mm = get_ptr(child, off!(task_mm));
    if !child_mm.is_null() && child_mm == get_ptr(parent, off!(task_mm)) {
        flags |= fork_flags::SHARED_VM;
    }
    if !get_ptr(child, off!(task_vfork_done)).is_null() {
        flags |= fork_flags::VFORK;
    }

    let rec = ForkRecord {
        header: RecordHeader {
            kind: kind::FORK,
            size: core::mem::size_of::<ForkRecord>() as u32,
            // SAFETY: plain helper call.
            boot_ns: unsafe { bpf_ktime_get_boot_ns() },
        },
        parent: parent_ids,
        child: child_ids,
        child_task_start: get(child, off!(task_start_boottime)),
        // SAFETY: plain helper call; the child starts in its parent's cgroup.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        creds: creds(child),
        flags,
        syscall_nr: syscall_nr(),
        comm: comm(child),
    };
    // SAFETY: ForkRecord is plain old data; viewing it as bytes is sound.
    let bytes = unsafe {
        core::slice::from_raw_parts(
            (&rec as *const ForkRecord).cast::<u8>(),
            core::mem::size_of::<ForkRecord>(),
        )
    };
    output(ctx, bytes);
    Some(())
}

/// Number of the syscall the current task is in, from its saved user registers.
#[inline(always)]
fn syscall_nr() -> u32 {
    if !present(optional::SYSCALL_NR) {
        return u32::MAX;
    }
    // SAFETY: plain helper calls; bpf_task_pt_regs returns the current task's saved registers.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf().cast()) } as KPtr;
    get::<u64>(regs, off!(pt_regs_syscall_nr)) as u32
}
