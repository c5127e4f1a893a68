//! The ledger's journal (`--journal PATH`, issue 6): every applied
//! transaction survives a restart exactly once, a SIGKILL loses nothing a
//! client was told is safe (the server's close after the client's EOF), and
//! a torn last record is cut off.
//!
//! Expected logs are computed here; each run gets its own working dir, while
//! the journal and the log live in one dir shared by the runs.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use common::*;

every_server!(
    restarts_replay_every_transaction_once,
    sigkill_mid_blast_loses_nothing_acknowledged,
    torn_last_record_is_cut_off,
    a_failing_journal_stops_the_server_and_resets_clients,
    a_signal_during_the_replay_stops_the_server_cleanly,
);

/// The journal and log of a series of runs.
struct Files {
    _dir: TempDir,
    journal: PathBuf,
    log: PathBuf,
}

impl Files {
    fn new(kind: Kind) -> Files {
        let dir = TempDir::new(&format!("jfiles-{}", kind.name()));
        Files {
            journal: dir.join("journal"),
            log: dir.join("log.txt"),
            _dir: dir,
        }
    }

    /// One server run on these files.
    fn start(&self, kind: Kind) -> Server {
        let log = self.log.to_string_lossy().into_owned();
        let journal = self.journal.to_string_lossy().into_owned();
        Server::start(
            kind,
            &["-H", "ledger", "--log", &log, "--journal", &journal],
        )
    }

