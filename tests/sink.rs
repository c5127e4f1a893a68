//! sink (SPEC "sink", seed 003): every byte a client sends goes to stdout
//! exactly, one client's whole stream at a time, in the order they
//! connected; status lines go to stderr.

#[macro_use]
mod common;

use std::fs;
use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

every_server!(
    three_concurrent_20mb_blobs,
    robots_file_byte_identical,
    status_on_stderr_stdout_only_bytes,
    drain_lets_a_sending_client_finish,
    one_gigabyte_through_nonblocking_client_send_in_bounded_memory,
    full_stdout_blocks_no_one_and_every_byte_arrives_once_read,
    stdout_full_past_the_drain_timeout_exits_1_counting_unwritten_bytes,
    a_second_signal_ends_the_wait_for_a_full_stdout,
    trace_shows_the_pause_for_stdout_and_the_resume,
    stdout_closed_by_its_reader_is_said_once_and_serving_goes_on,
);

fn start_sink(kind: Kind, extra: &[&str]) -> Server {
    let mut args = vec!["-H", "sink"];
    args.extend_from_slice(extra);
    let s = Server::start(kind, &args);
    assert_eq!(s.handler, "sink");
    s
}

/// A connection whose writes may wait a long time (for its turn).
fn patient(s: &Server) -> Conn {
    let c = s.connect();
    c.stream
        .set_write_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    c.reader
        .get_ref()
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    c
}

fn stdout_bytes(s: &Server) -> Vec<u8> {
    fs::read(s.stdout_path()).expect("read the sink's stdout")
}

fn three_concurrent_20mb_blobs(kind: Kind) {
    const SIZE: usize = 20 * 1024 * 1024;
    let blobs: Vec<Vec<u8>> = (0..3).map(|i| Rng::new(300 + i).bytes(SIZE)).collect();
    let mut s = start_sink(kind, &[]);
    let mut conns = Vec::new();
    for id in 1..=3 {
        conns.push(patient(&s));
        s.wait_connected(id);
    }
    let senders: Vec<_> = conns
        .into_iter()
        .zip(blobs.iter().cloned())
        .map(|(mut c, blob)| {
            thread::spawn(move || {
                for chunk in blob.chunks(256 * 1024) {
                    c.stream.write_all(chunk).expect("send a chunk");
                }
                c.shutdown_write();
                c.expect_eof();
            })
        })
        .collect();
    for t in senders {
        t.join().expect("a sink client failed");
    }
    s.stop(SIGINT);
    let out = stdout_bytes(&s);
    assert_eq!(out.len(), 3 * SIZE, "bytes on stdout");
    let parts: Vec<&[u8]> = out.chunks(SIZE).collect();
    for (i, part) in parts.iter().enumerate() {
        if *part != blobs[i].as_slice() {
            let whole = blobs.iter().position(|b| b.as_slice() == *part);
            panic!(
                "stdout part {i} is not client {}'s blob (it is {}): streams interleaved, \
                 were cut, or came out of connection order",
                i + 1,
                match whole {
                    Some(j) => format!("client {}'s whole blob: wrong order", j + 1),
                    None => "no client's whole blob".to_string(),
                }
            );
        }
    }
}

fn robots_file_byte_identical(kind: Kind) {
    let text = test_data("003/Robots_of_the_World!_Arise!.txt");
    // SOURCE.txt: 57,964 bytes, a UTF-8 BOM, CRLF endings; a checkout that
    // converted them would test something else.
    assert_eq!(text.len(), 57_964, "tests/data was altered (line endings?)");
    assert!(text.starts_with(b"\xef\xbb\xbf") && text.ends_with(b"\r\n"));
    let mut s = start_sink(kind, &[]);
    let mut c = s.connect_as(1);
    c.send(&text);
    c.shutdown_write();
    c.expect_eof();
    s.wait_disconnected(1);
    s.stop(SIGINT);
    assert!(stdout_bytes(&s) == text, "stdout differs from the file");
}

