//! `queue-grpc-server [--bind HOST] PORT SIZE`: the seed 001 remote queue
//! over gRPC. See `nonblocking::grpc::server`.

fn main() -> std::process::ExitCode {
    nonblocking::grpc::server::main()
}
