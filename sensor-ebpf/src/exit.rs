//! Process exit: `sched_process_exit`, as tp_btf.
//!
//! The tracepoint fires for every thread; only the thread that takes the group's live count to
//! zero reports, so there is one exit per process with the group's exit code. Reading
//! `signal->live` instead of the tracepoint's `group_dead` argument keeps this working on
//! kernels before 6.16, where that argument does not exist.

use aya_ebpf::{
    helpers::bpf_ktime_get_boot_ns, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use sensor_common::{kind, ExitRecord, RecordHeader};

use crate::{
    kernel::{comm, get, is_self, read, read_ptr, task_ids, KPtr},
    maps::{off, output},
};

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &BtfTracePointContext) -> Option<()> {
    let task: KPtr = ctx.arg(0);
    let signal = read_ptr(task, off!(task_signal))?;
    let live: i32 = read(signal, off!(signal_live))?;
    if live != 0 {
        return None;
    }
    let ids = task_ids(task);
    if is_self(ids.tgid) {
        return None;
    }
    let rec = ExitRecord {
        header: RecordHeader {
            kind: kind::EXIT,
            size: core::mem::size_of::<ExitRecord>() as u32,
            // SAFETY: plain helper call.
            boot_ns: unsafe { bpf_ktime_get_boot_ns() },
        },
        ids,
        exit_code: get(task, off!(task_exit_code)),
        _pad: 0,
        comm: comm(task),
    };
    // SAFETY: ExitRecord is plain old data; viewing it as bytes is sound.
    let bytes = unsafe {
        core::slice::from_raw_parts(
            (&rec as *const ExitRecord).cast::<u8>(),
            core::mem::size_of::<ExitRecord>(),
        )
    };
    output(ctx, bytes);
    Some(())
}
