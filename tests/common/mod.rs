//! Black-box helpers shared by the integration tests (mio's `tests/util`
//! pattern): start a server binary on port 0, read its status lines live
//! through a channel, wait for a line with a timeout, speak raw bytes over
//! TCP, send signals, wait for the exit.
//!
//! Every test is written once and run against both servers through
//! [`every_server!`]: `every_server!(name)` expands to `mod name { reactor, threaded,
//! reactor2 }`, each calling `fn name(kind: Kind)`; `reactor2` is the event
//! loop server with `--reactors 2` (every SPEC guarantee holds for any N).
//!
//! Nothing here sleeps to wait for an event: status lines, replies and EOF are
//! awaited with a timeout, so a hang fails one test with everything seen so
//! far instead of hanging the run.

#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait (a status line, a reply, an exit) may take
/// before the test fails. Generous: the machine is small and shared.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// One test body, every server: the event loop, the threaded server, and
/// the event loop with `--reactors 2`.
#[allow(unused_macros)]
macro_rules! every_server {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn reactor() {
                super::$name($crate::common::Kind::Reactor)
            }
            #[test]
            fn threaded() {
                super::$name($crate::common::Kind::Threaded)
            }
            #[test]
            fn reactor2() {
                super::$name($crate::common::Kind::Reactor2)
            }
        }
    )*};
}

/// Which server binary a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `nonblocking-server`: the mio event loop.
    Reactor,
    /// `threaded-server`: one OS thread per connection.
    Threaded,
    /// `nonblocking-server --reactors 2`: two event loops.
    Reactor2,
}

impl Kind {
    pub fn bin(self) -> &'static str {
        match self {
            Kind::Reactor | Kind::Reactor2 => env!("CARGO_BIN_EXE_nonblocking-server"),
            Kind::Threaded => env!("CARGO_BIN_EXE_threaded-server"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Reactor => "reactor",
            Kind::Threaded => "threaded",
            Kind::Reactor2 => "reactor2",
        }
    }

    /// The options that make this kind, given before any other.
    pub fn extra_args(self) -> &'static [&'static str] {
        match self {
            Kind::Reactor2 => &["--reactors", "2"],
            Kind::Reactor | Kind::Threaded => &[],
        }
    }

    /// A `Command` for this server with a working directory of `dir`.
    pub fn command(self, dir: &Path) -> Command {
        let mut cmd = Command::new(self.bin());
        cmd.current_dir(dir).args(self.extra_args());
        cmd
    }
}

/// A per-test scratch directory, removed on drop unless the test failed
/// (then it stays for a post-mortem, and its path is in the panic message).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("nb-itest-{tag}-{}-{n}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).expect("create the test's temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pipe {
    Stdout,
    Stderr,
}

/// A running server binary.
///
/// Status lines are read from stdout (stderr for the sink, whose stdout is
/// redirected to `stdout.bin` in the temp dir). Diagnostics are read from
/// stderr. Each has a cursor: a wait searches forward from the line after the
/// previous match, and every line ever seen stays available for the final
/// checks and for panic messages.
pub struct Server {
    pub kind: Kind,
    child: Child,
    pub addr: SocketAddr,
    pub handler: String,
    pub dir: TempDir,
    events: Receiver<(Pipe, Option<String>)>,
    out: Vec<String>,
    err: Vec<String>,
    out_eof: bool,
    err_eof: bool,
    status_cursor: usize,
    diag_cursor: usize,
    status_on_stderr: bool,
    exit: Option<ExitStatus>,
}

/// True when `args` selects the sink handler (status lines go to stderr).
fn is_sink(args: &[&str]) -> bool {
    args.windows(2)
        .any(|w| (w[0] == "-H" || w[0] == "--handler") && w[1] == "sink")
        || args.contains(&"--handler=sink")
}

fn spawn_reader<R: Read + Send + 'static>(
    pipe: Pipe,
    from: R,
    to: mpsc::Sender<(Pipe, Option<String>)>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if to.send((pipe, Some(line))).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = to.send((pipe, None));
    });
}

