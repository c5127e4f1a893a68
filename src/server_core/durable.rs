//! The durability rule, once for both servers: **no byte and no FIN goes
//! out to any client before everything persisted ahead of it is durable.**
//!
//! A handler that must not lose an acknowledged change (the ledger's
//! journal, the atm's accounts) emits [`crate::handlers::Action::Persist`];
//! the server hands those bytes here, in the order the handler produced
//! them. They are passed to the [`Store`] in batches (one `put` per read,
//! not per line), and [`Durable::sync_before_output`] is called before any
//! client gets bytes or a FIN: it syncs only if something was put since the
//! last sync. So a client that only sends (a ledger blast) costs no fsync
//! until it is closed, and an answer that follows a change (the atm) waits
//! for exactly one fsync, shared by everything handled before it.
//!
//! A store that fails stops the server: what it can no longer make durable
//! must not be acknowledged, and serving on would acknowledge it.
//!
//! The rule covers our FINs; the kernel sends one too when the process
//! dies, for any socket with nothing unread, and a client cannot tell the
//! two apart. So a server with a store keeps every connection set to be
//! reset on close until its input is durable
//! ([`crate::net::set_reset_on_close`]): bytes read into memory but not yet
//! put are then never acknowledged by a death.

use std::io;

use crate::handlers::Record;
use crate::store::Store;

/// A handler's store, the bytes waiting for it, and whether a sync is owed.
pub struct Durable {
    store: Option<Box<dyn Store>>,
    /// Persisted bytes not yet given to the store: collected per action,
    /// put once per read, so a stream of small records costs one write per
    /// read, not per record.
    pending: Vec<u8>,
    /// Bytes were put since the last sync.
    unsynced: bool,
    /// The store failed once: it stays failed (a later sync that works
    /// would not bring back what the failed write lost).
    failed: bool,
}

/// A batch larger than this is put at once, whatever the caller's rhythm,
/// so memory stays bounded.
const MAX_PENDING_BYTES: usize = 1 << 20;

impl Durable {
    pub fn new(store: Option<Box<dyn Store>>) -> Self {
        Durable {
            store,
            pending: Vec::new(),
            unsynced: false,
            failed: false,
        }
    }

    /// Whether the handler has a store at all.
    pub fn is_on(&self) -> bool {
        self.store.is_some()
    }

