//! Kernel side of the sensor: process lifecycle hooks writing records to one ring buffer.
//!
//! Hooks live one family per file (`fork`, `exec`, `exec_failed`, `exit`, `fim` for file
//! integrity, `memory` for fileless attacks, `audit` for rule-selected syscalls); kernel reads go through `kernel`, whose offsets come from the running kernel's
//! BTF (see `sensor_common::offsets`).
#![no_std]
#![no_main]

mod audit;
mod exec;
mod exec_failed;
mod exit;
mod fim;
mod fork;
mod kernel;
mod maps;
mod memory;
mod path;
mod probe;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: eBPF programs cannot panic at run time; the verifier rejects a reachable panic,
    // so this body is never executed.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
