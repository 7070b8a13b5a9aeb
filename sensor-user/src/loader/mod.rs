//! Loader stage: resolves kernel offsets, loads the embedded eBPF object and attaches hooks.
//!
//! In: the configuration. Out: a [`Loaded`] holding the ring buffer, the loss counters and the
//! list of hooks attached and refused, for the reader and the status API.

mod audit;
pub mod btf;
pub mod probe;
mod tracefs;
pub mod verify;

use std::path::Path;

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, FEntry, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use sensor_common::{offsets::Settings, KernelOffsets, SyscallPaths};

use crate::config::Config;

/// The eBPF object built by `build.rs` from `sensor-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor.bpf.o"));

/// Failure to bring the kernel side up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to resolve kernel struct offsets")]
    Offsets(#[from] btf::BtfError),
    #[error("failed to count CPUs from {0}")]
    Cpus(&'static str, #[source] std::io::Error),
    #[error("failed to load the eBPF object")]
    Load(#[from] aya::EbpfError),
    #[error("failed to read kernel BTF for attaching")]
    KernelBtf(#[from] aya::BtfError),
    #[error("eBPF object has no program `{0}`")]
    MissingProgram(&'static str),
    #[error("eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("failed to attach `{hook}`")]
    Attach {
        hook: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("invalid audit rules")]
    Audit(#[source] crate::config::ConfigError),
    #[error("failed to verify what the programs read")]
    Verify(#[from] verify::VerifyError),
    #[error("map `{name}` has an unexpected type")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A BTF tracepoint (`tp_btf`).
    BtfTracepoint,
    /// A classic tracepoint of this category.
    Tracepoint(&'static str),
    /// The entry of a kernel function (BPF trampoline).
    FEntry,
}

/// One hook: the program's name in the object and the kernel tracepoint or function it
/// attaches to.
#[derive(Clone, Copy)]
pub struct Hook {
    pub program: &'static str,
    pub target: &'static str,
    pub kind: Kind,
    /// The sensor cannot run without it (in a [`HookSet`]: the set is unusable without it).
    pub required: bool,
}

impl Hook {
    /// `<type>/<name>`, as status reports it: `tp_btf/sched_process_exec`,
    /// `tracepoint/syscalls/sys_exit_execve`, `fentry/notify_change`.
    pub fn name(&self) -> String {
        match self.kind {
            Kind::BtfTracepoint => format!("tp_btf/{}", self.target),
            Kind::Tracepoint(category) => format!("tracepoint/{category}/{}", self.target),
            Kind::FEntry => format!("fentry/{}", self.target),
        }
    }
}

const fn btf_tp(program: &'static str, target: &'static str) -> Hook {
    Hook {
        program,
        target,
        kind: Kind::BtfTracepoint,
        required: true,
    }
}

const fn fentry(program: &'static str, target: &'static str) -> Hook {
    Hook {
        program,
        target,
        kind: Kind::FEntry,
        required: true,
    }
}

/// `hook`, not required: its set is usable without it.
const fn optional(hook: Hook) -> Hook {
    Hook {
        required: false,
        ..hook
    }
}

/// Ways of seeing one thing, best first: the first whose required hooks all attach is used,
/// and `status` names it under `hooks_chosen`.
pub struct HookSet {
    /// What status calls this way.
    pub name: &'static str,
    pub hooks: &'static [Hook],
}

/// Every hook, in attach order. Fork first so no child escapes between attaches.
pub const HOOKS: &[Hook] = &[
    btf_tp("sched_process_fork", "sched_process_fork"),
    btf_tp("sched_process_exec", "sched_process_exec"),
    btf_tp("sched_process_exit", "sched_process_exit"),
    // Failed execs; without them the sensor still reports every exec that succeeds.
    exit_hook("sys_exit_execve", "sys_exit_execve"),
    exit_hook("sys_exit_execveat", "sys_exit_execveat"),
];

/// Programs with a plainer variant for kernels that refuse them: the exec hook's environment
/// scan needs `bpf_loop` (5.17).
const FALLBACKS: &[(&str, &str)] = &[("sched_process_exec", "sched_process_exec_plain")];

/// An optional hook on a syscall's exit tracepoint.
const fn exit_hook(program: &'static str, target: &'static str) -> Hook {
    Hook {
        program,
        target,
        kind: Kind::Tracepoint("syscalls"),
        required: false,
    }
}

/// Memory and cross-process hooks (see `sensor-ebpf/src/memory.rs`), attached unless
/// `memory.enabled` is false.
const MEMORY_HOOKS: &[Hook] = &[
    exit_hook("mem_mmap_exit", "sys_exit_mmap"),
    exit_hook("mem_mprotect_exit", "sys_exit_mprotect"),
    exit_hook("mem_memfd_exit", "sys_exit_memfd_create"),
    exit_hook("mem_ptrace_exit", "sys_exit_ptrace"),
    exit_hook("mem_vm_writev_exit", "sys_exit_process_vm_writev"),
    exit_hook("mem_open_exit", "sys_exit_open"),
    exit_hook("mem_open_exit", "sys_exit_openat"),
    exit_hook("mem_open_exit", "sys_exit_openat2"),
];

/// The kernel side, loaded and attached.
pub struct Loaded {
    /// Keeps programs and links alive; dropping it detaches everything.
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
    /// [`Hook::name`] of each attached hook.
    pub attached: Vec<String>,
    /// `<hook name>: <reason>` for each optional hook the kernel refused.
    pub refused: Vec<String>,
    /// For each thing seen one of several ways, the way used: `fim.inode_changes` is a
    /// [`HookSet::name`] of [`FIM_INODE_SETS`] (or `none`), `sched_process_exec` the exec
    /// program attached (with or without the environment scan).
    pub chosen: std::collections::BTreeMap<String, String>,
    /// Hook types beyond tracepoints that this kernel loads and attaches, and those it
    /// refused (`<type>: <reason>`).
    pub program_types: Vec<String>,
    pub program_types_refused: Vec<String>,
    /// Records of other processes read during the start-up check, for the reader to handle
    /// first.
    pub backlog: Vec<Vec<u8>>,
    /// FIM's map and ring buffer, when FIM is on.
    pub fim: Option<crate::fim::Kernel>,
    /// The audit rules the kernel side was set up with, when audit is on.
    pub audit: Option<crate::audit::RuleSet>,
}

/// File-integrity hooks, attached when `fim.paths` is not empty. Writers are followed at the
/// exits of the open, close and dup syscalls (every kernel; exits only, see `WRITERS` in
/// sensor-ebpf); creates and every other change to an inode are seen by one of
/// [`FIM_INODE_SETS`].
const FIM_HOOKS: &[Hook] = &[
    exit_hook("fim_open_exit", "sys_exit_open"),
    exit_hook("fim_open_exit", "sys_exit_openat"),
    exit_hook("fim_open_exit", "sys_exit_openat2"),
    exit_hook("fim_open_exit", "sys_exit_creat"),
    exit_hook("fim_open_exit", "sys_exit_open_by_handle_at"),
    exit_hook("fim_close_exit", "sys_exit_close"),
    exit_hook("fim_dup_exit", "sys_exit_dup"),
    exit_hook("fim_fcntl_exit", "sys_exit_fcntl"),
    exit_hook("fim_dup2_exit", "sys_exit_dup2"),
    exit_hook("fim_dup2_exit", "sys_exit_dup3"),
];

/// The ways of seeing every change to an inode (creates, namespace and attribute changes,
/// content changed without a close). The `timestamp` tracepoints (6.13+, multigrain
/// timestamps) come first: they fire on the change itself, whatever path made it. Older
/// kernels have fentry instead (5.5+, where BPF trampolines work), on the security hooks the
/// VFS calls for each operation and on the functions a write moves the times through. Hooks
/// of newer kernels are optional: the ACL hooks (6.2, before which ACLs are xattrs),
/// `file_modified` and `kiocb_modified` (6.0, XFS's writes; older kernels move every write's
/// times through `file_update_time`).
pub const FIM_INODE_SETS: &[HookSet] = &[
    HookSet {
        name: "timestamp-tracepoints",
        hooks: &[
            btf_tp("fim_ctime_ns_xchg", "ctime_ns_xchg"),
            btf_tp("fim_ctime_xchg_skip", "ctime_xchg_skip"),
            btf_tp("fim_inode_set_ctime_to_ts", "inode_set_ctime_to_ts"),
        ],
    },
    HookSet {
        name: "fentry",
        hooks: &[
            fentry("fim_notify_change", "notify_change"),
            fentry("fim_inode_unlink", "security_inode_unlink"),
            fentry("fim_inode_rmdir", "security_inode_rmdir"),
            fentry("fim_inode_rename", "security_inode_rename"),
            fentry("fim_inode_link", "security_inode_link"),
            fentry("fim_inode_create", "security_inode_create"),
            fentry("fim_inode_mkdir", "security_inode_mkdir"),
            fentry("fim_inode_mknod", "security_inode_mknod"),
            fentry("fim_inode_symlink", "security_inode_symlink"),
            fentry("fim_d_instantiate", "d_instantiate"),
            fentry("fim_d_instantiate_new", "d_instantiate_new"),
            fentry("fim_inode_setxattr", "security_inode_setxattr"),
            fentry("fim_inode_removexattr", "security_inode_removexattr"),
            optional(fentry("fim_inode_set_acl", "security_inode_set_acl")),
            optional(fentry("fim_inode_remove_acl", "security_inode_remove_acl")),
            fentry("fim_file_update_time", "file_update_time"),
            optional(fentry("fim_file_modified", "file_modified")),
            optional(fentry("fim_kiocb_modified", "kiocb_modified")),
        ],
    },
];

/// The `hooks_chosen` key of [`FIM_INODE_SETS`].
pub const FIM_INODE_CHANGES: &str = "fim.inode_changes";

/// Attaches the first usable set of [`FIM_INODE_SETS`]; returns its name, or `none`.
fn choose_fim_inode_hooks(
    ebpf: &mut Ebpf,
    btf: &Btf,
    attached: &mut Vec<String>,
    refused: &mut Vec<String>,
) -> Result<&'static str, LoadError> {
    let set = attach_first(
        ebpf,
        btf,
        FIM_INODE_CHANGES,
        FIM_INODE_SETS,
        attached,
        refused,
    )?;
    Ok(set.unwrap_or("none"))
}

/// Attaches the first of `sets` whose required hooks all attach; returns its name, or `None`
/// when none did (each refusal is in `refused`). A set given up is unloaded whole.
fn attach_first(
    ebpf: &mut Ebpf,
    btf: &Btf,
    what: &str,
    sets: &[HookSet],
    attached: &mut Vec<String>,
    refused: &mut Vec<String>,
) -> Result<Option<&'static str>, LoadError> {
    for set in sets {
        let mut ok = Vec::new();
        let mut failed = None;
        for hook in set.hooks {
            match attach(ebpf, hook, btf) {
                Ok(()) => ok.push(hook.name()),
                Err(e) => {
                    let reason = format!("{}: {}", hook.name(), error_chain(&e));
                    if hook.required {
                        failed = Some(reason);
                        break;
                    }
                    tracing::warn!(hook = %hook.name(), error = %reason, "hook unavailable");
                    refused.push(reason);
                }
            }
        }
        match failed {
            None => {
                tracing::info!(what, chosen = set.name, "hooks chosen");
                attached.extend(ok);
                return Ok(Some(set.name));
            }
            Some(reason) => {
                tracing::debug!(what, set = set.name, error = %reason, "hook set unavailable");
                refused.push(format!("{what} {}: {reason}", set.name));
                for hook in set.hooks {
                    unload(ebpf, hook);
                }
            }
        }
    }
    Ok(None)
}

/// Loads the programs with offsets for the running kernel, attaches every hook and checks what
/// they read against a known process.
pub fn load(config: &Config) -> Result<Loaded, LoadError> {
    let offsets = btf::resolve(Path::new(btf::VMLINUX_BTF))?;
    load_with(config, offsets, &verify::CheckProcess::own_version()?)
}

/// [`load`] with the given offsets and check process; tests use it to show that a wrong offset
/// is caught.
pub fn load_with(
    config: &Config,
    offsets: KernelOffsets,
    check: &verify::CheckProcess,
) -> Result<Loaded, LoadError> {
    raise_memlock();
    let settings = Settings {
        self_tgid: if config.exclude_self {
            std::process::id()
        } else {
            0
        },
        args_max: config.args_max_bytes,
    };
    let cpus = aya::util::nr_cpus().map_err(|(path, e)| LoadError::Cpus(path, e))?;
    // The programs' log records carry targets under `sensor` (the eBPF binary's name).
    let log_level: u8 = if tracing::enabled!(target: "sensor", tracing::Level::DEBUG) {
        aya_log::Level::Debug as u8
    } else {
        0
    };

    let mut ebpf = EbpfLoader::new()
        .override_global("OFFSETS", &offsets, true)
        .override_global("SETTINGS", &settings, true)
        .override_global(aya_log::LEVEL, &log_level, false)
        .map_max_entries("SCRATCH", cpus as u32)
        .map_max_entries("EVENTS", config.ring_buffer_bytes)
        .map_max_entries("WATCHED", config.fim.max_watched)
        .map_max_entries("FIM_EVENTS", config.fim.ring_buffer_bytes)
        .load(OBJECT)?;
    if log_level != 0 {
        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => crate::reader::spawn_ebpf_logger(logger),
            Err(e) => tracing::debug!(error = %e, "eBPF logging unavailable"),
        }
    }

    let btf = Btf::from_sys_fs()?;
    // Classic tracepoints are found through tracefs, which a fresh host may not have mounted.
    if let Err(e) = tracefs::ensure_mounted() {
        tracing::warn!(error = format!("{e:#}"), "tracefs unavailable");
    }
    let mut attached = Vec::new();
    let mut refused = Vec::new();
    let mut chosen = std::collections::BTreeMap::new();
    let fim_on = !config.fim.paths.is_empty();
    let fim_hooks = if fim_on { FIM_HOOKS } else { &[] };
    let memory_hooks = if config.memory.enabled {
        MEMORY_HOOKS
    } else {
        &[]
    };
    for hook in HOOKS.iter().chain(fim_hooks).chain(memory_hooks) {
        let name = hook.name();
        let mut result = attach(&mut ebpf, hook, &btf);
        if let (Err(e), Some((_, plain))) =
            (&result, FALLBACKS.iter().find(|(p, _)| *p == hook.program))
        {
            let reason = error_chain(e);
            tracing::warn!(hook = %name, error = %reason, fallback = plain, "using the fallback");
            refused.push(format!("{name} ({}): {reason}", hook.program));
            let fallback = Hook {
                program: plain,
                ..*hook
            };
            result = attach(&mut ebpf, &fallback, &btf);
            if result.is_ok() {
                chosen.insert(hook.program.to_string(), plain.to_string());
            }
        } else if result.is_ok() && FALLBACKS.iter().any(|(p, _)| *p == hook.program) {
            chosen.insert(hook.program.to_string(), hook.program.to_string());
        }
        match result {
            Ok(()) => {
                tracing::info!(hook = %name, "attached");
                attached.push(name);
            }
            Err(e) if !hook.required => {
                let reason = error_chain(&e);
                tracing::warn!(hook = %name, error = %reason, "hook unavailable");
                refused.push(format!("{name}: {reason}"));
            }
            Err(e) => return Err(e),
        }
    }

    let fim = if fim_on {
        let set = choose_fim_inode_hooks(&mut ebpf, &btf, &mut attached, &mut refused)?;
        chosen.insert(FIM_INODE_CHANGES.to_string(), set.to_string());
        attach_fim_syscalls(&mut ebpf, &mut attached, &mut refused)?;
        Some(crate::fim::Kernel {
            watched: take_map(&mut ebpf, "WATCHED")?,
            close_sent: take_map(&mut ebpf, "CLOSE_SENT")?,
            ring: take_map(&mut ebpf, "FIM_EVENTS")?,
        })
    } else {
        None
    };

    let audit = match config.audit() {
        Some(audit) => {
            let rules = crate::audit::RuleSet::compile(audit).map_err(LoadError::Audit)?;
            audit::attach(&mut ebpf, &rules, &mut attached, &mut refused)?;
            Some(rules)
        }
        None => None,
    };

    let (program_types, program_types_refused) =
        split_probed(probe::program_types(&mut ebpf, &btf));

    let mut events = take_map(&mut ebpf, "EVENTS")?;
    let lost = take_map(&mut ebpf, "LOST")?;
    let backlog = verify::verify(&mut events, &lost, check)?;
    Ok(Loaded {
        ebpf,
        events,
        lost,
        attached,
        refused,
        chosen,
        program_types,
        program_types_refused,
        backlog,
        fim,
        audit,
    })
}

/// Attaches `fim_syscall_exit` to the exit of every namespace and attribute syscall and
/// tells the programs, through `FIM_SYSCALLS`, which ones it watches and where their names
/// are. A syscall whose exit is not attached is left out of the map, so its changes count as
/// content changes rather than waiting for an exit that never comes.
fn attach_fim_syscalls(
    ebpf: &mut Ebpf,
    attached: &mut Vec<String>,
    refused: &mut Vec<String>,
) -> Result<(), LoadError> {
    let mut ok: Vec<(u32, SyscallPaths)> = Vec::new();
    for sc in crate::fim::syscalls::SYSCALLS {
        let tracepoint = format!("sys_exit_{}", sc.name);
        let name = format!("tracepoint/syscalls/{tracepoint}");
        match attach_syscall(ebpf, "fim_syscall_exit", &tracepoint) {
            Ok(_) => {
                tracing::debug!(hook = %name, "attached");
                attached.push(name);
                ok.push((sc.nr, sc.paths));
            }
            Err(e) => {
                let reason = error_chain(&e);
                tracing::debug!(hook = %name, error = %reason, "hook unavailable");
                refused.push(format!("{name}: {reason}"));
            }
        }
    }
    let map = ebpf
        .map_mut("FIM_SYSCALLS")
        .ok_or(LoadError::MissingMap("FIM_SYSCALLS"))?;
    let mut map: BpfHashMap<_, u32, SyscallPaths> =
        BpfHashMap::try_from(map).map_err(|source| LoadError::Map {
            name: "FIM_SYSCALLS",
            source,
        })?;
    ok.extend(crate::fim::syscalls::OPENS.iter().map(|s| (s.nr, s.paths)));
    for (nr, paths) in ok {
        map.insert(nr, paths, 0).map_err(|source| LoadError::Map {
            name: "FIM_SYSCALLS",
            source,
        })?;
    }
    Ok(())
}

/// Loads the classic tracepoint program `program`, if it is not loaded yet.
pub(crate) fn load_tracepoint(ebpf: &mut Ebpf, program: &'static str) -> Result<(), LoadError> {
    let fail = |source| LoadError::Attach {
        hook: program,
        source,
    };
    let p: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(fail)?;
    if p.fd().is_err() {
        p.load().map_err(fail)?;
    }
    Ok(())
}

/// Attaches `program` (loading it the first time) to `syscalls/<tracepoint>`.
pub(crate) fn attach_syscall(
    ebpf: &mut Ebpf,
    program: &'static str,
    tracepoint: &str,
) -> Result<(), LoadError> {
    let fail = |source| LoadError::Attach {
        hook: program,
        source,
    };
    let p: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(fail)?;
    if p.fd().is_err() {
        p.load().map_err(fail)?;
    }
    p.attach("syscalls", tracepoint).map_err(fail)?;
    Ok(())
}

fn attach(ebpf: &mut Ebpf, hook: &Hook, btf: &Btf) -> Result<(), LoadError> {
    let fail = |source| LoadError::Attach {
        hook: hook.target,
        source,
    };
    let program = ebpf
        .program_mut(hook.program)
        .ok_or(LoadError::MissingProgram(hook.program))?;
    match hook.kind {
        Kind::BtfTracepoint => {
            let program: &mut BtfTracePoint = program.try_into().map_err(fail)?;
            program.load(hook.target, btf).map_err(fail)?;
            program.attach().map_err(fail)?;
        }
        Kind::Tracepoint(category) => {
            let program: &mut TracePoint = program.try_into().map_err(fail)?;
            // One program may serve several tracepoints (the open family); load it once.
            if program.fd().is_err() {
                program.load().map_err(fail)?;
            }
            program.attach(category, hook.target).map_err(fail)?;
        }
        Kind::FEntry => {
            let program: &mut FEntry = program.try_into().map_err(fail)?;
            program.load(hook.target, btf).map_err(fail)?;
            program.attach().map_err(fail)?;
        }
    }
    Ok(())
}

/// Unloads `hook`'s program, which detaches every link of it; nothing if it is not loaded.
fn unload(ebpf: &mut Ebpf, hook: &Hook) {
    let Some(program) = ebpf.program_mut(hook.program) else {
        return;
    };
    let result = match hook.kind {
        Kind::BtfTracepoint => <&mut BtfTracePoint>::try_from(program).and_then(|p| p.unload()),
        Kind::Tracepoint(_) => <&mut TracePoint>::try_from(program).and_then(|p| p.unload()),
        Kind::FEntry => <&mut FEntry>::try_from(program).and_then(|p| p.unload()),
    };
    if let Err(e) = result {
        tracing::debug!(program = hook.program, error = %error_chain(&e), "unload");
    }
}

/// `error: cause: cause`, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Probes the hook types of the running kernel without attaching the sensor's hooks.
pub fn probe_program_types() -> Result<Probe, LoadError> {
    raise_memlock();
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", 4096)
        .map_max_entries("FIM_EVENTS", 4096)
        .load(OBJECT)?;
    let btf = Btf::from_sys_fs()?;
    let types = probe::program_types(&mut ebpf, &btf);
    // The choice is made as at start; the hooks run with an empty watch set until dropped.
    let (mut attached, mut refused) = (Vec::new(), Vec::new());
    let set = choose_fim_inode_hooks(&mut ebpf, &btf, &mut attached, &mut refused)?;
    Ok(Probe {
        types,
        chosen: vec![(FIM_INODE_CHANGES, set)],
        refused,
    })
}

/// What [`probe_program_types`] learnt.
pub struct Probe {
    pub types: Vec<probe::Probed>,
    /// As [`Loaded::chosen`], for the hook sets tried.
    pub chosen: Vec<(&'static str, &'static str)>,
    /// Why the sets not chosen were given up.
    pub refused: Vec<String>,
}

fn split_probed(probed: Vec<probe::Probed>) -> (Vec<String>, Vec<String>) {
    let mut loaded = Vec::new();
    let mut refused = Vec::new();
    for p in probed {
        match p.refused {
            None => loaded.push(p.kind.to_string()),
            Some(reason) => refused.push(format!("{}: {reason}", p.kind)),
        }
    }
    (loaded, refused)
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones to the memory cgroup,
/// where a refused raise is harmless.
fn raise_memlock() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "memlock limit not raised");
    }
}
