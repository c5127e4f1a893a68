//! The event-loop server: one thread, one mio `Poll`. See `--help`.

fn main() -> std::process::ExitCode {
    nonblocking::app::server_main(nonblocking::app::Model::Reactor)
}
