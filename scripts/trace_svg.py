#!/usr/bin/env python3
"""Draws a --trace capture of one event loop as an SVG: one column per loop
pass, one row per client, and in each cell what the loop did for that client
in that pass (read, wrote, a write that could not finish), with bands for the
time a client waited for writable and the time it was paused.

    scripts/trace_conversation.py clients target/debug/nonblocking-server \\
        --max-pending 4096 > capture.txt
    scripts/trace_svg.py capture.txt > docs/trace-clients.svg
    scripts/trace_svg.py --loop 1 capture.txt > loop1.svg   # with --reactors N

It reads the trace's words (docs/TOUR.md lists them); the format is for
people and may change, and so may this script. Standard library only.
"""

import argparse
import re
import sys
from html import escape

LINE = re.compile(r"^\[loop (\d+) ([\d.]+)\] (\s*)(.*)$")
CLIENT = re.compile(r"client (\d+): (.*)$")

COL = 18  # width of one pass
ROW = 30  # height of one client
LEFT = 80  # room for the row labels
TOP = 58  # room for the header

WOKE = {  # what woke a pass, as a letter in the header
    "client socket": "S",
    "listener": "L",
    "signal": "G",
    "wake-up": "W",
    "udp socket": "U",
}
NO_EVENTS = {  # why a pass had no events
    "a timer is due": "T",
    "work left from the last pass": "w",
    "poll was interrupted": "i",
}


class Client:
    def __init__(self, cid, first):
        self.id = cid
        self.first = first  # column of the accept
        self.last = None  # column of the close
        self.cells = {}  # column -> set of marks
        self.writable = []  # [start, end] columns waiting for writable
        self.paused = []  # [start, end] columns paused

    def mark(self, col, what):
        self.cells.setdefault(col, set()).add(what)


def parse(lines, loop):
    passes = []  # (number, seconds, woke letters, hidden steps)
    clients = {}
    for raw in lines:
        m = LINE.match(raw.rstrip("\n"))
        if not m or int(m.group(1)) != loop:
            continue
        secs, text = float(m.group(2)), m.group(4)
        p = re.match(r"pass (\d+): (.*)$", text)
        if p:
            why = p.group(2)
            if why.startswith("no events"):
                woke = next((letter for words, letter in NO_EVENTS.items() if words in why), "?")
            else:
                woke = "".join(letter for words, letter in WOKE.items() if words in why)
            passes.append([int(p.group(1)), secs, woke or "?", 0])
            continue
        if not passes:
            continue
        col = len(passes) - 1
        hidden = re.match(r"\.\.\. (\d+) more steps in this pass", text)
        if hidden:
            passes[col][3] += int(hidden.group(1))
            continue
        acc = re.match(r"accepted client (\d+)", text)
        if acc:
            cid = int(acc.group(1))
            clients[cid] = Client(cid, col)
            continue
        c = CLIENT.match(text)
        if not c:
            continue
        cid, what = int(c.group(1)), c.group(2)
        client = clients.setdefault(cid, Client(cid, col))
        if re.match(r"read [1-9]\d* bytes", what):
            client.mark(col, "read")
        elif what.startswith("read 0 bytes"):
            client.mark(col, "eof")
        elif what.startswith("wrote") and "all out" in what:
            client.mark(col, "wrote")
        elif what.startswith("wrote") or what.startswith("write would block"):
            client.mark(col, "blocked")
        elif what.startswith("waiting for writable"):
            client.writable.append([col, None])
        elif what.startswith("output done") and client.writable:
            client.writable[-1][1] = col
        elif what.startswith("paused"):
            client.paused.append([col, None])
        elif what.startswith("resumed") and client.paused:
            client.paused[-1][1] = col
        elif what.startswith("closed"):
            client.last = col
    return passes, [clients[k] for k in sorted(clients)]


