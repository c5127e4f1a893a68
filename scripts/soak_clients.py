#!/usr/bin/env python3
"""Mixed clients for scripts/soak.sh (stdlib only).

Runs for --seconds against three servers (ledger, echo, presence):
ledger blasters with known data (the expected log is written to
--expected), echo ping-pong clients that verify every reply, presence
churn that checks each joiner's list names it, slow readers that never
read, and connect-then-reset clients (SO_LINGER 0). Prints one summary
line of counts; exits 1 if any client saw a wrong reply.
"""

import argparse
import random
import socket
import struct
import sys
import threading
import time

LOCK = threading.Lock()
COUNTS = {}
ERRORS = []
BALANCES = {}  # ledger account -> cents


def count(what, n=1):
    with LOCK:
        COUNTS[what] = COUNTS.get(what, 0) + n


def error(msg):
    with LOCK:
        if len(ERRORS) < 20:
            ERRORS.append(msg)
        COUNTS["errors"] = COUNTS.get("errors", 0) + 1


def connect(port, timeout=30.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def read_line(f):
    line = f.readline()
    if not line.endswith(b"\n"):
        raise EOFError("EOF before a full line: %r" % line[:80])
    return line


def ledger_blaster(port, idx, deadline):
    rng = random.Random(1000 + idx)
    batch = 0
    while time.time() < deadline:
        lines = []
        delta = {}
        for _ in range(rng.randint(100, 5000)):
            name = "acct%02d" % rng.randrange(40)
            cents = rng.randrange(1, 1_000_000)
            credit = rng.random() < 0.6
            lines.append("%s %s $%d.%02d\n" % (name, "credit" if credit else "debit", cents // 100, cents % 100))
            delta[name] = delta.get(name, 0) + (cents if credit else -cents)
        data = "".join(lines).encode()
        try:
            s = connect(port)
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            rest = s.recv(4096)
            s.close()
        except OSError as e:
            error("ledger blaster %d batch %d: %s" % (idx, batch, e))
            return
        if rest:
            error("ledger replied %r" % rest[:80])
        # The server closed after our EOF: every line is in.
        with LOCK:
            for k, v in delta.items():
                BALANCES[k] = BALANCES.get(k, 0) + v
        count("ledger_lines", len(lines))
        count("ledger_clients")
        batch += 1


def echo_pingpong(port, idx, deadline):
    rng = random.Random(2000 + idx)
    while time.time() < deadline:
        try:
            s = connect(port)
            f = s.makefile("rb")
            for _ in range(rng.randint(1, 200)):
                msg = ("ping %d %s\n" % (idx, "x" * rng.randrange(200))).encode()
                s.sendall(msg)
                got = read_line(f)
                if got != msg:
                    error("echo: sent %r got %r" % (msg[:60], got[:60]))
                    break
                count("echo_lines")
            if rng.random() < 0.2:
                reset(s)
            else:
                s.close()
            count("echo_clients")
        except (OSError, EOFError) as e:
            error("echo client %d: %s" % (idx, e))
            return


def presence_churn(port, idx, deadline):
    n = 0
    while time.time() < deadline:
        name = "p%dn%d" % (idx, n)
        n += 1
        try:
            s = connect(port)
            f = s.makefile("rb")
            s.sendall(name.encode() + b"\n")
            got = read_line(f).decode()
            names = got.split()
            if name not in names or names != sorted(names):
                error("presence: %s got %r" % (name, got[:100]))
            if n % 5 == 0:
                reset(s)
            else:
                s.close()
            count("presence_joins")
        except (OSError, EOFError) as e:
            error("presence churner %d: %s" % (idx, e))
            return


def slow_reader(port, kind, deadline):
    """Never reads: echo pauses it, presence drops it. Replaced every 20 s."""
    i = 0
    while time.time() < deadline:
        i += 1
        try:
            s = connect(port)
            if kind == "presence":
                s.sendall(b"slow%d\n" % i)
            else:
                s.settimeout(1.0)
                chunk = b"y" * 65535 + b"\n"
                sent = 0
                while sent < 8 << 20 and time.time() < deadline:
                    try:
                        s.sendall(chunk)
                        sent += len(chunk)
                    except socket.timeout:
                        break  # the server stopped reading from us
            end = min(deadline, time.time() + 20)
            while time.time() < end:
                time.sleep(0.5)
            reset(s)
            count("slow_%s" % kind)
        except OSError as e:
            if kind != "presence":
                error("slow %s reader: %s" % (kind, e))
            count("slow_%s" % kind)


def resetter(ports, deadline):
    while time.time() < deadline:
        for port in ports:
            try:
                s = connect(port)
                reset(s)
                count("resets")
            except OSError as e:
                error("resetter: %s" % e)
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ledger", type=int, required=True)
    ap.add_argument("--echo", type=int, required=True)
    ap.add_argument("--presence", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--expected", required=True, help="where to write the expected ledger log")
    a = ap.parse_args()
    deadline = time.time() + a.seconds
    threads = []
    for i in range(3):
        threads.append(threading.Thread(target=ledger_blaster, args=(a.ledger, i, deadline)))
    for i in range(4):
        threads.append(threading.Thread(target=echo_pingpong, args=(a.echo, i, deadline)))
    for i in range(3):
        threads.append(threading.Thread(target=presence_churn, args=(a.presence, i, deadline)))
    threads.append(threading.Thread(target=slow_reader, args=(a.echo, "echo", deadline)))
    threads.append(threading.Thread(target=slow_reader, args=(a.presence, "presence", deadline)))
    threads.append(threading.Thread(target=resetter, args=([a.ledger, a.echo, a.presence], deadline)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(a.expected, "w") as out:
        for name in sorted(BALANCES):
            c = BALANCES[name]
            sign = "-" if c < 0 else ""
            out.write("%s $%s%d.%02d\n" % (name, sign, abs(c) // 100, abs(c) % 100))
    print("clients: " + " ".join("%s=%d" % kv for kv in sorted(COUNTS.items())))
    for e in ERRORS:
        print("error: " + e, file=sys.stderr)
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main())
