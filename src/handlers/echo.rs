//! echo (seeds 002, 003, 004): every message back exactly as received,
//! terminator included; `--upper` turns it to upper case.

use super::{ClientId, Framing, Handler, Outbox};

pub struct Echo {
    upper: bool,
}

impl Echo {
    pub fn new(upper: bool) -> Self {
        Echo { upper }
    }
}

impl Handler for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn framing(&self) -> Framing {
        Framing::Lines { idle_flush: true }
    }

    fn on_message(&mut self, id: ClientId, msg: &[u8], out: &mut Outbox) {
        if self.upper {
            out.send_with(id, |buf| push_upper(buf, msg));
        } else {
            out.send(id, msg);
        }
    }
}

/// Appends `msg` in upper case: Unicode rules where it is valid UTF-8,
/// otherwise ASCII letters only with every other byte unchanged.
pub fn push_upper(buf: &mut Vec<u8>, msg: &[u8]) {
    match std::str::from_utf8(msg) {
        Ok(text) if !text.is_ascii() => {
            for c in text.chars().flat_map(char::to_uppercase) {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
        _ => buf.extend(msg.iter().map(u8::to_ascii_uppercase)),
    }
}
