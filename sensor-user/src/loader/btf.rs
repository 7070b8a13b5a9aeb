//! Kernel struct offsets resolved from the running kernel's BTF.
//!
//! In: `/sys/kernel/btf/vmlinux`. Out: a filled [`KernelOffsets`]. A required field that the
//! kernel lacks is an error naming `struct.field`; optional ones clear their bit in `present`.

use std::path::Path;

use btfparse::{Offset, Readable, TypeInformation};
use sensor_common::{offsets::optional, KernelOffsets};

/// Failure to resolve the kernel's layout.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("failed to read kernel BTF from {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse kernel BTF: {0}")]
    Parse(String),
    #[error("kernel BTF has no `struct {0}`")]
    MissingStruct(&'static str),
    #[error("kernel BTF has no field `{0}.{1}`: this kernel's layout is not supported")]
    MissingField(&'static str, &'static str),
    #[error("field `{0}.{1}` is a bitfield; the programs read whole bytes")]
    Bitfield(&'static str, &'static str),
}

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buffer.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or_else(|| btfparse::Error::new(btfparse::ErrorKind::IOError, "read past end"))?;
        buffer.copy_from_slice(src);
        Ok(())
    }
}

/// One field the programs read: which slot of [`KernelOffsets`] it fills.
struct Field {
    strukt: &'static str,
    path: &'static str,
    slot: fn(&mut KernelOffsets) -> &mut u32,
    /// Zero for required fields, else the [`optional`] bit the field belongs to.
    optional: u32,
}

macro_rules! fields {
    ($($slot:ident = $strukt:literal . $path:expr $(, $opt:expr)?;)*) => {
        &[$(Field {
            strukt: $strukt,
            path: $path,
            slot: |o| &mut o.$slot,
            optional: 0 $(| $opt)?,
        }),*]
    };
}

/// Every offset the programs use, as `slot = "struct"."member.path"`.
const FIELDS: &[Field] = fields! {
    task_pid = "task_struct"."pid";
    task_tgid = "task_struct"."tgid";
    task_real_parent = "task_struct"."real_parent";
    task_group_leader = "task_struct"."group_leader";
    task_start_boottime = "task_struct"."start_boottime";
    task_real_cred = "task_struct"."real_cred";
    task_mm = "task_struct"."mm";
    task_fs = "task_struct"."fs";
    task_signal = "task_struct"."signal";
    task_comm = "task_struct"."comm";
    task_exit_code = "task_struct"."exit_code";
    task_vfork_done = "task_struct"."vfork_done";
    task_files = "task_struct"."files";
    files_fdt = "files_struct"."fdt";
    fdtable_max_fds = "fdtable"."max_fds";
    fdtable_fd = "fdtable"."fd";
    fdtable_close_on_exec = "fdtable"."close_on_exec";
    task_loginuid = "task_struct"."loginuid", optional::AUDIT_IDS;
    task_sessionid = "task_struct"."sessionid", optional::AUDIT_IDS;
    cred_uid = "cred"."uid";
    cred_gid = "cred"."gid";
    cred_euid = "cred"."euid";
    cred_egid = "cred"."egid";
    cred_suid = "cred"."suid";
    cred_sgid = "cred"."sgid";
    cred_fsuid = "cred"."fsuid";
    cred_fsgid = "cred"."fsgid";
    mm_arg_start = "mm_struct"."arg_start";
    mm_arg_end = "mm_struct"."arg_end";
    mm_env_start = "mm_struct"."env_start";
    mm_env_end = "mm_struct"."env_end";
    mm_exe_file = "mm_struct"."exe_file";
    fs_pwd = "fs_struct"."pwd";
    path_mnt = "path"."mnt";
    path_dentry = "path"."dentry";
    file_f_path = "file"."f_path";
    file_f_inode = "file"."f_inode";
    file_f_mode = "file"."f_mode";
    file_f_ref = "file"."f_ref", optional::FILE_REF;
    file_f_count = "file"."f_count", optional::FILE_COUNT;
    inode_i_ino = "inode"."i_ino";
    inode_i_nlink = "inode"."i_nlink";
    inode_i_writecount = "inode"."i_writecount";
    inode_i_sb = "inode"."i_sb";
    sb_s_dev = "super_block"."s_dev";
    sb_s_magic = "super_block"."s_magic";
    dentry_d_parent = "dentry"."d_parent";
    dentry_d_inode = "dentry"."d_inode";
    dentry_d_name_name = "dentry"."d_name.name";
    dentry_d_name_len = "dentry"."d_name.len";
    mount_mnt = "mount"."mnt";
    mount_mnt_parent = "mount"."mnt_parent";
    mount_mnt_mountpoint = "mount"."mnt_mountpoint";
    vfsmount_mnt_root = "vfsmount"."mnt_root";
    signal_live = "signal_struct"."live";
    signal_tty = "signal_struct"."tty", optional::TTY;
    tty_name = "tty_struct"."name", optional::TTY;
    bprm_argc = "linux_binprm"."argc";
    bprm_filename = "linux_binprm"."filename";
    bprm_interp = "linux_binprm"."interp";
    bprm_file = "linux_binprm"."file";
    bprm_fdpath = "linux_binprm"."fdpath", optional::FDPATH;
    pt_regs_syscall_nr = "pt_regs".SYSCALL_NR_FIELD, optional::SYSCALL_NR;
    pt_regs_arg0 = "pt_regs".ARG_FIELDS[0], optional::SYSCALL_ARGS;
    pt_regs_arg1 = "pt_regs".ARG_FIELDS[1], optional::SYSCALL_ARGS;
    pt_regs_arg2 = "pt_regs".ARG_FIELDS[2], optional::SYSCALL_ARGS;
    pt_regs_arg3 = "pt_regs".ARG_FIELDS[3], optional::SYSCALL_ARGS;
    pt_regs_arg4 = "pt_regs".ARG_FIELDS[4], optional::SYSCALL_ARGS;
    pt_regs_ret = "pt_regs".RET_FIELD, optional::SYSCALL_ARGS;
    kiocb_ki_filp = "kiocb"."ki_filp";
};

