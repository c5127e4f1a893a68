#!/usr/bin/env python3
"""Runs a small scripted conversation against a server started with --trace,
and prints what the server printed: its --trace lines (stderr) and its status
lines (stdout). docs/TOUR.md and its picture are made from these captures.

    scripts/trace_conversation.py tour   target/debug/nonblocking-server
    scripts/trace_conversation.py tour   target/debug/threaded-server
    scripts/trace_conversation.py tour   target/debug/nonblocking-server --reactors 2
    scripts/trace_conversation.py clients target/debug/nonblocking-server --max-pending 4096 > capture.txt

Conversations:
  tour     client 1 says "hello", then "world" in two pieces ("wor", "ld\\n"),
           client 2 says "hi", both close.
  clients  three clients on one loop: one chatty, one that sends much and reads
           late (the server waits for writable and pauses it), one that comes
           and goes; for scripts/trace_svg.py.

The pauses between steps (time.sleep) are there so that each step is its own
loop pass, as when typing into nc by hand; the trace is the same without them,
only packed into fewer passes. Standard library only.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PAUSE = 0.15


def start(cmd):
    """Starts the server on port 0 with --trace; returns (process, port)."""
    if os.sep in cmd[0]:
        cmd = [os.path.abspath(cmd[0])] + cmd[1:]
    proc = subprocess.Popen(
        cmd + ["--trace", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tempfile.mkdtemp(prefix="trace-tour-"),
    )
    line = proc.stdout.readline().decode()
    match = re.search(r":(\d+) \(handler", line)
    if not match:
        proc.kill()
        sys.exit(f"no Listening line: {line!r}")
    return proc, int(match.group(1)), line


def connect(port, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    time.sleep(PAUSE)
    return s


def expect(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            break
        got += chunk
    return got


def tour(port):
    one = connect(port)
    one.sendall(b"hello\n")
    expect(one, 6)
    time.sleep(PAUSE)
    one.sendall(b"wor")
    time.sleep(0.02)  # under the 50 ms idle flush: "wor" stays a partial line
    one.sendall(b"ld\n")
    expect(one, 6)
    time.sleep(PAUSE)
    two = connect(port)
    two.sendall(b"hi\n")
    expect(two, 3)
    time.sleep(PAUSE)
    one.close()
    time.sleep(PAUSE)
    two.close()
    time.sleep(PAUSE)


def clients(port):
    chatty = connect(port)
    late = connect(port, rcvbuf=8192)
    line = b"y" * 1023 + b"\n"
    total = 6144 * len(line)

    def send_all():
        late.sendall(line * 6144)

    sender = threading.Thread(target=send_all)
    sender.start()
    for word in (b"one\n", b"two\n"):
        chatty.sendall(word)
        expect(chatty, len(word))
        time.sleep(PAUSE)
    guest = connect(port)
    guest.sendall(b"hi\n")
    expect(guest, 3)
    guest.close()
    time.sleep(PAUSE)
    chatty.sendall(b"three\n")
    expect(chatty, 6)
    # Now the late reader reads everything.
    got = 0
    while got < total:
        chunk = late.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    sender.join()
    time.sleep(PAUSE)
    chatty.close()
    late.close()
    time.sleep(PAUSE)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("tour", "clients"):
        sys.exit(__doc__)
    proc, port, listening = start(sys.argv[2:])
    out_lines = [listening]
    err_lines = []
    readers = [
        threading.Thread(target=lambda: out_lines.extend(l.decode() for l in proc.stdout)),
        threading.Thread(target=lambda: err_lines.extend(l.decode() for l in proc.stderr)),
    ]
    for r in readers:
        r.start()
    try:
        {"tour": tour, "clients": clients}[sys.argv[1]](port)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        for r in readers:
            r.join()
    sys.stdout.write("".join(err_lines))
    sys.stdout.write("--- status lines (stdout) ---\n")
    sys.stdout.write("".join(out_lines))


if __name__ == "__main__":
    main()
