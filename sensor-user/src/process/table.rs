//! Process table: what is known about each live (and recently exited) process.
//!
//! Fed by fork, exec and exit records; read to name parents and to describe a process at exit.
//! Bounded: exited entries age out after a TTL, and a hard cap refuses new entries (counted)
//! rather than growing under a fork storm.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

/// What the table keeps about one process image.
#[derive(Debug, Clone, Default)]
pub struct Proc {
    pub entity_id: String,
    pub ppid: u32,
    pub parent_entity_id: String,
    pub executable: Vec<u8>,
    pub name: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    pub args_count: u32,
    pub cwd: Vec<u8>,
    pub start_wall_ns: u64,
    pub exited: bool,
}

/// The table, keyed by pid.
pub struct ProcessTable {
    procs: HashMap<u32, Proc>,
    exited: VecDeque<(Instant, u32, String)>,
    max_entries: usize,
    ttl: Duration,
    /// Inserts refused because the table was full.
    pub refused: u64,
}

impl ProcessTable {
    /// An empty table holding at most `max_entries`, keeping exited ones for `ttl`.
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self {
            procs: HashMap::new(),
            exited: VecDeque::new(),
            max_entries,
            ttl,
            refused: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The process `pid`, if tracked.
    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.procs.get(&pid)
    }

    /// Records `proc` as process `pid`, replacing an older image with that pid.
    pub fn insert(&mut self, pid: u32, proc: Proc, now: Instant) {
        if !self.procs.contains_key(&pid) && self.procs.len() >= self.max_entries {
            self.expire(now, true);
            if self.procs.len() >= self.max_entries {
                self.refused += 1;
                return;
            }
        }
        self.procs.insert(pid, proc);
    }

    /// Applies `f` to process `pid` if tracked.
    pub fn update(&mut self, pid: u32, f: impl FnOnce(&mut Proc)) {
        if let Some(p) = self.procs.get_mut(&pid) {
            f(p);
        }
    }

    /// Marks `pid` exited; it is dropped once the TTL has passed.
    pub fn exit(&mut self, pid: u32, now: Instant) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.exited = true;
            self.exited.push_back((now, pid, p.entity_id.clone()));
        }
    }

    /// Drops exited entries older than the TTL, or all exited ones when `all`.
    pub fn expire(&mut self, now: Instant, all: bool) {
        while let Some((at, pid, entity)) = self.exited.front() {
            if !all && now.duration_since(*at) < self.ttl {
                break;
            }
            // The pid may have been reused by a newer process since; only drop the one that
            // exited.
            if self
                .procs
                .get(pid)
                .is_some_and(|p| p.exited && &p.entity_id == entity)
            {
                self.procs.remove(pid);
            }
            self.exited.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(id: &str) -> Proc {
        Proc {
            entity_id: id.into(),
            ..Proc::default()
        }
    }

    #[test]
    fn exited_entries_age_out_after_the_ttl() {
        let t0 = Instant::now();
        let mut table = ProcessTable::new(100, Duration::from_secs(30));
        table.insert(1, proc("a"), t0);
        table.insert(2, proc("b"), t0);

        table.exit(1, t0);
        table.expire(t0 + Duration::from_secs(10), false);
        assert!(table.get(1).is_some(), "kept within the ttl");
        table.expire(t0 + Duration::from_secs(31), false);

        assert!(table.get(1).is_none(), "gone after the ttl");
        assert!(table.get(2).is_some(), "live process untouched");
    }

    #[test]
    fn a_reused_pid_is_not_dropped_with_its_predecessor() {
        let t0 = Instant::now();
        let mut table = ProcessTable::new(100, Duration::from_secs(1));
        table.insert(7, proc("old"), t0);
        table.exit(7, t0);

        table.insert(7, proc("new"), t0);
        table.expire(t0 + Duration::from_secs(5), false);

        assert_eq!(table.get(7).map(|p| p.entity_id.as_str()), Some("new"));
    }

    #[test]
    fn the_cap_holds_under_a_fork_storm() {
        let t0 = Instant::now();
        let mut table = ProcessTable::new(64, Duration::from_secs(30));

        for pid in 0..10_000 {
            table.insert(pid, proc(&pid.to_string()), t0);
            if pid % 2 == 0 {
                table.exit(pid, t0);
            }
        }

        assert!(table.len() <= 64, "table grew to {}", table.len());
        assert!(table.refused > 0, "refusals are counted");
    }
}
