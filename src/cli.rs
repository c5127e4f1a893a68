//! Command-line parsing shared by every binary.

use std::sync::OnceLock;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};

/// The binary's own name, set by its `main` (`env!("CARGO_BIN_NAME")`):
/// `--version` prints it. The two servers share one `ServerArgs`, so the
/// name cannot be a `#[command(name)]`; without this clap prints the
/// crate's name, `nonblocking`, for every binary.
static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// Names the running binary for `--version` (see `PROGRAM`'s doc). Call
/// it first thing in `main`; a second call changes nothing.
pub fn set_program_name(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// `P`'s command, under the binary's own name once `main` has set it.
fn command<P: CommandFactory>() -> clap::Command {
    let cmd = P::command();
    match PROGRAM.get() {
        Some(name) => cmd.name(name),
        None => cmd,
    }
}

/// [`command`] for a usage line: the usage names the program as it was
/// run (`./target/release/nonblocking-server` shows as its file name), not
/// the crate.
fn command_as_run<P: CommandFactory>() -> clap::Command {
    let cmd = command::<P>();
    match std::env::args_os()
        .next()
        .as_deref()
        .and_then(|p| std::path::Path::new(p).file_name())
    {
        Some(bin) => cmd.bin_name(bin.to_string_lossy().into_owned()),
        None => cmd,
    }
}

/// Parses the process arguments, or exits: 0 for `--help`/`--version`, 2 with
/// a usage line for a usage error. clap leaves the usage line out of some
/// errors (an invalid value); SPEC wants one on every usage error, so it is
/// added here, for the subcommand that was named if there is one.
pub fn parse_or_exit<P: Parser>() -> P {
    let mut parser = command::<P>();
    let parsed = parser
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|mut matches| P::from_arg_matches_mut(&mut matches))
        .map_err(|e| e.format(&mut parser));
    parsed.unwrap_or_else(|mut e| {
        if e.exit_code() == 2 && e.get(ContextKind::Usage).is_none() {
            let mut cmd = command_as_run::<P>();
            cmd.build();
            let named = std::env::args_os()
                .skip(1)
                .find_map(|arg| cmd.find_subcommand(&arg).cloned());
            let usage = match named {
                Some(mut sub) => sub.render_usage(),
                None => cmd.render_usage(),
            };
            e.insert(ContextKind::Usage, ContextValue::StyledStr(usage));
        }
        e.exit()
    })
}

/// Exits 2 with `message` and the usage line, like clap's own usage errors:
/// for checks across options that clap cannot express (two options naming
/// one file).
pub fn usage_exit<P: CommandFactory>(message: &str) -> ! {
    command_as_run::<P>()
        .error(ErrorKind::ArgumentConflict, message)
        .exit()
}
