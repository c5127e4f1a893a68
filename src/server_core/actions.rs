//! The one interpreter of a handler's [`Outbox`]: what a server must do,
//! in SPEC's order. An outbox is a small program; each server supplies only
//! its primitives ("send these bytes to client N", close, pause, stdout),
//! and this module decides what they are called for:
//!
//! 1. [`persist`]: every `Persist` record goes to the [`Durable`] step, so
//!    nothing queued below can leave before it is durable;
//! 2. [`to_clients`]: sends, closes, pauses and resumes, in the order the
//!    handler made them ([`Clients`]);
//! 3. [`to_lines`]: stdout bytes and diagnostic lines.
//!
//! The event loop runs them back to back; the threaded server runs step 2
//! under its handler lock and step 3 after releasing it; the `--reactors N`
//! hub routes step 2 and 3 to the loops that own the clients.

use std::io;
use std::sync::Arc;

use crate::handlers::{Action, ClientId, Outbox, Payload};
use crate::server_core::durable::Durable;
use crate::status;

/// The bytes of one send, as the server gets them: a slice of the outbox's
/// arena (copy it), or a buffer shared by every recipient of a broadcast
/// (keep a reference, no copy).
#[derive(Clone, Copy, Debug)]
pub enum Bytes<'a> {
    Slice(&'a [u8]),
    Shared(&'a Arc<[u8]>),
}

impl<'a> Bytes<'a> {
    pub fn as_slice(&self) -> &'a [u8] {
        match self {
            Bytes::Slice(bytes) => bytes,
            Bytes::Shared(buf) => buf,
        }
    }

    /// An owned, shareable copy (no copy if it is shared already).
    pub fn to_shared(&self) -> Arc<[u8]> {
        match self {
            Bytes::Slice(bytes) => Arc::from(*bytes),
            Bytes::Shared(buf) => Arc::clone(buf),
        }
    }
}

/// A server's per-client primitives. A client the server no longer knows
/// (gone meanwhile) is ignored.
pub trait Clients {
    /// Queue `bytes` after everything queued for `to` before.
    fn send(&mut self, to: ClientId, bytes: Bytes<'_>);
    /// Flush what is queued for `id`, then close it.
    fn close(&mut self, id: ClientId);
    /// Stop (`true`) or start again (`false`) reading from `id`. Starting
    /// again must read at once: with edge-triggered readiness, data that
    /// arrived during the pause raises no new event.
    fn pause(&mut self, id: ClientId, paused: bool);
}

/// Step 1: hands the outbox's persisted records to `durable`, in order.
///
/// # Errors
/// The store failed: nothing after it may be carried out.
pub fn persist(outbox: &Outbox, durable: &mut Durable) -> io::Result<()> {
    if !durable.is_on() {
        return Ok(());
    }
    for action in outbox.actions() {
        if let Action::Persist { payload, record } = action {
            durable.persist(*record, outbox.bytes(payload))?;
        }
    }
    Ok(())
}

/// Whether the outbox sends anything (then what it persisted must be made
/// durable first).
pub fn sends(outbox: &Outbox) -> bool {
    outbox
        .actions()
        .iter()
        .any(|a| matches!(a, Action::Send { .. }))
}

/// Step 2: the per-client actions, in order.
pub fn to_clients(outbox: &Outbox, clients: &mut impl Clients) {
    for action in outbox.actions() {
        match action {
            Action::Send { to, payload } => {
                let bytes = match payload {
                    Payload::Shared(buf) => Bytes::Shared(buf),
                    Payload::Arena(_) => Bytes::Slice(outbox.bytes(payload)),
                };
                clients.send(*to, bytes);
            }
            Action::Close(id) => clients.close(*id),
            Action::PauseReading(id) => clients.pause(*id, true),
            Action::ResumeReading(id) => clients.pause(*id, false),
            Action::Stdout(_) | Action::Diagnostic(_) | Action::Persist { .. } => {}
        }
    }
}

/// What [`to_lines`] hands on: bytes for stdout, or one diagnostic line.
#[derive(Clone, Copy, Debug)]
pub enum Line<'a> {
    Stdout(&'a [u8]),
    Diagnostic(&'a str),
}

/// Step 3: stdout bytes and diagnostic lines, in order.
pub fn to_lines(outbox: &Outbox, mut line: impl FnMut(Line<'_>)) {
    for action in outbox.actions() {
        match action {
            Action::Stdout(payload) => line(Line::Stdout(outbox.bytes(payload))),
            Action::Diagnostic(text) => line(Line::Diagnostic(text)),
            _ => {}
        }
    }
}

/// Step 3 for a server that prints: stdout bytes through `stdout`,
/// diagnostics on stderr.
pub fn print_lines(outbox: &Outbox, mut stdout: impl FnMut(&[u8])) {
    to_lines(outbox, |line| match line {
        Line::Stdout(bytes) => stdout(bytes),
        Line::Diagnostic(text) => status::diag(format_args!("{text}")),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::sync::Mutex;

    /// Records every primitive called, in order.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Clients for Log {
        fn send(&mut self, to: ClientId, bytes: Bytes<'_>) {
            let kind = match bytes {
                Bytes::Slice(_) => "copy",
                Bytes::Shared(_) => "shared",
            };
            let text = String::from_utf8_lossy(bytes.as_slice()).into_owned();
            self.0.push(format!("send {to} {kind} {text:?}"));
        }
        fn close(&mut self, id: ClientId) {
            self.0.push(format!("close {id}"));
        }
        fn pause(&mut self, id: ClientId, paused: bool) {
            self.0.push(format!("pause {id} {paused}"));
        }
    }

    #[derive(Clone, Default)]
    struct Spy(Arc<Mutex<Vec<String>>>);

    impl Store for Spy {
        fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
            let text = String::from_utf8_lossy(bytes).into_owned();
            self.0.lock().unwrap().push(format!("put {text:?}"));
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().push("sync".to_string());
            Ok(())
        }
    }

    #[test]
    fn persists_first_then_clients_in_order_then_lines() {
        let mut out = Outbox::new();
        let shared: Arc<[u8]> = Arc::from(&b"list\n"[..]);
        out.send(ClientId(1), b"one\n");
        out.replace_snapshot(b"state 1\n");
        out.send_shared(ClientId(2), &shared);
        out.stdout(b"raw");
        out.pause_reading(ClientId(3));
        out.resume_reading(ClientId(3));
        out.replace_snapshot(b"state 2\n");
        out.close(ClientId(1));
        assert!(sends(&out));
        let spy = Spy::default();
        let mut durable = Durable::new(Some(Box::new(spy.clone())));
        let mut log = Log::default();
        let mut stdout = Vec::new();
        persist(&out, &mut durable).unwrap();
        to_clients(&out, &mut log);
        print_lines(&out, |b| stdout.extend_from_slice(b));
        assert_eq!(
            log.0,
            vec![
                "send 1 copy \"one\\n\"",
                "send 2 shared \"list\\n\"",
                "pause 3 true",
                "pause 3 false",
                "close 1",
            ]
        );
        assert_eq!(stdout, b"raw");
        // Persisted, not yet put or synced: the server syncs before output.
        assert!(durable.owes_sync());
        durable.sync_before_output().unwrap();
        assert_eq!(*spy.0.lock().unwrap(), vec!["put \"state 2\\n\"", "sync"]);
    }
}
