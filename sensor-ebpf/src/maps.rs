//! Maps shared by the hooks, and the load-time globals the collector patches in.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
    EbpfContext,
};
use aya_log_ebpf::debug;
use sensor_common::{offsets::Settings, KernelOffsets, EXEC_SCRATCH};

/// Every record goes here; the collector sizes it at load (`ring_buffer_bytes`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// File-integrity records: a ring of their own, read by the FIM thread as they come (no
/// batching), so a file is opened before a quick delete can take it away. Sized at load.
#[map]
pub static FIM_EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Records the ring buffers refused, per CPU.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// One exec record under construction per CPU (indexed by CPU id; resized to the CPU count at
/// load). Too large for the stack and above the 32 KiB per-CPU value limit, hence an array.
#[map]
pub static SCRATCH: Array<[u8; EXEC_SCRATCH]> = Array::with_max_entries(1, 0);

/// Length of the path being written by `path::write_path`, per CPU. It lives in map memory on
/// purpose: the verifier does not track values loaded from maps, so every loop iteration starts
/// from the same state and is pruned; kept in a register, the length differs on every path and
/// the walk exceeds the verifier's 1M-instruction budget ("Argument list too long").
#[map]
pub static PATH_LEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Length of the argument list being copied by a failed-exec hook, per CPU; in map memory for
/// the same reason as [`PATH_LEN`].
#[map]
pub static COPY_LEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Field offsets of the running kernel, filled by the collector before load.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets::ZERO;

/// Load-time settings, filled by the collector before load.
#[unsafe(no_mangle)]
static SETTINGS: Settings = Settings::ZERO;

/// Reads one field of [`OFFSETS`] as a `usize`. The volatile read keeps LLVM from folding the
/// object file's zero into the code; the verifier sees the frozen `.rodata` value instead.
macro_rules! off {
    ($field:ident) => {
        // SAFETY: `OFFSETS` is a plain static; volatile only prevents constant folding.
        (unsafe { core::ptr::read_volatile(&$crate::maps::OFFSETS.$field) } as usize)
    };
}
pub(crate) use off;

/// Reads the load-time settings, as [`off`] does for offsets.
#[inline(always)]
pub fn settings() -> Settings {
    // SAFETY: `SETTINGS` is a plain static; volatile only prevents constant folding.
    unsafe { core::ptr::read_volatile(&SETTINGS) }
}

/// Copies `data` into the ring buffer, counting a refusal in [`LOST`] and saying so in the
/// debug log (aya-log; the check costs one branch when debug logging is off).
#[inline(always)]
pub fn output<C: EbpfContext>(ctx: &C, data: &[u8]) {
    if EVENTS.output::<[u8]>(data, 0).is_err() {
        count_lost();
        // A constant message: formatting arguments costs verifier states on older kernels.
        debug!(ctx, "ring buffer full, record dropped");
    }
}

/// Counts one record the ring buffer could not take.
#[inline(always)]
pub fn count_lost() {
    if let Some(n) = LOST.get_ptr_mut(0) {
        // SAFETY: the per-CPU slot is only touched by programs on this CPU.
        unsafe { *n += 1 };
    }
}
