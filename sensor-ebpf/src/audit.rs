//! Audit: `audit_exit`, one program on the exit tracepoint of every syscall an audit rule
//! names (`syscalls/sys_exit_<name>`), so syscalls no rule names cost nothing here; and
//! `audit_enter` on the entry of those that take names or a socket address, which copies
//! them as the kernel is given them: read at the exit, a caller could have rewritten them
//! while the syscall ran (a blocking open or connect, another thread changing the buffer).
//!
//! At the exit the outcome is known and the arguments are still in the caller's saved
//! registers and memory. The rules' kernel filters (outcome, uid, auid, euid and gid ranges)
//! are decided here, so a rule for failed opens by one user sends nothing for anybody else's.
//! The record carries the context auditd gives (credentials of every kind, session, terminal,
//! working directory), the names and socket address the syscall was given, and the rules that
//! matched; the collector decides the filters on names and executables. Exec is not hooked
//! here: the exec records already carry everything an audit record of it needs.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns,
        generated::{bpf_probe_read_kernel, bpf_probe_read_user, bpf_probe_read_user_str},
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::TracePointContext,
};
use sensor_common::{
    audit_flags as flags, kind, AuditEntry, AuditRecord, AuditRule, AuditSyscall, SyscallPaths,
    AUDIT_RULES_MAX, EXEC_SCRATCH, PATH_BUF, PATH_SPAN, SOCKADDR_MAX,
};

use crate::{
    kernel::{
        comm, creds, current, exit_ret, fd_file, get, get_ptr, is_self, masked, reg, regs, str_len,
        task_ids, tty_name, KPtr, AT_FDCWD,
    },
    maps::{off, output, SCRATCH},
    path::write_path,
};

/// The audited syscalls by number, filled by the collector from the rules.
#[map]
pub static AUDIT_SYSCALLS: HashMap<u32, AuditSyscall> = HashMap::with_max_entries(512, 0);

/// The rules' kernel filters, by rule index.
#[map]
pub static AUDIT_RULES: Array<AuditRule> = Array::with_max_entries(AUDIT_RULES_MAX, 0);

/// The rules matched so far by [`matching`], per CPU. In map memory for the reason given at
/// `PATH_LEN`: kept in a register, every combination of matched rules is a state of its own
/// and the program exceeds the verifier's 1M-instruction budget ("Argument list too long").
#[map]
static MATCHED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Copies taken at entry, by thread, until the exit. Allocated as used; when full, the exit
/// reads from the caller's memory and says so (`ARGS_AT_EXIT`).
#[map]
static AUDIT_ENTRIES: HashMap<u32, AuditEntry> =
    HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

const HEADER: usize = core::mem::size_of::<AuditRecord>();

/// Where in the scratch slot an entry copy is assembled, clear of anything a record uses.
const ENTRY_AT: usize = EXEC_SCRATCH / 2;

/// Offset of the first argument in a syscall-entry tracepoint record.
const TP_ENTER_ARGS: usize = 16;

const ENAMETOOLONG: i64 = 36;

/// Offset of `int __syscall_nr` in a syscall tracepoint record.
const TP_SYSCALL_NR: usize = 8;

/// Variable data starts at offsets masked to this, which the scratch slot provably holds.
const DATA_MASK: usize = PATH_SPAN * 8 - 1;

#[tracepoint]
pub fn audit_exit(ctx: TracePointContext) -> u32 {
    let _ = try_audit_exit(&ctx);
    0
}

fn try_audit_exit(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: every syscall tracepoint record has the number at this offset.
    let nr: i32 = unsafe { ctx.read_at(TP_SYSCALL_NR) }.ok()?;
    let nr = nr as u32;
    let tid = bpf_get_current_pid_tgid() as u32;
    let entry = AUDIT_ENTRIES.get_ptr(tid);
    // SAFETY: this thread's entry; only this thread's programs touch it.
    let ours = entry.filter(|&e| unsafe { (*e).nr } == nr);
    let sent = record(ctx, nr, ours);
    if entry.is_some() {
        // Read until now (the value stays valid to the program's end), removed only now.
        let _ = AUDIT_ENTRIES.remove(tid);
    }
    sent
}

