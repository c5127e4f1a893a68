//! The one summary a run prints, as text or as one JSON line.

use std::fmt::Write as _;
use std::time::Duration;

use super::stats::{self, LatencySummary};
use super::{Mode, Options};

/// What became of the ledger log check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogCheck {
    /// The server's log equals the expected one byte for byte.
    Match,
    /// It differs; the text says where.
    Mismatch(String),
    /// No expected log could be computed, or the server's log never came.
    Unavailable(String),
    /// No check asked for (`--expect-log` alone, or none).
    NotChecked,
}

/// The one summary a run prints.
#[derive(Debug, Clone)]
pub struct Report {
    pub mode: Mode,
    pub clients: usize,
    /// Lines sent (ledger, echo) or received (presence) that count.
    pub lines: u64,
    /// The measured phase: first byte sent to last reply/EOF (presence: join
    /// plus leave), connecting excluded.
    pub wall: Duration,
    pub connect: Duration,
    pub connect_retries: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// False when the connections cannot count their bytes (gRPC: the
    /// HTTP/2 framing is the library's); then no byte figure is printed.
    pub bytes_counted: bool,
    /// Connections that failed plus replies that did not match.
    pub errors: u64,
    pub latency: Option<LatencySummary>,
    /// Presence: the join phase and the leave phase.
    pub phases: Vec<(&'static str, Duration)>,
    pub log_check: LogCheck,
    /// Threads the clients ran on.
    pub threads: usize,
    /// Echo over UDP: lines are datagrams answered.
    pub udp: bool,
    /// UDP: datagrams whose reply did not come within `--udp-timeout`.
    pub lost: Option<u64>,
    /// UDP: replies that came after their datagram was counted lost.
    pub late: u64,
    /// UDP: the timeout that makes a datagram lost.
    pub udp_timeout: Duration,
}

impl Report {
    pub(super) fn new(opts: &Options) -> Self {
        Report {
            mode: opts.mode,
            clients: opts.clients,
            lines: 0,
            wall: Duration::ZERO,
            connect: Duration::ZERO,
            connect_retries: 0,
            bytes_sent: 0,
            bytes_received: 0,
            bytes_counted: true,
            errors: 0,
            latency: None,
            phases: Vec::new(),
            log_check: LogCheck::NotChecked,
            threads: super::spread::thread_count(opts),
            udp: opts.udp,
            lost: None,
            late: 0,
            udp_timeout: opts.udp_timeout,
        }
    }

    pub fn lines_per_sec(&self) -> f64 {
        stats::rate(self.lines, self.wall)
    }

    /// True when every client finished, nothing mismatched, and the log (if
    /// checked) matched.
    pub fn ok(&self) -> bool {
        self.errors == 0
            && !matches!(
                self.log_check,
                LogCheck::Mismatch(_) | LogCheck::Unavailable(_)
            )
    }

