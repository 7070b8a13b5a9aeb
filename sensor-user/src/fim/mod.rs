//! File-integrity correlator: kernel FIM records and baseline scans to `file-*` events.
//!
//! In: decoded FIM records with their acting process, from the reader. Out: events on a
//! channel the reader publishes. Runs on a thread of its own that owns the names, the content
//! state and the redb baseline; hashing goes to a worker pool, and events leave in the order
//! their records came, each once its hash is ready.

pub mod baseline;
pub(crate) mod hash;
mod live;
mod names;
mod scan;
pub mod syscalls;
pub mod watch;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    os::fd::AsRawFd,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use crossbeam_channel::{Receiver, Sender};
use sensor_common::{watch as bits, FileKey};
use sensor_proto::v1::{
    Event, FileDetail, FileState, FimScanReply, FimStatus, Parent, Process, RuleDetail,
};

use crate::{config::FimConfig, decode, process::identity::Host};
use baseline::{Baseline, BaselineError};
use hash::{Done, Entry, Job, Pool};
use names::Names;
use watch::Watch;

/// The kernel's map of watched identities.
pub type WatchedMap = BpfHashMap<MapData, FileKey, u32>;

/// Failure to start FIM.
#[derive(Debug, thiserror::Error)]
pub enum FimError {
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error("invalid FIM watch set: {0}")]
    Watch(String),
    #[error("failed to start the FIM threads")]
    Thread(#[source] std::io::Error),
}

/// Counters for the status API.
#[derive(Debug, Default)]
pub struct FimStats {
    pub ready: AtomicBool,
    pub watched: AtomicU64,
    pub watch_refused: AtomicU64,
    pub changes: AtomicU64,
    pub hash_skipped: AtomicU64,
    pub scans: AtomicU64,
    pub last_scan_files: AtomicU64,
    pub last_scan_millis: AtomicU64,
    pub last_scan_bytes: AtomicU64,
}

impl FimStats {
    pub fn status(&self) -> FimStatus {
        FimStatus {
            enabled: true,
            baseline: if self.ready.load(Relaxed) {
                "ready"
            } else {
                "scanning"
            }
            .into(),
            watched: self.watched.load(Relaxed),
            watch_refused: self.watch_refused.load(Relaxed),
            changes: self.changes.load(Relaxed),
            hash_skipped: self.hash_skipped.load(Relaxed),
            scans: self.scans.load(Relaxed),
            last_scan_files: self.last_scan_files.load(Relaxed),
            last_scan_millis: self.last_scan_millis.load(Relaxed),
            last_scan_bytes: self.last_scan_bytes.load(Relaxed),
        }
    }
}

enum Input {
    Scan(tokio::sync::oneshot::Sender<FimScanReply>),
    /// Finish and end. Explicit: other handles (the gRPC server's) may outlive the reader.
    Stop,
}

