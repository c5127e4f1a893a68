#!/usr/bin/env python3
"""UDP echo server in the seeds' shape (seed 002's udpserver.py, seed 004's
SimpleEchoUDPServer): one socket, one thread, a blocking loop of `recvfrom`
and `sendto` that returns each datagram exactly as received.

Usage: python3 udp_echo_server.py PORT     (0: the OS chooses; loopback only)

Prints `Listening on 127.0.0.1:PORT (udp)` once bound. The peer of
`scripts/compare.sh`'s udp-echo workload: the seeds' method to measure ours
against. Differences from the seed, on purpose: the receive buffer is 65535
bytes, not 2048, so no datagram is cut; no per-client table (the seed's
`client_details` list grows with every new source address); Ctrl+C,
SIGINT or SIGTERM exits 0.
"""
import signal
import socket
import sys


def stop(_signum, _frame):
    raise KeyboardInterrupt


def main():
    if len(sys.argv) != 2:
        print("usage: python3 udp_echo_server.py PORT", file=sys.stderr)
        sys.exit(2)
    port = int(sys.argv[1])
    # A background job of a shell starts with SIGINT ignored: take it back.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    host, port = sock.getsockname()
    print(f"Listening on {host}:{port} (udp)", flush=True)
    try:
        while True:
            data, addr = sock.recvfrom(65535)
            sock.sendto(data, addr)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


if __name__ == "__main__":
    main()
