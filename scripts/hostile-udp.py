#!/usr/bin/env python3
"""Two of issue 19's hostile UDP cases, measured from outside (loopback only).

    python3 scripts/hostile-udp.py target/release/nonblocking-server

1. One address tries one wrong PIN against 1,000 distinct NAMEs (the atm
   over UDP): prints how the replies split (SPEC: at most 20 wrong
   credentials a minute per address, then every NAME is locked for it).
2. A 4-byte `peek` datagram against a queue whose first item is 65,000
   bytes: prints the reply's size (SPEC: no reply datagram larger than the
   larger of 512 bytes and three times the request).

Each server runs in a temporary directory, on port 0, and is stopped at the end.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile


def start(server, args, cwd):
    proc = subprocess.Popen([server, *args, "0"], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = int(re.search(r":(\d+) ", proc.stdout.readline()).group(1))
    return proc, port


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: hostile-udp.py PATH/TO/nonblocking-server")
    server = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "accounts.txt"), "w") as f:
            f.write("charles 02323 100\n")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(5)

        atm, port = start(server, ["-H", "atm", "--udp", "--accounts", "accounts.txt"], tmp)
        try:
            replies = {}
            for i in range(1000):
                udp.sendto(b"b", ("127.0.0.1", port))
                udp.recv(200)
                udp.sendto(b"uname%d p0000" % i, ("127.0.0.1", port))
                kind = udp.recv(200).decode().split(".")[0]
                replies[kind] = replies.get(kind, 0) + 1
            print("1000 wrong credentials from one address, distinct NAMEs:", replies)
        finally:
            atm.terminate()
            atm.wait()

        queue, port = start(server, ["-H", "queue", "--udp"], tmp)
        try:
            with socket.create_connection(("127.0.0.1", port)) as tcp:
                tcp.sendall(b"put " + b"x" * 65000 + b"\n")
                tcp.recv(10)
            udp.sendto(b"peek", ("127.0.0.1", port))
            reply = udp.recv(70000)
            print(f"4-byte peek over UDP answered with {len(reply)} bytes: {reply[:60]!r}")
        finally:
            queue.terminate()
            queue.wait()


if __name__ == "__main__":
    main()