/// The reader's and server's handle on the FIM thread.
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Input>,
    pub stats: Arc<FimStats>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Handle {
    /// Runs a scan against the baseline; `None` if the FIM thread is gone.
    pub async fn scan(&self) -> Option<FimScanReply> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(Input::Scan(tx)).ok()?;
        rx.await.ok()
    }

    /// Stops the thread once it has handled everything queued, and waits for it.
    pub fn stop(self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = self.tx.send(Input::Stop);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// The kernel side of FIM as the loader hands it over.
pub struct Kernel {
    pub watched: WatchedMap,
    /// The kernel's close coalescing state (`CLOSE_SENT`).
    pub close_sent: BpfHashMap<MapData, FileKey, sensor_common::CloseSent>,
    /// FIM's own ring buffer.
    pub ring: RingBuf<MapData>,
}

/// Opens the baseline and starts the FIM thread, which scans first and then follows the
/// kernel's records. Events go to `out`.
pub fn start(
    config: &FimConfig,
    state_dir: &Path,
    rebuild: bool,
    kernel: Kernel,
    host: Host,
    out: tokio::sync::mpsc::UnboundedSender<Event>,
) -> Result<Handle, FimError> {
    let watch = Watch::new(&config.paths, &config.exclude).map_err(FimError::Watch)?;
    let (db, state) = Baseline::open(&state_dir.join("fim.redb"), rebuild)?;
    let (db, db_thread) = db.spawn_writer().map_err(FimError::Thread)?;
    let pool = Pool::start(config.hash_workers, config.max_hash_bytes).map_err(FimError::Thread)?;
    let stats = Arc::new(FimStats::default());
    let (tx, rx) = crossbeam_channel::bounded(16);
    let ring = kernel.ring;
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let mut fim = Fim {
        watch,
        map: kernel.watched,
        host,
        out,
        stats: stats.clone(),
        pool,
        done_tx,
        done_rx,
        db,
        db_thread: Some(db_thread),
        state,
        names: Names::default(),
        created: HashMap::new(),
        dirty: HashMap::new(),
        recheck: HashMap::new(),
        exes: HashMap::new(),
        held: HashMap::new(),
        written: HashMap::new(),
        close_sent: kernel.close_sent,
        closed: HashMap::new(),
        queue: VecDeque::new(),
        next_job: 1,
        unsaved: BTreeMap::new(),
        last_save: Instant::now(),
        settle: Duration::from_millis(config.settle_ms),
    };
    let thread = std::thread::Builder::new()
        .name("fim".into())
        .spawn(move || fim.run(ring, rx))
        .map_err(FimError::Thread)?;
    Ok(Handle {
        tx,
        stats,
        thread: Arc::new(Mutex::new(Some(thread))),
    })
}

/// Longest wait for the ring buffer before the thread looks at hash results and timers.
const POLL_WAIT: Duration = Duration::from_millis(10);
/// After a close record, how long until the kernel's count of closes it left out is read.
const TRAILING_CHECK: Duration = Duration::from_millis(3);
/// How long the descriptor of a changed file is kept after its last change, and how many are
/// kept at most. Holding one keeps a deleted file's inode until then; it is let go as soon as
/// the file's last name is removed.
const HOLD_FOR: Duration = Duration::from_secs(30);
const HOLD_MAX: usize = 1024;
/// How long a created file waits for its first close before it is reported anyway.
const CREATE_WAIT: Duration = Duration::from_secs(2);
/// How often unsaved baseline changes are committed.
const SAVE_EVERY: Duration = Duration::from_millis(500);

/// A file the kernel saw created, reported at its first close (with its content); or one a
/// scan of a new directory found, reported unless the kernel's record of it follows.
struct Created {
    path: Vec<u8>,
    actor: Option<Process>,
    boot_ns: Option<u64>,
    at: Instant,
    found_by: &'static str,
}

/// A watched file whose close record came: the kernel's count of closes left out then.
struct Closed {
    actor: Option<Process>,
    boot_ns: u64,
    skipped: u64,
    at: Instant,
}

/// A file whose content changed without a close yet.
struct Dirty {
    actor: Option<Process>,
    boot_ns: u64,
    at: Instant,
}

/// The events FIM makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Created,
    Modified,
    Deleted,
    Renamed,
    Linked,
    Attributes,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Created => "file-created",
            Action::Modified => "file-modified",
            Action::Deleted => "file-deleted",
            Action::Renamed => "file-renamed",
            Action::Linked => "file-linked",
            Action::Attributes => "file-attributes-changed",
        }
    }
}

/// How an event changes the content state once its file has been read.
#[derive(Debug, Clone)]
enum Track {
    Keep,
    Set(Vec<u8>),
    Remove(Vec<u8>),
    Move(Vec<u8>, Vec<u8>),
}

/// An event waiting for its file to be read.
struct Draft {
    action: Action,
    key: FileKey,
    actor: Option<Process>,
    boot_ns: Option<u64>,
    /// Where to read the file; empty for no read.
    read: Vec<u8>,
    hash: bool,
    /// The fields known from the record (path, old path, found_by, ...).
    detail: FileDetail,
    /// Whose baseline entry counts as the previous state.
    previous_of: Option<Vec<u8>>,
    track: Track,
    /// Report only if content (or, for attributes, an attribute) differs from the previous.
    only_if_changed: bool,
    alert: Option<RuleDetail>,
}

