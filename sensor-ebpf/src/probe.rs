//! Empty programs of each hook type beyond tracepoints, loaded and attached once at start only
//! to learn what the running kernel supports (kprobes, fentry and BPF LSM are missing on some
//! kernels), then unloaded. They do nothing when attached.

use aya_ebpf::{
    macros::{fentry, kprobe, lsm, raw_tracepoint},
    programs::{FEntryContext, LsmContext, ProbeContext, RawTracePointContext},
};

#[kprobe]
pub fn probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[fentry(function = "do_unlinkat")]
pub fn probe_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[lsm(hook = "file_open")]
pub fn probe_lsm(_ctx: LsmContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn probe_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}
