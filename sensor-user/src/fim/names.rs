//! Names of watched files: which paths lead to which inode, inside the watch set and out.
//!
//! Kept up to date as soon as a record arrives (content state follows once hashed), so that a
//! rename right after a create already finds the new file.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sensor_common::FileKey;

use super::watch::is_within;

/// Path to identity and back.
#[derive(Debug, Default)]
pub struct Names {
    by_path: BTreeMap<Vec<u8>, FileKey>,
    by_key: HashMap<FileKey, BTreeSet<Vec<u8>>>,
    /// Names a watched file gained outside the watch set (hard links made elsewhere).
    outside: HashMap<FileKey, BTreeSet<Vec<u8>>>,
}

impl Names {
    pub fn clear_inside(&mut self) {
        self.by_path.clear();
        self.by_key.clear();
    }

    pub fn add(&mut self, path: &[u8], key: FileKey) {
        if let Some(old) = self.by_path.insert(path.to_vec(), key) {
            if old != key {
                self.unlink_key(old, path);
            }
        }
        self.by_key.entry(key).or_default().insert(path.to_vec());
    }

    pub fn remove(&mut self, path: &[u8]) -> Option<FileKey> {
        let key = self.by_path.remove(path)?;
        self.unlink_key(key, path);
        Some(key)
    }

    fn unlink_key(&mut self, key: FileKey, path: &[u8]) {
        if let Some(set) = self.by_key.get_mut(&key) {
            set.remove(path);
            if set.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    pub fn key(&self, path: &[u8]) -> Option<FileKey> {
        self.by_path.get(path).copied()
    }

    /// The first watched name of `key`, the one events report.
    pub fn primary(&self, key: FileKey) -> Option<&Vec<u8>> {
        self.by_key.get(&key).and_then(|s| s.iter().next())
    }

    /// Whether `key` still has a name inside the watch set.
    pub fn is_watched(&self, key: FileKey) -> bool {
        self.by_key.contains_key(&key)
    }

    pub fn add_outside(&mut self, key: FileKey, path: &[u8]) {
        self.outside.entry(key).or_default().insert(path.to_vec());
    }

    /// The file an outside name belongs to.
    pub fn outside_key(&self, path: &[u8]) -> Option<FileKey> {
        self.outside
            .iter()
            .find(|(_, names)| names.contains(path))
            .map(|(k, _)| *k)
    }

    pub fn remove_outside(&mut self, path: &[u8]) -> Option<FileKey> {
        let key = self.outside_key(path)?;
        if let Some(set) = self.outside.get_mut(&key) {
            set.remove(path);
            if set.is_empty() {
                self.outside.remove(&key);
            }
        }
        Some(key)
    }

    /// Names at or under `dir`, with their keys.
    pub fn tree(&self, dir: &[u8]) -> Vec<(Vec<u8>, FileKey)> {
        self.by_path
            .range(dir.to_vec()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .filter(|(p, _)| is_within(p, dir))
            .map(|(p, k)| (p.clone(), *k))
            .collect()
    }

    /// Moves every name at or under `old` to the same place under `new`.
    pub fn move_tree(&mut self, old: &[u8], new: &[u8]) {
        for (path, key) in self.tree(old) {
            self.remove(&path);
            let mut moved = new.to_vec();
            moved.extend_from_slice(&path[old.len()..]);
            self.add(&moved, key);
        }
    }

    /// Forgets every name at or under `dir`; returns the keys left with no watched name.
    pub fn remove_tree(&mut self, dir: &[u8]) -> Vec<FileKey> {
        let mut orphaned = Vec::new();
        for (path, key) in self.tree(dir) {
            self.remove(&path);
            if !self.is_watched(key) {
                orphaned.push(key);
            }
        }
        orphaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 1,
            _pad: 0,
            ino,
        }
    }

    #[test]
    fn trees_move_and_hard_links_keep_their_file() {
        let mut n = Names::default();
        n.add(b"/w", key(1));
        n.add(b"/w/a", key(2));
        n.add(b"/w/ab", key(3));
        n.add(b"/wx", key(4));
        n.add(b"/w/hard", key(2));

        n.move_tree(b"/w", b"/v");
        n.remove(b"/v/a");

        assert_eq!(n.key(b"/v/ab"), Some(key(3)));
        assert_eq!(
            n.key(b"/wx"),
            Some(key(4)),
            "a sibling with a longer name stays"
        );
        assert_eq!(n.primary(key(2)), Some(&b"/v/hard".to_vec()));
        assert_eq!(n.remove_tree(b"/v"), vec![key(1), key(3), key(2)]);
    }
}
