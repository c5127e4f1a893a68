//! queue (seed 001 task 1). STUB: being written.
use super::{ClientId, Framing, Handler, Outbox};
pub struct Queue {
    _cap: usize,
}
impl Queue {
    pub fn new(cap: usize) -> Self {
        Queue { _cap: cap }
    }
}
impl Handler for Queue {
    fn name(&self) -> &'static str {
        "queue"
    }
    fn framing(&self) -> Framing {
        Framing::Lines { idle_flush: true }
    }
    fn on_message(&mut self, _id: ClientId, _msg: &[u8], _out: &mut Outbox) {}
}
