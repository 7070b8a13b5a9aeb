//! Generated gRPC types and service stubs of the `sensor.v1` API.

/// Package `sensor.v1`.
pub mod v1 {
    tonic::include_proto!("sensor.v1");
}
