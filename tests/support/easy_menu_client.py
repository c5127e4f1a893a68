# A seed 004 menu client with the wire behaviour of the EasyTCPClient.java
# and EasyUDPClient.java found in the wild (falconlee236/SocketProgrammingExample,
# hw2/bouns_assignment/, commits 02fc576 and 0ffff93; the repository has no
# licence, so this is our own code, not a copy). What it keeps of theirs:
#   - option 1 is two messages: the option `1`, then the sentence as its own
#     message; one reply answers both;
#   - TCP: every message is a line ending in `\n` (Java's println), each
#     written on its own (two sends for option 1), and a reply is read as one
#     line (readLine);
#   - UDP: every message is one datagram with no line end, and a reply is
#     one datagram;
#   - `5`: over TCP it is sent and the client then reads, expecting the
#     server to close; over UDP it is sent and the client stops.
#
#   easy_menu_client.py tcp|udp HOST PORT STEP...
# STEP is an option (`2`, `3`, `9`, ...) or `1=SENTENCE`. Prints one line per
# reply, `Reply from server: REPLY`, and for a TCP `5` the line `closed` once
# the server has closed. Every wait is bounded (20 s): a reply that does not
# come is an exception and exit 1, never a hang.
import socket
import sys

TIMEOUT = 20

transport, host, port, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]


def show(reply):
    print("Reply from server: " + reply.decode("utf-8", "replace"), flush=True)


def messages(step):
    if step.startswith("1="):
        return [b"1", step[2:].encode()]
    return [step.encode()]


if transport == "tcp":
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    replies = sock.makefile("rb")
    for step in steps:
        for message in messages(step):
            sock.sendall(message + b"\n")
        if step == "5":
            if replies.readline() != b"":
                sys.exit("the server answered 5 instead of closing")
            print("closed", flush=True)
            break
        line = replies.readline()
        if not line.endswith(b"\n"):
            sys.exit("the server closed while a reply was due")
        show(line[:-1])
elif transport == "udp":
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    for step in steps:
        for message in messages(step):
            sock.sendto(message, (host, port))
        if step == "5":
            break
        reply, _ = sock.recvfrom(4096)
        show(reply)
else:
    sys.exit("usage: easy_menu_client.py tcp|udp HOST PORT STEP...")