    fn log(&self) -> String {
        read(&self.log)
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `lines` transactions over a few shared accounts, credits and debits;
/// their effect in cents is added to `model`.
fn transactions(seed: u64, lines: usize, model: &mut BTreeMap<String, i64>) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for _ in 0..lines {
        let name = format!("acct{}", rng.below(20));
        let cents = rng.below(1_000_000) as i64;
        let credit = rng.below(3) != 0;
        *model.entry(name.clone()).or_insert(0) += if credit { cents } else { -cents };
        let ty = if credit { "credit" } else { "debit" };
        out.extend_from_slice(
            format!("{name} {ty} ${}.{:02}\n", cents / 100, cents % 100).as_bytes(),
        );
    }
    out
}

/// Sends `bytes` as one client, closes the sending side and waits for the
/// server's close (then, with a journal, all of it is durable).
fn send_all(s: &Server, bytes: &[u8]) {
    let mut c = s.connect();
    c.send(bytes);
    c.shutdown_write();
    c.expect_eof();
}

fn assert_log(got: &str, want: &str, what: &str) {
    assert!(
        got == want,
        "{what}: the log differs\n got: {:?}\nwant: {:?}",
        got.lines().collect::<Vec<_>>(),
        want.lines().collect::<Vec<_>>()
    );
}

fn restarts_replay_every_transaction_once(kind: Kind) {
    let files = Files::new(kind);
    let mut model = BTreeMap::new();
    let mut s = files.start(kind);
    for seed in 0..4 {
        send_all(&s, &transactions(800 + seed, 500, &mut model));
    }
    s.stop(SIGINT);
    let first = files.log();
    assert_log(&first, &render_cents(&model), "first run");
    // Restarts with no clients: the same log each time.
    for run in 2..=3 {
        let mut s = files.start(kind);
        s.stop(SIGINT);
        assert_log(&files.log(), &first, &format!("restart {run}, no clients"));
    }
    // More transactions on top of the replayed ones ...
    let mut s = files.start(kind);
    send_all(&s, &transactions(900, 500, &mut model));
    s.stop(SIGINT);
    let second = files.log();
    assert_log(&second, &render_cents(&model), "a run adding transactions");
    // ... and once more with no clients: nothing was applied twice.
    let mut s = files.start(kind);
    s.stop(SIGINT);
    assert_log(&files.log(), &second, "the last restart");
}

/// Client `k`'s line `j` (from 1): an account of its own, credited $1, so
/// the log shows exactly which lines were applied, and how often.
fn tagged_line(k: usize, j: usize) -> String {
    format!("c{k:02}l{j:06} credit 1\n")
}

struct Blaster {
    lines: usize,
    /// Bytes written so far.
    written: Arc<AtomicUsize>,
    /// The server closed after our EOF before the SIGKILL.
    acked: Arc<AtomicBool>,
    /// Finished one way or the other.
    done: Arc<AtomicBool>,
}

fn blast(s: &Server, k: usize, lines: usize, killed: &Arc<AtomicBool>) -> Blaster {
    let b = Blaster {
        lines,
        written: Arc::default(),
        acked: Arc::default(),
        done: Arc::default(),
    };
    let (written, acked, done, killed) = (
        b.written.clone(),
        b.acked.clone(),
        b.done.clone(),
        killed.clone(),
    );
    let addr = s.addr;
    thread::spawn(move || {
        let mut data = Vec::with_capacity(lines * 20);
        for j in 1..=lines {
            data.extend_from_slice(tagged_line(k, j).as_bytes());
        }
        let run = || -> std::io::Result<bool> {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            for chunk in data.chunks(16 * 1024) {
                stream.write_all(chunk)?;
                written.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            stream.shutdown(Shutdown::Write)?;
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest)?;
            // The close counts only if it came before the SIGKILL (whose
            // own closes come after the flag is set).
            Ok(rest.is_empty() && !killed.load(Ordering::SeqCst))
        };
        if let Ok(true) = run() {
            acked.store(true, Ordering::SeqCst);
        }
        done.store(true, Ordering::SeqCst);
    });
    b
}

/// Waits (bounded) until `cond` holds, polling the blasters' flags.
fn wait_until(s: &Server, what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            s.transcript()
        );
        thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn sigkill_mid_blast_loses_nothing_acknowledged(kind: Kind) {
    // Small clients that finish, then large ones cut by the SIGKILL.
    const SIZES: [usize; 8] = [500, 500, 2_000, 2_000, 2_000, 100_000, 100_000, 100_000];
    let files = Files::new(kind);
    let mut s = files.start(kind);
    let killed = Arc::new(AtomicBool::new(false));
    let blasters: Vec<Blaster> = SIZES
        .iter()
        .enumerate()
        .map(|(k, &lines)| blast(&s, k, lines, &killed))
        .collect();
    let small = |b: &Blaster| b.lines <= 2_000;
    wait_until(&s, "the small clients to finish", || {
        blasters
            .iter()
            .filter(|b| small(b))
            .all(|b| b.done.load(Ordering::SeqCst))
    });
    // Kill once the journal has grown past what the small clients sent: the
    // server is then applying the large ones' lines (only a trigger; what
    // is checked below holds whenever the SIGKILL comes).
    let journal_len = || fs::metadata(&files.journal).map_or(0, |m| m.len());
    let after_small = journal_len();
    wait_until(
        &s,
        "the journal to grow with the large clients' lines",
        || journal_len() >= after_small + 200 * 1024,
    );
    killed.store(true, Ordering::SeqCst);
    s.signal(libc::SIGKILL);
    let status = s.wait_exit();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    wait_until(&s, "every client to notice", || {
        blasters.iter().all(|b| b.done.load(Ordering::SeqCst))
    });
    let acked: Vec<bool> = blasters
        .iter()
        .map(|b| b.acked.load(Ordering::SeqCst))
        .collect();
    assert!(
        acked.iter().take(5).all(|&a| a),
        "every small client finished before the SIGKILL: {acked:?}\n{}",
        s.transcript()
    );
    // Restart on the journal; the log shows what survived.
    let mut s2 = files.start(kind);
    s2.stop(SIGINT);
    let log = files.log();
    let mut applied: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); SIZES.len()];
    for line in log.lines() {
        let parsed = line
            .strip_prefix('c')
            .and_then(|l| l.split_once('l'))
            .and_then(|(k, rest)| {
                let (j, balance) = rest.split_once(' ')?;
                Some((k.parse::<usize>().ok()?, j.parse::<usize>().ok()?, balance))
            });
        let Some((k, j, balance)) = parsed else {
            panic!("unexpected log line {line:?}");
        };
        assert_eq!(
            balance, "$1.00",
            "line {j} of client {k} applied more than once: {line:?}"
        );
        assert!(k < SIZES.len() && (1..=SIZES[k]).contains(&j), "{line:?}");
        applied[k].insert(j);
    }
    let mut report = Vec::new();
    for (k, set) in applied.iter().enumerate() {
        let n = set.len();
        // A prefix: lines 1..=n, none missing in between.
        assert!(
            set.iter().next_back().is_none_or(|&last| last == n),
            "client {k}: {n} lines applied, but not its first {n} (last is {:?})",
            set.iter().next_back()
        );
        if acked[k] {
            assert_eq!(
                n, SIZES[k],
                "client {k} saw the server close after its EOF, yet only {n} of its {} \
                 lines survived the SIGKILL",
                SIZES[k]
            );
        }
        report.push(format!(
            "{k}:{n}/{}{}",
            SIZES[k],
            if acked[k] { " acked" } else { "" }
        ));
    }
    eprintln!(
        "{}: applied after restart: {}",
        kind.name(),
        report.join(", ")
    );
}