    /// Takes one `Persist` action's bytes. A [`Record::Replace`]
    /// supersedes what is still pending, so a batch holding several
    /// snapshots puts only the last (the store keeps only the newest put).
    ///
    /// # Errors
    /// The store failed (see the module doc: the server stops).
    pub fn persist(&mut self, record: Record, bytes: &[u8]) -> io::Result<()> {
        if self.store.is_none() {
            return Ok(());
        }
        self.check()?;
        if record == Record::Replace {
            self.pending.clear();
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= MAX_PENDING_BYTES {
            self.put()?;
        }
        Ok(())
    }

    /// Gives the store what was persisted since the last call (a write,
    /// not a sync).
    ///
    /// # Errors
    /// The store failed.
    pub fn put(&mut self) -> io::Result<()> {
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        if self.failed {
            return Err(failed());
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = store.put(&self.pending);
        self.pending.clear();
        self.unsynced = true;
        self.note(result)
    }

    fn check(&self) -> io::Result<()> {
        if self.failed { Err(failed()) } else { Ok(()) }
    }

    /// Remembers a failure (see the field's doc).
    fn note(&mut self, result: io::Result<()>) -> io::Result<()> {
        result.map_err(|e| {
            self.failed = true;
            io::Error::new(e.kind(), format!("store: {e}"))
        })
    }

    /// Whether persisted bytes are not durable yet: output or a FIN must
    /// wait for [`Durable::sync_before_output`].
    pub fn owes_sync(&self) -> bool {
        self.unsynced || !self.pending.is_empty()
    }

    /// Makes everything persisted so far durable, if anything is owed:
    /// called before output or a FIN leaves.
    ///
    /// # Errors
    /// The store failed.
    pub fn sync_before_output(&mut self) -> io::Result<()> {
        self.put()?;
        if !self.unsynced {
            return Ok(());
        }
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        self.unsynced = false;
        let result = store.sync();
        self.note(result)
    }

    /// At a clean exit: the last sync, then [`Store::finish`]. A failed
    /// store is not finished (the sync reports its failure instead).
    ///
    /// # Errors
    /// The store failed, now or earlier.
    pub fn finish(&mut self) -> io::Result<()> {
        self.sync_before_output()?;
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        let result = store.finish();
        self.note(result)
    }
}

fn failed() -> io::Error {
    io::Error::other("store: failed earlier; nothing more is durable")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records every call, so tests see exactly what reached the store.
    #[derive(Clone, Default)]
    struct Spy(Arc<Mutex<Vec<String>>>);

    impl Store for Spy {
        fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
            let text = String::from_utf8_lossy(bytes).into_owned();
            self.0.lock().unwrap().push(format!("put {text}"));
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().push("sync".to_string());
            Ok(())
        }
        fn finish(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().push("finish".to_string());
            Ok(())
        }
    }

    struct Broken;

    impl Store for Broken {
        fn put(&mut self, _: &[u8]) -> io::Result<()> {
            Err(io::Error::other("disk full"))
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_are_put_in_batches_and_synced_only_when_owed() {
        let spy = Spy::default();
        let mut d = Durable::new(Some(Box::new(spy.clone())));
        assert!(!d.owes_sync());
        d.persist(Record::Append, b"a\n").unwrap();
        d.persist(Record::Append, b"b\n").unwrap();
        assert!(d.owes_sync(), "bytes not yet put are owed too");
        d.put().unwrap();
        d.persist(Record::Append, b"c\n").unwrap();
        d.sync_before_output().unwrap();
        // Nothing new: no second sync.
        d.sync_before_output().unwrap();
        assert!(!d.owes_sync());
        assert_eq!(
            *spy.0.lock().unwrap(),
            vec!["put a\nb\n", "put c\n", "sync"]
        );
    }

    #[test]
    fn a_replacing_record_supersedes_what_is_pending() {
        let spy = Spy::default();
        let mut d = Durable::new(Some(Box::new(spy.clone())));
        d.persist(Record::Replace, b"ada 1\n").unwrap();
        d.persist(Record::Replace, b"ada 3\n").unwrap();
        d.sync_before_output().unwrap();
        d.persist(Record::Replace, b"ada 6\n").unwrap();
        d.sync_before_output().unwrap();
        assert_eq!(
            *spy.0.lock().unwrap(),
            vec!["put ada 3\n", "sync", "put ada 6\n", "sync"]
        );
    }

    #[test]
    fn finish_syncs_what_is_owed_then_finishes_the_store() {
        let spy = Spy::default();
        let mut d = Durable::new(Some(Box::new(spy.clone())));
        d.persist(Record::Append, b"a\n").unwrap();
        d.finish().unwrap();
        assert_eq!(*spy.0.lock().unwrap(), vec!["put a\n", "sync", "finish"]);
    }

    #[test]
    fn without_a_store_nothing_is_owed() {
        let mut d = Durable::new(None);
        d.persist(Record::Append, b"a\n").unwrap();
        assert!(!d.owes_sync());
        d.sync_before_output().unwrap();
    }

    #[test]
    fn a_failing_store_is_an_error() {
        let mut d = Durable::new(Some(Box::new(Broken)));
        d.persist(Record::Append, b"a\n").unwrap();
        let e = d.sync_before_output().unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        // Once failed, always failed: no later sync may look like success.
        assert!(d.sync_before_output().is_err());
        assert!(d.persist(Record::Append, b"b\n").is_err());
        // A failed store is never finished: finishing reports the failure.
        assert!(d.finish().is_err());
    }
}
