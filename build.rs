//! Compiles `proto/` with protox (pure Rust, so a fresh machine needs no `protoc`) and generates the
//! tonic client and server, plus the file descriptor set that server reflection serves.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Without these, a new or edited proto or migration file would be silently left out of the
    // binary until something else triggered a rebuild.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");

    let fds = protox::compile(["idminter/v1/idminter.proto"], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("idminter_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        // Undecodable request bytes are INVALID_ARGUMENT, not prost's INTERNAL (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::Codec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