fn status_on_stderr_stdout_only_bytes(kind: Kind) {
    let mut s = start_sink(kind, &[]);
    // Line-like bytes, a lone \r, no final newline: nothing is framed.
    let msg: &[u8] = b"Client 9 connected\r\nnot a status line\rno newline at the end";
    let mut c = s.connect_as(1);
    c.send(msg);
    c.shutdown_write();
    c.expect_eof();
    s.wait_disconnected(1);
    let mut d = s.connect_as(2);
    d.send(b"\x00\xff binary");
    drop(d);
    s.wait_disconnected(2);
    s.stop(SIGINT);
    let mut want = msg.to_vec();
    want.extend_from_slice(b"\x00\xff binary");
    assert_eq!(show(&stdout_bytes(&s)), show(&want));
    let status = s.status_lines();
    assert!(
        status[0].starts_with("Listening on 127.0.0.1:"),
        "{status:?}"
    );
    assert!(status.contains(&"Client 2 disconnected. Number of connected clients = 0".to_string()));
}

fn drain_lets_a_sending_client_finish(kind: Kind) {
    const HALF: usize = 5 * 1024 * 1024;
    let data = Rng::new(42).bytes(2 * HALF);
    let mut s = start_sink(kind, &[]);
    let mut a = patient(&s);
    s.wait_connected(1);
    let mut b = patient(&s);
    s.wait_connected(2);
    a.send(&data[..HALF]);
    s.signal(SIGINT);
    s.wait_status_eq("Shutting down: waiting up to 30 s for 2 clients (signal again to stop now)");
    a.send(&data[HALF..]);
    a.shutdown_write();
    a.expect_eof();
    s.wait_disconnected(1);
    assert!(
        s.running(),
        "stopped while a sink client was still connected"
    );
    // The waiting client's turn comes, and it is served during the drain too.
    b.send(b"second client");
    b.shutdown_write();
    b.expect_eof();
    s.assert_exit_0();
    let out = stdout_bytes(&s);
    let mut want = data.clone();
    want.extend_from_slice(b"second client");
    assert_eq!(out.len(), want.len(), "bytes on stdout");
    assert!(out == want, "stdout differs from what the clients sent");
}

/// Issue 4: a 1 GiB stream from one client (`nonblocking-client send`, the
/// seed's client) comes out of stdout whole and in order, and the server's
/// peak RSS stays under 100 MB: neither side holds the stream in memory.
/// Each 1 MiB block starts with its number, so a lost, repeated or
/// reordered block is caught, not only a wrong length.
fn one_gigabyte_through_nonblocking_client_send_in_bounded_memory(kind: Kind) {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    const BLOCK: usize = 1 << 20;
    const BLOCKS: u64 = 1024;
    let mut pattern = vec![0u8; BLOCK];
    let mut rng = Rng::new(7);
    for b in pattern.iter_mut() {
        *b = rng.next_u64() as u8;
    }
    let block = |n: u64, buf: &mut Vec<u8>| {
        buf.clear();
        buf.extend_from_slice(&pattern);
        buf[..8].copy_from_slice(&n.to_le_bytes());
    };

    let mut s = start_sink(kind, &[]);
    let mut client = Command::new(env!("CARGO_BIN_EXE_nonblocking-client"))
        .args(["send", &s.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nonblocking-client send");
    let mut stdin = client.stdin.take().unwrap();
    let feeder = {
        let pattern = pattern.clone();
        thread::spawn(move || {
            let mut buf = Vec::with_capacity(BLOCK);
            for n in 0..BLOCKS {
                buf.clear();
                buf.extend_from_slice(&pattern);
                buf[..8].copy_from_slice(&n.to_le_bytes());
                stdin.write_all(&buf).expect("feed the client");
            }
        })
    };
    feeder.join().unwrap();
    let status = client.wait().expect("wait for client");
    assert!(status.success(), "nonblocking-client send exited {status}");
    s.wait_disconnected(1);
    let peak = s.peak_rss_kib().expect("server VmHWM");
    s.stop(SIGINT);

    assert!(
        peak < 100 * 1024,
        "server peak RSS {peak} KiB for a 1 GiB stream"
    );
    let mut file = fs::File::open(s.stdout_path()).unwrap();
    assert_eq!(file.metadata().unwrap().len(), BLOCK as u64 * BLOCKS);
    let (mut got, mut want) = (vec![0u8; BLOCK], Vec::with_capacity(BLOCK));
    for n in 0..BLOCKS {
        file.read_exact(&mut got).unwrap();
        block(n, &mut want);
        assert!(
            got == want,
            "block {n} of stdout differs from what was sent"
        );
    }
}

/// More than a pipe (64 KiB), the stdout queue (`--max-pending`, 4 MiB by
/// default) and the socket buffers hold together.
const STUCK_BYTES: usize = 12 * 1024 * 1024;
/// A pipe's default capacity on Linux: 16 pages. Writes of sizes that are
/// not whole pages can leave a page partly empty, so "full" is within a
/// page of it.
const PIPE_FULL_BYTES: u64 = 64 * 1024 - 4096;

/// Sends `blob` on `c` from a thread: its writes block while the server
/// does not read. `Ok` once all is sent (the write side is then shut).
fn send_in_background(mut c: Conn, blob: Vec<u8>) -> thread::JoinHandle<std::io::Result<Conn>> {
    thread::spawn(move || {
        for chunk in blob.chunks(256 * 1024) {
            c.stream.write_all(chunk)?;
        }
        c.shutdown_write();
        Ok(c)
    })
}

/// Waits until the unread pipe is full: the server's next write to stdout
/// would block (on a server that writes stdout from its loop, the loop is
/// then stuck).
fn wait_pipe_full(s: &Server, pipe: &std::io::PipeReader) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let queued = rustix::io::ioctl_fionread(pipe).expect("FIONREAD on the pipe");
        if queued >= PIPE_FULL_BYTES {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stdout's pipe holds {queued} bytes, never {PIPE_FULL_BYTES} (a smaller pipe?)\n{}",
            s.transcript()
        );
        // Polling a counter the kernel keeps; nothing to be woken by.
        thread::sleep(Duration::from_millis(5));
    }
}

