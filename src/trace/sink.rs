//! The sink behind an enabled [`Trace`](super::Trace): the throttle (per
//! pass, then a token bucket), the line format, and the few words that
//! describe a handler's actions. Everything here runs only when `--trace`
//! is on.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{BURST_LINES, LINES_PER_SECOND, PASS_LINES, Source};
use crate::handlers::{Action, ClientId, Outbox, Record};
use crate::server_core::lifecycle::Command;

/// The kinds of step, for the counts of hidden ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Pass,
    Event,
    Accept,
    Read,
    Framed,
    Handler,
    Write,
    Interest,
    Flow,
    Close,
    Timer,
    Lifecycle,
}

impl Step {
    /// The steps repeated for every read, capped per pass.
    fn per_read(self) -> bool {
        matches!(
            self,
            Step::Event | Step::Read | Step::Framed | Step::Handler
        )
    }

    const COUNT: usize = 12;
    const NAMES: [&'static str; Step::COUNT] = [
        "pass",
        "event",
        "accept",
        "read",
        "framed",
        "handler",
        "write",
        "interest",
        "pause/resume",
        "close",
        "timer",
        "lifecycle",
    ];
}

/// Who a trace line is from.
pub(super) enum Speaker {
    /// One event loop, by index.
    Loop(usize),
    /// The calling thread, by name (`threaded-server`).
    Thread,
}

pub(super) struct Sink {
    pub(super) speaker: Speaker,
    start: Instant,
    state: Mutex<State>,
}

pub(super) struct State {
    out: Box<dyn Write + Send>,
    /// Passes started so far.
    passes: u64,
    /// A pass line was printed or counted and its end not yet seen.
    in_pass: bool,
    /// Step lines shown in this pass.
    pass_shown: u32,
    /// Steps hidden in this pass, by kind.
    pass_hidden: [u64; Step::COUNT],
    /// The token bucket: lines that may be shown now, at most
    /// [`BURST_LINES`], refilled at [`LINES_PER_SECOND`] from `refilled`.
    tokens: f64,
    pub(super) refilled: Instant,
    /// When the last pass ended (the loop went back to `poll`).
    waiting_since: Option<Instant>,
    /// Steps hidden by the rate limit since the last line shown, by kind.
    rate_hidden: [u64; Step::COUNT],
}

impl Sink {
    pub(super) fn new(speaker: Speaker, start: Instant, out: Box<dyn Write + Send>) -> Sink {
        Sink {
            speaker,
            start,
            state: Mutex::new(State {
                out,
                passes: 0,
                in_pass: false,
                pass_shown: 0,
                pass_hidden: [0; Step::COUNT],
                tokens: f64::from(BURST_LINES),
                refilled: start,
                waiting_since: None,
                rate_hidden: [0; Step::COUNT],
            }),
        }
    }
}

/// What the handler asked for, in a few words: replies, broadcasts,
/// closes, pauses, persisted and stdout bytes.
pub(super) fn describe_actions(actor: Option<ClientId>, out: &Outbox) -> String {
    let mut recipients: Vec<ClientId> = Vec::new();
    let (mut messages, mut bytes) = (0usize, 0usize);
    let mut other = Vec::new();
    for action in out.actions() {
        match action {
            Action::Send { to, payload } => {
                messages += 1;
                bytes += out.bytes(payload).len();
                if !recipients.contains(to) {
                    recipients.push(*to);
                }
            }
            Action::Close(id) => other.push(format!("close client {id}")),
            Action::PauseReading(id) => other.push(format!("pause reading client {id}")),
            Action::ResumeReading(id) => other.push(format!("resume reading client {id}")),
            Action::Stdout(p) => other.push(format!("{} bytes to stdout", out.bytes(p).len())),
            Action::Diagnostic(_) => other.push("a diagnostic line".to_string()),
            Action::Persist { payload, record } => {
                let how = match record {
                    Record::Append => "append",
                    Record::Replace => "replace with",
                };
                other.push(format!("persist: {how} {} bytes", out.bytes(payload).len()));
            }
        }
    }
    let mut text = String::new();
    let in_messages = if messages > 1 {
        format!(" in {messages} messages")
    } else {
        String::new()
    };
    match recipients.as_slice() {
        [] => {}
        [one] if Some(*one) == actor => {
            let _ = write!(text, "reply {bytes} bytes{in_messages}");
        }
        [one] => {
            let _ = write!(text, "send {bytes} bytes{in_messages} to client {one}");
        }
        many => {
            let _ = write!(
                text,
                "broadcast to {} clients ({bytes} bytes{in_messages})",
                many.len()
            );
        }
    }
    for item in other {
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(&item);
    }
    text
}