    /// The human summary, a few lines.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let (mode, unit, rate_unit) = if self.udp {
            ("udp echo", "datagrams answered", "datagrams")
        } else if matches!(self.mode, Mode::Queue | Mode::GrpcQueue) {
            (self.mode.name(), "calls", "calls")
        } else {
            (self.mode.name(), "lines", "lines")
        };
        let _ = writeln!(
            s,
            "{mode}: {} clients on {} thread{}, {} {unit} in {:.3} s = {:.0} {}/s",
            self.clients,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.lines,
            self.wall.as_secs_f64(),
            self.lines_per_sec(),
            rate_unit
        );
        if let Some(lost) = self.lost {
            let _ = writeln!(
                s,
                "lost: {lost} datagrams (no reply within {:.3} s), {} late replies",
                self.udp_timeout.as_secs_f64(),
                self.late
            );
        }
        for (name, d) in &self.phases {
            let _ = writeln!(s, "{name}: {:.3} s", d.as_secs_f64());
        }
        if let Some(l) = &self.latency {
            let what = if self.mode == Mode::Presence {
                "join latency (connect to own first list)"
            } else {
                "latency"
            };
            let _ = writeln!(
                s,
                "{what}: p50 {} us, p99 {} us, max {} us, mean {} us ({} samples)",
                l.p50.as_micros(),
                l.p99.as_micros(),
                l.max.as_micros(),
                l.mean.as_micros(),
                l.count
            );
        }
        if self.bytes_counted {
            let _ = writeln!(
                s,
                "bytes: sent {}, received {}",
                self.bytes_sent, self.bytes_received
            );
        } else {
            s.push_str("bytes: not counted (the HTTP/2 framing is the gRPC library's)\n");
        }
        let _ = writeln!(
            s,
            "connect: {:.3} s ({} retries)",
            self.connect.as_secs_f64(),
            self.connect_retries
        );
        match &self.log_check {
            LogCheck::Match => s.push_str("log: matches the expected balances\n"),
            LogCheck::Mismatch(why) => {
                let _ = writeln!(s, "log: MISMATCH: {why}");
            }
            LogCheck::Unavailable(why) => {
                let _ = writeln!(s, "log: not checked: {why}");
            }
            LogCheck::NotChecked => {}
        }
        let _ = writeln!(s, "errors: {}", self.errors);
        s
    }

    /// One JSON object on one line, for scripts. Absent values are `null`.
    pub fn to_json(&self) -> String {
        let us = |d: Option<Duration>| {
            d.map_or("null".to_string(), |d| {
                format!("{:.1}", d.as_nanos() as f64 / 1e3)
            })
        };
        let phase = |name: &str| {
            self.phases
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("null".to_string(), |(_, d)| {
                    format!("{:.6}", d.as_secs_f64())
                })
        };
        let bytes = |n: u64| {
            if self.bytes_counted {
                n.to_string()
            } else {
                "null".to_string()
            }
        };
        let (check, detail) = match &self.log_check {
            LogCheck::Match => ("\"match\"", String::new()),
            LogCheck::Mismatch(w) => ("\"mismatch\"", w.clone()),
            LogCheck::Unavailable(w) => ("\"unavailable\"", w.clone()),
            LogCheck::NotChecked => ("null", String::new()),
        };
        format!(
            concat!(
                "{{\"handler\":\"{}\",\"clients\":{},\"lines\":{},\"wall_s\":{:.6},",
                "\"lines_per_s\":{:.1},\"connect_s\":{:.6},\"connect_retries\":{},",
                "\"bytes_sent\":{},\"bytes_received\":{},\"errors\":{},",
                "\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"mean_us\":{},",
                "\"join_s\":{},\"leave_s\":{},\"log_check\":{},\"log_detail\":{},",
                "\"threads\":{},\"transport\":\"{}\",\"lost\":{},\"late\":{}}}"
            ),
            self.mode.name(),
            self.clients,
            self.lines,
            self.wall.as_secs_f64(),
            self.lines_per_sec(),
            self.connect.as_secs_f64(),
            self.connect_retries,
            bytes(self.bytes_sent),
            bytes(self.bytes_received),
            self.errors,
            us(self.latency.map(|l| l.p50)),
            us(self.latency.map(|l| l.p99)),
            us(self.latency.map(|l| l.max)),
            us(self.latency.map(|l| l.mean)),
            phase("join"),
            phase("leave"),
            check,
            json_string(&detail),
            self.threads,
            if self.udp { "udp" } else { "tcp" },
            self.lost.map_or("null".to_string(), |l| l.to_string()),
            if self.lost.is_some() {
                self.late.to_string()
            } else {
                "null".to_string()
            },
        )
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_field_and_nulls() {
        let opts = Options::new(crate::loadgen::parse_addr("1").unwrap(), Mode::Echo);
        let mut r = Report::new(&opts);
        r.lines = 1000;
        r.wall = Duration::from_secs(2);
        let j = r.to_json();
        assert!(j.contains("\"lines\":1000,"), "{j}");
        assert!(j.contains("\"lines_per_s\":500.0,"), "{j}");
        assert!(j.contains("\"p50_us\":null"), "{j}");
        assert!(j.contains("\"log_check\":null"), "{j}");
        assert!(
            j.contains("\"transport\":\"tcp\",\"lost\":null,\"late\":null}"),
            "{j}"
        );
        assert!(j.starts_with('{') && j.ends_with('}') && !j.contains('\n'));
        r.log_check = LogCheck::Mismatch("line 2: \"a\"".into());
        assert!(r.to_json().contains(r#""log_detail":"line 2: \"a\"""#));
        assert!(!r.ok());
    }
}
