#!/usr/bin/env python3
"""Issue 19 item 3, measured from outside (loopback only): the sink with a
stdout pipe nobody reads while one client pushes 100 MiB.

    python3 scripts/sink-stuck-stdout.py target/debug/nonblocking-server [ARGS...]
    python3 scripts/sink-stuck-stdout.py target/debug/threaded-server

While stdout is stopped, it samples the server's VmRSS (/proc/PID/status)
every 0.2 s for 3 s and connects one more client per sample, timing how
long each `Client N connected` status line takes to appear on stderr (the
loop serving events meanwhile; it stops at the first one that does not
come within 10 s). Then it reads stdout to the end, sends
SIGTERM, and checks that every byte arrived and the exit status is 0.
An idle sink server of the same binary is the memory baseline.
"""
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

TOTAL = 100 * 1024 * 1024


def vm(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return None


def lines_of(stream, into):
    for raw in stream:
        into.put(raw.decode(errors="replace").rstrip("\n"))
    into.put(None)


def wait_line(lines, pred, timeout):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return None
        if line is None:
            return None
        if pred(line):
            return line


def main():
    server, extra = sys.argv[1], sys.argv[2:]
    idle = subprocess.Popen([server, *extra, "-H", "sink", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    idle.stderr.readline()
    base = vm(idle.pid, "VmRSS:")
    idle.send_signal(signal.SIGTERM)
    idle.wait()

    proc = subprocess.Popen([server, *extra, "-H", "sink", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = queue.Queue()
    threading.Thread(target=lines_of, args=(proc.stderr, lines), daemon=True).start()
    first = wait_line(lines, lambda l: l.startswith("Listening on"), 10)
    port = int(re.search(r":(\d+) ", first).group(1))

    sender = socket.create_connection(("127.0.0.1", port))
    wait_line(lines, lambda l: l.startswith("Client 1 connected"), 10)
    block = bytes(range(256)) * 4096  # 1 MiB

    def push():
        for _ in range(TOTAL // len(block)):
            sender.sendall(block)
        sender.shutdown(socket.SHUT_WR)
    pusher = threading.Thread(target=push)
    pusher.start()

    samples, delays, others = [], [], []
    for n in range(2, 17):
        time.sleep(0.2)
        samples.append(vm(proc.pid, "VmRSS:"))
        t0 = time.monotonic()
        others.append(socket.create_connection(("127.0.0.1", port)))
        got = wait_line(lines, lambda l, n=n: l.startswith(f"Client {n} connected"), 10)
        delays.append(None if got is None else time.monotonic() - t0)
        if got is None:
            break  # the loop is stuck: no point in waiting for more
    hwm = vm(proc.pid, "VmHWM:")
    print(f"{server} {' '.join(extra)}")
    print(f"  idle sink VmRSS: {base} KiB")
    print(f"  stdout stopped, 100 MiB pushing: VmRSS samples (KiB): {samples}")
    print(f"  VmHWM so far: {hwm} KiB ({hwm / base:.2f}x idle)")
    shown = ["none in 10 s" if d is None else f"{d * 1000:.1f}" for d in delays]
    print(f"  'connected' line delays for {len(delays)} new clients (ms): {', '.join(shown)}")

    for c in others:
        c.close()
    got = 0
    while True:
        chunk = proc.stdout.read1(1 << 20)
        if not chunk:
            break
        before, got = got, got + len(chunk)
        if before < TOTAL <= got:
            pusher.join()
            proc.send_signal(signal.SIGTERM)
    status = proc.wait()
    print(f"  then stdout read: {got} of {TOTAL} bytes, exit status {status}")


if __name__ == "__main__":
    main()