#[inline(always)]
fn record(ctx: &TracePointContext, nr: u32, entry: Option<*const AuditEntry>) -> Option<()> {
    // SAFETY: the value is copied out at once.
    let spec = unsafe { AUDIT_SYSCALLS.get(nr) }.copied()?;
    let ret = exit_ret(ctx);
    let task = current();
    let ids = task_ids(task);
    if is_self(ids.tgid) {
        return None;
    }
    let who = creds(task);
    let rules = matching(spec.rules, Some(ret), &who);
    if rules == 0 {
        return None;
    }

    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let buf = SCRATCH.get_ptr_mut(cpu)? as *mut u8;
    // SAFETY: `buf` is this CPU's scratch slot, EXEC_SCRATCH bytes, aligned for the map value;
    // programs do not nest on one CPU.
    let rec = unsafe { &mut *(buf as *mut AuditRecord) };
    fill(rec, task, nr, ret, rules);
    rec.ids = ids;
    rec.creds = who;
    // One source for the names and address from here on, the copy in the scratch slot, taken
    // from the entry's. Without one (the sensor started during the syscall, or the map of
    // copies was full) they are left out and flagged: read from the caller now they could be
    // what it rewrote meanwhile, and a second source would double the verifier's states at
    // each of the path walks that follow.
    let copy = buf.wrapping_add(ENTRY_AT) as *mut AuditEntry;
    let takes_args = spec.paths.path0 != SyscallPaths::NONE || spec.sockaddr != SyscallPaths::NONE;
    match entry {
        Some(src) => {
            rec.flags |= flags::ARGS_FROM_ENTRY;
            // SAFETY: both are AuditEntry-sized: this thread's map entry, and the upper half
            // of this CPU's scratch slot.
            unsafe {
                bpf_probe_read_kernel(
                    copy.cast(),
                    core::mem::size_of::<AuditEntry>() as u32,
                    src.cast(),
                )
            };
        }
        None => {
            if takes_args {
                rec.flags |= flags::ARGS_MISSING;
            }
            // SAFETY: the upper half of this CPU's scratch slot, unused by the record.
            let c = unsafe { &mut *copy };
            c.nr = nr;
            c.name_len = [0; 2];
            // For accept the peer is still read, as the kernel wrote it, up to its full size.
            c.sockaddr_len = SOCKADDR_MAX as u32;
        }
    }
    // SAFETY: as above; filled on both paths.
    let copy = unsafe { &*copy };

    // Two path walks at most, one per name (a third, for the working directory on its own,
    // takes the program past the verifier's budget): a relative name's directory is walked,
    // the working directory or its descriptor's.
    let mut at = HEADER;
    let (n, b) = name(task, (spec.paths.path0, spec.paths.dirfd0), buf, &mut at, rec, copy, 0);
    rec.name0_len = n;
    rec.base0_len = b;
    let (n, b) = name(task, (spec.paths.path1, spec.paths.dirfd1), buf, &mut at, rec, copy, 1);
    rec.name1_len = n;
    rec.base1_len = b;
    rec.sockaddr_len = sockaddr(&spec, buf.wrapping_add(at & DATA_MASK), rec, copy);
    at += rec.sockaddr_len as usize & (SOCKADDR_MAX * 2 - 1);

    rec.header.size = at as u32;
    // SAFETY: `at` is below EXEC_SCRATCH (asserted in sensor-common); the mask restates that
    // for the verifier, which otherwise rejects the length as unbounded.
    let data = unsafe { core::slice::from_raw_parts(buf, at & (EXEC_SCRATCH - 1)) };
    output(ctx, data);
    Some(())
}

#[tracepoint]
pub fn audit_enter(ctx: TracePointContext) -> u32 {
    let _ = try_audit_enter(&ctx);
    0
}

