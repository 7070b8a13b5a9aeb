//! Compiles the API with the protoc shipped in `protoc-bin-vendored`, so no system protoc is
//! needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_build::configure().compile_protos(&["proto/sensor/v1/sensor.proto"], &["proto"])?;
    Ok(())
}
