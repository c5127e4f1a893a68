//! What both server binaries do around their loop: parse the command line,
//! bind, run the chosen model, write the handler's files, print its summary,
//! pick the exit status.

use std::io;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{HandlerKind, ServerArgs, ServerConfig};
use crate::handlers::Handler;
use crate::journal::Journal;
use crate::status::{self, Status};
use crate::{fsutil, handlers, net, reactor, threaded};

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
    let args: ServerArgs = crate::cli::parse_or_exit();
    let config = ServerConfig::from(args);
    if let Err(message) = config.validate() {
        crate::cli::usage_exit::<ServerArgs>(&message);
    }
    if let Err(message) = config.check_files() {
        status::diag(format_args!("error: {message}"));
        return ExitCode::from(1);
    }
    let listener = match net::bind_listener(config.addr) {
        Ok(listener) => listener,
        Err(e) => {
            status::diag(format_args!(
                "error: cannot listen on {}: {}",
                config.addr,
                net::os_reason(&e)
            ));
            return ExitCode::from(1);
        }
    };
    let status = Status::new(config.handler == HandlerKind::Sink);
    let mut handler = handlers::build(&config);
    let journal = match &config.journal {
        None => None,
        Some(_) if config.handler != HandlerKind::Ledger => {
            eprintln!("error: --journal applies to --handler ledger only");
            eprintln!("Usage: see --help");
            return ExitCode::from(2);
        }
        Some(path) => match open_journal(path, &mut *handler) {
            Ok(journal) => Some(journal),
            Err(e) => {
                status::diag(format_args!(
                    "error: cannot open journal {}: {}",
                    path.display(),
                    net::os_reason(&e)
                ));
                return ExitCode::from(1);
            }
        },
    };
    let result = match model {
        Model::Reactor => reactor::run(listener, config, handler, status, journal),
        Model::Threaded => threaded::run(listener, config, handler, status, journal),
    };
    let finish = match result {
        Ok(finish) => finish,
        Err(e) => {
            status::diag(format_args!("error: {e}"));
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
    for line in &finish.status {
        status.line(format_args!("{line}"));
    }
    code
}

/// Opens the journal and replays it into `handler` (diagnostics on stderr:
/// the first status line must stay `Listening on ...`).
fn open_journal(path: &Path, handler: &mut dyn Handler) -> io::Result<Journal> {
    // A record replay does not understand makes the file foreign: refused.
    let (journal, replayed) = Journal::open(path, |record| handler.replay(record))?;
    status::diag(format_args!(
        "journal {}: replayed {} transactions{}",
        path.display(),
        replayed.records,
        if replayed.headerless {
            " (a journal without header, from an earlier version)"
        } else {
            ""
        }
    ));
    if replayed.torn_bytes > 0 {
        status::diag(format_args!(
            "journal {}: cut off a torn last record ({} bytes, never acknowledged)",
            path.display(),
            replayed.torn_bytes
        ));
    }
    Ok(journal)
}
