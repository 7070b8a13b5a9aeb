//! Kernel records to drafts: creates, closes, content changes and namespace or attribute
//! syscalls, each checked against the watch set and the names known.

use std::time::Instant;

use sensor_common::{kind, watch as bits, FileKey, Touched, FIM_TOUCHED};
use sensor_proto::v1::{Process, RuleDetail};

use super::{hash, syscalls, syscalls::Op, watch_bits, Action, Created, Dirty, Draft, Fim, Track};
use crate::decode;

impl Fim {
    pub(super) fn on_record(&mut self, rec: &decode::Fim) {
        let actor = Some(super::actor(&self.host, rec));
        let raw = &rec.raw;
        let boot_ns = raw.header.boot_ns;
        tracing::trace!(
            kind = raw.header.kind,
            inode = raw.key.ino,
            tgid = raw.ids.tgid,
            "FIM record"
        );
        match raw.header.kind {
            kind::FIM_CREATE => self.on_create(rec, actor),
            // A truncated name is not kept: the names known give a better one.
            kind::FIM_OPEN if !rec.path.truncated => {
                // A cache of names, not a record of changes: dropping it costs a lookup.
                if self.written.len() >= 65_536 {
                    self.written.clear();
                }
                self.written
                    .insert((raw.ids.tgid, raw.key), rec.path.bytes.clone());
            }
            kind::FIM_CLOSE => {
                let written = self.written.get(&(raw.ids.tgid, raw.key)).cloned();
                let skipped = self.close_sent.get(&raw.key, 0).map_or(0, |s| s.skipped);
                let closed = super::Closed {
                    actor: actor.clone(),
                    boot_ns,
                    skipped,
                    at: Instant::now(),
                };
                self.closed.insert(raw.key, closed);
                if let Some(c) = self.created.get_mut(&raw.key) {
                    // The name it was opened by, rebuilt from its dentry, over the name the
                    // create record put together.
                    if let Some(path) = written.filter(|p| *p != c.path) {
                        let named = std::mem::replace(&mut c.path, path.clone());
                        self.names.remove(&named);
                        self.names.add(&path, raw.key);
                    }
                    self.report_created(raw.key, None);
                    return;
                }
                self.dirty.remove(&raw.key);
                self.modified(raw.key, actor, boot_ns, written.as_deref(), None);
            }
            kind::FIM_CHANGE if !self.created.contains_key(&raw.key) => {
                let at = Instant::now();
                self.dirty.insert(raw.key, Dirty { actor, boot_ns, at });
            }
            kind::FIM_SYSCALL => self.on_syscall(rec, actor),
            _ => {}
        }
    }

    fn on_create(&mut self, rec: &decode::Fim, actor: Option<Process>) {
        let key = rec.raw.key;
        // The name as opened, against the directory the kernel took it against; the first
        // close brings the path rebuilt from the file's own dentry.
        let Some(path) = resolve(&rec.name0, &rec.base0).filter(|p| self.watch.contains(p)) else {
            // Made in a directory that only leads to the watch set.
            self.unwatch_key(key);
            return;
        };
        let path = &path;
        self.names.add(path, key);
        let created = Created {
            path: path.clone(),
            actor,
            boot_ns: Some(rec.raw.header.boot_ns),
            at: Instant::now(),
            found_by: "kernel",
        };
        self.created.insert(key, created);
    }

