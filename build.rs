//! With the `grpc` feature: generates the gRPC service and messages from
//! `proto/queue.proto` (the wire contract in SPEC "queue over gRPC").
//! `protox` parses the file in pure Rust, so building needs no system
//! `protoc`. Without the feature there is nothing to generate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "grpc")]
    {
        let proto = "proto/queue.proto";
        println!("cargo:rerun-if-changed={proto}");
        let descriptors = protox::compile([proto], ["proto"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(descriptors)?;
    }
    Ok(())
}
