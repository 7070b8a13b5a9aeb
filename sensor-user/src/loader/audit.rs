//! Audit hooks: the rules' kernel filters into AUDIT_RULES, `audit_exit` on the exit of every
//! syscall they name (AUDIT_SYSCALLS says which and where their arguments are), and
//! `audit_enter` on the entry of those that take names or a socket address.

use aya::{maps::HashMap as BpfHashMap, Ebpf};
use sensor_common::{AuditRule, AuditSyscall, SyscallPaths};

use super::{attach_syscall, error_chain, load_tracepoint, LoadError};

/// Fills the audit maps from `rules` and attaches `audit_exit` to the exit of every syscall
/// they name. A syscall whose tracepoint this kernel lacks is reported refused and left out.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    rules: &crate::audit::RuleSet,
    attached: &mut Vec<String>,
    refused: &mut Vec<String>,
) -> Result<(), LoadError> {
    let map_error = |name| move |source| LoadError::Map { name, source };
    {
        let map = ebpf
            .map_mut("AUDIT_RULES")
            .ok_or(LoadError::MissingMap("AUDIT_RULES"))?;
        let mut map: aya::maps::Array<_, AuditRule> =
            aya::maps::Array::try_from(map).map_err(map_error("AUDIT_RULES"))?;
        for (i, rule) in rules.rules.iter().enumerate() {
            map.set(i as u32, rule.kernel, 0)
                .map_err(map_error("AUDIT_RULES"))?;
        }
    }
    // Each program is verified once; one the kernel refuses is not tried again per syscall.
    if let Err(e) = load_tracepoint(ebpf, "audit_exit") {
        let reason = error_chain(&e);
        tracing::warn!(error = %reason, "audit hooks unavailable");
        refused.push(format!(
            "tracepoint/syscalls/sys_exit_* (audit_exit): {reason}"
        ));
        return Ok(());
    }
    let entry_copies = match load_tracepoint(ebpf, "audit_enter") {
        Ok(()) => true,
        Err(e) => {
            // The exit still reads them, from the caller's memory (flagged).
            let reason = error_chain(&e);
            tracing::warn!(error = %reason, "audit entry copies unavailable");
            refused.push(format!(
                "tracepoint/syscalls/sys_enter_* (audit_enter): {reason}"
            ));
            false
        }
    };
    let mut ok = Vec::new();
    for sc in rules.kernel_syscalls() {
        let mut result = Err(LoadError::MissingProgram("audit_exit"));
        let mut name = String::new();
        let mut found = "";
        for tracepoint in &sc.tracepoints {
            name = format!("tracepoint/syscalls/{tracepoint}");
            result = attach_syscall(ebpf, "audit_exit", tracepoint);
            if result.is_ok() {
                found = tracepoint;
                break;
            }
        }
        match result {
            Ok(()) => {
                tracing::debug!(hook = %name, "attached");
                attached.push(name);
                // Names and addresses are copied at the entry, where the kernel takes them.
                let takes = sc.spec.paths.path0 != SyscallPaths::NONE
                    || sc.spec.sockaddr != SyscallPaths::NONE;
                if takes && entry_copies {
                    let enter = found.replacen("sys_exit_", "sys_enter_", 1);
                    let enter_name = format!("tracepoint/syscalls/{enter}");
                    match attach_syscall(ebpf, "audit_enter", &enter) {
                        Ok(()) => attached.push(enter_name),
                        Err(e) => {
                            // The exit still reads them, from the caller's memory (flagged).
                            let reason = error_chain(&e);
                            tracing::warn!(hook = %enter_name, error = %reason, "audit hook unavailable");
                            refused.push(format!("{enter_name}: {reason}"));
                        }
                    }
                }
                ok.push(sc);
            }
            Err(e) => {
                let reason = error_chain(&e);
                tracing::warn!(hook = %name, error = %reason, "audit hook unavailable");
                refused.push(format!("{name}: {reason}"));
            }
        }
    }
    let map = ebpf
        .map_mut("AUDIT_SYSCALLS")
        .ok_or(LoadError::MissingMap("AUDIT_SYSCALLS"))?;
    let mut map: BpfHashMap<_, u32, AuditSyscall> =
        BpfHashMap::try_from(map).map_err(map_error("AUDIT_SYSCALLS"))?;
    for sc in ok {
        map.insert(sc.nr, sc.spec, 0)
            .map_err(map_error("AUDIT_SYSCALLS"))?;
    }
    Ok(())
}