    fn on_syscall(&mut self, rec: &decode::Fim, actor: Option<Process>) {
        let raw = &rec.raw;
        let Some(sc) = syscalls::by_nr(raw.syscall_nr) else {
            return;
        };
        let touched = &raw.touched[..(raw.touched_len as usize).min(FIM_TOUCHED)];
        let name0 = resolve(&rec.name0, &rec.base0);
        let name1 = resolve(&rec.name1, &rec.base1);
        tracing::trace!(syscall = sc.name, ?touched, "FIM syscall record");
        let draft = |action, path: &[u8], key| {
            let mut d = Draft::new(action, path, key);
            d.actor = actor.clone();
            d.boot_ns = Some(raw.header.boot_ns);
            d.detail.syscall = sc.name.into();
            d
        };
        match sc.op {
            Op::Unlink => {
                let Some(path) = name0 else { return };
                // Only unlinkat has flags; another syscall's third register is stale.
                let dir = sc.name == "rmdir"
                    || (sc.name == "unlinkat" && raw.args[2] & syscalls::AT_REMOVEDIR != 0);
                let key = self
                    .names
                    .key(&path)
                    .or_else(|| self.names.outside_key(&path))
                    .unwrap_or_else(|| gone(touched));
                let inside = self.names.key(&path).is_some();
                let outside = self.names.remove_outside(&path).is_some();
                if !inside && !outside && !self.watch.contains(&path) {
                    return;
                }
                if self.created.contains_key(&key) {
                    self.report_created(key, None);
                }
                let orphaned = self.names.remove_tree(&path);
                for k in orphaned.into_iter().filter(|k| *k != key) {
                    self.unwatch_key(k);
                }
                let mut d = draft(Action::Deleted, &path, key);
                d.detail.link_count = nlink_of(touched, key);
                if d.detail.link_count == 0 {
                    // Its last name is gone: let the inode go once queued reads are done (each
                    // has a copy of the descriptor).
                    self.held.remove(&key);
                }
                d.detail.outside_watched = outside;
                if dir {
                    d.detail.r#type = "dir".into();
                }
                d.previous_of = inside.then(|| path.clone());
                d.track = Track::Remove(path);
                self.enqueue(d);
            }
            Op::Rename => {
                let (Some(old), Some(new)) = (name0, name1) else {
                    return;
                };
                // Only renameat2 has flags; another syscall's fifth register is stale.
                let flags = if sc.name == "renameat2" {
                    raw.args[4]
                } else {
                    0
                };
                let d = draft(Action::Renamed, b"", FileKey::default());
                self.on_rename(old, new, flags, d);
            }
            Op::Link => {
                let (Some(existing), Some(new)) = (name0, name1) else {
                    return;
                };
                let key = self
                    .names
                    .key(&existing)
                    .or_else(|| self.names.outside_key(&existing))
                    .or_else(|| {
                        touched
                            .iter()
                            .find(|t| t.flags & bits::FILE != 0)
                            .map(|t| t.key)
                    });
                let inside = self.watch.contains(&new);
                let Some(key) = key.filter(|k| inside || self.names.is_watched(*k)) else {
                    return;
                };
                let mut d = draft(Action::Linked, &new, key);
                d.detail.existing_path = self.names.primary(key).cloned().unwrap_or(existing);
                d.detail.link_count = nlink_of(touched, key);
                d.read = new.clone();
                if inside {
                    self.names.add(&new, key);
                    self.watch_key(key, bits::FILE);
                    d.track = Track::Set(new.clone());
                } else {
                    self.names.add_outside(key, &new);
                    d.detail.outside_watched = true;
                    d.alert = Some(RuleDetail {
                        name: "fim-watched-file-linked-outside".into(),
                        description: format!(
                            "watched file {} gained the name {} outside the watched set",
                            String::from_utf8_lossy(&d.detail.existing_path),
                            String::from_utf8_lossy(&new)
                        ),
                        severity: 47,
                        ..RuleDetail::default()
                    });
                }
                self.enqueue(d);
            }
            Op::Symlink | Op::Mkdir | Op::Mknod => {
                let new = if sc.op == Op::Symlink { name1 } else { name0 };
                let Some(new) = new else { return };
                let entry = hash::stat(&new).ok();
                let key = entry.as_ref().map_or_else(FileKey::default, |e| e.key());
                if !self.watch.contains(&new) {
                    let keep = sc.op == Op::Mkdir && self.watch.leads_to(&new);
                    if !keep && key != FileKey::default() {
                        self.unwatch_key(key);
                    }
                    return;
                }
                let mode = entry.as_ref().map_or(0, |e| e.mode);
                self.names.add(&new, key);
                self.watch_key(key, watch_bits(mode));
                let mut d = draft(Action::Created, &new, key);
                d.read = new.clone();
                d.track = Track::Set(new.clone());
                if sc.op == Op::Symlink {
                    d.detail.symlink_target = rec.name0.clone();
                }
                self.enqueue(d);
                if sc.op == Op::Mkdir {
                    self.scan_new_tree(&new);
                }
            }
            // Creates by the open family come as create records, never as syscall records.
            Op::Open => {}
            Op::Attributes | Op::Content => {
                let Some(t) = touched.iter().find(|t| t.flags != 0) else {
                    return;
                };
                let key = t.key;
                if self.created.contains_key(&key) {
                    // Part of making the file (an editor copying modes to its temporary).
                    return;
                }
                if sc.op == Op::Content {
                    self.modified(key, actor.clone(), raw.header.boot_ns, None, Some(sc.name));
                    return;
                }
                let Some(path) = self.names.primary(key).cloned() else {
                    return;
                };
                let mut d = draft(Action::Attributes, &path, key);
                d.read = path.clone();
                d.previous_of = Some(path.clone());
                d.track = Track::Set(path);
                d.only_if_changed = true;
                if sc.name.contains("xattr") {
                    d.detail.xattr_name = String::from_utf8_lossy(&rec.name1).into_owned();
                }
                self.enqueue(d);
            }
        }
    }

