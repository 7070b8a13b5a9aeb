//! Sinks: where events leave the sensor besides the gRPC stream.

pub mod audit_log;
pub mod json;
