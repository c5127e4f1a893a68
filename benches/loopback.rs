//! End to end over 127.0.0.1: 50 concurrent clients against the release
//! server binaries (both models), driven by loadgen's library code. The
//! measured time is loadgen's `wall` (first byte sent to last reply or EOF),
//! so connecting and process start-up are left out.
//!
//! Both client and server share this machine's cores: these numbers say what
//! the box does end to end, not what the server could do alone.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use nonblocking::loadgen::{self, Mode, Options};

const SERVERS: [(&str, &str); 2] = [
    ("nonblocking", env!("CARGO_BIN_EXE_nonblocking-server")),
    ("threaded", env!("CARGO_BIN_EXE_threaded-server")),
];
const CLIENTS: usize = 50;

/// A server on port 0, stopped with SIGINT on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(bin: &str, args: &[&str]) -> Option<Server> {
        let mut child = Command::new(bin)
            .args(args)
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(10)).ok().and_then(|l| {
            l.strip_prefix("Listening on ")?
                .split(' ')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        });
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        // Status lines keep coming; drain them so the server never blocks.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Some(Server { child, port })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

fn loopback(c: &mut Criterion) {
    let log_dir = std::env::temp_dir().join(format!("nonblocking-bench-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).expect("temp dir");
    let mut group = c.benchmark_group("loopback_50_clients");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    // (name, mode, lines per client, echo window)
    let cases = [
        ("ledger_2000_lines", Mode::Ledger, 2_000, 1),
        ("echo_200_lines_w1", Mode::Echo, 200, 1),
        ("echo_2000_lines_w64", Mode::Echo, 2_000, 64),
    ];
    for (model, bin) in SERVERS {
        for (case, mode, lines, window) in cases {
            let log: PathBuf = log_dir.join(format!("{model}-{case}.log"));
            let handler = mode.name();
            let log_arg = log.to_str().expect("UTF-8 temp path");
            // A server that cannot start fails the bench (CI runs it once
            // with `cargo bench -- --test`): a skip would pass unseen.
            let server = Server::start(bin, &["--handler", handler, "--log", log_arg])
                .unwrap_or_else(|| panic!("loopback: the {model} server ({bin}) did not start"));
            let addr = format!("127.0.0.1:{}", server.port)
                .parse()
                .expect("address");
            let mut opts = Options::new(addr, mode);
            opts.clients = CLIENTS;
            opts.lines = lines;
            opts.window = window;
            opts.timeout = Duration::from_secs(60);
            group.throughput(Throughput::Elements(lines * CLIENTS as u64));
            group.bench_function(format!("{model}/{case}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let report = loadgen::run(&opts).expect("loadgen run");
                        assert_eq!(report.errors, 0, "{}", report.to_text());
                        total += report.wall;
                    }
                    total
                })
            });
            drop(server);
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&log_dir);
}

criterion_group!(benches, loopback);
criterion_main!(benches);
