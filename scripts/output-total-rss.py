#!/usr/bin/env python3
"""Server memory with N echo clients that send and never read (issue 19
item 9, --max-output-total).

    scripts/output-total-rss.py SERVER_BINARY [SERVER OPTIONS ...]
    CLIENTS=50 SEND_MB=16 scripts/output-total-rss.py \\
        target/debug/nonblocking-server --reactors 2 --max-output-total 1048576

Starts the server (echo, port 0, --report-every 0, plus the options given),
opens CLIENTS connections (default 50), and has each send 100-byte lines,
never reading, until no client has made progress for 2 s (every buffer on
the way is full and the server stopped reading) or each sent SEND_MB MiB.
Prints the bytes sent and the server's VmRSS and VmHWM (/proc), then stops it
with SIGINT. Loopback only; bounded in clients, bytes and time.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time


def proc_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    clients = int(os.environ.get("CLIENTS", "50"))
    limit = int(os.environ.get("SEND_MB", "16")) << 20
    cmd = [sys.argv[1], "--report-every", "0", *sys.argv[2:], "0"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(re.search(r":(\d+) \(", server.stdout.readline()).group(1))
        line = b"".join([b"x" * 99, b"\n"])
        chunk = line * 655  # 64 KiB-ish
        socks = []
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            socks.append(s)
        sent = [0] * clients
        last_progress = time.monotonic()
        deadline = last_progress + 300
        while time.monotonic() - last_progress < 2 and time.monotonic() < deadline:
            moved = False
            for i, s in enumerate(socks):
                if sent[i] >= limit:
                    continue
                try:
                    n = s.send(chunk)
                    sent[i] += n
                    moved = moved or n > 0
                except BlockingIOError:
                    pass
            if moved:
                last_progress = time.monotonic()
            else:
                time.sleep(0.01)
        rss = proc_kib(server.pid, "VmRSS:")
        hwm = proc_kib(server.pid, "VmHWM:")
        print(
            f"{' '.join(cmd[1:])}: {clients} clients sent {sum(sent) / 2**20:.1f} MiB "
            f"(each {min(sent) / 2**20:.1f}..{max(sent) / 2**20:.1f}); "
            f"server VmRSS {rss / 1024:.1f} MiB, VmHWM {hwm / 1024:.1f} MiB"
        )
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