    fn on_rename(&mut self, old: Vec<u8>, new: Vec<u8>, flags: u64, mut d: Draft) {
        let key = self
            .names
            .key(&old)
            .or_else(|| self.names.outside_key(&old))
            .unwrap_or_default();
        let old_in = self.names.key(&old).is_some() || self.watch.contains(&old);
        let new_in = self.watch.contains(&new);
        if !old_in && !new_in {
            return;
        }
        let exchange = flags & syscalls::RENAME_EXCHANGE != 0;
        let replaced = if exchange { None } else { self.names.key(&new) };
        if self.created.contains_key(&key) {
            // Made and renamed before its first close: the content is at the new name.
            if let Some(c) = self.created.get_mut(&key) {
                c.actor = d.actor.clone();
            }
            self.report_created(key, Some(&new));
        }
        d.key = key;
        d.detail.path = new.clone();
        d.detail.inode = key.ino;
        d.detail.device = key.dev;
        d.detail.old_path = old.clone();
        d.detail.replaced_inode = replaced.filter(|r| *r != key).map_or(0, |r| r.ino);
        d.detail.outside_watched = !new_in;
        d.read = new.clone();
        d.hash = true;
        d.previous_of = Some(if replaced.is_some() {
            new.clone()
        } else {
            old.clone()
        });
        if exchange {
            let other = self.names.key(&new);
            self.names.remove(&old);
            self.names.remove(&new);
            if let Some(o) = other {
                self.names.add(&old, o);
            }
            self.names.add(&new, key);
            d.track = Track::Set(new.clone());
        } else if new_in {
            if let Some(r) = replaced.filter(|r| *r != key) {
                self.names.remove(&new);
                if !self.names.is_watched(r) {
                    self.unwatch_key(r);
                }
            }
            if self.names.key(&old).is_some() {
                self.names.move_tree(&old, &new);
                d.track = Track::Move(old, new);
            } else {
                // Moved in from outside the watch set: watch it, and what it holds.
                let entry = hash::stat(&new).ok();
                let (key, mode) = entry.map_or((key, 0), |e| (e.key(), e.mode));
                d.key = key;
                d.detail.inode = key.ino;
                d.detail.device = key.dev;
                self.names.add(&new, key);
                self.watch_key(key, watch_bits(mode));
                d.track = Track::Set(new.clone());
                if mode & libc::S_IFMT == libc::S_IFDIR {
                    self.enqueue(d);
                    self.scan_new_tree(&new);
                    return;
                }
            }
        } else {
            for k in self.names.remove_tree(&old) {
                self.unwatch_key(k);
            }
            d.track = Track::Remove(old);
        }
        self.enqueue(d);
    }
}

/// A name argument made absolute against the directory the kernel took it against; `None`
/// when absent or when that directory was cut.
fn resolve(name: &[u8], base: &decode::KernelPath) -> Option<Vec<u8>> {
    if name.is_empty() || (!name.starts_with(b"/") && (base.bytes.is_empty() || base.truncated)) {
        return None;
    }
    Some(crate::process::absolute(&base.bytes, name))
}

/// The link count a syscall left `key` with.
fn nlink_of(touched: &[Touched], key: FileKey) -> u32 {
    touched.iter().find(|t| t.key == key).map_or(0, |t| t.nlink)
}

/// The watched file a removal took the last name of, when its name was unknown.
fn gone(touched: &[Touched]) -> FileKey {
    touched
        .iter()
        .find(|t| t.flags & bits::FILE != 0)
        .or_else(|| touched.iter().find(|t| t.nlink == 0))
        .map_or_else(FileKey::default, |t| t.key)
}
