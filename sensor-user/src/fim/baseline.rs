//! The FIM baseline: the last known state of every watched file, in a redb database in
//! `state_dir`, so that changes made while the sensor was down are found at the next start.
//!
//! One table maps the path (bytes) to its [`Entry`] as JSON; a meta table names the schema,
//! so a database written by something else is refused rather than misread.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::hash::Entry;

const FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("files");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";
const SCHEMA: &str = "sensor-fim-baseline-1";

/// A baseline that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(
        "FIM baseline {path} cannot be opened: it is corrupt or not a sensor baseline (remove \
         it, or start with --rebuild-baseline, to build a new one)"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error(
        "FIM baseline {path} belongs to something else (schema `{found}`, expected `{SCHEMA}`); \
         remove it, or start with --rebuild-baseline, to build a new one"
    )]
    Foreign { path: PathBuf, found: String },
    #[error("FIM baseline {path}: failed to {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: redb::Error,
    },
}

/// The open database.
pub struct Baseline {
    db: Database,
    path: PathBuf,
}

impl Baseline {
    /// Opens (or creates) the baseline at `path` and reads every entry. With `rebuild`, an
    /// existing file is removed first.
    pub fn open(
        path: &Path,
        rebuild: bool,
    ) -> Result<(Self, BTreeMap<Vec<u8>, Entry>), BaselineError> {
        if rebuild && path.exists() {
            let _ = std::fs::remove_file(path);
        }
        let open = |source: redb::Error| BaselineError::Open {
            path: path.to_path_buf(),
            source,
        };
        let db = Database::create(path).map_err(|e| open(e.into()))?;
        let me = Self {
            db,
            path: path.to_path_buf(),
        };
        let schema = me.schema().map_err(open)?;
        match schema {
            Some(s) if s == SCHEMA => {}
            Some(found) => {
                return Err(BaselineError::Foreign {
                    path: path.to_path_buf(),
                    found,
                })
            }
            None => me.init().map_err(|e| me.io("initialise", e))?,
        }
        let entries = me.read_all().map_err(|e| me.io("read entries", e))?;
        Ok((me, entries))
    }

    fn schema(&self) -> Result<Option<String>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                // A database with tables of its own but no meta table is someone else's.
                let foreign = txn.list_tables()?.next().is_some();
                return Ok(foreign.then(|| "none".to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let schema = table.get(SCHEMA_KEY)?.map(|v| v.value().to_string());
        Ok(schema)
    }

    fn init(&self) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            txn.open_table(META)?.insert(SCHEMA_KEY, SCHEMA)?;
            txn.open_table(FILES)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn read_all(&self) -> Result<BTreeMap<Vec<u8>, Entry>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FILES)?;
        let mut out = BTreeMap::new();
        for item in table.iter()? {
            let (k, v) = item?;
            // An entry that does not parse is treated as unknown: the next scan rewrites it.
            if let Ok(entry) = serde_json::from_slice::<Entry>(v.value()) {
                out.insert(k.value().to_vec(), entry);
            }
        }
        Ok(out)
    }

    /// Replaces the whole content with `entries` (after a scan).
    pub fn replace(&self, entries: &BTreeMap<Vec<u8>, Entry>) -> Result<(), BaselineError> {
        self.write(|txn| {
            txn.delete_table(FILES)?;
            let mut table = txn.open_table(FILES)?;
            for (path, entry) in entries {
                table.insert(path.as_slice(), encode(entry).as_slice())?;
            }
            Ok(())
        })
        .map_err(|e| self.io("write the scan", e))
    }

    /// Applies live changes: `Some` sets a path's entry, `None` removes it.
    pub fn apply(&self, changes: &BTreeMap<Vec<u8>, Option<Entry>>) -> Result<(), BaselineError> {
        self.write(|txn| {
            let mut table = txn.open_table(FILES)?;
            for (path, entry) in changes {
                match entry {
                    Some(e) => {
                        table.insert(path.as_slice(), encode(e).as_slice())?;
                    }
                    None => {
                        table.remove(path.as_slice())?;
                    }
                }
            }
            Ok(())
        })
        .map_err(|e| self.io("record changes", e))
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        f(&txn)?;
        txn.commit()?;
        Ok(())
    }

    fn io(&self, action: &'static str, source: redb::Error) -> BaselineError {
        BaselineError::Io {
            path: self.path.clone(),
            action,
            source,
        }
    }
}

/// A write for the baseline's own thread.
pub enum Write {
    /// The whole content after a scan.
    Replace(BTreeMap<Vec<u8>, Entry>),
    /// Live changes: `Some` sets a path's entry, `None` removes it.
    Apply(BTreeMap<Vec<u8>, Option<Entry>>),
}

impl Baseline {
    /// Moves the database to a thread of its own: a commit waits for the disk, and the FIM
    /// thread must not, or a file deleted right after its change is gone before it is read.
    pub fn spawn_writer(
        self,
    ) -> std::io::Result<(
        crossbeam_channel::Sender<Write>,
        std::thread::JoinHandle<()>,
    )> {
        let (tx, rx) = crossbeam_channel::unbounded::<Write>();
        let thread = std::thread::Builder::new()
            .name("fim-baseline".into())
            .spawn(move || {
                for write in rx {
                    let result = match &write {
                        Write::Replace(all) => self.replace(all),
                        Write::Apply(changes) => self.apply(changes),
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = format!("{e:#}"), "FIM baseline not saved");
                    }
                }
            })?;
        Ok((tx, thread))
    }
}

fn encode(entry: &Entry) -> Vec<u8> {
    serde_json::to_vec(entry).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64) -> Entry {
        Entry {
            dev: 1,
            ino,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            size: 3,
            mtime_ns: 5,
            ctime_ns: 6,
            nlink: 1,
            sha256: Some("ab".into()),
            xattrs: vec![],
        }
    }

    #[test]
    fn entries_survive_reopening_and_garbage_is_refused() {
        let dir = std::env::temp_dir().join(format!("fim-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fim.redb");
        let garbage = dir.join("garbage.redb");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();

        let (db, empty) = Baseline::open(&path, true).unwrap();
        db.replace(&BTreeMap::from([(b"/a".to_vec(), entry(1))]))
            .unwrap();
        db.apply(&BTreeMap::from([
            (b"/b".to_vec(), Some(entry(2))),
            (b"/a".to_vec(), None),
        ]))
        .unwrap();
        drop(db);
        let (_, reread) = Baseline::open(&path, false).unwrap();
        let err = Baseline::open(&garbage, false).err().unwrap();

        assert!(empty.is_empty());
        assert_eq!(reread, BTreeMap::from([(b"/b".to_vec(), entry(2))]));
        assert!(err.to_string().contains("--rebuild-baseline"), "{err}");
        assert!(
            Baseline::open(&garbage, true).is_ok(),
            "rebuild replaces it"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_programs_database_is_foreign() {
        let dir = std::env::temp_dir().join(format!("fim-foreign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("other.redb");
        let other: TableDefinition<&str, u64> = TableDefinition::new("accounts");
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(other).unwrap().insert("alice", 1).unwrap();
        txn.commit().unwrap();
        drop(db);

        let err = Baseline::open(&path, false).err().unwrap();

        assert!(matches!(err, BaselineError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("--rebuild-baseline"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
