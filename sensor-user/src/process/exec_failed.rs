//! Failed execs: the caller's process as it was, with what it tried to run and why it failed.
//!
//! No new image exists, so nothing in the table changes; the caller's executable, arguments
//! and working directory come from the table, the identity and credentials from the record.

use sensor_common::exec_failed_flags as flags;
use sensor_proto::v1::{Event, ExecAttempt, ExecDetail};

use super::{absolute, comm, fill_image, set_creds, Tracker};
use crate::decode::ExecFailed;

impl Tracker {
    pub(super) fn exec_failed(&self, failed: &ExecFailed) -> Event {
        let rec = &failed.raw;
        let mut event = self.base("exec", rec.header.boot_ns);
        event.outcome = "failure".into();
        let mut process = self.identity(&rec.ids);
        set_creds(&mut process, &rec.creds);
        process.cgroup_id = rec.cgroup_id;
        if let Some(image) = self.table.get(rec.ids.tgid) {
            if image.entity_id == process.entity_id {
                fill_image(&mut process, image);
            }
        }
        if process.name.is_empty() {
            process.name = comm(&rec.comm);
        }
        if !failed.filename.starts_with(b"/") && rec.dirfd == AT_FDCWD && !failed.base.truncated {
            // The directory a relative name was taken against is the working directory now;
            // the table's is the one of the last exec.
            process.working_directory = failed.base.bytes.clone();
        }
        let errno = i32::try_from(-rec.ret).unwrap_or(0);
        let path = if failed.filename.starts_with(b"/") {
            absolute(b"/", &failed.filename)
        } else if !failed.base.bytes.is_empty() && !failed.base.truncated {
            absolute(&failed.base.bytes, &failed.filename)
        } else {
            Vec::new()
        };
        let execveat = failed.flag(flags::EXECVEAT);
        event.exec = Some(ExecDetail {
            filename: failed.filename.clone(),
            attempt: Some(ExecAttempt {
                error: errno_name(errno).into(),
                errno,
                syscall: if execveat { "execveat" } else { "execve" }.into(),
                args: failed.args.clone(),
                args_count: rec.argc,
                args_truncated: failed.flag(flags::ARGS_TRUNCATED),
                args_count_capped: failed.flag(flags::ARGC_CAPPED),
                args_unreadable: failed.flag(flags::ARGS_UNREADABLE),
                dirfd: rec.dirfd,
                flags: rec.at_flags,
                path,
            }),
            ..ExecDetail::default()
        });
        if failed.flag(flags::FILENAME_TRUNCATED) {
            process.truncated_fields.push("sensor.exec.filename".into());
        }
        event.process = Some(process);
        event
    }
}

/// `AT_FDCWD`: a relative name is taken against the working directory.
const AT_FDCWD: i32 = -100;

/// The symbolic name of an errno an exec can return; empty for others (the number is kept).
fn errno_name(errno: i32) -> &'static str {
    const NAMES: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::EIO, "EIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::ENOEXEC, "ENOEXEC"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENFILE, "ENFILE"),
        (libc::EMFILE, "EMFILE"),
        (libc::ETXTBSY, "ETXTBSY"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ELOOP, "ELOOP"),
        (libc::ELIBBAD, "ELIBBAD"),
        (libc::EINTR, "EINTR"),
        (libc::ENXIO, "ENXIO"),
        (libc::EOVERFLOW, "EOVERFLOW"),
        (libc::ENOSYS, "ENOSYS"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == errno)
        .map_or("", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use sensor_common::{kind, ExecFailedRecord};

    use super::*;
    use crate::decode::Record;

    #[test]
    fn failed_exec_carries_the_attempt_and_the_caller() {
        let mut tracker = crate::process::tests::test_tracker();
        // SAFETY: all-zero bytes are a valid ExecFailedRecord.
        let mut raw: ExecFailedRecord = unsafe { std::mem::zeroed() };
        raw.header.kind = kind::EXEC_FAILED;
        raw.ret = -i64::from(libc::ENOENT);
        raw.argc = 3;
        raw.dirfd = -100;
        let failed = ExecFailed {
            raw,
            filename: b"./missing".to_vec(),
            base: crate::decode::KernelPath {
                bytes: b"/tmp".to_vec(),
                truncated: false,
            },
            args: vec![b"x".to_vec(), vec![], b"y".to_vec()],
        };

        let event = tracker
            .handle(&Record::ExecFailed(Box::new(failed)))
            .unwrap();

        assert_eq!(
            (event.action.as_str(), event.outcome.as_str()),
            ("exec", "failure")
        );
        let exec = event.exec.expect("exec detail");
        assert_eq!(exec.filename, b"./missing");
        let attempt = exec.attempt.expect("attempt");
        assert_eq!((attempt.error.as_str(), attempt.errno), ("ENOENT", 2));
        assert_eq!(attempt.syscall, "execve");
        assert_eq!(
            attempt.path, b"/tmp/missing",
            "relative name taken against its base"
        );
        assert_eq!(attempt.args.len() as u32, attempt.args_count);
    }
}
