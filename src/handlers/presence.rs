//! presence (seed 001 task 2). STUB: being written.
use super::{ClientId, Framing, Handler, Outbox};
#[derive(Default)]
pub struct Presence;
impl Presence {
    pub fn new() -> Self {
        Presence
    }
}
impl Handler for Presence {
    fn name(&self) -> &'static str {
        "presence"
    }
    fn framing(&self) -> Framing {
        Framing::Lines { idle_flush: true }
    }
    fn on_message(&mut self, _id: ClientId, _msg: &[u8], _out: &mut Outbox) {}
}
