//! Decoder stage: ring-buffer bytes to typed records.
//!
//! In: one record as the kernel wrote it. Out: a [`Record`] with paths rebuilt and argv split.
//! Anything short or inconsistent is a [`DecodeError`], counted by the caller, never a panic.

use sensor_common::{
    audit_flags, exec_failed_flags, exec_flags, fim_flags, kind, mem_op, AuditRecord,
    ExecFailedRecord, ExecRecord, ExitRecord, FimRecord, ForkRecord, MemRecord, RecordHeader,
};

/// A decoded kernel record.
#[derive(Debug, Clone)]
pub enum Record {
    Fork(ForkRecord),
    Exec(Box<Exec>),
    ExecFailed(Box<ExecFailed>),
    Exit(ExitRecord),
    Fim(Box<Fim>),
    Mem(Box<Mem>),
    Audit(Box<Audit>),
}

/// An audit record with its variable data parsed.
#[derive(Debug, Clone)]
pub struct Audit {
    pub raw: AuditRecord,
    /// Working directory; empty bytes for a syscall without names.
    pub cwd: KernelPath,
    /// Pathname arguments as passed, each with the directory descriptor's path a relative one
    /// is taken against (empty when absolute, absent, or against the working directory).
    pub name0: Vec<u8>,
    pub base0: KernelPath,
    pub name1: Vec<u8>,
    pub base1: KernelPath,
    /// The socket address, as passed or returned.
    pub sockaddr: Vec<u8>,
}

/// A memory or cross-process record with its name or path.
#[derive(Debug, Clone)]
pub struct Mem {
    pub raw: MemRecord,
    /// The memfd name as passed (`memfd_create`), or the dentry path of the file behind a
    /// mapping or of the procfs `mem` file opened; empty for none.
    pub path: KernelPath,
    /// The first page of a region made executable, as it was at the syscall; empty when it
    /// was not in memory.
    pub page: Vec<u8>,
}

/// A file-integrity record with its variable data parsed.
#[derive(Debug, Clone)]
pub struct Fim {
    pub raw: FimRecord,
    /// The file's path from its dentry (create, close; a syscall's `fd` argument); empty bytes
    /// when the record has none.
    pub path: KernelPath,
    /// The acting process's executable; empty for a kernel thread.
    pub exe: KernelPath,
    /// A syscall's pathname arguments as passed, each with the directory a relative one is
    /// taken against (empty when absolute or absent).
    pub name0: Vec<u8>,
    pub base0: KernelPath,
    pub name1: Vec<u8>,
    pub base1: KernelPath,
}

/// A failed exec with its variable data parsed.
#[derive(Debug, Clone)]
pub struct ExecFailed {
    pub raw: ExecFailedRecord,
    /// Filename as passed; empty when it could not be read.
    pub filename: Vec<u8>,
    /// For a relative filename, the directory it was taken against; empty bytes otherwise.
    pub base: KernelPath,
    /// Whole attempted arguments; a cut last one is left out.
    pub args: Vec<Vec<u8>>,
}

impl ExecFailed {
    /// Whether `bit` of [`exec_failed_flags`] is set.
    pub fn flag(&self, bit: u32) -> bool {
        self.raw.flags & bit != 0
    }
}

/// An exec record with its variable data parsed.
#[derive(Debug, Clone)]
pub struct Exec {
    pub raw: ExecRecord,
    pub executable: KernelPath,
    pub cwd: KernelPath,
    /// Filename as passed to execve.
    pub filename: Vec<u8>,
    /// Interpreter name when the kernel ran one.
    pub interpreter: Option<Vec<u8>>,
    /// The loader variables of the new environment (`LD_PRELOAD=...`), as found.
    pub loader_env: Vec<Vec<u8>>,
    /// Whole arguments; a partial last one (cut by the cap) is left out.
    pub args: Vec<Vec<u8>>,
    pub args_truncated: bool,
}

/// A path rebuilt from dentry components.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelPath {
    /// Absolute path, or when `truncated`, the kept tail (relative, no leading `/`).
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