impl Sink {
    #[cold]
    #[inline(never)]
    pub(super) fn pass(&self, counts: &[usize], timeout: Option<Duration>, now: Instant) {
        let mut st = self.lock();
        st.passes += 1;
        // A thread's lines are not part of another thread's pass.
        st.in_pass = matches!(self.speaker, Speaker::Loop(_));
        st.pass_shown = 0;
        let pass = st.passes;
        let total: usize = counts.iter().sum();
        let mut why = String::new();
        if total == 0 {
            // Whether poll waited its whole timeout: from the end of the
            // last pass, which is when the loop went back to poll.
            let waited = st.waiting_since.map(|w| now.saturating_duration_since(w));
            let full = |t: Duration| waited.is_none_or(|w| w + Duration::from_millis(1) >= t);
            why.push_str(match timeout {
                Some(t) if t.is_zero() => "no events: work left from the last pass",
                Some(t) if full(t) => "no events: a timer is due",
                _ => "no events: poll was interrupted (a signal)",
            });
        } else {
            let s = if total == 1 { "" } else { "s" };
            let _ = write!(why, "{total} event{s}:");
            let mut sep = " ";
            for (source, &n) in Source::ALL.iter().zip(counts) {
                match n {
                    0 => continue,
                    1 => {
                        let _ = write!(why, "{sep}{}", source.name());
                    }
                    n => {
                        let _ = write!(why, "{sep}{n} {}s", source.name());
                    }
                }
                sep = ", ";
            }
        }
        self.emit(&mut st, Step::Pass, now, format_args!("pass {pass}: {why}"));
    }

    #[cold]
    #[inline(never)]
    pub(super) fn pass_end(&self) {
        let mut st = self.lock();
        st.in_pass = false;
        st.waiting_since = Some(Instant::now());
        let hidden = std::mem::take(&mut st.pass_hidden);
        let total: u64 = hidden.iter().sum();
        if total > 0 {
            let kinds = describe_counts(&hidden);
            let line = format!("  ... {total} more steps in this pass not shown: {kinds}");
            self.write_line(&mut st, Instant::now(), &line);
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn step(&self, step: Step, args: fmt::Arguments<'_>) {
        let mut st = self.lock();
        self.emit(&mut st, step, Instant::now(), args);
    }

    #[cold]
    #[inline(never)]
    pub(super) fn command(&self, command: &Command) {
        let text: String = match command {
            Command::StopAccepting => "shutdown: accept what is queued, close the listener".into(),
            Command::NotifyHandler => "shutdown: tell the handler".into(),
            Command::AnnounceDrain { timeout } => format!(
                "drain: clients may finish for up to {:.3} s",
                timeout.as_secs_f64()
            ),
            Command::CloseAll { cut: false } => "shutdown: close every client".into(),
            Command::CloseAll { cut: true } => {
                "drain over: close every client, cut partial lines".into()
            }
            Command::KillAll => "shutdown: time is up, drop every connection".into(),
            Command::ReportCount => "timer: report the client count".into(),
            Command::Accept => "timer: accept again after running out of descriptors".into(),
            Command::Diagnostic(line) => format!("lifecycle: {line}"),
        };
        let mut st = self.lock();
        self.emit(
            &mut st,
            Step::Lifecycle,
            Instant::now(),
            format_args!("{text}"),
        );
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The throttle (see the module doc), then the line.
    pub(super) fn emit(&self, st: &mut State, step: Step, now: Instant, args: fmt::Arguments<'_>) {
        let elapsed = now.saturating_duration_since(st.refilled).as_secs_f64();
        st.refilled = now;
        st.tokens = (st.tokens + elapsed * f64::from(LINES_PER_SECOND)).min(f64::from(BURST_LINES));
        if st.tokens < 1.0 {
            st.rate_hidden[step as usize] += 1;
            return;
        }
        if step.per_read() && st.in_pass && st.pass_shown >= PASS_LINES {
            st.pass_hidden[step as usize] += 1;
            return;
        }
        let hidden = std::mem::take(&mut st.rate_hidden);
        let total: u64 = hidden.iter().sum();
        if total > 0 {
            let line = format!(
                "... {total} steps not shown (over {LINES_PER_SECOND} lines a second): {}",
                describe_counts(&hidden)
            );
            self.write_line(st, now, &line);
        }
        if step.per_read() {
            st.pass_shown += 1;
        }
        let indent = if st.in_pass && step != Step::Pass {
            "  "
        } else {
            ""
        };
        self.write_line(st, now, &format!("{indent}{args}"));
    }

    /// Writes one whole line in one `write` (lines from several threads do
    /// not interleave).
    fn write_line(&self, st: &mut State, now: Instant, text: &str) {
        st.tokens -= 1.0;
        let secs = now.duration_since(self.start).as_secs_f64();
        let mut line = String::with_capacity(text.len() + 24);
        match self.speaker {
            Speaker::Loop(i) => {
                let _ = write!(line, "[loop {i} {secs:.3}] ");
            }
            Speaker::Thread => {
                let thread = std::thread::current();
                let name = match thread.name() {
                    Some("main") | None => "acceptor",
                    Some(name) => name,
                };
                let _ = write!(line, "[{name} {secs:.3}] ");
            }
        }
        line.push_str(text);
        line.push('\n');
        let _ = st.out.write_all(line.as_bytes());
        let _ = st.out.flush();
    }
}

/// `read 400, framed 400`: the non-zero counts by kind.
fn describe_counts(counts: &[u64; Step::COUNT]) -> String {
    let mut text = String::new();
    for (name, &n) in Step::NAMES.iter().zip(counts) {
        if n > 0 {
            if !text.is_empty() {
                text.push_str(", ");
            }
            let _ = write!(text, "{name} {n}");
        }
    }
    text
}
