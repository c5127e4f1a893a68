//! Drives N concurrent clients against a line server. See `--help`.

fn main() -> std::process::ExitCode {
    nonblocking::cli::set_program_name(env!("CARGO_BIN_NAME"));
    nonblocking::loadgen::cli::main()
}