impl Draft {
    fn new(action: Action, path: &[u8], key: FileKey) -> Self {
        Self {
            action,
            key,
            actor: None,
            boot_ns: None,
            read: Vec::new(),
            hash: false,
            detail: FileDetail {
                path: path.to_vec(),
                inode: key.ino,
                device: key.dev,
                found_by: "kernel".into(),
                ..FileDetail::default()
            },
            previous_of: None,
            track: Track::Keep,
            only_if_changed: false,
            alert: None,
        }
    }
}

struct Item {
    job: Option<u64>,
    done: Option<Done>,
    draft: Draft,
}

/// A change to a file that came while a check of it was reading, for the check after.
struct Recheck {
    actor: Option<Process>,
    boot_ns: u64,
    written: Option<Vec<u8>>,
    syscall: Option<&'static str>,
}

struct Fim {
    watch: Watch,
    map: WatchedMap,
    host: Host,
    out: tokio::sync::mpsc::UnboundedSender<Event>,
    stats: Arc<FimStats>,
    pool: Pool,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    /// Writes for the baseline's thread, and that thread (joined at the end).
    db: Sender<baseline::Write>,
    db_thread: Option<std::thread::JoinHandle<()>>,
    /// Content state by watched path: what the baseline holds.
    state: BTreeMap<Vec<u8>, Entry>,
    names: Names,
    created: HashMap<FileKey, Created>,
    dirty: HashMap<FileKey, Dirty>,
    /// The name each process last opened each watched file for writing by.
    written: HashMap<(u32, FileKey), Vec<u8>>,
    /// Read descriptors of files changed lately, with when each last changed.
    held: HashMap<FileKey, (std::fs::File, Instant)>,
    /// The kernel's close records per file and what it left out, and the files closed lately.
    close_sent: BpfHashMap<MapData, FileKey, sensor_common::CloseSent>,
    closed: HashMap<FileKey, Closed>,
    /// Executable of each process, from the last record that carried it.
    exes: HashMap<u32, decode::KernelPath>,
    /// Files changed again while a check of them was reading: the latest change.
    recheck: HashMap<FileKey, Recheck>,
    queue: VecDeque<Item>,
    next_job: u64,
    unsaved: BTreeMap<Vec<u8>, Option<Entry>>,
    last_save: Instant,
    settle: Duration,
}

