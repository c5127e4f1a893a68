//! Durability, handler-neutral: where [`crate::handlers::Action::Persist`]
//! bytes go.
//!
//! A handler that must not lose an acknowledged change (the ledger's
//! journal, the atm's accounts) comes with a `Store`. The server hands it
//! every persisted byte in order and calls [`Store::sync`] before any output
//! or FIN that follows those bytes leaves the process, at most once per
//! loop pass. The server never knows what the bytes mean.

use std::io;

use crate::journal::Journal;

pub trait Store: Send {
    /// Takes the next bytes to make durable, in order. May write them at
    /// once (a journal appends) or keep only what the next sync needs (a
    /// snapshot keeps the newest).
    ///
    /// # Errors
    /// The write failed; the server stops (nothing acknowledged is lost).
    fn put(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Makes everything put so far durable (fsync).
    ///
    /// # Errors
    /// As for [`Store::put`].
    fn sync(&mut self) -> io::Result<()>;
}

pub mod accounts_log;
pub mod snapshot;
/// A [`Store`] over an append-only [`Journal`]: each put is appended
/// (written, not yet synced), each sync is one `fdatasync`.
#[derive(Debug)]
pub struct JournalStore {
    journal: Journal,
}

impl JournalStore {
    pub fn new(journal: Journal) -> Self {
        JournalStore { journal }
    }
}

impl Store for JournalStore {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.journal.write(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.journal.sync()
    }
}