fn try_audit_enter(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: every syscall tracepoint record has the number at this offset.
    let nr: i32 = unsafe { ctx.read_at(TP_SYSCALL_NR) }.ok()?;
    let nr = nr as u32;
    // SAFETY: the value is copied out at once.
    let spec = unsafe { AUDIT_SYSCALLS.get(nr) }.copied()?;
    let task = current();
    let ids = task_ids(task);
    if is_self(ids.tgid) {
        return None;
    }
    // The outcome is not known yet: only the id filters can rule the syscall out here.
    if matching(spec.rules, None, &creds(task)) == 0 {
        return None;
    }
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let buf = SCRATCH.get_ptr_mut(cpu)? as *mut u8;
    // SAFETY: the upper half of this CPU's scratch slot, unused by records; aligned, since
    // the slot is and ENTRY_AT is a power of two.
    let e = unsafe { &mut *(buf.wrapping_add(ENTRY_AT) as *mut AuditEntry) };
    let arg = |i: u8| -> Option<u64> {
        if i as usize >= 6 {
            return None;
        }
        // SAFETY: a syscall-entry record holds six u64 arguments from this offset.
        unsafe { ctx.read_at::<u64>(TP_ENTER_ARGS + 8 * i as usize) }.ok()
    };
    copy_args(e, nr, &spec, arg);
    let tid = bpf_get_current_pid_tgid() as u32;
    // A full map leaves this syscall to be read at its exit (flagged there).
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "by value, the 8 KiB entry would be copied to the 512-byte stack"
    )]
    let _ = AUDIT_ENTRIES.insert(tid, &*e, 0);
    Some(())
}

/// Copies the names and socket address of syscall `nr` from the caller's memory into `e`;
/// `arg(i)` is argument `i`. For accept, only the room the caller gave (the kernel writes the
/// peer at the exit).
#[inline(always)]
fn copy_args(e: &mut AuditEntry, nr: u32, spec: &AuditSyscall, arg: impl Fn(u8) -> Option<u64>) {
    e.nr = nr;
    for (which, slot) in [spec.paths.path0, spec.paths.path1].into_iter().enumerate() {
        let Some(len) = e.name_len.get_mut(which) else {
            continue;
        };
        let Some(user) = arg(slot) else {
            *len = 0;
            continue;
        };
        let dst = e.names.get_mut(which).map_or(core::ptr::null_mut(), |n| n.as_mut_ptr());
        // SAFETY: `dst` has PATH_BUF bytes; the helper checks the user address.
        let n = unsafe { bpf_probe_read_user_str(dst.cast(), PATH_BUF as u32, user as *const _) };
        *len = if n < 0 {
            AuditEntry::UNREADABLE
        } else {
            str_len(n) as u32
        };
    }
    e.sockaddr_len = 0;
    let (Some(mut addr), Some(mut len)) = (arg(spec.sockaddr), arg(spec.socklen)) else {
        return;
    };
    if spec.flags & AuditSyscall::MSGHDR != 0 {
        // sendmsg: the address is the header's `msg_name` and `msg_namelen`, the first two
        // fields of `struct msghdr` in the syscall ABI.
        let mut head = [0u64; 2];
        // SAFETY: reads 16 bytes into `head`; the helper checks the user address.
        let r = unsafe { bpf_probe_read_user(head.as_mut_ptr().cast(), 16, addr as *const _) };
        if r != 0 {
            e.sockaddr_len = AuditEntry::UNREADABLE;
            return;
        }
        addr = head[0];
        len = head[1] & 0xffff_ffff;
    }
    if addr == 0 {
        return;
    }
    if spec.flags & AuditSyscall::LEN_IS_POINTER != 0 {
        let mut room: u32 = 0;
        // SAFETY: reads 4 bytes into `room`; the helper checks the user address.
        let r = unsafe { bpf_probe_read_user((&mut room as *mut u32).cast(), 4, len as *const _) };
        if r == 0 {
            e.sockaddr_len = room;
        }
        return;
    }
    // At most SOCKADDR_MAX; the mask says so to the verifier, after the stack round trip that
    // keeps LLVM from folding it away (see `masked`).
    let n = masked((len as usize).min(SOCKADDR_MAX), SOCKADDR_MAX * 2 - 1) as u32;
    let dst = e.sockaddr.as_mut_ptr();
    // SAFETY: `n` <= SOCKADDR_MAX, the array's size; the helper checks the source.
    let r = unsafe { bpf_probe_read_user(dst.cast(), n, addr as *const _) };
    e.sockaddr_len = if r == 0 { n } else { AuditEntry::UNREADABLE };
}

