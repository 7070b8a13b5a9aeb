//! File facts and content hashes, read off the ring-buffer path by a pool of worker threads.
//!
//! In: jobs naming a file (and the identity it must still have). Out: its attributes and,
//! when asked and not above the size cap, the sha256 of its content. Workers run at idle I/O
//! priority so a baseline scan yields to the host's own disk traffic.

use std::{
    os::unix::{ffi::OsStrExt, fs::MetadataExt, fs::OpenOptionsExt},
    path::Path,
};

use crossbeam_channel::{Receiver, Sender};
use sensor_common::FileKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the baseline keeps of a file, and what a change is measured against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub dev: u32,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub nlink: u32,
    /// Hex sha256 of a regular file's content; `None` when not hashed.
    pub sha256: Option<String>,
    /// Extended attributes, `name=hexvalue`, sorted.
    pub xattrs: Vec<String>,
}

impl Entry {
    pub fn key(&self) -> FileKey {
        FileKey {
            dev: self.dev,
            _pad: 0,
            ino: self.ino,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    pub fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// Whether the content may differ from `old`'s without being hashed again: same inode,
    /// size and times. The change time cannot be set from user space, so a file rewritten to
    /// look untouched still shows here.
    pub fn same_version(&self, old: &Entry) -> bool {
        (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns)
            == (old.dev, old.ino, old.size, old.mtime_ns, old.ctime_ns)
    }
}

/// The kernel's device encoding (`MAJOR << 20 | MINOR`) of a `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    (libc::major(st_dev) << 20) | libc::minor(st_dev)
}

/// Attributes of `path` itself (a symlink is not followed), without a hash.
pub fn stat(path: &[u8]) -> std::io::Result<Entry> {
    let p = Path::new(std::ffi::OsStr::from_bytes(path));
    let m = std::fs::symlink_metadata(p)?;
    let mut xattrs = Vec::new();
    // A filesystem without xattr support is not an error: the file has none.
    if let Ok(names) = xattr::list(p) {
        for name in names {
            let value = xattr::get(p, &name).ok().flatten().unwrap_or_default();
            xattrs.push(format!("{}={}", name.to_string_lossy(), hex(&value)));
        }
    }
    xattrs.sort();
    Ok(entry_of(&m, xattrs))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens `path` for reading without following a symlink or updating its access time; `None`
/// when it cannot be (gone, a symlink, a FIFO would block: those are read by path).
pub fn open(path: &[u8]) -> Option<std::fs::File> {
    let p = Path::new(std::ffi::OsStr::from_bytes(path));
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let open = |extra| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags | extra)
            .open(p)
    };
    // O_NOATIME is refused on files the caller does not own unless it has CAP_FOWNER.
    let file = open(libc::O_NOATIME).or_else(|_| open(0)).ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// Whether the open `file` is the file `key`.
pub fn matches(file: &std::fs::File, key: FileKey) -> bool {
    file.metadata()
        .is_ok_and(|m| kernel_dev(m.dev()) == key.dev && m.ino() == key.ino)
}

/// One piece of work for the pool.
#[derive(Debug)]
pub struct Job {
    pub id: u64,
    /// The file, opened when its record arrived; `None` to read it by `path`.
    pub file: Option<std::fs::File>,
    pub path: Vec<u8>,
    /// The identity the file must have; another file under the name is not it.
    pub expect: Option<FileKey>,
    pub hash: bool,
}

/// The outcome of a [`Job`].
#[derive(Debug, Clone)]
pub struct Done {
    pub id: u64,
    /// The file's attributes, with `sha256` set when hashed; `Err` says why there are none.
    pub entry: Result<Entry, String>,
    /// Why a hash that was asked for is missing.
    pub skipped: Option<String>,
    pub bytes_hashed: u64,
}

/// Worker threads taking jobs from one queue.
pub struct Pool {
    tx: Sender<(Job, Sender<Done>)>,
}

impl Pool {
    /// Starts `workers` threads that hash files up to `max_bytes`.
    pub fn start(workers: usize, max_bytes: u64) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<(Job, Sender<Done>)>();
        for i in 0..workers {
            let rx: Receiver<(Job, Sender<Done>)> = rx.clone();
            std::thread::Builder::new()
                .name(format!("fim-hash-{i}"))
                .spawn(move || {
                    idle_io_priority();
                    for (job, reply) in rx {
                        let _ = reply.send(run(job, max_bytes));
                    }
                })?;
        }
        Ok(Self { tx })
    }

    /// Queues `job`; its [`Done`] goes to `reply`.
    pub fn submit(&self, job: Job, reply: &Sender<Done>) {
        // The workers only stop when the pool is dropped, so the queue is always open.
        let _ = self.tx.send((job, reply.clone()));
    }
}

