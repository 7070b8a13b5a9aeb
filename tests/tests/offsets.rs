//! Kernel offsets: a wrong one must stop the sensor at start, never feed it plausible garbage.
//!
//! The verifier accepts a program that reads the wrong field; only the start-up check, which
//! compares what the hooks report about a known process with the truth, can tell. Each case
//! here loads the real programs with one offset shifted and expects that check to refuse.

use std::path::Path;

use sensor_common::KernelOffsets;
use sensor_user::{
    config::Config,
    loader::{self, btf, verify::CheckProcess, LoadError},
};

/// Breaks one offset in place.
type Tamper = fn(&mut KernelOffsets);

/// Offsets to break, with the field each one stands for; each shift lands on a neighbouring
/// field of the same struct that holds something else.
const TAMPERED: &[(&str, Tamper)] = &[
    ("task_struct.tgid", |o| o.task_tgid += 8),
    // `real_parent + 8` is `parent`, the same task outside ptrace; 16 is the children list.
    ("task_struct.real_parent", |o| o.task_real_parent += 16),
    ("task_struct.start_boottime", |o| o.task_start_boottime += 8),
    ("mm_struct.arg_start", |o| o.mm_arg_start += 8),
    ("dentry.d_name.name", |o| o.dentry_d_name_name += 8),
    ("file.f_path", |o| o.file_f_path += 8),
    ("fs_struct.pwd", |o| o.fs_pwd += 8),
    ("linux_binprm.argc", |o| o.bprm_argc += 8),
];

#[test]
fn a_wrong_offset_is_caught_at_start_and_the_right_ones_pass() {
    if !sensor_tests::can_load("wrong_offset") {
        return;
    }
    // The check reads the process hooks only; leaving FIM and memory out keeps the nine loads
    // short where the verifier runs emulated (the kernel matrix).
    let config = Config::from_toml("[fim]\npaths = []\n[memory]\nenabled = false\n")
        .expect("process-only config");
    let check = CheckProcess {
        program: "/usr/bin/true".into(),
        arg: "offset-check".into(),
    };
    let right = btf::resolve(Path::new(btf::VMLINUX_BTF)).expect("offsets resolve");

    let loaded = loader::load_with(&config, right, &check);
    assert!(
        loaded.is_ok(),
        "right offsets pass: {:#}",
        loaded.err().unwrap()
    );
    drop(loaded);

    for (field, tamper) in TAMPERED {
        let mut wrong = right;
        tamper(&mut wrong);

        let result = loader::load_with(&config, wrong, &check);

        match result {
            Err(LoadError::Verify(e)) => eprintln!("{field} + 8 caught: {e}"),
            Err(e) => panic!(
                "{field} + 8 failed in another way: {:#}",
                anyhow::Error::from(e)
            ),
            Ok(_) => panic!("{field} + 8 passed the start-up check"),
        }
    }
}