/// The rules of `candidates` whose kernel filters the syscall's outcome and the caller's
/// credentials pass.
#[inline(always)]
fn matching(candidates: u64, ret: Option<i64>, c: &sensor_common::Creds) -> u64 {
    let Some(matched) = MATCHED.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot; programs do not nest on one CPU. Volatile keeps it in memory.
    unsafe { core::ptr::write_volatile(matched, 0) };
    for i in 0..AUDIT_RULES_MAX {
        if candidates & (1 << i) == 0 {
            continue;
        }
        let Some(rule) = AUDIT_RULES.get(i) else {
            continue;
        };
        let outcome_ok = match (rule.outcome, ret) {
            (AuditRule::SUCCESS, Some(ret)) => ret >= 0,
            (AuditRule::FAILURE, Some(ret)) => ret < 0,
            _ => true,
        };
        let within = |bit: u8, range: [u32; 2], v: u32| {
            rule.ranges & bit == 0 || (range[0] <= v && v <= range[1])
        };
        if outcome_ok
            && within(AuditRule::UID, rule.uid, c.uid)
            && within(AuditRule::AUID, rule.auid, c.loginuid)
            && within(AuditRule::EUID, rule.euid, c.euid)
            && within(AuditRule::GID, rule.gid, c.gid)
        {
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(matched, core::ptr::read_volatile(matched) | 1 << i) };
        }
    }
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(matched) }
}

/// Fills the fixed part of `rec` from the current task and zeroes the lengths.
#[inline(always)]
fn fill(rec: &mut AuditRecord, task: KPtr, nr: u32, ret: i64, rules: u64) {
    rec.header.kind = kind::AUDIT;
    // SAFETY: plain helper call.
    rec.header.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    let cred = get_ptr(task, off!(task_real_cred));
    rec.suid = get(cred, off!(cred_suid));
    rec.sgid = get(cred, off!(cred_sgid));
    rec.fsuid = get(cred, off!(cred_fsuid));
    rec.fsgid = get(cred, off!(cred_fsgid));
    // SAFETY: plain helper call; the current task is `task`.
    rec.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    rec.rules = rules;
    rec.ret = ret;
    let regs = regs(task);
    rec.args = [
        reg(regs, off!(pt_regs_arg0)),
        reg(regs, off!(pt_regs_arg1)),
        reg(regs, off!(pt_regs_arg2)),
        reg(regs, off!(pt_regs_arg3)),
        reg(regs, off!(pt_regs_arg4)),
    ];
    rec.nr = nr;
    rec.flags = 0;
    rec.comm = comm(task);
    rec.tty = tty_name(task);
    rec.cwd_len = 0;
    rec.name0_len = 0;
    rec.base0_len = 0;
    rec.name1_len = 0;
    rec.base1_len = 0;
    rec.sockaddr_len = 0;
}

