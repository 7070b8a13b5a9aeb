//! Wire types shared by the eBPF programs and the collector.
//!
//! Every record the kernel side writes to the ring buffer starts with a [`RecordHeader`]; the
//! header's `kind` says which fixed struct follows, and `size` covers the variable-length data
//! that exec records append. Kernel struct offsets travel the other way, as [`KernelOffsets`]
//! patched into the programs' read-only data before load.
#![no_std]

pub mod audit;
pub mod offsets;
pub mod records;

pub use audit::*;
pub use offsets::KernelOffsets;
pub use records::*;
