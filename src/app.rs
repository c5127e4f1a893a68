//! What both server binaries do around their loop: parse the command line,
//! bind, run the chosen model, write the handler's files, print its summary,
//! pick the exit status.

use std::process::ExitCode;

use crate::config::{ServerArgs, ServerConfig};
use crate::handlers::{BuildError, Built};
use crate::server_core::Setup;
use crate::signals::ShutdownSignals;
use crate::status::{self, Status};
use crate::{fsutil, handlers, net, reactor, reactors, threaded};

/// Which server runs the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// One thread, one mio event loop ([`reactor`]).
    Reactor,
    /// One OS thread per connection ([`threaded`]).
    Threaded,
}

/// The whole program for `nonblocking-server` and `threaded-server`.
///
/// Exit status: 0 after a clean shutdown, 1 when the address cannot be
/// bound or the log cannot be written, 2 on a usage error (clap).
pub fn server_main(model: Model) -> ExitCode {
    // First: a signal during start-up must not kill the process by the
    // signal's default action (SPEC: it stops the server cleanly).
    let mut signals = match ShutdownSignals::new() {
        Ok(signals) => signals,
        Err(e) => {
            status::diag(format_args!("error: cannot catch signals: {e}"));
            return ExitCode::from(1);
        }
    };
    let args: ServerArgs = crate::cli::parse_or_exit();
    let config = ServerConfig::from(args);
    if let Err(message) = config.validate() {
        crate::cli::usage_exit::<ServerArgs>(&message);
    }
    if model == Model::Threaded && config.reactors_asked {
        crate::cli::usage_exit::<ServerArgs>("--reactors applies to nonblocking-server only");
    }
    if let Err(message) = config.check_files() {
        status::diag(format_args!("error: {message}"));
        return ExitCode::from(1);
    }
    if stopped_during_start_up(&mut signals) {
        return ExitCode::SUCCESS;
    }
    // Before the bind: a bad journal or accounts file never listens.
    let Built {
        handler,
        store,
        notes,
    } = match handlers::build(&config) {
        Ok(built) => built,
        Err(BuildError::Usage(why)) => crate::cli::usage_exit::<ServerArgs>(&why),
        Err(BuildError::Io(why)) => {
            status::diag(format_args!("error: {why}"));
            return ExitCode::from(1);
        }
    };
    for note in &notes {
        status::diag(format_args!("{note}"));
    }
    // The replay (a long journal) may have taken a while: a signal that
    // came meanwhile stops the server before it listens.
    if stopped_during_start_up(&mut signals) {
        return ExitCode::SUCCESS;
    }
    let (listener, udp) = match net::bind_server(config.addr, config.udp, config.backlog) {
        Ok(bound) => bound,
        Err((addr, e)) => {
            status::diag(format_args!(
                "error: cannot listen on {addr}: {}",
                net::os_reason(&e)
            ));
            return ExitCode::from(1);
        }
    };
    let config = crate::limits::fit_descriptors(config, model == Model::Threaded);
    let status = Status::new(handler.traits().status_on_stderr);
    let setup = Setup {
        config,
        handler,
        store,
        status,
        signals,
    };
    let result = match model {
        Model::Reactor if setup.config.reactors > 1 => reactors::run(listener, udp, setup),
        Model::Reactor => reactor::run(listener, udp, setup),
        Model::Threaded => threaded::run(listener, udp, setup),
    };
    let finish = match result {
        Ok(finish) => finish,
        Err(e) => {
            status::diag(format_args!("error: {e}"));
            // The error said what it had to (it may be this stdout's).
            flush_status_lines(&status, false);
            return ExitCode::from(1);
        }
    };
    let mut code = ExitCode::SUCCESS;
    for (path, bytes) in &finish.files {
        if let Err(e) = fsutil::write_atomic(path, bytes) {
            status::diag(format_args!(
                "error: cannot write {}: {}",
                path.display(),
                net::os_reason(&e)
            ));
            code = ExitCode::from(1);
        }
    }
    for line in &finish.diagnostics {
        status::diag(format_args!("{line}"));
    }
    for line in &finish.status {
        status.line(format_args!("{line}"));
    }
    if !flush_status_lines(&status, true) {
        code = ExitCode::from(1);
    }
    code
}

/// Status lines on stdout are queued to the stdout writer (see
/// [`crate::stdout`]): the server waited for stdout already (up to
/// `--drain-timeout`); the lines printed since get
/// [`crate::stdout::FINISH_GRACE`]. Says how many lines were dropped and,
/// if `say_unwritten`, what was not written (the sink's rule for a stdout
/// that stays full: false, exit 1).
fn flush_status_lines(status: &Status, say_unwritten: bool) -> bool {
    if !status.on_stdout() {
        return true; // the sink: its stdout was settled by the server
    }
    let Some(writer) = crate::stdout::StdoutWriter::for_status_lines() else {
        return true;
    };
    let flushed = writer.wait_flushed(crate::stdout::FINISH_GRACE);
    let dropped = writer.take_dropped_lines();
    if dropped > 0 {
        status::status_lines_dropped(dropped);
    }
    if !flushed && say_unwritten {
        status::diag(format_args!(
            "error: {}",
            status::stdout_unwritten(writer.unwritten())
        ));
    }
    flushed
}

/// Whether a shutdown signal arrived during start-up: then the server
/// stops before serving (exit 0), leaving every file as it was.
fn stopped_during_start_up(signals: &mut ShutdownSignals) -> bool {
    if signals.take() == 0 {
        return false;
    }
    status::diag(format_args!("stopped by a signal during start-up"));
    true
}