def svg(passes, clients, loop):
    n = max(len(passes), 1)
    width = LEFT + n * COL + 20
    legend_y = TOP + len(clients) * ROW + 26
    height = legend_y + 64
    out = []
    add = out.append
    add(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">'
    )
    add(f'<rect width="{width}" height="{height}" fill="white"/>')
    add(
        f'<text x="8" y="16" font-size="13">loop {loop}: {len(passes)} passes, '
        f"one column each; one row per client</text>"
    )
    # Header: what woke each pass, its number every 5 passes, time every 10.
    add(f'<text x="8" y="{TOP - 8}">woke by</text>')
    for i, (number, secs, woke, hidden) in enumerate(passes):
        x = LEFT + i * COL
        if i % 5 == 0:
            add(f'<text x="{x + 2}" y="{TOP - 32}" fill="#555">{number}</text>')
        if i % 10 == 0:
            add(f'<text x="{x + 2}" y="{TOP - 20}" fill="#999">{secs:.2f}s</text>')
        add(f'<text x="{x + 4}" y="{TOP - 8}">{escape(woke[:2])}</text>')
        add(
            f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{TOP + len(clients) * ROW}" '
            f'stroke="#eee"/>'
        )
        if hidden:
            add(
                f'<text x="{x + 2}" y="{TOP + len(clients) * ROW + 12}" fill="#a00" '
                f'font-size="9">+{hidden}</text>'
            )
    for r, client in enumerate(clients):
        y = TOP + r * ROW
        mid = y + ROW // 2
        add(f'<text x="8" y="{mid + 4}">client {client.id}</text>')
        last = client.last if client.last is not None else n - 1
        add(
            f'<line x1="{LEFT + client.first * COL}" y1="{mid}" '
            f'x2="{LEFT + last * COL + COL}" y2="{mid}" stroke="#bbb" stroke-width="2"/>'
        )
        for start, end in client.writable:
            end = last if end is None else end
            add(
                f'<rect x="{LEFT + start * COL}" y="{y + 3}" width="{(end - start + 1) * COL}" '
                f'height="{ROW - 6}" fill="#f5a623" opacity="0.35"/>'
            )
        for start, end in client.paused:
            end = last if end is None else end
            add(
                f'<rect x="{LEFT + start * COL}" y="{mid + 6}" width="{(end - start + 1) * COL}" '
                f'height="6" fill="#d0021b"/>'
            )
        for col, marks in client.cells.items():
            x = LEFT + col * COL
            if "read" in marks:
                add(f'<rect x="{x + 2}" y="{mid - 10}" width="6" height="8" fill="#1f6fd1"/>')
            if "eof" in marks:
                add(f'<text x="{x + 1}" y="{mid - 2}" font-size="9">F</text>')
            if "wrote" in marks:
                add(f'<rect x="{x + 10}" y="{mid - 10}" width="6" height="8" fill="#2e9e44"/>')
            if "blocked" in marks:
                add(
                    f'<rect x="{x + 10}" y="{mid - 10}" width="6" height="8" fill="white" '
                    f'stroke="#2e9e44" stroke-width="1.5"/>'
                )
        if client.last is not None:
            x = LEFT + client.last * COL + COL
            add(f'<line x1="{x}" y1="{y + 6}" x2="{x}" y2="{y + ROW - 6}" stroke="#333"/>')
    # Legend.
    y = legend_y
    items = [
        ('<rect x="{x}" y="{y}" width="6" height="8" fill="#1f6fd1"/>', "read"),
        ('<rect x="{x}" y="{y}" width="6" height="8" fill="#2e9e44"/>', "wrote, all out"),
        (
            '<rect x="{x}" y="{y}" width="6" height="8" fill="white" stroke="#2e9e44"/>',
            "partial write / would block",
        ),
        ('<rect x="{x}" y="{y}" width="14" height="8" fill="#f5a623" opacity="0.35"/>',
         "waiting for writable"),
        ('<rect x="{x}" y="{y}" width="14" height="6" fill="#d0021b"/>', "paused"),
        ('<text x="{x}" y="{y8}" font-size="9">F</text>', "end of stream"),
    ]
    x = 8
    for shape, label in items:
        add(shape.format(x=x, y=y, y8=y + 8))
        add(f'<text x="{x + 18}" y="{y + 8}">{label}</text>')
        x += 18 + 7 * len(label) + 16
    add(
        f'<text x="8" y="{y + 28}" fill="#555">woke by: S client socket, L listener, '
        f"T timer, w work left from the last pass, W wake-up, G signal, i interrupted; "
        f'<tspan fill="#a00">+N</tspan>: steps not shown in that pass</text>'
    )
    add(
        f'<text x="8" y="{y + 44}" fill="#555">grey line: connected (accept to close); '
        f"one loop, one thread: in each column it serves whichever clients are ready</text>"
    )
    add("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", help="a file of --trace lines (stderr)")
    ap.add_argument("--loop", type=int, default=0, help="which loop to draw (default 0)")
    args = ap.parse_args()
    with open(args.capture, encoding="utf-8", errors="replace") as f:
        passes, clients = parse(f, args.loop)
    if not passes:
        sys.exit(f"no passes of loop {args.loop} in {args.capture}")
    sys.stdout.write(svg(passes, clients, args.loop))


if __name__ == "__main__":
    main()
