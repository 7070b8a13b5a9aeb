//! tracefs, where classic tracepoints are found: mounted by the sensor when the host has not.
//!
//! A fresh host (and a DaemonSet pod with the host's /sys) often has no tracefs mounted; the
//! kernel still offers the mount point at `/sys/kernel/tracing`.

use std::{ffi::CString, io, path::Path};

/// The standard mount point.
const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs at [`TRACEFS`] unless it is already there (or at its older debugfs place).
pub fn ensure_mounted() -> io::Result<()> {
    if has_events(Path::new(TRACEFS)) || has_events(Path::new("/sys/kernel/debug/tracing")) {
        return Ok(());
    }
    let source = CString::new("tracefs").expect("no NUL");
    let target = CString::new(TRACEFS).expect("no NUL");
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; no data.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("failed to mount tracefs at {TRACEFS}: {e}"),
        ));
    }
    tracing::debug!(path = TRACEFS, "mounted tracefs");
    Ok(())
}

fn has_events(mount: &Path) -> bool {
    mount.join("events").is_dir()
}