fn torn_last_record_is_cut_off(kind: Kind) {
    let files = Files::new(kind);
    let mut model = BTreeMap::new();
    let mut s = files.start(kind);
    send_all(&s, &transactions(1200, 300, &mut model));
    s.stop(SIGINT);
    let first = files.log();
    assert_log(&first, &render_cents(&model), "first run");
    // A crash mid-append leaves a record without its newline.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&files.journal)
        .expect("the journal exists after a run");
    f.write_all(b"acct1 credit 99\xff").unwrap();
    drop(f);
    let mut s = files.start(kind);
    let diag = s.wait_stderr("a diagnostic about the torn record", |l| {
        let l = l.to_ascii_lowercase();
        l.contains("torn") || l.contains("cut")
    });
    assert!(!diag.is_empty());
    // The server runs and appends cleanly after the cut.
    send_all(&s, b"zzlate credit 2\n");
    s.stop(SIGINT);
    model.insert("zzlate".to_string(), 200);
    let want = render_cents(&model);
    assert_log(&files.log(), &want, "the run after the torn record");
    let mut s = files.start(kind);
    s.stop(SIGINT);
    assert_log(&files.log(), &want, "one more restart");
}

/// A journal that cannot be written stops the server (exit 1, no log) and
/// resets its clients: no FIN may look like "all you sent is safe". The
/// same on both servers (issue 10: the threaded server used to reset only
/// the clients concerned and serve on without a journal).
fn a_failing_journal_stops_the_server_and_resets_clients(kind: Kind) {
    const FILE_LIMIT_BYTES: libc::rlim_t = 4096;
    let dir = TempDir::new(&format!("jfail-{}", kind.name()));
    let journal = dir.join("journal").to_string_lossy().into_owned();
    let log = dir.join("log.txt");
    let log_arg = log.to_string_lossy().into_owned();
    let args = ["-H", "ledger", "--log", &log_arg, "--journal", &journal];
    let mut s = Server::start_with(kind, &args, dir, |cmd| {
        // SAFETY: only async-signal-safe calls (signal, setrlimit) between
        // fork and exec. With SIGXFSZ ignored, a write past the limit fails
        // with EFBIG instead of killing the process.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: FILE_LIMIT_BYTES,
                    rlim_max: FILE_LIMIT_BYTES,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let mut c = s.connect();
    // Ten times what the journal may hold; the server may reset us before
    // all of it is sent.
    let bytes = transactions(7, 2000, &mut BTreeMap::new());
    let _ = c.stream.write_all(&bytes);
    let _ = c.stream.shutdown(Shutdown::Write);
    let mut buf = [0u8; 64];
    match c.reader.read(&mut buf) {
        Err(e) if !is_timeout(&e) => {}
        other => panic!("expected a reset, got {other:?}\n{}", s.transcript()),
    }
    let status = s.wait_exit();
    assert_eq!(status.code(), Some(1), "{status:?}\n{}", s.transcript());
    assert!(
        s.stderr_lines().iter().any(|l| l.contains("store")),
        "a diagnostic names the failure\n{}",
        s.transcript()
    );
    assert!(!log.exists(), "no log after a failed journal");
}

/// SPEC Shutdown: "Signals are caught from the first moment: a signal
/// during start-up (file checks, journal replay) stops the server cleanly,
/// without the signal's default death, and leaves every file as it was."
/// A long journal keeps the server replaying; SIGINT goes as soon as the
/// process catches it (its `SigCgt` mask in `/proc` says so).
fn a_signal_during_the_replay_stops_the_server_cleanly(kind: Kind) {
    let dir = TempDir::new(&format!("jstart-{}", kind.name()));
    let journal = dir.join("journal");
    let mut text = b"# nonblocking journal v1\n".to_vec();
    for i in 0..400_000u32 {
        writeln!(text, "acct{} credit $1.{:02}", i % 1000, i % 100).unwrap();
    }
    fs::write(&journal, &text).unwrap();
    let mut cmd = kind.command(&dir.path);
    cmd.args([
        "-H",
        "ledger",
        "--journal",
        "journal",
        "--log",
        "log.txt",
        "0",
    ])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    wait_until_catching(child.id(), SIGINT);
    send_signal(&child, SIGINT);
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(TIMEOUT) else {
        // Our own child, by its pid (the waiting thread owns the handle).
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("the server did not stop within {TIMEOUT:?}");
    };
    let out = out.expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !stdout.contains("Listening on"),
        "stopped before listening: {stdout}"
    );
    assert!(stderr.contains("during start-up"), "{stderr}");
    assert_eq!(
        fs::read(&journal).unwrap(),
        text,
        "the journal is as it was"
    );
    assert!(!dir.join("log.txt").exists(), "no log written");
}

/// Waits until process `pid` has a handler for `signal` (bit `signal - 1`
/// of the `SigCgt` mask in `/proc/PID/status`).
fn wait_until_catching(pid: u32, signal: i32) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal - 1)) != 0);
        if caught {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} never caught signal {signal}"
        );
        thread::yield_now();
    }
}
