//! Memory and cross-process records to events: the operation, its outcome and what it was
//! aimed at, with the acting process as the table knows it.

use sensor_common::{mem_op, PROT_UNKNOWN};
use sensor_proto::v1::{Event, MemoryDetail};
use sha2::{Digest, Sha256};

use super::{fill_image, set_creds, Tracker, TMPFS_MAGIC};
use crate::decode::Mem;

const MAP_ANONYMOUS: u64 = 0x20;
const HUGETLBFS_MAGIC: u32 = super::HUGETLBFS_MAGIC;

impl Tracker {
    pub(super) fn memory(&mut self, m: &Mem) -> Event {
        let rec = &m.raw;
        let (action, syscall) = match rec.op {
            mem_op::MEMFD_CREATE => ("memfd-create", "memfd_create"),
            mem_op::MMAP => ("mmap", "mmap"),
            mem_op::MPROTECT => ("mprotect", "mprotect"),
            mem_op::PTRACE => ("ptrace", "ptrace"),
            mem_op::VM_WRITEV => ("process-vm-writev", "process_vm_writev"),
            _ => ("proc-mem-open", "open"),
        };
        let mut event = self.base(action, rec.header.boot_ns);
        event.outcome = if rec.ret < 0 { "failure" } else { "success" }.into();
        let mut process = self.identity(&rec.ids);
        set_creds(&mut process, &rec.creds);
        match self.table.get(rec.ids.tgid) {
            Some(image) if image.entity_id == process.entity_id => fill_image(&mut process, image),
            _ => process.name = super::comm(&rec.comm),
        }
        let mut d = MemoryDetail {
            syscall: syscall.into(),
            result: rec.ret,
            path: m.path.bytes.clone(),
            ..MemoryDetail::default()
        };
        match rec.op {
            mem_op::MEMFD_CREATE => {
                d.memfd_name = m.path.bytes.clone();
                d.flags = rec.flags;
            }
            mem_op::MMAP | mem_op::MPROTECT => {
                d.address = rec.addr;
                d.length = rec.len;
                d.protection = protection(rec.prot);
                d.flags = rec.flags;
                d.inode = rec.file_ino;
                d.nlink = rec.file_nlink;
                d.left_out_before = rec.skipped;
                if rec.op == mem_op::MPROTECT {
                    d.previous_protection = match rec.prev_prot {
                        PROT_UNKNOWN => "unknown".into(),
                        p => protection(p),
                    };
                }
                d.backing = if rec.op == mem_op::MMAP {
                    mmap_backing(rec.flags, rec.file_nlink, rec.file_magic, &m.path.bytes)
                } else if rec.prev_prot != PROT_UNKNOWN {
                    // Only anonymous mappings are followed from their mmap.
                    "anonymous".into()
                } else {
                    let (backing, path) = region_backing(rec.ids.tgid, rec.addr);
                    d.path = path;
                    backing
                };
                if d.backing == "memfd" {
                    d.memfd_name = memfd_of(&d.path);
                }
                if !m.page.is_empty() {
                    d.first_page_sha256 = crate::fim::hash::hex(&Sha256::digest(&m.page));
                    d.starts_with_elf = m.page.starts_with(b"\x7fELF");
                }
            }
            mem_op::PTRACE => {
                d.ptrace_request = ptrace_request(rec.flags).into();
                d.address = rec.addr;
                self.target(&mut d, rec.target);
            }
            mem_op::VM_WRITEV => self.target(&mut d, rec.target),
            _ => {
                d.flags = rec.flags;
                d.inode = rec.file_ino;
                if let Some(pid) = proc_mem_target(&m.path.bytes) {
                    self.target(&mut d, pid);
                }
            }
        }
        event.process = Some(process);
        event.memory = Some(d);
        event
    }

    /// Fills in the target process: a thread id is taken to its process.
    fn target(&self, d: &mut MemoryDetail, pid: u32) {
        let tgid = thread_group(pid).unwrap_or(pid);
        d.target_pid = tgid;
        if let Some(p) = self.table.get(tgid) {
            d.target_entity_id = p.entity_id.clone();
            d.target_executable = p.executable.clone();
        }
    }
}

/// `rwx` letters of a protection.
pub fn protection(prot: u32) -> String {
    [(1, 'r'), (2, 'w'), (4, 'x')]
        .iter()
        .map(|&(bit, c)| if prot & bit != 0 { c } else { '-' })
        .collect()
}