/// A record that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("record kind {kind} needs {need} bytes, got {got}")]
    Truncated { kind: u32, need: usize, got: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let header: RecordHeader = read_struct(bytes).ok_or(DecodeError::Short(bytes.len()))?;
    match header.kind {
        kind::FORK => Ok(Record::Fork(fixed(bytes, header.kind)?)),
        kind::EXIT => Ok(Record::Exit(fixed(bytes, header.kind)?)),
        kind::EXEC => decode_exec(bytes).map(|e| Record::Exec(Box::new(e))),
        kind::EXEC_FAILED => decode_exec_failed(bytes).map(|e| Record::ExecFailed(Box::new(e))),
        kind::FIM_CREATE
        | kind::FIM_OPEN
        | kind::FIM_CLOSE
        | kind::FIM_CHANGE
        | kind::FIM_SYSCALL => decode_fim(bytes, header.kind).map(|f| Record::Fim(Box::new(f))),
        kind::MEM => decode_mem(bytes).map(|m| Record::Mem(Box::new(m))),
        kind::AUDIT => decode_audit(bytes).map(|a| Record::Audit(Box::new(a))),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn fixed<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    read_struct(bytes).ok_or(DecodeError::Truncated {
        kind,
        need: std::mem::size_of::<T>(),
        got: bytes.len(),
    })
}

/// Copies a `T` from the start of `bytes`, if there are enough.
fn read_struct<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked above and the wire types are plain old data for which any
    // bit pattern is valid; read_unaligned copes with the ring buffer's alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn decode_exec(bytes: &[u8]) -> Result<Exec, DecodeError> {
    let raw: ExecRecord = fixed(bytes, kind::EXEC)?;
    let lens = [
        raw.exe_len,
        raw.cwd_len,
        raw.filename_len,
        raw.interp_len,
        raw.env_len,
        raw.args_len,
    ];
    let need = std::mem::size_of::<ExecRecord>() + lens.iter().map(|&l| l as usize).sum::<usize>();
    let truncated = DecodeError::Truncated {
        kind: kind::EXEC,
        need,
        got: bytes.len(),
    };
    let mut rest = bytes
        .get(std::mem::size_of::<ExecRecord>()..need)
        .ok_or(truncated)?;
    let mut take = |len: u32| {
        let (head, tail) = rest.split_at(len as usize);
        rest = tail;
        head
    };
    let flag = |bit| raw.flags & bit != 0;
    let executable = rebuild_path(take(raw.exe_len), flag(exec_flags::EXE_TRUNCATED));
    let cwd = rebuild_path(take(raw.cwd_len), flag(exec_flags::CWD_TRUNCATED));
    let filename = c_string(take(raw.filename_len));
    let interp = take(raw.interp_len);
    let interpreter = flag(exec_flags::INTERPRETED).then(|| c_string(interp));
    let loader_env = take(raw.env_len)
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let args_truncated = flag(exec_flags::ARGS_TRUNCATED);
    let args = split_args(take(raw.args_len), args_truncated);
    Ok(Exec {
        raw,
        executable,
        cwd,
        filename,
        interpreter,
        loader_env,
        args,
        args_truncated,
    })
}

fn decode_exec_failed(bytes: &[u8]) -> Result<ExecFailed, DecodeError> {
    let raw: ExecFailedRecord = fixed(bytes, kind::EXEC_FAILED)?;
    let fixed_len = std::mem::size_of::<ExecFailedRecord>();
    let need = fixed_len
        + [raw.filename_len, raw.base_len, raw.args_len]
            .iter()
            .map(|&l| l as usize)
            .sum::<usize>();
    let data = bytes.get(fixed_len..need).ok_or(DecodeError::Truncated {
        kind: kind::EXEC_FAILED,
        need,
        got: bytes.len(),
    })?;
    let (filename, rest) = data.split_at(raw.filename_len as usize);
    let (base, args) = rest.split_at(raw.base_len as usize);
    let base = if base.is_empty() {
        KernelPath::default()
    } else {
        rebuild_path(base, raw.flags & exec_failed_flags::BASE_TRUNCATED != 0)
    };
    // Every copied argument ends in a NUL, a cut one included; a cut one is not an argument.
    let mut args = split_args(args, false);
    if raw.flags & exec_failed_flags::LAST_ARG_CUT != 0 {
        args.pop();
    }
    Ok(ExecFailed {
        raw,
        filename: c_string(filename),
        base,
        args,
    })
}

fn decode_fim(bytes: &[u8], kind: u32) -> Result<Fim, DecodeError> {
    let raw: FimRecord = fixed(bytes, kind)?;
    let lens = [
        raw.path_len,
        raw.exe_len,
        raw.name0_len,
        raw.base0_len,
        raw.name1_len,
        raw.base1_len,
    ];
    let [path, exe, name0, base0, name1, base1] = regions::<FimRecord, 6>(bytes, kind, lens)?;
    let flag = |bit| raw.flags & bit != 0;
    Ok(Fim {
        raw,
        path: optional_path(path, flag(fim_flags::PATH_TRUNCATED)),
        exe: optional_path(exe, flag(fim_flags::EXE_TRUNCATED)),
        name0: c_string(name0),
        base0: optional_path(base0, flag(fim_flags::BASE_TRUNCATED)),
        name1: c_string(name1),
        base1: optional_path(base1, flag(fim_flags::BASE_TRUNCATED)),
    })
}

