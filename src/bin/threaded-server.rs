//! The same handlers, one OS thread per connection. See `--help`.

fn main() -> std::process::ExitCode {
    nonblocking::app::server_main(nonblocking::app::Model::Threaded)
}
