//! Process identity and clocks: entity ids, boot id, and kernel boot time to wall time.

use sha2::{Digest, Sha256};

/// Host facts that every event carries and every entity id is derived from.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub boot_id: String,
    /// Wall-clock nanoseconds at boot: add a `CLOCK_BOOTTIME` reading to get wall time.
    pub boot_wall_ns: u64,
    /// Nanoseconds per clock tick (`/proc/<pid>/stat` start times are in ticks).
    pub ns_per_tick: u64,
}

impl Host {
    /// Reads the host's name, boot id, boot time and tick length.
    pub fn detect() -> std::io::Result<Self> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
        // SAFETY: sysconf has no memory effects.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let now_wall = clock_ns(libc::CLOCK_REALTIME);
        let now_boot = clock_ns(libc::CLOCK_BOOTTIME);
        Ok(Self {
            name: name.trim().to_string(),
            boot_id: boot_id.trim().to_string(),
            boot_wall_ns: now_wall.saturating_sub(now_boot),
            ns_per_tick: 1_000_000_000 / ticks,
        })
    }

    /// Stable id of the process `pid` started at `start_boottime_ns`.
    ///
    /// The start time is rounded down to clock ticks, the precision `/proc` gives, so processes
    /// seeded from `/proc` and processes seen by the kernel hooks get the same id.
    pub fn entity_id(&self, pid: u32, start_boottime_ns: u64) -> String {
        self.entity_id_from_ticks(pid, start_boottime_ns / self.ns_per_tick)
    }

    /// [`Host::entity_id`] for a start time already in ticks.
    pub fn entity_id_from_ticks(&self, pid: u32, start_ticks: u64) -> String {
        let digest = Sha256::digest(format!("{}:{pid}:{start_ticks}", self.boot_id));
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Wall-clock nanoseconds of a `CLOCK_BOOTTIME` reading.
    pub fn wall_ns(&self, boot_ns: u64) -> u64 {
        self.boot_wall_ns + boot_ns
    }
}

/// Reads `clock` in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec we pass.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            name: "h".into(),
            boot_id: "b".into(),
            boot_wall_ns: 0,
            ns_per_tick: 10_000_000,
        }
    }

    #[test]
    fn entity_id_is_stable_within_a_tick() {
        let host = host();

        assert_eq!(
            host.entity_id(42, 1_000_000_001),
            host.entity_id(42, 1_009_999_999)
        );
        assert_eq!(
            host.entity_id(42, 1_000_000_000),
            host.entity_id_from_ticks(42, 100)
        );
    }

    #[test]
    fn entity_id_differs_by_pid_start_and_boot() {
        let host = host();
        let other_boot = Host {
            boot_id: "c".into(),
            ..host.clone()
        };

        assert_ne!(host.entity_id(42, 0), host.entity_id(43, 0));
        assert_ne!(host.entity_id(42, 0), host.entity_id(42, 20_000_000));
        assert_ne!(host.entity_id(42, 0), other_boot.entity_id(42, 0));
    }
}
