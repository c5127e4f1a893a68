//! The ledger's set-up and its part in `--reactors N`: the files it owns,
//! its build (the journal replayed into it), and the merge of per-loop
//! ledgers at the end.

use std::io;
use std::path::Path;

use super::Ledger;
use crate::config::ServerConfig;
use crate::handlers::sharing::Mergeable;
use crate::handlers::{BuildError, Built, FileRole, OwnedFile};
use crate::journal::Journal;
use crate::net::os_reason;
use crate::store::{JournalStore, Store};

/// The ledger `--handler ledger` asks for and, with `--journal`, its store:
/// the journal, replayed into the ledger first.
///
/// # Errors
/// The journal cannot be opened or read ([`BuildError::Io`]).
pub(super) fn build(config: &ServerConfig) -> Result<Built, BuildError> {
    let mut ledger = Ledger::new(config.log.clone());
    let mut notes = Vec::new();
    let store = match &config.journal {
        None => None,
        Some(path) => {
            ledger.journal = true;
            let journal = open_journal(path, &mut ledger, &mut notes).map_err(|e| {
                BuildError::Io(format!(
                    "cannot open journal {}: {}",
                    path.display(),
                    os_reason(&e)
                ))
            })?;
            Some(Box::new(JournalStore::new(journal)) as Box<dyn Store>)
        }
    };
    Ok(Built {
        handler: Box::new(ledger),
        store,
        notes,
    })
}

impl Mergeable for Ledger {
    /// An empty ledger for another event loop, configured like this one
    /// (the same log, journal records on or off).
    fn fresh(&self) -> Ledger {
        Ledger {
            journal: self.journal,
            ..Ledger::new(self.log.clone())
        }
    }

    /// Adds another loop's ledger into this one, at the end. Balances are
    /// sums, so the merge is exact. A balance whose parts sum past what a
    /// balance can hold (28 digits) keeps this one's part, with a
    /// diagnostic: with one loop, the transactions that pushed it over
    /// would have been discarded.
    fn absorb(&mut self, other: Ledger) -> Vec<String> {
        let mut diagnostics = Vec::new();
        self.applied += other.applied;
        self.discarded += other.discarded;
        for (name, part) in other.accounts.into_iter() {
            let mut new = false;
            let balance = self.accounts.get_or_insert_with(&name, || {
                new = true;
                part
            });
            if !new && !balance.add_balance(part) {
                diagnostics.push(format!(
                    "ledger: account {}: the event loops' balances overflow when added; kept one part",
                    String::from_utf8_lossy(&name)
                ));
            }
        }
        diagnostics
    }
}

/// The log written at exit and, with `--journal`, the journal.
pub(super) fn files(config: &ServerConfig) -> Vec<OwnedFile<'_>> {
    let mut files = vec![OwnedFile {
        option: "--log",
        path: &config.log,
        role: FileRole::Replaced,
    }];
    if let Some(journal) = &config.journal {
        files.push(OwnedFile {
            option: "--journal",
            path: journal,
            role: FileRole::Journal,
        });
    }
    files
}

/// Opens the journal and replays it into `ledger`, with `notes` for
/// stderr (the first status line must stay `Listening on ...`).
fn open_journal(path: &Path, ledger: &mut Ledger, notes: &mut Vec<String>) -> io::Result<Journal> {
    // A record replay does not understand makes the file foreign: refused.
    let (journal, replayed) = Journal::open(path, |record| ledger.replay(record))?;
    notes.push(format!(
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
        notes.push(format!(
            "journal {}: cut off a torn last record ({} bytes, never acknowledged)",
            path.display(),
            replayed.torn_bytes
        ));
    }
    Ok(journal)
}