impl Fim {
    fn run(&mut self, mut ring: RingBuf<MapData>, rx: Receiver<Input>) {
        let first = self.state.is_empty();
        let report = self.scan(!first);
        if first {
            tracing::info!(files = report.scanned, "FIM baseline created");
        }
        self.stats.ready.store(true, Relaxed);
        let fd = ring.as_raw_fd();
        loop {
            let wait = if self.closed.is_empty() {
                POLL_WAIT
            } else {
                TRAILING_CHECK
            };
            wait_readable(fd, wait);
            while let Some(item) = ring.next() {
                match decode::decode(&item) {
                    Ok(decode::Record::Fim(mut record)) => {
                        self.exe_of(&mut record);
                        self.on_record(&record);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "undecodable FIM record"),
                }
            }
            match rx.try_recv() {
                Ok(Input::Scan(reply)) => {
                    self.finish_queue();
                    let _ = reply.send(self.scan(true));
                }
                Ok(Input::Stop) | Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            while let Ok(done) = self.done_rx.try_recv() {
                self.on_done(done);
            }
            self.tick(false);
            self.drain();
            self.save(false);
        }
        while let Some(item) = ring.next() {
            if let Ok(decode::Record::Fim(record)) = decode::decode(&item) {
                self.on_record(&record);
            }
        }
        self.tick(true);
        self.finish_queue();
        self.save(true);
        // Closing the channel lets the baseline thread commit what it has and end.
        let (tx, _) = crossbeam_channel::unbounded();
        drop(std::mem::replace(&mut self.db, tx));
        if let Some(t) = self.db_thread.take() {
            let _ = t.join();
        }
    }

    /// Fills in the executable of a record that left it out (sent before for this process
    /// image), and remembers the one a record carries.
    fn exe_of(&mut self, record: &mut decode::Fim) {
        let pid = record.raw.ids.tgid;
        if record.raw.flags & sensor_common::fim_flags::EXE_SENT_BEFORE != 0 {
            if let Some(exe) = self.exes.get(&pid) {
                record.exe = exe.clone();
            }
        } else if !record.exe.bytes.is_empty() {
            if self.exes.len() >= 65_536 {
                self.exes.clear();
            }
            self.exes.insert(pid, record.exe.clone());
        }
    }

    /// A descriptor of the file `key` at `path`: a copy of the one held since its last change,
    /// or a new one, then held for [`HOLD_FOR`].
    fn held_file(&mut self, key: FileKey, path: &[u8]) -> Option<std::fs::File> {
        let now = Instant::now();
        if let Some((file, at)) = self.held.get_mut(&key) {
            *at = now;
            return file.try_clone().ok();
        }
        let file = hash::open(path)?;
        if key != FileKey::default() && hash::matches(&file, key) {
            if self.held.len() >= HOLD_MAX {
                self.release_oldest();
            }
            if let Ok(copy) = file.try_clone() {
                self.held.insert(key, (copy, now));
            }
        }
        Some(file)
    }

    fn release_oldest(&mut self) {
        let oldest = self
            .held
            .iter()
            .min_by_key(|(_, (_, at))| *at)
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.held.remove(&k);
        }
    }