/// The variable regions after a fixed `T`, of the given lengths in order; an error when the
/// record is shorter than they say.
fn regions<T, const N: usize>(
    bytes: &[u8],
    kind: u32,
    lens: [u32; N],
) -> Result<[&[u8]; N], DecodeError> {
    let fixed_len = std::mem::size_of::<T>();
    let need = fixed_len + lens.iter().map(|&l| l as usize).sum::<usize>();
    let mut rest = bytes.get(fixed_len..need).ok_or(DecodeError::Truncated {
        kind,
        need,
        got: bytes.len(),
    })?;
    Ok(lens.map(|len| {
        let (head, tail) = rest.split_at(len as usize);
        rest = tail;
        head
    }))
}

fn decode_audit(bytes: &[u8]) -> Result<Audit, DecodeError> {
    let raw: AuditRecord = fixed(bytes, kind::AUDIT)?;
    let lens = [
        raw.cwd_len,
        raw.name0_len,
        raw.base0_len,
        raw.name1_len,
        raw.base1_len,
        raw.sockaddr_len,
    ];
    let [cwd, name0, base0, name1, base1, sockaddr] =
        regions::<AuditRecord, 6>(bytes, kind::AUDIT, lens)?;
    let flag = |bit| raw.flags & bit != 0;
    Ok(Audit {
        raw,
        cwd: optional_path(cwd, flag(audit_flags::CWD_TRUNCATED)),
        name0: c_string(name0),
        base0: optional_path(base0, flag(audit_flags::BASE_TRUNCATED)),
        name1: c_string(name1),
        base1: optional_path(base1, flag(audit_flags::BASE_TRUNCATED << 1)),
        sockaddr: sockaddr.to_vec(),
    })
}

fn decode_mem(bytes: &[u8]) -> Result<Mem, DecodeError> {
    let raw: MemRecord = fixed(bytes, kind::MEM)?;
    let fixed_len = std::mem::size_of::<MemRecord>();
    let page_end = fixed_len + raw.page_len as usize;
    let need = page_end + raw.path_len as usize;
    if bytes.len() < need {
        return Err(DecodeError::Truncated {
            kind: kind::MEM,
            need,
            got: bytes.len(),
        });
    }
    let page = bytes[fixed_len..page_end].to_vec();
    let data = &bytes[page_end..need];
    let truncated = raw.truncated & 1 != 0;
    let path = if raw.op == mem_op::MEMFD_CREATE {
        KernelPath {
            bytes: c_string(data),
            truncated,
        }
    } else {
        optional_path(data, truncated)
    };
    Ok(Mem { raw, path, page })
}

/// A dentry path, or empty bytes when none was written.
fn optional_path(bytes: &[u8], truncated: bool) -> KernelPath {
    if bytes.is_empty() {
        KernelPath::default()
    } else {
        rebuild_path(bytes, truncated)
    }
}

/// Bytes up to the first NUL.
fn c_string(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..end].to_vec()
}

/// Joins leaf-first NUL-terminated components into a path, root first.
pub fn rebuild_path(bytes: &[u8], truncated: bool) -> KernelPath {
    let mut components: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    if components.last().is_some_and(|c| c.is_empty()) {
        components.pop();
    }
    let mut out = Vec::with_capacity(bytes.len() + 1);
    for (i, component) in components.iter().rev().enumerate() {
        if i > 0 || !truncated {
            out.push(b'/');
        }
        out.extend_from_slice(component);
    }
    if out.is_empty() && !truncated {
        out.push(b'/');
    }
    KernelPath {
        bytes: out,
        truncated,
    }
}

