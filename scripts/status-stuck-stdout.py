#!/usr/bin/env python3
"""Status lines on a stdout nobody reads (PROTOCOL section 3): a server's stdout is a pipe this
script does not read while CLIENTS clients connect and close one after the other; then one echo
round trip is timed, the server's VmRSS/VmHWM read from /proc/PID/status, and only then is the
pipe read, SIGTERM sent, and what was printed counted against what stderr says was dropped.

    python3 scripts/status-stuck-stdout.py target/release/nonblocking-server
    python3 scripts/status-stuck-stdout.py target/release/threaded-server
    CLIENTS=20000 python3 scripts/status-stuck-stdout.py target/release/nonblocking-server --reactors 2

Every client makes two status lines, so printed + dropped should be 2 x (CLIENTS + 1)."""
import array
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import termios
import time


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    server, *extra = sys.argv[1:]
    clients = int(os.environ.get("CLIENTS", "100000"))
    r, w = os.pipe()
    p = subprocess.Popen([server, "-H", "echo", "--report-every", "0", *extra, "0"],
                         stdout=w, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(w)
    first = b""
    while not first.endswith(b"\n"):
        first += os.read(r, 1)
    port = int(re.search(rb":(\d+) ", first).group(1))
    for n in range(clients):
        socket.create_connection(("127.0.0.1", port)).close()
        if n % 200 == 199:
            time.sleep(0.01)  # let the server's accepts keep up with the backlog
    buf = array.array("i", [0])
    fcntl.ioctl(r, termios.FIONREAD, buf)
    print(f"clients {clients}, bytes waiting in the unread pipe: {buf[0]}")
    c = socket.create_connection(("127.0.0.1", port))
    c.settimeout(5)
    t = time.monotonic()
    c.sendall(b"hello\n")
    got = c.recv(100)
    print(f"echo {got!r} in {(time.monotonic() - t) * 1000:.2f} ms")
    c.close()
    with open(f"/proc/{p.pid}/status") as f:
        print(" ".join(l.split()[0] + l.split()[1] + " kB" for l in f if l.startswith(("VmRSS", "VmHWM"))))
    p.send_signal(signal.SIGTERM)
    out = bytearray()
    while d := os.read(r, 65536):
        out += d
    code = p.wait(timeout=60)
    err = p.stderr.read().decode()
    client_lines = sum(1 for l in out.decode().splitlines() if l.startswith("Client "))
    dropped = sum(int(m) for m in re.findall(r"stdout: (\d+) status lines not printed", err))
    print(f"exit {code}; client lines printed {client_lines} + dropped {dropped} = "
          f"{client_lines + dropped} (2 x {clients + 1} = {2 * (clients + 1)})")


if __name__ == "__main__":
    main()