impl Server {
    /// Starts `kind` with `args` (the port `0` is appended) in a fresh temp
    /// dir, and waits for its `Listening on ADDR (handler NAME)` line.
    pub fn start(kind: Kind, args: &[&str]) -> Server {
        Server::start_in(kind, args, TempDir::new(kind.name()))
    }

    /// Like [`Server::start`], in a given temp dir (also the working dir, so
    /// a default `log.txt` lands there and not in the repository).
    pub fn start_in(kind: Kind, args: &[&str], dir: TempDir) -> Server {
        Server::start_with(kind, args, dir, |_| {})
    }

    /// Like [`Server::start_in`], with `tweak` applied to the command before
    /// the spawn (e.g. a `pre_exec` that lowers a resource limit).
    pub fn start_with(
        kind: Kind,
        args: &[&str],
        dir: TempDir,
        tweak: impl FnOnce(&mut Command),
    ) -> Server {
        Server::start_to(kind, args, dir, tweak, None)
    }

    /// Starts the sink with its stdout a pipe, whose read end is returned
    /// (the test decides when, or whether, it is read).
    #[allow(dead_code)]
    pub fn start_sink_to_pipe(kind: Kind, args: &[&str]) -> (Server, io::PipeReader) {
        assert!(is_sink(args), "only the sink's stdout is bytes");
        let (reader, writer) = io::pipe().expect("a pipe for stdout");
        let dir = TempDir::new(kind.name());
        let server = Server::start_to(kind, args, dir, |_| {}, Some(Stdio::from(writer)));
        (server, reader)
    }

    /// [`Server::start_with`]; `sink_stdout`: where the sink's stdout goes
    /// instead of `stdout.bin`.
    fn start_to(
        kind: Kind,
        args: &[&str],
        dir: TempDir,
        tweak: impl FnOnce(&mut Command),
        sink_stdout: Option<Stdio>,
    ) -> Server {
        let status_on_stderr = is_sink(args);
        let mut cmd = kind.command(&dir.path);
        tweak(&mut cmd);
        cmd.args(args).arg("0").stdin(Stdio::null());
        cmd.stderr(Stdio::piped());
        if let Some(stdout) = sink_stdout {
            cmd.stdout(stdout);
        } else if status_on_stderr {
            let file = fs::File::create(dir.join("stdout.bin")).expect("create stdout.bin");
            cmd.stdout(Stdio::from(file));
        } else {
            cmd.stdout(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.bin()));
        let (tx, events) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            spawn_reader(Pipe::Stdout, out, tx.clone());
        }
        let err = child.stderr.take().expect("stderr is piped");
        spawn_reader(Pipe::Stderr, err, tx);
        let mut server = Server {
            kind,
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            handler: String::new(),
            dir,
            events,
            out: Vec::new(),
            err: Vec::new(),
            out_eof: status_on_stderr,
            err_eof: false,
            status_cursor: 0,
            diag_cursor: 0,
            status_on_stderr,
            exit: None,
        };
        let first = server.wait_status("the Listening line", |l| l.starts_with("Listening on "));
        let (addr, handler) = parse_listening(&first)
            .unwrap_or_else(|| panic!("malformed first status line: {first:?}"));
        server.addr = addr;
        server.handler = handler;
        assert_eq!(
            server.status_lines()[0],
            first,
            "the Listening line must be the first status line"
        );
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every status line seen so far.
    pub fn status_lines(&self) -> &[String] {
        if self.status_on_stderr {
            &self.err
        } else {
            &self.out
        }
    }

    /// Every stderr line seen so far.
    pub fn stderr_lines(&self) -> &[String] {
        &self.err
    }

    /// Asserts that no stderr line seen so far contains `text`.
    #[allow(dead_code)]
    pub fn assert_no_stderr(&self, text: &str) {
        assert!(
            !self.err.iter().any(|l| l.contains(text)),
            "a diagnostic says {text:?}\n{}",
            self.transcript()
        );
    }

