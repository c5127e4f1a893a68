//! The shutdown signals (SIGINT, SIGTERM, SIGHUP), counted one by one.
//!
//! SPEC: every signal counts, two that arrive together are a first and a
//! second. signal-hook's `Signals` keeps one flag per signal, so two
//! SIGINTs delivered before the loop looks read as one; here each delivery
//! writes one byte to a socket pair (signal-hook's self-pipe, from its
//! handler), and the server counts the bytes. (The kernel itself merges a
//! second identical signal sent before the first was delivered: no program
//! can see that one.)

use std::io::{self, Read};
use std::os::unix::net::UnixStream as StdUnixStream;

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::low_level::{pipe, unregister};

/// The signals that shut the servers down (SPEC: SIGHUP is a shutdown like
/// SIGTERM, so a closed terminal never loses the ledger's log).
pub const SHUTDOWN_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// See the module doc.
pub struct ShutdownSignals {
    /// The read end; one byte per signal delivered.
    read: UnixStream,
    /// The handlers, removed on drop.
    ids: Vec<SigId>,
}

impl ShutdownSignals {
    /// Catches [`SHUTDOWN_SIGNALS`] from now on.
    ///
    /// # Errors
    /// Creating the socket pair or installing a handler failed.
    pub fn new() -> io::Result<Self> {
        let (read, write) = StdUnixStream::pair()?;
        read.set_nonblocking(true)?;
        let mut ids = Vec::new();
        for signal in SHUTDOWN_SIGNALS {
            ids.push(pipe::register(signal, write.try_clone()?)?);
        }
        Ok(ShutdownSignals {
            read: UnixStream::from_std(read),
            ids,
        })
    }

    /// Registers the read end with a poll, readable under `token`.
    ///
    /// # Errors
    /// As `Registry::register`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.read, token, Interest::READABLE)
    }

    /// How many signals arrived since the last call (reads to `WouldBlock`).
    pub fn take(&mut self) -> usize {
        let mut count = 0;
        let mut buf = [0u8; 64];
        loop {
            match self.read.read(&mut buf) {
                Ok(0) => return count,
                Ok(n) => count += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return count, // WouldBlock: all read
            }
        }
    }
}

impl Drop for ShutdownSignals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            unregister(id);
        }
    }
}
