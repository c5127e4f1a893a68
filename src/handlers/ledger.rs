//! ledger (seed 000). STUB: being written.
use super::{ClientId, Framing, Handler, Outbox};
use std::path::PathBuf;
pub struct Ledger {
    _log: PathBuf,
}
impl Ledger {
    pub fn new(log: PathBuf) -> Self {
        Ledger { _log: log }
    }
}
impl Handler for Ledger {
    fn name(&self) -> &'static str {
        "ledger"
    }
    fn framing(&self) -> Framing {
        Framing::Lines { idle_flush: false }
    }
    fn on_message(&mut self, _id: ClientId, _msg: &[u8], _out: &mut Outbox) {}
}
