//! `queue-grpc-server [--bind HOST] PORT SIZE`: the seed 001 remote queue
//! over gRPC. See `nonblocking::grpc::server`.

fn main() -> std::process::ExitCode {
    nonblocking::cli::set_program_name(env!("CARGO_BIN_NAME"));
    nonblocking::grpc::server::main()
}