    /// Reports created files whose close never came and content changes that settled, and
    /// checks files whose closes the kernel left out after their last record.
    fn tick(&mut self, all: bool) {
        let now = Instant::now();
        self.held
            .retain(|_, (_, at)| now.duration_since(*at) < HOLD_FOR);
        let quiet: Vec<FileKey> = self
            .closed
            .iter()
            .filter(|(_, c)| all || now.duration_since(c.at) >= TRAILING_CHECK)
            .map(|(k, _)| *k)
            .collect();
        for key in quiet {
            let Some(c) = self.closed.remove(&key) else {
                continue;
            };
            let skipped = self.close_sent.get(&key, 0).map_or(0, |s| s.skipped);
            if skipped != c.skipped {
                self.modified(key, c.actor, c.boot_ns, None, None);
            }
        }
        let due: Vec<FileKey> = self
            .created
            .iter()
            .filter(|(_, c)| all || now.duration_since(c.at) >= CREATE_WAIT)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.report_created(key, None);
        }
        let settled: Vec<FileKey> = self
            .dirty
            .iter()
            .filter(|(_, d)| all || now.duration_since(d.at) >= self.settle)
            .map(|(k, _)| *k)
            .collect();
        for key in settled {
            if let Some(d) = self.dirty.remove(&key) {
                self.modified(key, d.actor, d.boot_ns, None, None);
            }
        }
    }

    /// Queues a content check of `key`'s watched name: reported if it differs.
    fn modified(
        &mut self,
        key: FileKey,
        actor: Option<Process>,
        boot_ns: u64,
        written: Option<&[u8]>,
        syscall: Option<&'static str>,
    ) {
        let Some(path) = self.names.primary(key).cloned() else {
            return;
        };
        let in_flight = self
            .queue
            .iter()
            .any(|i| i.draft.key == key && i.draft.action == Action::Modified && i.done.is_none());
        if in_flight {
            // A check of this file is already reading it: one more runs when it is done, for
            // what changed since. A burst of closes becomes a few events, never a lost change.
            let again = Recheck {
                actor,
                boot_ns,
                written: written.map(<[u8]>::to_vec),
                syscall,
            };
            self.recheck.insert(key, again);
            return;
        }
        let mut d = Draft::new(Action::Modified, &path, key);
        d.actor = actor;
        d.boot_ns = Some(boot_ns);
        d.read = path.clone();
        d.hash = true;
        d.previous_of = Some(path.clone());
        d.track = Track::Set(path.clone());
        d.only_if_changed = true;
        if let Some(w) = written.filter(|w| *w != path.as_slice()) {
            d.detail.written_path = w.to_vec();
        }
        d.detail.syscall = syscall.unwrap_or_default().into();
        self.enqueue(d);
    }

    /// Reports the creation of `key` (at its first close, or when something else happens to
    /// it first); `read` is where its content is now, when not at the created name.
    fn report_created(&mut self, key: FileKey, read: Option<&[u8]>) {
        let Some(c) = self.created.remove(&key) else {
            return;
        };
        let mut d = Draft::new(Action::Created, &c.path, key);
        d.actor = c.actor;
        d.boot_ns = c.boot_ns;
        d.detail.found_by = c.found_by.into();
        d.read = read.unwrap_or(&c.path).to_vec();
        d.hash = true;
        d.track = if read.is_some() {
            Track::Keep
        } else {
            Track::Set(c.path.clone())
        };
        self.enqueue(d);
    }

    fn enqueue(&mut self, draft: Draft) {
        let job = (!draft.read.is_empty()).then(|| {
            let id = self.next_job;
            self.next_job += 1;
            let job = Job {
                id,
                // Opened now, as the record arrives, or held since the file's last change: a
                // delete right after the change (`echo x >> f; rm f`) then leaves the content
                // readable.
                file: self.held_file(draft.key, &draft.read),
                path: draft.read.clone(),
                expect: (draft.key != FileKey::default()).then_some(draft.key),
                hash: draft.hash,
            };
            self.pool.submit(job, &self.done_tx);
            id
        });
        self.queue.push_back(Item {
            job,
            done: None,
            draft,
        });
    }

    fn on_done(&mut self, done: Done) {
        if let Some(item) = self.queue.iter_mut().find(|i| i.job == Some(done.id)) {
            item.done = Some(done);
        }
    }

    /// Publishes the queue's head while it is complete, keeping record order.
    fn drain(&mut self) {
        while self
            .queue
            .front()
            .is_some_and(|i| i.job.is_none() || i.done.is_some())
        {
            let Some(item) = self.queue.pop_front() else {
                break;
            };
            let key = item.draft.key;
            let modified = item.draft.action == Action::Modified;
            self.finalize(item.draft, item.done);
            if modified {
                if let Some(r) = self.recheck.remove(&key) {
                    self.modified(key, r.actor, r.boot_ns, r.written.as_deref(), r.syscall);
                }
            }
        }
    }

    /// Waits for every queued read and publishes the lot.
    fn finish_queue(&mut self) {
        while !self.queue.is_empty() {
            self.drain();
            if self.queue.is_empty() {
                break;
            }
            match self.done_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(done) => self.on_done(done),
                Err(_) => {
                    tracing::warn!(pending = self.queue.len(), "FIM reads timed out");
                    break;
                }
            }
        }
    }

    fn finalize(&mut self, draft: Draft, done: Option<Done>) {
        let previous = draft
            .previous_of
            .as_ref()
            .and_then(|p| self.state.get(p))
            .cloned();
        let skipped = done.as_ref().and_then(|d| d.skipped.clone());
        let mut now = done.and_then(|d| d.entry.ok());
        if let (Some(n), Some(p)) = (now.as_mut(), previous.as_ref()) {
            // Not hashed (an attribute change): the content is the previous one while inode
            // and size are. A write moves through a close or a settled change and is hashed
            // there, so an mtime set back by hand does not hide it.
            if n.sha256.is_none() && !draft.hash && (n.ino, n.size) == (p.ino, p.size) {
                n.sha256 = p.sha256.clone();
            }
        }
        let changed = match (&now, &previous) {
            (Some(n), Some(p)) => attribute_changes(p, n),
            _ => Vec::new(),
        };
        let unchanged = match (&now, &previous) {
            (Some(n), Some(p)) if draft.action == Action::Attributes => changed.is_empty(),
            (Some(n), Some(p)) => {
                skipped.is_none()
                    && (&n.sha256, n.size, n.mtime_ns) == (&p.sha256, p.size, p.mtime_ns)
            }
            _ => false,
        };
        self.apply(&draft.track, now.as_ref());
        if draft.only_if_changed && unchanged {
            return;
        }
        let mut detail = draft.detail.clone();
        detail.hash_skipped = skipped.unwrap_or_default();
        if detail.hash_skipped.is_empty()
            && draft.hash
            && now.as_ref().is_some_and(|n| n.is_regular())
        {
            // Hashed as asked.
        } else if !detail.hash_skipped.is_empty() {
            self.stats.hash_skipped.fetch_add(1, Relaxed);
        }
        if draft.action == Action::Attributes {
            detail.changed = changed;
        }
        let shown = now.as_ref().or(previous.as_ref());
        if let Some(e) = shown {
            detail.r#type = file_type(e.mode).into();
        }
        if detail.link_count == 0 {
            detail.link_count = now.as_ref().map_or(0, |n| n.nlink);
        }
        detail.state = now.as_ref().map(file_state);
        detail.previous = previous.as_ref().map(file_state);
        let event = self.event(
            draft.action,
            draft.actor.clone(),
            draft.boot_ns,
            detail.clone(),
        );
        self.publish(event);
        if let Some(rule) = draft.alert {
            let mut alert = self.event(draft.action, draft.actor, draft.boot_ns, detail);
            alert.kind = "alert".into();
            alert.rule = Some(rule);
            self.publish(alert);
        }
    }

    /// Updates the content state (and so the baseline) for one finished event.
    fn apply(&mut self, track: &Track, now: Option<&Entry>) {
        match track {
            Track::Keep => {}
            Track::Set(path) => {
                if let Some(n) = now {
                    self.state_set(path, n.clone());
                }
            }
            Track::Remove(path) => self.state_remove_tree(path),
            Track::Move(old, new) => {
                let moved: Vec<(Vec<u8>, Entry)> = self
                    .state
                    .range(old.clone()..)
                    .take_while(|(p, _)| p.starts_with(old))
                    .filter(|(p, _)| watch::is_within(p, old))
                    .map(|(p, e)| (p.clone(), e.clone()))
                    .collect();
                self.state_remove_tree(old);
                for (path, entry) in moved {
                    let mut to = new.clone();
                    to.extend_from_slice(&path[old.len()..]);
                    self.state_set(&to, entry);
                }
                if let Some(n) = now {
                    self.state_set(new, n.clone());
                }
            }
        }
    }

    fn state_set(&mut self, path: &[u8], entry: Entry) {
        self.unsaved.insert(path.to_vec(), Some(entry.clone()));
        self.state.insert(path.to_vec(), entry);
        self.stats.watched.store(self.state.len() as u64, Relaxed);
    }

    fn state_remove_tree(&mut self, dir: &[u8]) {
        let gone: Vec<Vec<u8>> = self
            .state
            .range(dir.to_vec()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .filter(|(p, _)| watch::is_within(p, dir))
            .map(|(p, _)| p.clone())
            .collect();
        for path in gone {
            self.state.remove(&path);
            self.unsaved.insert(path, None);
        }
        self.stats.watched.store(self.state.len() as u64, Relaxed);
    }

    /// Commits unsaved baseline changes every [`SAVE_EVERY`] (or now, with `force`).
    fn save(&mut self, force: bool) {
        if self.unsaved.is_empty() || (!force && self.last_save.elapsed() < SAVE_EVERY) {
            return;
        }
        let changes = std::mem::take(&mut self.unsaved);
        let _ = self.db.send(baseline::Write::Apply(changes));
        self.last_save = Instant::now();
    }

    /// Adds `key` to the kernel's watched set.
    fn watch_key(&mut self, key: FileKey, flags: u32) {
        if key == FileKey::default() {
            return;
        }
        if let Err(e) = self.map.insert(key, flags, 0) {
            self.stats.watch_refused.fetch_add(1, Relaxed);
            tracing::debug!(error = %e, inode = key.ino, "watch refused");
        }
    }

    fn unwatch_key(&mut self, key: FileKey) {
        let _ = self.map.remove(&key);
    }

    fn event(
        &self,
        action: Action,
        actor: Option<Process>,
        boot_ns: Option<u64>,
        file: FileDetail,
    ) -> Event {
        Event {
            time_unix_nano: boot_ns.map_or_else(
                || crate::process::identity::clock_ns(libc::CLOCK_REALTIME),
                |ns| self.host.wall_ns(ns),
            ),
            kind: "event".into(),
            action: action.name().into(),
            host_name: self.host.name.clone(),
            boot_id: self.host.boot_id.clone(),
            outcome: "success".into(),
            process: actor,
            file: Some(file),
            ..Event::default()
        }
    }

    fn publish(&self, event: Event) {
        self.stats.changes.fetch_add(1, Relaxed);
        let _ = self.out.send(event);
    }
}