/// Issue 19 item 3: a stdout pipe nobody reads (while one client sends
/// megabytes) does not stop the server: new clients get their status
/// lines (on `--reactors 2` one of them lands on the loop serving the
/// sender), SIGTERM gets its drain line. Then the pipe is read: every byte
/// arrives, in connection order, and the exit is 0.
fn full_stdout_blocks_no_one_and_every_byte_arrives_once_read(kind: Kind) {
    let blob = Rng::new(1903).bytes(STUCK_BYTES);
    let (mut s, mut pipe) = Server::start_sink_to_pipe(kind, &["-H", "sink"]);
    let sender = patient(&s);
    s.wait_connected(1);
    let sending = send_in_background(sender, blob.clone());
    wait_pipe_full(&s, &pipe);

    let mut second = patient(&s);
    s.wait_connected(2);
    let mut third = patient(&s);
    s.wait_connected(3);
    s.signal(SIGTERM);
    s.wait_status_eq("Shutting down: waiting up to 30 s for 3 clients (signal again to stop now)");
    assert!(s.running(), "exited while stdout was full");
    // Waiting clients' bytes wait in the kernel until their turn.
    second.send(b"second");
    second.shutdown_write();
    third.send(b"third");
    third.shutdown_write();

    let reading = thread::spawn(move || {
        let mut out = Vec::new();
        pipe.read_to_end(&mut out).map(|_| out)
    });
    let mut sender = sending
        .join()
        .unwrap()
        .expect("the sender's bytes were taken");
    sender.expect_eof();
    second.expect_eof();
    third.expect_eof();
    s.assert_exit_0();
    let out = reading.join().unwrap().expect("read stdout");
    let mut want = blob;
    want.extend_from_slice(b"secondthird");
    assert_eq!(out.len(), want.len(), "bytes on stdout");
    assert!(out == want, "stdout differs from what the clients sent");
}

/// Issue 19 item 3: stdout still full when `--drain-timeout` ends: exit 1
/// with one diagnostic counting the bytes not written. Those, and what the
/// pipe got, add up to at most what was sent, and the pipe holds exactly a
/// prefix of it.
fn stdout_full_past_the_drain_timeout_exits_1_counting_unwritten_bytes(kind: Kind) {
    let blob = Rng::new(1904).bytes(STUCK_BYTES);
    let (mut s, mut pipe) =
        Server::start_sink_to_pipe(kind, &["-H", "sink", "--drain-timeout", "0.5"]);
    let sender = patient(&s);
    s.wait_connected(1);
    // The server cuts this client at the end of the drain: its send fails.
    let sending = send_in_background(sender, blob.clone());
    wait_pipe_full(&s, &pipe);
    s.signal(SIGTERM);
    s.wait_status_eq("Shutting down: waiting up to 0.5 s for 1 clients (signal again to stop now)");
    let unwritten = expect_exit_1_with_unwritten_count(&mut s);
    let mut out = Vec::new();
    pipe.read_to_end(&mut out)
        .expect("read what reached the pipe");
    let _ = sending.join();
    assert!(
        out.len() + unwritten <= blob.len(),
        "{} bytes in the pipe and {unwritten} not written: more than the {} sent",
        out.len(),
        blob.len()
    );
    assert!(
        out == blob[..out.len()],
        "the pipe holds no prefix of what was sent"
    );
}