/// What backs a mapping, from the `mmap` flags and the file's facts.
fn mmap_backing(flags: u64, nlink: u32, magic: u32, path: &[u8]) -> String {
    if flags & MAP_ANONYMOUS != 0 {
        "anonymous"
    } else if (magic == TMPFS_MAGIC || magic == HUGETLBFS_MAGIC) && path.starts_with(b"/memfd:") {
        "memfd"
    } else if magic == TMPFS_MAGIC || magic == HUGETLBFS_MAGIC {
        "tmpfs"
    } else if nlink == 0 {
        "deleted-file"
    } else {
        "file"
    }
    .into()
}

/// What backs the region at `addr` of process `pid` now, from `/proc/<pid>/maps`, and the
/// file's name there.
fn region_backing(pid: u32, addr: u64) -> (String, Vec<u8>) {
    let Ok(maps) = std::fs::read(format!("/proc/{pid}/maps")) else {
        return ("unknown".into(), Vec::new());
    };
    for line in maps.split(|&b| b == b'\n') {
        let mut fields = line.splitn(6, |&b| b == b' ');
        let Some(range) = fields.next() else { continue };
        let range = String::from_utf8_lossy(range);
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) else {
            continue;
        };
        if !(lo..hi).contains(&addr) {
            continue;
        }
        let name = fields
            .nth(4)
            .unwrap_or_default()
            .trim_ascii_start()
            .to_vec();
        let backing = if name.is_empty() || name.starts_with(b"[") {
            "anonymous"
        } else if name.starts_with(b"/memfd:") {
            "memfd"
        } else if name.ends_with(b" (deleted)") {
            "deleted-file"
        } else if name.starts_with(b"/dev/shm/") {
            "tmpfs"
        } else {
            "file"
        };
        return (backing.into(), name);
    }
    ("unknown".into(), Vec::new())
}

/// The memfd name in a path such as `/memfd:payload (deleted)`.
pub fn memfd_of(path: &[u8]) -> Vec<u8> {
    let name = path.strip_prefix(b"/memfd:").unwrap_or(path);
    name.strip_suffix(b" (deleted)").unwrap_or(name).to_vec()
}

/// The process whose `mem` file `path` is: `/proc/<pid>/mem` or `/proc/<pid>/task/<tid>/mem`
/// (the thread's own number, taken to its process by the caller).
fn proc_mem_target(path: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(path).ok()?;
    let parts: Vec<&str> = text.trim_start_matches('/').split('/').collect();
    let number = match parts.as_slice() {
        [_, pid, "mem"] => pid,
        [_, _, "task", tid, "mem"] => tid,
        _ => return None,
    };
    number.parse().ok()
}

/// The thread group of thread `tid`, from `/proc/<tid>/status`.
fn thread_group(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Name of a `ptrace` request the kernel side reports.
fn ptrace_request(request: u64) -> &'static str {
    match request {
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        13 => "PTRACE_SETREGS",
        15 => "PTRACE_SETFPREGS",
        16 => "PTRACE_ATTACH",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        _ => "PTRACE_UNKNOWN",
    }
}

/// Whether a `ptrace` request writes into the tracee (rather than attaching).
pub fn ptrace_writes(request: &str) -> bool {
    request.starts_with("PTRACE_POKE") || request.starts_with("PTRACE_SET")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protections_read_as_letters() {
        assert_eq!(protection(3), "rw-");
        assert_eq!(protection(5), "r-x");
        assert_eq!(protection(7), "rwx");
        assert_eq!(protection(0), "---");
    }

    #[test]
    fn proc_mem_paths_name_their_process_or_thread() {
        assert_eq!(proc_mem_target(b"/proc/42/mem"), Some(42));
        assert_eq!(proc_mem_target(b"/proc/42/task/43/mem"), Some(43));
        assert_eq!(proc_mem_target(b"/proc/self/mem"), None);
        assert_eq!(proc_mem_target(b"/proc/42/maps"), None);
    }

    #[test]
    fn memfd_names_lose_prefix_and_deleted_mark() {
        assert_eq!(memfd_of(b"/memfd:payload (deleted)"), b"payload");
        assert_eq!(memfd_of(b"/memfd:a b"), b"a b");
    }
}
