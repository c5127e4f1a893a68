//! sink (seed 003). STUB: being written.
use super::{ClientId, Framing, Handler, Outbox};
#[derive(Default)]
pub struct Sink;
impl Sink {
    pub fn new() -> Self {
        Sink
    }
}
impl Handler for Sink {
    fn name(&self) -> &'static str {
        "sink"
    }
    fn framing(&self) -> Framing {
        Framing::Raw
    }
    fn on_message(&mut self, _id: ClientId, msg: &[u8], out: &mut Outbox) {
        out.stdout(msg)
    }
}
