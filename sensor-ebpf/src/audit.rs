//! Audit: `audit_exit`, one program on the exit tracepoint of every syscall an audit rule
//! names (`syscalls/sys_exit_<name>`), so syscalls no rule names cost nothing here.
//!
//! At the exit the outcome is known and the arguments are still in the caller's saved
//! registers and memory. The rules' kernel filters (outcome, uid, auid, euid and gid ranges)
//! are decided here, so a rule for failed opens by one user sends nothing for anybody else's.
//! The record carries the context auditd gives (credentials of every kind, session, terminal,
//! working directory), the names and socket address the syscall was given, and the rules that
//! matched; the collector decides the filters on names and executables. Exec is not hooked
//! here: the exec records already carry everything an audit record of it needs.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        generated::{bpf_probe_read_user, bpf_probe_read_user_str},
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::TracePointContext,
};
use sensor_common::{
    audit_flags as flags, kind, AuditRecord, AuditRule, AuditSyscall, SyscallPaths, AUDIT_RULES_MAX,
    EXEC_SCRATCH, PATH_BUF, PATH_SPAN, SOCKADDR_MAX,
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

const HEADER: usize = core::mem::size_of::<AuditRecord>();

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
    // SAFETY: the value is copied out at once.
    let spec = unsafe { AUDIT_SYSCALLS.get(nr) }.copied()?;
    let ret = exit_ret(ctx);
    let task = current();
    let ids = task_ids(task);
    if is_self(ids.tgid) {
        return None;
    }
    let who = creds(task);
    let rules = matching(spec.rules, ret, &who);
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

    let mut at = HEADER;
    if spec.paths.path0 != SyscallPaths::NONE {
        let pwd = get_ptr(task, off!(task_fs)).wrapping_add(off!(fs_pwd));
        let written = write_path(pwd, buf.wrapping_add(at & DATA_MASK));
        if written.truncated {
            rec.flags |= flags::CWD_TRUNCATED;
        }
        rec.cwd_len = written.len as u32;
        at += written.len & (PATH_SPAN - 1);
    }
    let (n, b) = name(task, spec.paths.path0, spec.paths.dirfd0, buf, &mut at, rec, 0);
    rec.name0_len = n;
    rec.base0_len = b;
    let (n, b) = name(task, spec.paths.path1, spec.paths.dirfd1, buf, &mut at, rec, 1);
    rec.name1_len = n;
    rec.base1_len = b;
    rec.sockaddr_len = sockaddr(&spec, buf.wrapping_add(at & DATA_MASK), rec);
    at += rec.sockaddr_len as usize & (SOCKADDR_MAX * 2 - 1);
    let fd_file = rec
        .args
        .get(spec.paths.fd as usize)
        .and_then(|&fd| fd_file(task, fd as i32));
    if let Some(file) = fd_file {
        let path = file.wrapping_add(off!(file_f_path));
        let written = write_path(path, buf.wrapping_add(at & DATA_MASK));
        if written.truncated {
            rec.flags |= flags::FD_PATH_TRUNCATED;
        }
        rec.fd_path_len = written.len as u32;
        at += written.len & (PATH_SPAN - 1);
    }

    rec.header.size = at as u32;
    // SAFETY: `at` is below EXEC_SCRATCH (asserted in sensor-common); the mask restates that
    // for the verifier, which otherwise rejects the length as unbounded.
    let data = unsafe { core::slice::from_raw_parts(buf, at & (EXEC_SCRATCH - 1)) };
    output(ctx, data);
    Some(())
}

/// The rules of `candidates` whose kernel filters the syscall's outcome and the caller's
/// credentials pass.
#[inline(always)]
fn matching(candidates: u64, ret: i64, c: &sensor_common::Creds) -> u64 {
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
        let outcome_ok = match rule.outcome {
            AuditRule::SUCCESS => ret >= 0,
            AuditRule::FAILURE => ret < 0,
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
    rec.fd_path_len = 0;
    rec._pad = 0;
}

/// Copies one pathname argument (`path` is its index) to `buf + *at` and, when it is relative
/// to a directory descriptor (or empty, `AT_EMPTY_PATH`: the descriptor's file itself), that
/// descriptor's path; returns both lengths and advances `*at`. A relative name against the
/// working directory needs nothing more: the record has it. `which` is 0 or 1, for the flags.
#[inline(always)]
fn name(
    task: KPtr,
    path: u8,
    dirfd: u8,
    buf: *mut u8,
    at: &mut usize,
    rec: &mut AuditRecord,
    which: u32,
) -> (u32, u32) {
    let Some(user) = rec.args.get(path as usize).copied() else {
        return (0, 0);
    };
    let dst = buf.wrapping_add(*at & DATA_MASK);
    // SAFETY: `dst` has PATH_REGION >= PATH_BUF bytes of room; the helper never faults.
    let n = unsafe { bpf_probe_read_user_str(dst.cast(), PATH_BUF as u32, user as *const _) };
    if n < 0 {
        rec.flags |= flags::NAME_UNREADABLE;
        return (0, 0);
    }
    // A name filling the read is one the kernel refuses (PATH_MAX counts the NUL), so only
    // then may it be cut.
    if n as usize >= PATH_BUF && rec.ret == -ENAMETOOLONG {
        rec.flags |= flags::NAME_TRUNCATED << which;
    }
    let len = masked(str_len(n), PATH_SPAN - 1);
    *at += len;
    let fd = rec
        .args
        .get(dirfd as usize)
        .map_or(AT_FDCWD, |&fd| fd as i32);
    // SAFETY: `dst` is inside the scratch slot; the name's first byte.
    if unsafe { *dst } == b'/' || fd == AT_FDCWD {
        return (len as u32, 0);
    }
    let Some(file) = fd_file(task, fd) else {
        rec.flags |= flags::BAD_DIRFD << which;
        return (len as u32, 0);
    };
    let written = write_path(
        file.wrapping_add(off!(file_f_path)),
        buf.wrapping_add(*at & DATA_MASK),
    );
    if written.truncated {
        rec.flags |= flags::BASE_TRUNCATED << which;
    }
    let base_len = written.len & (PATH_SPAN - 1);
    *at += base_len;
    (len as u32, base_len as u32)
}

/// Copies the syscall's socket address to `dst`; returns its length (0 for none).
#[inline(always)]
fn sockaddr(spec: &AuditSyscall, dst: *mut u8, rec: &mut AuditRecord) -> u32 {
    let (Some(addr), Some(len)) = (
        rec.args.get(spec.sockaddr as usize).copied(),
        rec.args.get(spec.socklen as usize).copied(),
    ) else {
        return 0;
    };
    if addr == 0 {
        return 0;
    }
    let returned = spec.flags & AuditSyscall::LEN_IS_POINTER != 0;
    if returned && rec.ret < 0 {
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
        n as usize
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
