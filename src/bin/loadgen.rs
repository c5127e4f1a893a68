//! Drives N concurrent clients against a line server. See `--help`.

fn main() -> std::process::ExitCode {
    nonblocking::loadgen::cli::main()
}