/// Waits until `fd` is readable or `timeout` passes.
fn wait_readable(fd: std::os::fd::RawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
}

/// The acting process of a FIM record, from the record alone: its identity, credentials,
/// name and executable as the kernel saw them.
fn actor(host: &Host, rec: &decode::Fim) -> Process {
    let r = &rec.raw;
    let mut p = Process {
        pid: r.ids.tgid,
        tid: r.ids.tid,
        entity_id: host.entity_id(r.ids.tgid, r.ids.start_boottime),
        start_unix_nano: host.wall_ns(r.ids.start_boottime),
        executable: rec.exe.bytes.clone(),
        name: r
            .comm
            .split(|&b| b == 0)
            .next()
            .unwrap_or_default()
            .to_vec(),
        uid: r.creds.uid,
        gid: r.creds.gid,
        euid: r.creds.euid,
        egid: r.creds.egid,
        loginuid: (r.creds.loginuid != u32::MAX).then_some(r.creds.loginuid),
        session_id: (r.creds.sessionid != u32::MAX).then_some(r.creds.sessionid),
        cgroup_id: r.cgroup_id,
        parent: Some(Parent {
            pid: r.ids.ppid,
            entity_id: host.entity_id(r.ids.ppid, r.ids.parent_start_boottime),
            ..Parent::default()
        }),
        ..Process::default()
    };
    if rec.exe.truncated {
        p.truncated_fields.push("process.executable".into());
    }
    p
}

/// Which attributes differ between two states of a file. A directory's times and size move
/// with every entry made or removed in it, which have events of their own, so they are not
/// compared.
fn attribute_changes(old: &Entry, new: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    let dir = old.is_dir() && new.is_dir();
    if old.mode != new.mode {
        out.push("mode".into());
    }
    if old.uid != new.uid {
        out.push("owner".into());
    }
    if old.gid != new.gid {
        out.push("group".into());
    }
    if old.mtime_ns != new.mtime_ns && !dir {
        out.push("mtime".into());
    }
    if old.xattrs != new.xattrs {
        out.push("xattr".into());
    }
    out
}

fn file_type(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "char",
        libc::S_IFBLK => "block",
        _ => "unknown",
    }
}

fn file_state(e: &Entry) -> FileState {
    FileState {
        size: e.size,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime_unix_nano: e.mtime_ns,
        sha256: e.sha256.clone().unwrap_or_default(),
        nlink: e.nlink,
        inode: e.ino,
        xattrs: e.xattrs.clone(),
    }
}

/// Map bits for a file of `mode`.
fn watch_bits(mode: u32) -> u32 {
    if mode & libc::S_IFMT == libc::S_IFDIR {
        bits::DIR
    } else {
        bits::FILE
    }
}
