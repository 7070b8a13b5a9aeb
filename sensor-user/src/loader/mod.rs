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
    programs::{BtfTracePoint, TracePoint},
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

/// One hook: the program's name in the object and the kernel tracepoint it attaches to.
#[derive(Clone, Copy)]
pub struct Hook {
    pub program: &'static str,
    pub tracepoint: &'static str,
    /// `None` for a BTF tracepoint (`tp_btf`), else the classic tracepoint's category.
    pub category: Option<&'static str>,
    /// The sensor cannot run without it.
    pub required: bool,
}

impl Hook {
    /// `<type>/<name>`, as status reports it: `tp_btf/sched_process_exec`,
    /// `tracepoint/syscalls/sys_exit_execve`.
    pub fn name(&self) -> String {
        match self.category {
            None => format!("tp_btf/{}", self.tracepoint),
            Some(category) => format!("tracepoint/{category}/{}", self.tracepoint),
        }
    }
}

/// Every hook, in attach order. Fork first so no child escapes between attaches.
pub const HOOKS: &[Hook] = &[
    Hook {
        program: "sched_process_fork",
        tracepoint: "sched_process_fork",
        category: None,
        required: true,
    },
    Hook {
        program: "sched_process_exec",
        tracepoint: "sched_process_exec",
        category: None,
        required: true,
    },
    Hook {
        program: "sched_process_exit",
        tracepoint: "sched_process_exit",
        category: None,
        required: true,
    },
    // Failed execs; without them the sensor still reports every exec that succeeds.
    Hook {
        program: "sys_exit_execve",
        tracepoint: "sys_exit_execve",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "sys_exit_execveat",
        tracepoint: "sys_exit_execveat",
        category: Some("syscalls"),
        required: false,
    },
];

/// Programs with a plainer variant for kernels that refuse them: the exec hook's environment
/// scan needs `bpf_loop` (5.17).
const FALLBACKS: &[(&str, &str)] = &[("sched_process_exec", "sched_process_exec_plain")];

/// An optional hook on a syscall's exit tracepoint.
const fn exit_hook(program: &'static str, tracepoint: &'static str) -> Hook {
    Hook {
        program,
        tracepoint,
        category: Some("syscalls"),
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
/// sensor-ebpf); creates and every other change are seen at the `timestamp` tracepoints,
/// 6.13+ (multigrain timestamps).
const FIM_HOOKS: &[Hook] = &[
    Hook {
        program: "fim_open_exit",
        tracepoint: "sys_exit_open",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_open_exit",
        tracepoint: "sys_exit_openat",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_open_exit",
        tracepoint: "sys_exit_openat2",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_open_exit",
        tracepoint: "sys_exit_creat",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_open_exit",
        tracepoint: "sys_exit_open_by_handle_at",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_close_exit",
        tracepoint: "sys_exit_close",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_dup_exit",
        tracepoint: "sys_exit_dup",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_fcntl_exit",
        tracepoint: "sys_exit_fcntl",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_dup2_exit",
        tracepoint: "sys_exit_dup2",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_dup2_exit",
        tracepoint: "sys_exit_dup3",
        category: Some("syscalls"),
        required: false,
    },
    Hook {
        program: "fim_ctime_ns_xchg",
        tracepoint: "ctime_ns_xchg",
        category: None,
        required: false,
    },
    Hook {
        program: "fim_ctime_xchg_skip",
        tracepoint: "ctime_xchg_skip",
        category: None,
        required: false,
    },
    Hook {
        program: "fim_inode_set_ctime_to_ts",
        tracepoint: "inode_set_ctime_to_ts",
        category: None,
        required: false,
    },
];

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
        hook: hook.tracepoint,
        source,
    };
    let program = ebpf
        .program_mut(hook.program)
        .ok_or(LoadError::MissingProgram(hook.program))?;
    match hook.category {
        None => {
            let program: &mut BtfTracePoint = program.try_into().map_err(fail)?;
            program.load(hook.tracepoint, btf).map_err(fail)?;
            program.attach().map_err(fail)?;
        }
        Some(category) => {
            let program: &mut TracePoint = program.try_into().map_err(fail)?;
            // One program may serve several tracepoints (the open family); load it once.
            if program.fd().is_err() {
                program.load().map_err(fail)?;
            }
            program.attach(category, hook.tracepoint).map_err(fail)?;
        }
    }
    Ok(())
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
pub fn probe_program_types() -> Result<Vec<probe::Probed>, LoadError> {
    raise_memlock();
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", 4096)
        .map_max_entries("FIM_EVENTS", 4096)
        .load(OBJECT)?;
    let btf = Btf::from_sys_fs()?;
    Ok(probe::program_types(&mut ebpf, &btf))
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