/// Splits the NUL-separated argument area; empty arguments are kept, a cut last one dropped.
pub fn split_args(bytes: &[u8], truncated: bool) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let mut args: Vec<Vec<u8>> = bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    // A complete area ends with a NUL, which leaves an empty piece after it; a cut area ends
    // in a partial argument. Neither is an argument. (An uncut area without a final NUL does
    // not happen; its last piece is kept rather than lost.)
    if truncated || bytes.last() == Some(&0) {
        args.pop();
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_are_reversed_and_rooted() {
        let path = rebuild_path(b"true\0bin\0usr\0", false);

        assert_eq!(path.bytes, b"/usr/bin/true");
        assert!(!path.truncated);
    }

    #[test]
    fn root_is_a_slash() {
        assert_eq!(rebuild_path(b"", false).bytes, b"/");
    }

    #[test]
    fn truncated_path_keeps_the_tail_without_a_leading_slash() {
        let path = rebuild_path(b"t\0d039\0d038\0", true);

        assert_eq!(path.bytes, b"d038/d039/t");
        assert!(path.truncated);
    }

    #[test]
    fn empty_arguments_are_kept() {
        let args = split_args(b"echo\0\0x\0\0", false);

        assert_eq!(args, vec![b"echo".to_vec(), vec![], b"x".to_vec(), vec![]]);
    }

    #[test]
    fn cut_last_argument_is_dropped() {
        let args = split_args(b"/bin/echo\0AAAA", true);

        assert_eq!(args, vec![b"/bin/echo".to_vec()]);
    }

    #[test]
    fn non_utf8_bytes_survive() {
        let args = split_args(b"arg\x80\0\xff\0", false);

        assert_eq!(args, vec![b"arg\x80".to_vec(), vec![0xff]]);
    }

    #[test]
    fn short_input_is_an_error() {
        assert_eq!(decode(&[1, 2, 3]).unwrap_err(), DecodeError::Short(3));
    }

    #[test]
    fn exec_with_lengths_past_the_end_is_an_error() {
        let mut raw: ExecRecord = unsafe_zeroed();
        raw.header.kind = kind::EXEC;
        raw.args_len = 100;
        let bytes = as_bytes(&raw);

        assert!(matches!(decode(bytes), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn audit_record_decodes_every_region_and_a_short_one_is_an_error() {
        let mut raw: AuditRecord = unsafe_zeroed();
        raw.header.kind = kind::AUDIT;
        let data: &[&[u8]] = &[
            b"a\0tmp\0",
            b"old\0",
            b"d\0",
            b"/x/new\0",
            b"",
            b"\x02\0\0\x50",
        ];
        let lens = data.iter().map(|d| d.len() as u32).collect::<Vec<_>>();
        (raw.cwd_len, raw.name0_len, raw.base0_len) = (lens[0], lens[1], lens[2]);
        (raw.name1_len, raw.base1_len, raw.sockaddr_len) = (lens[3], lens[4], lens[5]);
        let mut bytes = as_bytes(&raw).to_vec();
        data.iter().for_each(|d| bytes.extend_from_slice(d));

        let Record::Audit(a) = decode(&bytes).unwrap() else {
            panic!("not an audit record")
        };
        let short = decode(&bytes[..bytes.len() - 1]);

        assert_eq!(a.cwd.bytes, b"/tmp/a");
        assert_eq!(
            (a.name0.as_slice(), a.base0.bytes.as_slice()),
            (&b"old"[..], &b"/d"[..])
        );
        assert_eq!(
            (a.name1.as_slice(), a.base1.bytes.as_slice()),
            (&b"/x/new"[..], &b""[..])
        );
        assert_eq!(a.sockaddr, b"\x02\0\0\x50");
        assert!(matches!(short, Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn exec_record_decodes_every_region() {
        let mut raw: ExecRecord = unsafe_zeroed();
        raw.header.kind = kind::EXEC;
        let data: &[&[u8]] = &[b"sh\0bin\0", b"tmp\0", b"/bin/sh\0", b"", b"sh\0-c\0\0"];
        raw.exe_len = data[0].len() as u32;
        raw.cwd_len = data[1].len() as u32;
        raw.filename_len = data[2].len() as u32;
        raw.args_len = data[4].len() as u32;
        let mut bytes = as_bytes(&raw).to_vec();
        data.iter().for_each(|d| bytes.extend_from_slice(d));

        let Record::Exec(exec) = decode(&bytes).unwrap() else {
            panic!("not an exec")
        };

        assert_eq!(exec.executable.bytes, b"/bin/sh");
        assert_eq!(exec.cwd.bytes, b"/tmp");
        assert_eq!(exec.filename, b"/bin/sh");
        assert_eq!(exec.interpreter, None);
        assert_eq!(exec.args, vec![b"sh".to_vec(), b"-c".to_vec(), vec![]]);
    }

    fn unsafe_zeroed<T>() -> T {
        // SAFETY: only used with the wire types, for which all-zero bytes are valid.
        unsafe { std::mem::zeroed() }
    }

    fn as_bytes<T>(value: &T) -> &[u8] {
        // SAFETY: the wire types are plain old data without padding holes.
        unsafe { std::slice::from_raw_parts((value as *const T).cast(), std::mem::size_of::<T>()) }
    }
}
