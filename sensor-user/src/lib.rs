//! The sensor's collector: loads the kernel programs and turns their records into events.
//!
//! Stages, in data-flow order: [`loader`] (programs and hooks), [`reader`] (ring buffer),
//! [`decode`] (bytes to records), [`process`] (identity, table, events), [`audit`] and [`memory`] (correlators), [`bus`] (fan-out),
//! [`sinks`] and [`server`] (outputs). [`daemon`] wires them together.

pub mod audit;
pub mod bus;
pub mod client;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod fim;
pub mod loader;
pub mod memory;
pub mod process;
pub mod reader;
pub mod render;
pub mod server;
pub mod sinks;
pub mod stats;
