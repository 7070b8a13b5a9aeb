//! Kernel struct offsets and load-time settings handed to the programs as read-only globals.
//!
//! No kernel layout is compiled into the eBPF object: the collector reads the running kernel's
//! BTF, fills these structs and patches them into `.rodata` before load, so the verifier sees
//! constants and the programs read the right fields on any kernel.

/// Byte offsets of every kernel struct field the programs read.
///
/// Names are `<struct>_<field>`; nested members are flattened (`dentry_d_name_len` is the
/// offset of `d_name.len` inside `struct dentry`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_real_cred: u32,
    pub task_mm: u32,
    pub task_fs: u32,
    pub task_signal: u32,
    pub task_comm: u32,
    pub task_loginuid: u32,
    pub task_sessionid: u32,
    pub task_exit_code: u32,
    pub task_vfork_done: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub fdtable_close_on_exec: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub cred_suid: u32,
    pub cred_sgid: u32,
    pub cred_fsuid: u32,
    pub cred_fsgid: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub mm_exe_file: u32,
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub file_f_path: u32,
    pub file_f_inode: u32,
    pub file_f_mode: u32,
    /// `file.f_ref` (6.13+, `file_ref_t`, 0 meaning one reference) or `file.f_count`.
    pub file_f_ref: u32,
    pub file_f_count: u32,
    pub inode_i_ino: u32,
    pub inode_i_nlink: u32,
    pub inode_i_writecount: u32,
    pub inode_i_sb: u32,
    pub sb_s_dev: u32,
    pub sb_s_magic: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_inode: u32,
    pub dentry_d_name_name: u32,
    pub dentry_d_name_len: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,
    pub signal_live: u32,
    pub signal_tty: u32,
    pub tty_name: u32,
    pub bprm_argc: u32,
    pub bprm_filename: u32,
    pub bprm_interp: u32,
    pub bprm_file: u32,
    /// `linux_binprm.fdpath`: the name an execveat with a descriptor generated.
    pub bprm_fdpath: u32,
    pub pt_regs_syscall_nr: u32,
    /// Saved registers of syscall arguments 0 to 4, and of the return value.
    pub pt_regs_arg0: u32,
    pub pt_regs_arg1: u32,
    pub pt_regs_arg2: u32,
    pub pt_regs_arg3: u32,
    pub pt_regs_arg4: u32,
    pub pt_regs_ret: u32,
    /// `kiocb.ki_filp`: the file a write through a kiocb changes.
    pub kiocb_ki_filp: u32,
    /// Bit set of [`optional`] fields this kernel has; absent ones read as "unset".
    pub present: u32,
}

impl KernelOffsets {
    /// All offsets zero: the placeholder compiled into the eBPF object.
    pub const ZERO: Self = {
        // SAFETY: every field is a u32, for which all-zero bytes are a valid value.
        unsafe { core::mem::zeroed() }
    };
}

/// Fields that some kernel configurations lack; their bits go in [`KernelOffsets::present`].
pub mod optional {
    /// `task_struct.loginuid` and `sessionid` (CONFIG_AUDIT).
    pub const AUDIT_IDS: u32 = 1 << 0;
    /// `signal_struct.tty`, `tty_struct.name`.
    pub const TTY: u32 = 1 << 1;
    /// `pt_regs` syscall number, for naming the clone-family syscall.
    pub const SYSCALL_NR: u32 = 1 << 2;
    /// `pt_regs` argument and return registers, for reporting failed execs.
    pub const SYSCALL_ARGS: u32 = 1 << 3;
    /// `file.f_ref`, the reference count of 6.13 and later.
    pub const FILE_REF: u32 = 1 << 4;
    /// `file.f_count`, the reference count before 6.13.
    pub const FILE_COUNT: u32 = 1 << 5;
    /// `linux_binprm.fdpath` (5.9+), which tells an execveat through a descriptor.
    pub const FDPATH: u32 = 1 << 6;
}

/// Values the collector decides at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Thread-group id of the sensor itself; its activity is not reported when non-zero.
    pub self_tgid: u32,
    /// Bytes of argv copied per exec, at most [`crate::records::ARGS_BUF`] - 1.
    pub args_max: u32,
}

impl Settings {
    /// All settings zero: the placeholder compiled into the eBPF object.
    pub const ZERO: Self = Self {
        self_tgid: 0,
        args_max: 0,
    };
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 71 * 4);
const _: () = assert!(core::mem::size_of::<Settings>() == 8);

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` struct of u32 fields with no padding bytes.
unsafe impl aya::Pod for KernelOffsets {}
#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` struct of u32 fields with no padding bytes.
unsafe impl aya::Pod for Settings {}
