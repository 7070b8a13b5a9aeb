//! Seeds the process table from `/proc`, so processes older than the sensor have executables
//! and parents. Only used at start: events about new processes come from the kernel alone.

use std::{os::unix::ffi::OsStrExt, path::Path, time::Instant};

use super::{
    identity::Host,
    table::{Proc, ProcessTable},
};

/// What `/proc/<pid>/stat` says about identity.
#[derive(Debug, PartialEq, Eq)]
pub struct StatLine {
    pub ppid: u32,
    pub start_ticks: u64,
}

/// Parses the fields the seed needs from a `stat` line. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(line: &[u8]) -> Option<StatLine> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&line[close + 1..]).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the name: state(3) ppid(4) ... starttime(22), so ppid is fields[1], start [19].
    Some(StatLine {
        ppid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Fills `table` with every process in `proc_root`; returns how many were added.
pub fn seed(table: &mut ProcessTable, host: &Host, proc_root: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return 0;
    };
    let now = Instant::now();
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let base = entry.path();
        let Some(stat) = std::fs::read(base.join("stat"))
            .ok()
            .and_then(|l| parse_stat(&l))
        else {
            continue;
        };
        let read_link =
            |name| std::fs::read_link(base.join(name)).map(|p| p.as_os_str().as_bytes().to_vec());
        let args: Vec<Vec<u8>> = std::fs::read(base.join("cmdline"))
            .map(|b| crate::decode::split_args(&b, false))
            .unwrap_or_default();
        let mut name = std::fs::read(base.join("comm")).unwrap_or_default();
        if name.last() == Some(&b'\n') {
            name.pop();
        }
        let proc = Proc {
            entity_id: host.entity_id_from_ticks(pid, stat.start_ticks),
            ppid: stat.ppid,
            executable: read_link("exe").unwrap_or_default(),
            name,
            args_count: args.len() as u32,
            args,
            cwd: read_link("cwd").unwrap_or_default(),
            start_wall_ns: host.wall_ns(stat.start_ticks * host.ns_per_tick),
            ..Proc::default()
        };
        found.push((pid, proc));
    }
    let parents: std::collections::HashMap<u32, String> = found
        .iter()
        .map(|(pid, p)| (*pid, p.entity_id.clone()))
        .collect();
    let count = found.len();
    for (pid, mut proc) in found {
        proc.parent_entity_id = parents.get(&proc.ppid).cloned().unwrap_or_default();
        table.insert(pid, proc, now);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_the_name_parses() {
        let line = b"1234 (a) b (c) S 77 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                     98765 1000 200 18446744073709551615";

        let stat = parse_stat(line).unwrap();

        assert_eq!(
            stat,
            StatLine {
                ppid: 77,
                start_ticks: 98765
            }
        );
    }

    #[test]
    fn own_process_is_seeded_with_its_executable() {
        let host = Host::detect().expect("host facts");
        let mut table = ProcessTable::new(1 << 16, std::time::Duration::from_secs(30));

        let n = seed(&mut table, &host, Path::new("/proc"));

        let me = table.get(std::process::id()).expect("own pid seeded");
        assert!(n > 1);
        assert!(!me.executable.is_empty());
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(
            !me.parent_entity_id.is_empty(),
            "parent linked by entity id"
        );
    }
}