fn run(job: Job, max_bytes: u64) -> Done {
    let mut done = Done {
        id: job.id,
        entry: Err(String::new()),
        skipped: None,
        bytes_hashed: 0,
    };
    if let Some(file) = job.file {
        return run_open(file, job.expect, job.hash, max_bytes, done);
    }
    let mut entry = match stat(&job.path) {
        Ok(e) => e,
        Err(e) => {
            done.entry = Err(format!("gone: {e}"));
            done.skipped = job.hash.then(|| "gone before it was read".into());
            return done;
        }
    };
    if job.expect.is_some_and(|k| k != entry.key()) {
        done.entry = Err("replaced by another file before it was read".into());
        done.skipped = job.hash.then(|| "replaced before it was read".into());
        return done;
    }
    if job.hash && entry.is_regular() {
        let key = entry.key();
        hash_within(&mut entry, &mut done, max_bytes, || {
            hash_file(&job.path, key)
        });
    }
    done.entry = Ok(entry);
    done
}

/// Hashes with `read` unless the file is above the cap; the hash or why there is none.
fn hash_within(
    entry: &mut Entry,
    done: &mut Done,
    max_bytes: u64,
    read: impl FnOnce() -> std::io::Result<(String, u64)>,
) {
    if entry.size > max_bytes {
        done.skipped = Some(format!("larger than max_hash_bytes ({max_bytes})"));
        return;
    }
    match read() {
        Ok((sha, n)) => {
            entry.sha256 = Some(sha);
            done.bytes_hashed = n;
        }
        Err(e) => done.skipped = Some(format!("unreadable: {e}")),
    }
}

/// [`run`] for a file already open: its facts and content even if it was removed since.
fn run_open(
    mut file: std::fs::File,
    expect: Option<FileKey>,
    hash: bool,
    max_bytes: u64,
    mut done: Done,
) -> Done {
    let mut entry = match fstat(&file) {
        Ok(e) => e,
        Err(e) => {
            done.entry = Err(format!("unreadable: {e}"));
            return done;
        }
    };
    if expect.is_some_and(|k| k != entry.key()) {
        done.entry = Err("replaced by another file before it was read".into());
        done.skipped = hash.then(|| "replaced before it was read".into());
        return done;
    }
    if hash {
        hash_within(&mut entry, &mut done, max_bytes, || hash_reader(&mut file));
    }
    done.entry = Ok(entry);
    done
}

/// [`stat`] of an open file.
fn fstat(file: &std::fs::File) -> std::io::Result<Entry> {
    use xattr::FileExt;
    let m = file.metadata()?;
    let mut xattrs = Vec::new();
    if let Ok(names) = file.list_xattr() {
        for name in names {
            let value = file.get_xattr(&name).ok().flatten().unwrap_or_default();
            xattrs.push(format!("{}={}", name.to_string_lossy(), hex(&value)));
        }
    }
    xattrs.sort();
    Ok(entry_of(&m, xattrs))
}

fn entry_of(m: &std::fs::Metadata, xattrs: Vec<String>) -> Entry {
    Entry {
        dev: kernel_dev(m.dev()),
        ino: m.ino(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        nlink: m.nlink() as u32,
        sha256: None,
        xattrs,
    }
}

/// sha256 of the file at `path`, which must still be `key` once open.
fn hash_file(path: &[u8], key: FileKey) -> std::io::Result<(String, u64)> {
    let p = Path::new(std::ffi::OsStr::from_bytes(path));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOATIME)
        .open(p)
        .or_else(|_| std::fs::File::open(p))?;
    let m = file.metadata()?;
    if kernel_dev(m.dev()) != key.dev || m.ino() != key.ino {
        return Err(std::io::Error::other("replaced while opening"));
    }
    hash_reader(&mut file)
}

/// sha256 of the whole file, read with `pread`: descriptors shared with the FIM thread's held
/// copy have one offset, which this leaves alone.
fn hash_reader(file: &mut std::fs::File) -> std::io::Result<(String, u64)> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read_at(&mut buf, total)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// Puts the calling thread in the idle I/O class: it gets the disk when nobody else wants it.
fn idle_io_priority() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    // SAFETY: ioprio_set only reads its integer arguments; 0 names the calling thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            IOPRIO_CLASS_IDLE << 13,
        )
    };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "idle I/O priority not set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hashes_and_checks_identity_and_cap() {
        let dir = std::env::temp_dir().join(format!("fim-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"v1\n").unwrap();
        let path = file.as_os_str().as_bytes().to_vec();
        let key = stat(&path).unwrap().key();
        let pool = Pool::start(1, 2).unwrap();
        let big = Pool::start(1, 1 << 20).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let job = |id, expect| Job {
            id,
            file: None,
            path: path.clone(),
            expect,
            hash: true,
        };

        big.submit(job(1, Some(key)), &tx);
        let hashed = rx.recv().unwrap();
        pool.submit(job(2, Some(key)), &tx);
        let capped = rx.recv().unwrap();
        big.submit(job(3, Some(FileKey { ino: 1, ..key })), &tx);
        let other = rx.recv().unwrap();

        let sha = hashed.entry.unwrap().sha256.unwrap();
        assert_eq!(sha, format!("{:x}", Sha256::digest(b"v1\n")));
        assert!(capped.skipped.unwrap().contains("max_hash_bytes"));
        assert!(
            other.entry.is_err(),
            "another inode under the name is not the file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