    /// Where the sink's stdout goes.
    pub fn stdout_path(&self) -> PathBuf {
        self.dir.join("stdout.bin")
    }

    fn record(&mut self, event: (Pipe, Option<String>)) {
        match event {
            (Pipe::Stdout, Some(line)) => self.out.push(line),
            (Pipe::Stderr, Some(line)) => self.err.push(line),
            (Pipe::Stdout, None) => self.out_eof = true,
            (Pipe::Stderr, None) => self.err_eof = true,
        }
    }

    /// Takes in every line already read, without blocking.
    pub fn pump(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.record(event);
        }
    }

    /// Waits for one more event until `deadline`; false on timeout or when
    /// both pipes are closed.
    fn pump_until(&mut self, deadline: Instant) -> bool {
        if self.out_eof && self.err_eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(event) => {
                self.record(event);
                true
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Everything seen so far, for panic messages.
    pub fn transcript(&self) -> String {
        format!(
            "{} server (pid {}), dir {}\n--- status/stdout ---\n{}\n--- stderr ---\n{}\n",
            self.kind.name(),
            self.child.id(),
            self.dir.path.display(),
            if self.status_on_stderr {
                "(stdout is stdout.bin)".to_string()
            } else {
                self.out.join("\n")
            },
            self.err.join("\n")
        )
    }

    fn wait_in(
        &mut self,
        on_stderr: bool,
        what: &str,
        timeout: Duration,
        pred: &mut dyn FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (lines, cursor) = if on_stderr {
                (
                    &self.err,
                    if self.status_on_stderr {
                        self.status_cursor
                    } else {
                        self.diag_cursor
                    },
                )
            } else {
                (&self.out, self.status_cursor)
            };
            if let Some(i) = (cursor..lines.len()).find(|&i| pred(&lines[i])) {
                let line = lines[i].clone();
                if on_stderr && !self.status_on_stderr {
                    self.diag_cursor = i + 1;
                } else {
                    self.status_cursor = i + 1;
                }
                return line;
            }
            if !self.pump_until(deadline) {
                if Instant::now() >= deadline {
                    panic!("timed out waiting for {what}\n{}", self.transcript());
                }
                if self.out_eof && self.err_eof {
                    panic!(
                        "the server closed its output before {what}\n{}",
                        self.transcript()
                    );
                }
            }
        }
    }

    /// Waits for the next status line (after the last one matched) that
    /// satisfies `pred`, and returns it.
    pub fn wait_status(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        self.wait_in(self.status_on_stderr, what, TIMEOUT, &mut pred)
    }

    /// Waits for the status line `line` exactly.
    pub fn wait_status_eq(&mut self, line: &str) -> String {
        self.wait_status(&format!("status line {line:?}"), |l| l == line)
    }

    /// Waits for `Client ID connected. ...` and returns the count it shows.
    pub fn wait_connected(&mut self, id: u64) -> usize {
        let prefix = format!("Client {id} connected. Number of connected clients = ");
        let line = self.wait_status(&format!("Client {id} connected"), |l| {
            l.starts_with(&prefix)
        });
        line[prefix.len()..]
            .parse()
            .unwrap_or_else(|_| panic!("malformed status line {line:?}"))
    }

    /// Waits for `Client ID disconnected. ...` and returns the count it shows.
    pub fn wait_disconnected(&mut self, id: u64) -> usize {
        let prefix = format!("Client {id} disconnected. Number of connected clients = ");
        let line = self.wait_status(&format!("Client {id} disconnected"), |l| {
            l.starts_with(&prefix)
        });
        line[prefix.len()..]
            .parse()
            .unwrap_or_else(|_| panic!("malformed status line {line:?}"))
    }

    /// Waits for the next stderr line (diagnostic) satisfying `pred`.
    pub fn wait_stderr(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        self.wait_in(true, what, TIMEOUT, &mut pred)
    }

    /// A status line satisfying `pred` among those already read (from the
    /// cursor on), without blocking; advances the cursor past it if found.
    pub fn try_status(&mut self, mut pred: impl FnMut(&str) -> bool) -> Option<String> {
        self.pump();
        let (lines, cursor) = if self.status_on_stderr {
            (&self.err, self.status_cursor)
        } else {
            (&self.out, self.status_cursor)
        };
        let i = (cursor..lines.len()).find(|&i| pred(&lines[i]))?;
        let line = lines[i].clone();
        self.status_cursor = i + 1;
        Some(line)
    }

    /// Moves the status cursor past every line read so far: later waits see
    /// only lines printed from now on (or already in the pipe).
    pub fn skip_seen_status(&mut self) {
        self.pump();
        self.status_cursor = self.status_lines().len();
    }

    /// Whether any status line seen so far (cursor ignored) satisfies `pred`.
    pub fn seen_status(&mut self, pred: impl FnMut(&String) -> bool) -> bool {
        self.pump();
        self.status_lines().iter().any(pred)
    }

    /// Connects with read/write timeouts set.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// Connects and waits for the `Client ID connected` line.
    pub fn connect_as(&mut self, id: u64) -> Conn {
        let conn = self.connect();
        self.wait_connected(id);
        conn
    }

    pub fn signal(&self, sig: i32) {
        send_signal(&self.child, sig);
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(status);
                false
            }
            _ => true,
        }
    }

    /// Waits for the process to exit (kills it and panics after `timeout`),
    /// then reads the rest of its output.
    pub fn wait_exit_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.exit {
                break status;
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(status);
                    break status;
                }
                Ok(None) if Instant::now() < deadline => {
                    // Take in output meanwhile; returns at the latest after 20 ms.
                    self.pump_until(Instant::now() + Duration::from_millis(20));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.pump();
                    panic!(
                        "the server did not exit within {timeout:?} (killed)\n{}",
                        self.transcript()
                    );
                }
                Err(e) => panic!("try_wait: {e}"),
            }
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(self.out_eof && self.err_eof) && self.pump_until(deadline) {}
        status
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        self.wait_exit_within(TIMEOUT)
    }

    /// Sends `sig`, waits for the exit and asserts status 0.
    pub fn stop(&mut self, sig: i32) {
        self.signal(sig);
        let status = self.wait_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "exit status after signal {sig}: {status:?}\n{}",
            self.transcript()
        );
    }

    /// Asserts the process exited with 0 (after [`Server::wait_exit`]).
    pub fn assert_exit_0(&mut self) {
        let status = self.wait_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "exit status: {status:?}\n{}",
            self.transcript()
        );
    }

    /// The last status line (after the exit).
    pub fn last_status(&self) -> String {
        self.status_lines()
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("no status lines\n{}", self.transcript()))
    }

    /// Peak resident memory in KiB, from /proc (Linux), while running.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM:")
    }

    /// Current resident memory in KiB, from /proc (Linux), while running.
    pub fn rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS:")
    }

    fn proc_status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(self.child.id(), field)
    }

    /// CPU time (user + system) the process has used so far, from
    /// /proc/PID/stat (Linux).
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(self.child.id())
    }

    /// The server's threads (by tid) that were runnable at every one of
    /// `looks` looks at their state in /proc/PID/task (Linux): a thread
    /// that waits for an event sleeps ('S') nearly always; one that spins
    /// never does. Looks are a millisecond apart, to spread them out.
    pub fn threads_never_asleep(&self, looks: usize) -> Vec<u32> {
        let task_dir = format!("/proc/{}/task", self.child.id());
        let mut never_asleep: Option<Vec<u32>> = None;
        for _ in 0..looks {
            let mut running = Vec::new();
            for entry in fs::read_dir(&task_dir).expect("/proc/PID/task").flatten() {
                let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                    continue; // the thread ended meanwhile
                };
                // The state follows the `(comm)`, which may hold spaces.
                let state = stat
                    .rfind(')')
                    .and_then(|i| stat[i + 1..].trim_start().chars().next());
                if state == Some('R') {
                    running.extend(
                        entry
                            .file_name()
                            .to_str()
                            .and_then(|t| t.parse::<u32>().ok()),
                    );
                }
            }
            never_asleep = Some(match never_asleep {
                None => running,
                Some(before) => before.into_iter().filter(|t| running.contains(t)).collect(),
            });
            thread::sleep(Duration::from_millis(1));
        }
        never_asleep.unwrap_or_default()
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`), Linux.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) process `pid` has used so far, from
/// /proc/PID/stat (Linux).
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces: state is
    // field 3, utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(Duration::from_millis(ticks * 1000 / hz))
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses `Listening on ADDR (handler NAME)`.
pub fn parse_listening(line: &str) -> Option<(SocketAddr, String)> {
    let rest = line.strip_prefix("Listening on ")?;
    let (addr, rest) = rest.split_once(" (handler ")?;
    let handler = rest.strip_suffix(')')?;
    Some((addr.parse().ok()?, handler.to_string()))
}

pub fn send_signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({}, {sig}): {}",
        child.id(),
        io::Error::last_os_error()
    );
}

pub const SIGINT: i32 = libc::SIGINT;
pub const SIGTERM: i32 = libc::SIGTERM;

/// A client connection: a buffered reader and a writer over one socket, each
/// blocking call bounded by [`TIMEOUT`].
pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Conn::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        let _ = stream.set_nodelay(true);
        Conn {
            reader: BufReader::new(stream.try_clone().expect("clone the socket")),
            stream,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send {:?}: {e}", show(bytes)));
    }

    /// Closes the sending side (EOF for the server); replies still arrive.
    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write)");
    }

    /// Reads one line, `\n` included. Panics on EOF, error or timeout.
    pub fn line(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(_) if buf.ends_with(b"\n") => buf,
            Ok(_) => panic!("EOF before a full line; got {:?}", show(&buf)),
            Err(e) => panic!("reading a line: {e}; got {:?}", show(&buf)),
        }
    }

    pub fn line_string(&mut self) -> String {
        String::from_utf8(self.line()).expect("a UTF-8 line")
    }

    /// Reads one line and asserts it equals `expected` (terminator included).
    pub fn expect_line(&mut self, expected: &[u8]) {
        let got = self.line();
        assert_eq!(
            show(&got),
            show(expected),
            "unexpected line from the server"
        );
    }

    /// Reads exactly `n` bytes.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        let mut got = 0;
        while got < n {
            match self.reader.read(&mut buf[got..]) {
                Ok(0) => panic!(
                    "EOF after {got} of {n} bytes; got {:?}",
                    show(&buf[..got.min(200)])
                ),
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read after {got} of {n} bytes: {e}"),
            }
        }
        buf
    }

    /// Reads exactly `expected.len()` bytes and compares them.
    pub fn expect_bytes(&mut self, expected: &[u8]) {
        let got = self.read_n(expected.len());
        assert_eq!(show(&got), show(expected), "unexpected reply bytes");
    }

    /// Asserts the server closed the connection cleanly (FIN) with nothing
    /// more to read.
    pub fn expect_eof(&mut self) {
        let mut buf = [0u8; 4096];
        match self.reader.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("expected EOF, got {:?}", show(&buf[..n])),
            Err(e) => panic!("expected a clean EOF, got an error: {e}"),
        }
    }

    /// Asserts the connection is closed by the server: EOF or a reset, but no
    /// data and no timeout.
    pub fn expect_closed(&mut self) {
        let mut buf = [0u8; 4096];
        match self.reader.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("expected the connection closed, got {:?}", show(&buf[..n])),
            Err(e) if is_timeout(&e) => panic!("expected the connection closed, timed out: {e}"),
            Err(_) => {}
        }
    }

    /// Reads until EOF; a reset or timeout is a failure.
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        match self.reader.read_to_end(&mut buf) {
            Ok(_) => buf,
            Err(e) => panic!(
                "reading to EOF: {e}; got {} bytes, ending {:?}",
                buf.len(),
                show(&buf[buf.len().saturating_sub(200)..])
            ),
        }
    }
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Bytes shown as a string, non-UTF-8 escaped, for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    if bytes.len() > 400 {
        format!(
            "{}... ({} bytes) ...{}",
            bytes[..200].escape_ascii(),
            bytes.len(),
            bytes[bytes.len() - 200..].escape_ascii()
        )
    } else {
        bytes.escape_ascii().to_string()
    }
}

/// The project's one seeded generator (SplitMix64), so failures reproduce.
#[allow(unused_imports)]
pub use nonblocking::loadgen::Rng;

/// Whether IPv6 loopback works on this machine.
pub fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Fails the test, saying why, when IPv6 loopback (`::1`) does not work
/// here: an IPv6 test never passes without running. Every such test has
/// `ipv6` in its name, so a machine without IPv6 can leave them out
/// visibly: `cargo test -- --skip ipv6` counts them as filtered out.
pub fn require_ipv6() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        panic!(
            "this test needs IPv6 loopback (::1), which this machine lacks (bind [::1]:0: {e}); \
             enable it, or leave the IPv6 tests out visibly with `cargo test -- --skip ipv6`"
        );
    }
}

/// Runs a server binary with `args` to completion (no port appended),
/// returning (status, stdout, stderr); killed after [`TIMEOUT`].
pub fn run_to_end(kind: Kind, args: &[&str]) -> (ExitStatus, String, String) {
    let dir = TempDir::new("cli");
    let mut cmd = kind.command(&dir.path);
    cmd.args(args);
    wait_to_end(cmd, &format!("{} {args:?}", kind.bin()))
}

/// Runs `cmd` with `input` on stdin and returns its output; the test fails
/// (and the program is killed) if it has not exited within [`TIMEOUT`].
#[allow(dead_code)]
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    wait_output(child, &format!("{cmd:?}"))
}

/// `child.wait_with_output()` bounded by [`TIMEOUT`]: a child still
/// running then is killed and the test fails naming `what`.
pub fn wait_output(child: Child, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // Our own child, by its pid (the waiting thread owns the handle).
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{what} did not finish within {TIMEOUT:?}");
        }
    }
}

/// Runs `cmd` (stdin empty) until it exits, returning (status, stdout,
/// stderr); killed, and the test failed naming `what`, after [`TIMEOUT`].
pub fn wait_to_end(mut cmd: Command, what: &str) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = wait_child(&mut child, what);
    let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
    (status, out, err)
}

/// Waits for `child` to exit; after [`TIMEOUT`] it is killed and the test
/// fails with `what` (a hang guard, not a timing check: a child that
/// should exit at once has the whole [`TIMEOUT`]).
pub fn wait_child(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: did not exit within {TIMEOUT:?} (killed)");
        }
        // std has no wait with a timeout; a child's exit is polled.
        thread::sleep(Duration::from_millis(10));
    }
}

/// The bytes of a test input under `tests/data/` (inside the repository,
/// so a fresh clone has it; `tests/data/*/SOURCE.txt` says where each file
/// comes from). A missing file fails the test: it never skips.
pub fn test_data(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel);
    fs::read(&path).unwrap_or_else(|e| panic!("test input {}: {e}", path.display()))
}

/// Makes `cmd`'s process start with RLIMIT_NOFILE `limit`, soft and hard
/// (the servers raise their soft limit to the hard one).
#[allow(dead_code)]
pub fn limit_nofile(cmd: &mut Command, limit: libc::rlim_t) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (servers
/// spawned afterwards inherit it) and returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim),
                0,
                "setrlimit: {}",
                io::Error::last_os_error()
            );
        }
    }
    lim.rlim_cur
}

/// SPEC's ledger log from balances in cents: `NAME $BALANCE`, sorted by
/// name in byte order, two decimals, negative as `$-1.23`.
pub fn render_cents(balances: &std::collections::BTreeMap<String, i64>) -> String {
    let mut out = String::new();
    for (name, &cents) in balances {
        let sign = if cents < 0 { "-" } else { "" };
        let abs = cents.unsigned_abs();
        out.push_str(&format!("{name} ${sign}{}.{:02}\n", abs / 100, abs % 100));
    }
    out
}
