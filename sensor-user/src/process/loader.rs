//! The dynamic loader run directly (`/lib64/ld-linux-x86-64.so.2 PROGRAM ...`): which program
//! it loads and what it was told to preload, from its arguments.

use sensor_proto::v1::ExecDetail;

/// Loader options that take a value (glibc's `ld.so --help`).
const WITH_VALUE: &[&[u8]] = &[
    b"--library-path",
    b"--preload",
    b"--audit",
    b"--argv0",
    b"--inhibit-rpath",
    b"--glibc-hwcaps-prepend",
    b"--glibc-hwcaps-mask",
];

/// Whether `executable` (the file the kernel loaded) is a dynamic loader: `ld-linux*.so*`,
/// `ld-*.so*` or `ld.so`, by its file name.
pub fn is_loader(executable: &[u8]) -> bool {
    let name = executable.rsplit(|&b| b == b'/').next().unwrap_or_default();
    let so = name.windows(3).any(|w| w == b".so");
    (name.starts_with(b"ld-") && so) || name == b"ld.so"
}

/// Fills in the loader fields of an exec of `executable` with `args`.
pub fn describe(executable: &[u8], args: &[Vec<u8>], detail: &mut ExecDetail) {
    if !is_loader(executable) {
        return;
    }
    detail.loader_invoked = true;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg.as_slice() == b"--" {
            detail.loaded_program = rest.next().cloned().unwrap_or_default();
            return;
        }
        if !arg.starts_with(b"--") {
            detail.loaded_program = arg.clone();
            return;
        }
        if WITH_VALUE.contains(&arg.as_slice()) {
            let value = rest.next().cloned().unwrap_or_default();
            if matches!(arg.as_slice(), b"--preload" | b"--audit") {
                detail.loader_preload.extend(
                    value
                        .split(|&b| b == b':' || b == b' ')
                        .filter(|v| !v.is_empty())
                        .map(<[u8]>::to_vec),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn loaders_are_known_by_file_name() {
        assert!(is_loader(b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
        assert!(is_loader(b"/lib/ld-linux-aarch64.so.1"));
        assert!(!is_loader(b"/usr/bin/ld"));
        assert!(!is_loader(b"/usr/bin/ld.gold"));
    }

    #[test]
    fn the_program_and_preloads_come_from_the_arguments() {
        let mut d = ExecDetail::default();
        let args = v(&[
            "ld.so",
            "--preload",
            "/tmp/a.so:/tmp/b.so",
            "--argv0",
            "x",
            "/tmp/p",
            "-v",
        ]);
        describe(b"/lib64/ld-linux-x86-64.so.2", &args, &mut d);
        assert!(d.loader_invoked);
        assert_eq!(d.loaded_program, b"/tmp/p");
        assert_eq!(d.loader_preload, v(&["/tmp/a.so", "/tmp/b.so"]));
        let mut plain = ExecDetail::default();
        describe(b"/usr/bin/true", &args, &mut plain);
        assert!(!plain.loader_invoked);
    }
}
