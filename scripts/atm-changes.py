#!/usr/bin/env python3
"""Changes per second and loop stall of the atm, by accounts-file size.

Usage: scripts/atm-changes.py SERVER_BINARY SIZE_MB [CHANGES]

Writes an accounts file of about SIZE_MB (accounts `a0 1234 100` ...), starts
`SERVER -H atm --accounts FILE 0` in a temporary directory, and over one TCP
connection makes CHANGES deposits one after the other (request, challenge,
credentials, reply). Each change's reply waits for its durable write, so
its round trip is the time the loop spends on it (the stall: no other
client is served meanwhile); changes per second is CHANGES over the total.
Meanwhile a second client sends `b` and times its challenge, the stall a
bystander sees (max and median). Also the bytes the server wrote per change
(/proc/PID/io wchar, a counter, not a clock: its file writes; socket sends
through send(2) do not show there). Prints one line per run.
"""
import os, socket, statistics, subprocess, sys, tempfile, threading, time

def main():
    server, size_mb = sys.argv[1], float(sys.argv[2])
    changes = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    d = tempfile.mkdtemp(prefix="atm-changes-")
    path = os.path.join(d, "accounts.txt")
    with open(path, "w") as f:
        n, i = 0, 0
        while n < size_mb * 1e6:
            line = f"a{i} 1234 100\n"
            f.write(line); n += len(line); i += 1
    proc = subprocess.Popen([server, "-H", "atm", "--accounts", path, "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline()
    port = int(first.split()[2].rsplit(":", 1)[1])
    c = socket.create_connection(("127.0.0.1", port))
    f = c.makefile("rb")
    stop = threading.Event(); bystander = []
    def watch():
        b = socket.create_connection(("127.0.0.1", port)); bf = b.makefile("rb")
        while not stop.is_set():
            t = time.perf_counter(); b.sendall(b"b\n")
            for _ in range(3): bf.readline()
            bystander.append(time.perf_counter() - t); time.sleep(0.002)
    w = threading.Thread(target=watch); w.start()
    def wchar():
        with open(f"/proc/{proc.pid}/io") as io:
            return next(int(l.split()[1]) for l in io if l.startswith("wchar"))
    rtts = []
    wrote = wchar()
    start = time.perf_counter()
    for k in range(changes):
        t = time.perf_counter()
        c.sendall(b"d1\nua7 p1234\n")
        for _ in range(3): f.readline()
        reply = f.readline()
        assert reply.startswith(b"Deposited"), reply
        rtts.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    wrote = wchar() - wrote
    stop.set(); w.join()
    proc.terminate(); proc.wait()
    logs = [p for p in os.listdir(d)]
    print(f"{size_mb:g} MB, {i} accounts: {changes/total:.0f} changes/s, "
          f"change round trip median {statistics.median(rtts)*1e3:.2f} ms max {max(rtts)*1e3:.2f} ms; "
          f"bystander challenge median {statistics.median(bystander)*1e3:.2f} ms "
          f"max {max(bystander)*1e3:.2f} ms ({len(bystander)} samples); "
          f"bytes written per change {wrote/changes:.0f} (/proc/PID/io wchar); "
          f"files {sorted(logs)}")
    subprocess.run(["rm", "-rf", d])

main()
