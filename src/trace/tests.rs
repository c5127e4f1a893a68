//! The trace's text and throttle, on a fake clock and an in-memory stderr.

use super::sink::{Sink, Speaker, Step, describe_actions};
use super::*;
use std::io;
use std::sync::Mutex;

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn traced() -> (Trace, Shared) {
    let out = Shared::default();
    (
        Trace::new(true, Speaker::Loop(1), Box::new(out.clone())),
        out,
    )
}

fn sink(trace: &Trace) -> &Sink {
    trace.sink.as_deref().unwrap()
}

#[test]
fn off_writes_nothing_and_calls_no_closure() {
    let trace = Trace::for_this_loop(false);
    assert!(!trace.on());
    trace.framed(
        ClientId(1),
        Framing::Lines { idle_flush: true },
        b"a\n",
        || panic!("a closure was called while tracing is off"),
    );
    trace.read(ClientId(1), 5);
}

#[test]
fn lines_name_the_loop_the_client_and_the_step() {
    let (trace, out) = traced();
    let id = ClientId(7);
    trace.accepted(id, "127.0.0.1:5000".parse().unwrap());
    trace.read(id, 12);
    trace.framed(id, Framing::Lines { idle_flush: true }, b"ab\ncd\nef", || 2);
    trace.wrote(id, 100, 40);
    trace.wrote(id, 40, 0);
    trace.interest(id, true);
    trace.flow(id, false, true, 9000, 4096);
    trace.flow(id, true, false, 100, 4096);
    trace.closing(id);
    let lines = out.lines();
    assert!(lines.iter().all(|l| l.starts_with("[loop 1 ")), "{lines:?}");
    let text = lines.join("\n");
    for want in [
        "accepted client 7 from 127.0.0.1:5000",
        "client 7: read 12 bytes",
        "client 7: framed 2 lines, kept a partial line of 2 bytes",
        "wrote 60 of 100 bytes: partial write",
        "client 7: wrote 40 bytes, all out",
        "waiting for writable",
        "client 7: paused",
        "client 7: resumed",
        "client 7: closing",
    ] {
        assert!(text.contains(want), "{want:?} missing in\n{text}");
    }
}

#[test]
fn actions_say_reply_broadcast_close_and_persist() {
    let me = ClientId(1);
    let mut out = Outbox::new();
    out.send(me, b"ok\n");
    assert_eq!(describe_actions(Some(me), &out), "reply 3 bytes");
    out.send(me, b"ok\n");
    assert_eq!(
        describe_actions(Some(me), &out),
        "reply 6 bytes in 2 messages"
    );
    out.clear();
    for id in 1..=3 {
        out.send(ClientId(id), b"list\n");
    }
    out.append_record_with(|buf| buf.extend_from_slice(b"record"));
    out.close(ClientId(2));
    assert_eq!(
        describe_actions(Some(me), &out),
        "broadcast to 3 clients (15 bytes in 3 messages); persist: append 6 bytes; close client 2"
    );
}

#[test]
fn a_pass_shows_at_most_pass_lines_then_one_summary() {
    let (trace, out) = traced();
    let s = sink(&trace);
    s.pass(
        &[2, 1, 0, 0, 0],
        Some(Duration::from_secs(1)),
        Instant::now(),
    );
    for i in 0..(PASS_LINES + 10) {
        trace.read(ClientId(u64::from(i)), 1);
    }
    trace.pass_end();
    let lines = out.lines();
    assert!(lines[0].ends_with("pass 1: 3 events: 2 client sockets, listener"));
    assert_eq!(lines.len(), 1 + PASS_LINES as usize + 1, "{lines:?}");
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with("... 10 more steps in this pass not shown: read 10"),
        "{lines:?}"
    );
    // The next pass shows lines again.
    s.pass(&[0; 5], Some(Duration::ZERO), Instant::now());
    trace.read(ClientId(1), 1);
    let lines = out.lines();
    assert!(lines[lines.len() - 2].ends_with("no events: work left from the last pass"));
    assert!(lines[lines.len() - 1].ends_with("  client 1: read 1 bytes"));
}

#[test]
fn past_the_burst_steps_are_counted_and_said_once() {
    let (trace, out) = traced();
    let s = sink(&trace);
    let t0 = s.lock().refilled;
    let mut st = s.lock();
    for _ in 0..(BURST_LINES + 50) {
        s.emit(&mut st, Step::Read, t0, format_args!("r"));
    }
    assert_eq!(out.lines().len(), BURST_LINES as usize);
    // A tenth of a second refills 20 lines: the summary, then the line.
    let later = t0 + Duration::from_millis(100);
    s.emit(&mut st, Step::Write, later, format_args!("w"));
    let lines = out.lines();
    assert_eq!(lines.len(), BURST_LINES as usize + 2);
    assert!(
        lines[lines.len() - 2].contains("50 steps not shown (over 200 lines a second): read 50"),
        "{lines:?}"
    );
    assert!(lines[lines.len() - 1].ends_with("] w"));
    // The rate holds: 18 more lines fit in that tenth of a second.
    for _ in 0..30 {
        s.emit(&mut st, Step::Read, later, format_args!("r"));
    }
    drop(st);
    assert_eq!(out.lines().len(), BURST_LINES as usize + 2 + 18);
}

#[test]
fn an_empty_pass_says_why_poll_returned() {
    let (trace, out) = traced();
    let s = sink(&trace);
    trace.pass_end();
    // Back from poll long before its 60 s timeout: interrupted.
    s.pass(&[0; 5], Some(Duration::from_secs(60)), Instant::now());
    trace.pass_end();
    // A timeout already over when poll returns: the timer.
    let later = Instant::now() + Duration::from_millis(50);
    s.pass(&[0; 5], Some(Duration::from_millis(50)), later);
    trace.pass_end();
    s.pass(&[0; 5], Some(Duration::ZERO), Instant::now());
    let lines = out.lines();
    assert!(lines[0].ends_with("pass 1: no events: poll was interrupted (a signal)"));
    assert!(lines[1].ends_with("pass 2: no events: a timer is due"));
    assert!(lines[2].ends_with("pass 3: no events: work left from the last pass"));
}

#[test]
fn a_loop_takes_its_number_from_its_thread() {
    let index = |name: &str| {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(|| match sink(&Trace::for_this_loop(true)).speaker {
                Speaker::Loop(i) => i,
                Speaker::Thread => usize::MAX,
            })
            .unwrap()
            .join()
            .unwrap()
    };
    assert_eq!(index("reactor-3"), 3);
    assert_eq!(index("main"), 0);
}
