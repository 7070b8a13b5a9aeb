//! Baseline scans: walk the watch set, fill the kernel's map, hash what changed and compare
//! with the stored baseline.
//!
//! A file whose inode, size and times match its baseline entry keeps its stored hash, so a
//! restart rereads only what changed. Progress is logged every few seconds.

use std::{
    collections::BTreeMap,
    os::unix::ffi::OsStrExt,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use sensor_common::watch as bits;
use sensor_proto::v1::FimScanReply;

use super::{
    attribute_changes, file_state, file_type, hash, hash::Entry, watch::parent, watch_bits, Action,
    Draft, Fim,
};

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Fim {
    /// Scans the whole watch set; with `report`, publishes what differs from the baseline.
    pub(super) fn scan(&mut self, report: bool) -> FimScanReply {
        let started = Instant::now();
        for anchor in self.watch.anchors() {
            if !self.watch.contains(&anchor) {
                if let Ok(e) = hash::stat(&anchor) {
                    self.watch_key(e.key(), bits::DIR | bits::PARTIAL);
                }
            }
        }
        let mut found = BTreeMap::new();
        for root in self.watch.roots() {
            self.watch_ancestors(&root);
            self.walk(&root, &mut found);
        }
        let hashed_bytes = self.hash_all(&mut found, started);

        let mut changes = Vec::new();
        if report {
            changes = self.compare(&found);
        }
        self.state = found;
        self.names.clear_inside();
        let paths: Vec<(Vec<u8>, Entry)> = self
            .state
            .iter()
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        for (path, entry) in paths {
            self.names.add(&path, entry.key());
        }
        let _ = self
            .db
            .send(super::baseline::Write::Replace(self.state.clone()));
        self.unsaved.clear();
        let millis = started.elapsed().as_millis() as u64;
        let s = &self.stats;
        let files = self.state.len() as u64;
        s.scans.fetch_add(1, Relaxed);
        s.last_scan_files.store(files, Relaxed);
        s.last_scan_millis.store(millis, Relaxed);
        s.last_scan_bytes.store(hashed_bytes, Relaxed);
        s.watched.store(files, Relaxed);
        tracing::debug!(
            files = self.state.len(),
            millis,
            changes = changes.len(),
            "FIM scan done"
        );
        for event in &changes {
            self.publish(event.clone());
        }
        FimScanReply {
            scanned: self.state.len() as u64,
            hashed_bytes,
            changes,
            millis,
        }
    }

    /// Watches the directories between the nearest anchor and `root` as partial, so that
    /// the root is recognised if it is removed and made again.
    fn watch_ancestors(&mut self, root: &[u8]) {
        let mut dir = parent(root).to_vec();
        while !self.watch.contains(&dir) {
            if let Ok(e) = hash::stat(&dir) {
                self.watch_key(e.key(), bits::DIR | bits::PARTIAL);
            }
            if dir == b"/" {
                break;
            }
            dir = parent(&dir).to_vec();
        }
    }

    /// Adds `root` and everything under it to the kernel's map and to `found`.
    fn walk(&mut self, root: &[u8], found: &mut BTreeMap<Vec<u8>, Entry>) {
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(root));
        let watch = self.watch.clone();
        let walker = walkdir::WalkDir::new(path)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| !watch.excluded(e.path().as_os_str().as_bytes()));
        let mut last = Instant::now();
        for item in walker {
            let entry = match item {
                Ok(e) => e,
                Err(e) => {
                    // A file gone mid-walk, or a directory we may not read: named, then skipped.
                    tracing::debug!(error = %e, "FIM scan skipped an entry");
                    continue;
                }
            };
            let p = entry.path().as_os_str().as_bytes().to_vec();
            let Ok(e) = hash::stat(&p) else { continue };
            self.watch_key(e.key(), watch_bits(e.mode));
            found.insert(p, e);
            if last.elapsed() >= PROGRESS_EVERY {
                tracing::info!(files = found.len(), "FIM scan in progress");
                last = Instant::now();
            }
        }
    }

    /// Hashes every regular file in `found` whose stored version differs; returns bytes read.
    fn hash_all(&mut self, found: &mut BTreeMap<Vec<u8>, Entry>, started: Instant) -> u64 {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut asked = BTreeMap::new();
        for (path, entry) in found.iter_mut() {
            if !entry.is_regular() {
                continue;
            }
            if let Some(old) = self.state.get(path).filter(|o| entry.same_version(o)) {
                entry.sha256.clone_from(&old.sha256);
                if entry.sha256.is_some() {
                    continue;
                }
            }
            let id = asked.len() as u64;
            let job = hash::Job {
                id,
                file: None,
                path: path.clone(),
                expect: Some(entry.key()),
                hash: true,
            };
            self.pool.submit(job, &tx);
            asked.insert(id, path.clone());
        }
        let total = asked.len();
        let mut bytes = 0;
        let mut last = Instant::now();
        for n in 0..total {
            let Ok(done) = rx.recv() else { break };
            bytes += done.bytes_hashed;
            if let (Some(path), Ok(e)) = (asked.get(&done.id), done.entry) {
                if let Some(entry) = found.get_mut(path) {
                    entry.sha256 = e.sha256;
                }
            }
            if last.elapsed() >= PROGRESS_EVERY {
                let secs = started.elapsed().as_secs();
                tracing::info!(hashed = n, of = total, bytes, secs, "FIM scan hashing");
                last = Instant::now();
            }
        }
        bytes
    }

    /// Events for what differs between the baseline and a scan's findings.
    fn compare(&self, found: &BTreeMap<Vec<u8>, Entry>) -> Vec<sensor_proto::v1::Event> {
        let mut out = Vec::new();
        let mut emit = |action: Action, path: &[u8], old: Option<&Entry>, new: Option<&Entry>| {
            let key = new.or(old).map(|e| e.key()).unwrap_or_default();
            let mut d = Draft::new(action, path, key).detail;
            d.found_by = "scan".into();
            d.r#type = file_type(new.or(old).map_or(0, |e| e.mode)).into();
            d.state = new.map(file_state);
            d.previous = old.map(file_state);
            d.link_count = new.map_or(0, |e| e.nlink);
            if let (Some(o), Some(n), Action::Attributes) = (old, new, action) {
                d.changed = attribute_changes(o, n);
            }
            out.push(self.event(action, None, None, d));
        };
        for (path, new) in found {
            match self.state.get(path) {
                None => emit(Action::Created, path, None, Some(new)),
                Some(old) if content_differs(old, new) => {
                    emit(Action::Modified, path, Some(old), Some(new));
                }
                Some(old) if !attribute_changes(old, new).is_empty() || old.ino != new.ino => {
                    emit(Action::Attributes, path, Some(old), Some(new));
                }
                Some(_) => {}
            }
        }
        for (path, old) in &self.state {
            if !found.contains_key(path) {
                emit(Action::Deleted, path, Some(old), None);
            }
        }
        out
    }

    /// A directory that appeared in the watch set (made, or moved in): watches what it
    /// already holds, each reported as created, found by scan, unless the kernel's own
    /// record of its creation follows (it then carries the process).
    pub(super) fn scan_new_tree(&mut self, dir: &[u8]) {
        let mut found = BTreeMap::new();
        self.walk(dir, &mut found);
        for (path, entry) in found {
            if path == dir || self.names.key(&path).is_some() {
                continue;
            }
            self.names.add(&path, entry.key());
            let created = super::Created {
                path,
                actor: None,
                boot_ns: None,
                at: Instant::now(),
                found_by: "scan",
            };
            self.created.insert(entry.key(), created);
        }
    }
}

/// Whether a scan finds different content: another type, or for a regular file another hash
/// or size.
fn content_differs(old: &Entry, new: &Entry) -> bool {
    if old.mode & libc::S_IFMT != new.mode & libc::S_IFMT {
        return true;
    }
    new.is_regular() && (old.sha256 != new.sha256 || old.size != new.size)
}
