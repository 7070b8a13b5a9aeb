//! Reads of kernel memory through the load-time offsets: task identity, credentials, names.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use sensor_common::{offsets::optional, Creds, TaskIds};

use crate::maps::{off, settings, OFFSETS};

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
    read(task, off!(task_tgid)).unwrap_or(0)
}

/// Boot-time start of the group leader of `task`, the time half of its identity.
#[inline(always)]
fn leader_start(task: KPtr) -> u64 {
    let leader = read_ptr(task, off!(task_group_leader)).unwrap_or(task);
    read(leader, off!(task_start_boottime)).unwrap_or(0)
}

/// Identity of `task` and of its real parent.
#[inline(always)]
pub fn task_ids(task: KPtr) -> TaskIds {
    let mut ids = TaskIds {
        tid: read(task, off!(task_pid)).unwrap_or(0),
        tgid: tgid(task),
        start_boottime: leader_start(task),
        ..TaskIds::default()
    };
    if let Some(parent) = read_ptr(task, off!(task_real_parent)) {
        ids.ppid = tgid(parent);
        ids.parent_start_boottime = leader_start(parent);
    }
    ids
}

/// Real credentials of `task`, with the audit login uid and session where the kernel has them.
#[inline(always)]
pub fn creds(task: KPtr) -> Creds {
    let mut c = Creds {
        loginuid: u32::MAX,
        sessionid: u32::MAX,
        ..Creds::default()
    };
    if let Some(cred) = read_ptr(task, off!(task_real_cred)) {
        c.uid = read(cred, off!(cred_uid)).unwrap_or(0);
        c.gid = read(cred, off!(cred_gid)).unwrap_or(0);
        c.euid = read(cred, off!(cred_euid)).unwrap_or(0);
        c.egid = read(cred, off!(cred_egid)).unwrap_or(0);
    }
    if present(optional::AUDIT_IDS) {
        c.loginuid = read(task, off!(task_loginuid)).unwrap_or(u32::MAX);
        c.sessionid = read(task, off!(task_sessionid)).unwrap_or(u32::MAX);
    }
    c
}

/// `task->comm`.
#[inline(always)]
pub fn comm(task: KPtr) -> [u8; 16] {
    read(task, off!(task_comm)).unwrap_or([0; 16])
}

/// Whether the running kernel has the optional fields of `bit`.
#[inline(always)]
pub fn present(bit: u32) -> bool {
    // SAFETY: `OFFSETS` is a plain static; volatile only prevents constant folding.
    let bits = unsafe { core::ptr::read_volatile(&OFFSETS.present) };
    bits & bit != 0
}