/// Copies one pathname argument (`path` is its index) to `buf + *at` and, when it is relative
/// to a directory descriptor, that descriptor's path; returns both lengths and advances `*at`.
/// An empty name (`AT_EMPTY_PATH`) stands for the descriptor's file itself. A relative name
/// against the working directory needs nothing more: the record has it. `which` is 0 or 1,
/// for the flags. Syscalls on a descriptor alone (fchmod) have no name, as in auditd's records.
#[inline(always)]
fn name(
    task: KPtr,
    (path, dirfd): (u8, u8),
    buf: *mut u8,
    at: &mut usize,
    rec: &mut AuditRecord,
    copy: &AuditEntry,
    which: usize,
) -> (u32, u32) {
    if path == SyscallPaths::NONE {
        return (0, 0);
    }
    let dst = buf.wrapping_add(*at & DATA_MASK);
    let len = copy.name_len.get(which).copied().unwrap_or(0);
    let n = if len == AuditEntry::UNREADABLE {
        -1
    } else {
        let src = copy.names.get(which).map_or(core::ptr::null(), |n| n.as_ptr());
        let len = masked(len as usize, PATH_BUF * 2 - 1);
        // SAFETY: `dst` has PATH_REGION bytes of room in the scratch slot, `src` is the copy's
        // name in the same slot; the helper never faults.
        unsafe { bpf_probe_read_kernel(dst.cast(), len as u32, src.cast()) };
        len as i64
    };
    if n < 0 {
        rec.flags |= flags::NAME_UNREADABLE;
        return (0, 0);
    }
    // A name filling the read is one the kernel refuses (PATH_MAX counts the NUL), so only
    // then may it be cut.
    if n as usize >= PATH_BUF && rec.ret == -ENAMETOOLONG {
        rec.flags |= flags::NAME_TRUNCATED << which as u32;
    }
    let len = masked(str_len(n), PATH_SPAN - 1);
    *at += len;
    let fd = rec
        .args
        .get(dirfd as usize)
        .map_or(AT_FDCWD, |&fd| fd as i32);
    // SAFETY: `dst` is inside the scratch slot; the name's first byte (NUL for an empty one).
    if unsafe { *dst } == b'/' {
        return (len as u32, 0);
    }
    let base = if fd == AT_FDCWD {
        rec.flags |= flags::BASE_IS_CWD << which as u32;
        get_ptr(task, off!(task_fs)).wrapping_add(off!(fs_pwd))
    } else {
        match fd_file(task, fd) {
            Some(file) => file.wrapping_add(off!(file_f_path)),
            None => {
                rec.flags |= flags::BAD_DIRFD << which as u32;
                return (len as u32, 0);
            }
        }
    };
    let written = write_path(base, buf.wrapping_add(*at & DATA_MASK));
    if written.truncated {
        rec.flags |= flags::BASE_TRUNCATED << which as u32;
    }
    let base_len = written.len & (PATH_SPAN - 1);
    *at += base_len;
    (len as u32, base_len as u32)
}

/// Copies the syscall's socket address to `dst`: the copy taken at the entry, or for accept
/// the peer the kernel wrote back (no more than the room the caller gave); returns its length
/// (0 for none).
#[inline(always)]
fn sockaddr(
    spec: &AuditSyscall,
    dst: *mut u8,
    rec: &mut AuditRecord,
    copy: &AuditEntry,
) -> u32 {
    if spec.sockaddr == SyscallPaths::NONE {
        return 0;
    }
    let returned = spec.flags & AuditSyscall::LEN_IS_POINTER != 0;
    if !returned {
        if copy.sockaddr_len == AuditEntry::UNREADABLE {
            rec.flags |= flags::SOCKADDR_UNREADABLE;
            return 0;
        }
        // 0: no address given (a sendto on a connected socket).
        let n = masked(copy.sockaddr_len as usize, SOCKADDR_MAX * 2 - 1);
        // SAFETY: `dst` has SOCKADDR_MAX * 2 bytes of room; the copy is in the same slot.
        unsafe { bpf_probe_read_kernel(dst.cast(), n as u32, copy.sockaddr.as_ptr().cast()) };
        return n as u32;
    }
    let (Some(addr), Some(len)) = (
        rec.args.get(spec.sockaddr as usize).copied(),
        rec.args.get(spec.socklen as usize).copied(),
    ) else {
        return 0;
    };
    if addr == 0 || rec.ret < 0 {
        // A failed accept wrote no address; the buffer holds whatever was there.
        return 0;
    }
    let len = if returned {
        let mut n: u32 = 0;
        // SAFETY: reads 4 bytes into `n`; the helper checks the user address.
        let r = unsafe { bpf_probe_read_user((&mut n as *mut u32).cast(), 4, len as *const _) };
        if r < 0 {
            rec.flags |= flags::SOCKADDR_UNREADABLE;
            return 0;
        }
        // The kernel writes back the address's full length even when it copied less.
        n.min(copy.sockaddr_len) as usize
    } else {
        len as usize
    };
    let len = len.min(SOCKADDR_MAX);
    if len == 0 {
        return 0;
    }
    // The mask restates len <= SOCKADDR_MAX for the verifier ("R2 unbounded memory access"
    // without it); the helper reads at least one byte.
    let n = (len & (SOCKADDR_MAX * 2 - 1)) as u32;
    // SAFETY: `dst` has SOCKADDR_MAX * 2 bytes of room in the slot; the helper never faults.
    let r = unsafe { bpf_probe_read_user(dst.cast(), n, addr as *const _) };
    if r < 0 {
        rec.flags |= flags::SOCKADDR_UNREADABLE;
        return 0;
    }
    n
}