/// The exit status 1 and the one diagnostic of a stdout that stayed full;
/// returns the count it gives (more than 0).
fn expect_exit_1_with_unwritten_count(s: &mut Server) -> usize {
    let status = s.wait_exit();
    assert_eq!(status.code(), Some(1), "exit status\n{}", s.transcript());
    let prefix = "error: stdout: ";
    let lines: Vec<&String> = s
        .stderr_lines()
        .iter()
        .filter(|l| l.starts_with(prefix))
        .collect();
    assert_eq!(lines.len(), 1, "one stdout diagnostic\n{}", s.transcript());
    let unwritten: usize = lines[0][prefix.len()..]
        .strip_suffix(" bytes not written: still full at the end of the shutdown")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("malformed diagnostic {:?}", lines[0]));
    assert!(unwritten > 0, "{}", s.transcript());
    unwritten
}

/// SPEC "Shutdown": a second signal ends the drain at once; it ends the
/// wait for a full stdout too (the drain's 30 s are longer than the test's
/// wait for the exit).
fn a_second_signal_ends_the_wait_for_a_full_stdout(kind: Kind) {
    let (mut s, pipe) = Server::start_sink_to_pipe(kind, &["-H", "sink"]);
    let sender = patient(&s);
    s.wait_connected(1);
    let sending = send_in_background(sender, Rng::new(1905).bytes(STUCK_BYTES));
    wait_pipe_full(&s, &pipe);
    s.signal(SIGTERM);
    s.wait_status_eq("Shutting down: waiting up to 30 s for 1 clients (signal again to stop now)");
    s.signal(SIGINT);
    expect_exit_1_with_unwritten_count(&mut s);
    drop(pipe);
    let _ = sending.join();
}

/// A stdout whose reader went away (`| head -c 0`): said once, what the
/// clients send is discarded, and the server serves on and exits 0 (the
/// behaviour before the stdout writer thread, kept).
fn stdout_closed_by_its_reader_is_said_once_and_serving_goes_on(kind: Kind) {
    let (mut s, pipe) = Server::start_sink_to_pipe(kind, &["-H", "sink"]);
    drop(pipe);
    for id in 1..=2 {
        let mut c = s.connect_as(id);
        c.send(&Rng::new(id).bytes(1 << 20));
        c.shutdown_write();
        c.expect_eof();
        s.wait_disconnected(id);
    }
    s.stop(SIGINT);
    let said: Vec<&String> = s
        .stderr_lines()
        .iter()
        .filter(|l| l.starts_with("stdout: "))
        .collect();
    assert_eq!(
        said,
        ["stdout: Broken pipe; what clients send from now on is discarded"],
        "{}",
        s.transcript()
    );
}

/// `--trace` shows the back-pressure: the client holding stdout paused
/// while the stdout queue is over `--max-pending`, and resumed once the
/// pipe is read.
fn trace_shows_the_pause_for_stdout_and_the_resume(kind: Kind) {
    let blob = Rng::new(1906).bytes(1 << 20);
    let (mut s, mut pipe) =
        Server::start_sink_to_pipe(kind, &["-H", "sink", "--trace", "--max-pending", "100000"]);
    let sender = patient(&s);
    s.wait_connected(1);
    let sending = send_in_background(sender, blob.clone());
    s.wait_stderr("the pause", |l| {
        l.contains("client 1: paused: ")
            && l.ends_with(" bytes wait for stdout > 100000, its input waits in the kernel")
    });
    let reading = thread::spawn(move || {
        let mut out = Vec::new();
        pipe.read_to_end(&mut out).map(|_| out)
    });
    s.wait_stderr("the resume", |l| {
        l.contains("client 1: resumed: ") && l.ends_with(" bytes wait for stdout <= 50000")
    });
    let mut sender = sending
        .join()
        .unwrap()
        .expect("the sender's bytes were taken");
    sender.expect_eof();
    s.stop(SIGTERM);
    let out = reading.join().unwrap().expect("read stdout");
    assert!(out == blob, "stdout differs from what the client sent");
}
