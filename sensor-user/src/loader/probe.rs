//! Which hook types the running kernel loads and attaches, learnt by trying.
//!
//! Kernel configuration files and version numbers lie (backports, disabled options, lockdown,
//! a VM that blocks BPF trampolines), so each type is tried with an empty program from the
//! object and unloaded again. Tracepoint types are known from the real hooks.

use aya::{
    programs::{FEntry, KProbe, Lsm, ProgramError, RawTracePoint},
    Btf, Ebpf,
};

/// One hook type and what trying it gave.
pub struct Probed {
    pub kind: &'static str,
    /// `None` when it loaded and attached, else why not.
    pub refused: Option<String>,
}

/// Loads, attaches and unloads one probe program.
type Attempt = fn(&mut Ebpf, &Btf) -> Result<(), ProgramError>;

/// Tries kprobe, fentry, BPF LSM and raw tracepoint programs in turn.
pub fn program_types(ebpf: &mut Ebpf, btf: &Btf) -> Vec<Probed> {
    let tries: [(&'static str, Attempt); 4] = [
        ("kprobe", try_kprobe),
        ("fentry", try_fentry),
        ("lsm", try_lsm),
        ("raw_tp", try_raw_tp),
    ];
    tries
        .iter()
        .map(|(kind, try_it)| {
            let refused = try_it(ebpf, btf)
                .err()
                .map(|e| crate::loader::error_chain(&e));
            tracing::debug!(
                kind,
                refused = refused.as_deref().unwrap_or("no"),
                "probed hook type"
            );
            Probed { kind, refused }
        })
        .collect()
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, ProgramError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| ProgramError::UnexpectedProgramType)?;
    program.try_into()
}

fn try_kprobe(ebpf: &mut Ebpf, _btf: &Btf) -> Result<(), ProgramError> {
    let p: &mut KProbe = program(ebpf, "probe_kprobe")?;
    p.load()?;
    let attached = p.attach("do_unlinkat", 0).map(drop);
    p.unload()?;
    attached
}

fn try_fentry(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), ProgramError> {
    let p: &mut FEntry = program(ebpf, "probe_fentry")?;
    p.load("do_unlinkat", btf)?;
    let attached = p.attach().map(drop);
    p.unload()?;
    attached
}

fn try_lsm(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), ProgramError> {
    let p: &mut Lsm = program(ebpf, "probe_lsm")?;
    p.load("file_open", btf)?;
    let attached = p.attach().map(drop);
    p.unload()?;
    attached
}

fn try_raw_tp(ebpf: &mut Ebpf, _btf: &Btf) -> Result<(), ProgramError> {
    let p: &mut RawTracePoint = program(ebpf, "probe_raw_tp")?;
    p.load()?;
    let attached = p.attach("sys_enter").map(drop);
    p.unload()?;
    attached
}