/// The saved registers of syscall arguments 0 to 4 (the x86-64 syscall ABI).
#[cfg(target_arch = "x86_64")]
const ARG_FIELDS: [&str; 5] = ["di", "si", "dx", "r10", "r8"];
/// The saved register holding the syscall's return value.
#[cfg(target_arch = "x86_64")]
const RET_FIELD: &str = "ax";
// TODO: aarch64 keeps arguments in the `regs` array (and the first in `orig_x0`), which a
// member path cannot name; failed execs are not reported there until the resolver takes an
// array index.
#[cfg(target_arch = "aarch64")]
const ARG_FIELDS: [&str; 5] = [
    "orig_x0",
    "unresolved",
    "unresolved",
    "unresolved",
    "unresolved",
];
#[cfg(target_arch = "aarch64")]
const RET_FIELD: &str = "unresolved";

/// The saved register holding the syscall number.
#[cfg(target_arch = "x86_64")]
const SYSCALL_NR_FIELD: &str = "orig_ax";
#[cfg(target_arch = "aarch64")]
const SYSCALL_NR_FIELD: &str = "syscallno";

/// Resolves every offset from the BTF file at `path`.
pub fn resolve(path: &Path) -> Result<KernelOffsets, BtfError> {
    let bytes = std::fs::read(path).map_err(|source| BtfError::Read {
        path: path.display().to_string(),
        source,
    })?;
    resolve_bytes(bytes)
}

/// Resolves every offset from raw BTF bytes.
pub fn resolve_bytes(bytes: Vec<u8>) -> Result<KernelOffsets, BtfError> {
    let types = TypeInformation::new(&Bytes(bytes))
        .map_err(|e| BtfError::Parse(e.message().to_string()))?;
    let mut offsets = KernelOffsets::ZERO;
    let all_optional = FIELDS.iter().fold(0, |acc, f| acc | f.optional);
    let mut missing_optional = 0;
    for field in FIELDS {
        match offset_of(&types, field.strukt, field.path) {
            Ok(at) => *(field.slot)(&mut offsets) = at,
            Err(BtfError::MissingField(..)) if field.optional != 0 => {
                tracing::debug!(field = %format!("{}.{}", field.strukt, field.path),
                    "optional kernel field absent");
                missing_optional |= field.optional;
            }
            Err(e) => return Err(e),
        }
    }
    offsets.present = all_optional & !missing_optional;
    tracing::debug!(?offsets, "kernel offsets resolved");
    Ok(offsets)
}

fn offset_of(
    types: &TypeInformation,
    strukt: &'static str,
    path: &'static str,
) -> Result<u32, BtfError> {
    let id = types.id_of(strukt).ok_or(BtfError::MissingStruct(strukt))?;
    match types.offset_of(id, path) {
        Ok((_, Offset::ByteOffset(at))) => Ok(at),
        Ok((_, Offset::BitOffsetAndSize(..))) => Err(BtfError::Bitfield(strukt, path)),
        Err(_) => Err(BtfError::MissingField(strukt, path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_resolves_on_the_running_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI machine has no {VMLINUX_BTF}"
            );
            eprintln!("skipped: no {VMLINUX_BTF} on this machine");
            return;
        }

        let offsets = resolve(Path::new(VMLINUX_BTF)).expect("offsets resolve");

        assert_ne!(
            offsets.task_tgid, 0,
            "tgid is not the first field of task_struct"
        );
        assert_eq!(offsets.task_tgid, offsets.task_pid + 4, "tgid follows pid");
        assert_ne!(
            offsets.dentry_d_name_name, 0,
            "name inside the anonymous d_name union"
        );
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        let err = resolve_bytes(vec![0xde, 0xad, 0xbe, 0xef]).unwrap_err();

        assert!(matches!(err, BtfError::Parse(_)), "got {err:?}");
    }
}
