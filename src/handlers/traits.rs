//! What a handler says about itself ([`Traits`]) and how it is registered
//! ([`Registration`], [`HandlerKind`]): what the servers, the command line
//! and the start-up checks ask instead of which handler runs.

use std::fmt;
use std::path::Path;

use super::{BuildError, Built, Framing, REGISTRY, ShutdownPolicy, SlowPolicy};
use crate::config::ServerConfig;

/// What a handler says about itself, next to its code, so that no server
/// ever asks which handler it runs: it asks what the handler is like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traits {
    /// The SPEC name (`ledger`, `echo`, ...): `--handler` and status lines.
    pub name: &'static str,
    /// How a client's byte stream is cut into messages.
    pub framing: Framing,
    /// What happens to a client whose output passes `--max-pending`.
    pub slow: SlowPolicy,
    /// What happens to connected clients after SIGINT/SIGTERM.
    pub shutdown: ShutdownPolicy,
    /// Status lines go to stderr because stdout carries the handler's own
    /// bytes (the sink).
    pub status_on_stderr: bool,
    /// Whether and how `--udp` serves it.
    pub datagrams: Datagrams,
    /// How `--reactors N` runs it.
    pub sharing: Sharing,
}

impl Traits {
    /// An interactive line handler's traits (idle flush, pause a slow
    /// reader, close at once on shutdown, datagrams as lines, one shared
    /// handler): each handler's constant spells out only what differs.
    pub const fn interactive(name: &'static str) -> Traits {
        Traits {
            name,
            framing: Framing::Lines { idle_flush: true },
            slow: SlowPolicy::PauseReading,
            shutdown: ShutdownPolicy::CloseNow,
            status_on_stderr: false,
            datagrams: Datagrams::Lines,
            sharing: Sharing::Shared,
        }
    }
}

/// Whether and how a handler serves `--udp` (SPEC "Datagrams").
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Datagrams {
    /// Not at all: `--udp` is a usage error. A broadcast (presence), a
    /// stream (sink) or a log of a connection's lines (ledger) has no
    /// meaning per datagram.
    No,
    /// A datagram is a line: the server strips one trailing `\r\n` or `\n`
    /// before `on_message`, and one trailing `\n` from each reply (a reply
    /// datagram is the reply without the `\n` its TCP line ends with).
    Lines,
    /// A datagram is data to give back whole (echo): neither is touched.
    Whole,
}

/// How `--reactors N` runs a handler.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// One handler per loop, called with no lock, merged at the end
    /// ([`super::Handler::split`]): its clients never meet (echo), or its state
    /// is a sum (the ledger's balances).
    PerLoop,
    /// One handler behind a lock, its actions routed to the loop that owns
    /// each client: its clients see each other (presence, queue, sink,
    /// menu's count, the atm's accounts).
    Shared,
}

/// A file a handler owns, named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedFile<'a> {
    /// The option that names it (`--log`).
    pub option: &'static str,
    pub path: &'a Path,
    pub role: FileRole,
}

/// How a handler's file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    /// Replaced whole, atomically (the ledger's `--log` at exit, the atm's
    /// accounts at each change): checked at start to be a regular file or
    /// absent, in a writable directory.
    Replaced,
    /// Appended to and replayed at start (the ledger's `--journal`).
    Journal,
}

/// One handler's entry in [`REGISTRY`]: its traits, its files, how to
/// build it.
#[derive(Debug)]
pub struct Registration {
    pub traits: &'static Traits,
    /// One line for `--help`.
    pub help: &'static str,
    /// The files it owns under this command line.
    pub files: for<'a> fn(&'a ServerConfig) -> Vec<OwnedFile<'a>>,
    /// The handler and its store, configured from the command line (a
    /// store replayed before any client connects).
    pub build: fn(&ServerConfig) -> Result<Built, BuildError>,
}

/// For a handler that owns no file.
pub fn no_files(_: &ServerConfig) -> Vec<OwnedFile<'_>> {
    Vec::new()
}

/// A handler `--handler` can name: its [`Registration`].
#[derive(Clone, Copy)]
pub struct HandlerKind(pub &'static Registration);

impl HandlerKind {
    /// The registered handler called `name`.
    pub fn named(name: &str) -> Option<HandlerKind> {
        REGISTRY.iter().copied().find(|kind| kind.name() == name)
    }

    pub fn name(self) -> &'static str {
        self.0.traits.name
    }

    pub fn traits(self) -> &'static Traits {
        self.0.traits
    }

    /// The files it owns under `config`.
    pub fn files(self, config: &ServerConfig) -> Vec<OwnedFile<'_>> {
        (self.0.files)(config)
    }
}

impl PartialEq for HandlerKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for HandlerKind {}

impl fmt::Debug for HandlerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl clap::ValueEnum for HandlerKind {
    fn value_variants<'a>() -> &'a [Self] {
        REGISTRY
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.0.help))
    }
}
