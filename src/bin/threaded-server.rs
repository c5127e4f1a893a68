//! The same handlers, one OS thread per connection. See `--help`.

fn main() -> std::process::ExitCode {
    nonblocking::cli::set_program_name(env!("CARGO_BIN_NAME"));
    nonblocking::app::server_main(nonblocking::app::Model::Threaded)
}
