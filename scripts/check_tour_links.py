#!/usr/bin/env python3
"""Checks docs/TOUR.md's code links: every [`Type::function`](../src/file.rs)
must name a file that exists and defines that function (or type). The
server's structure moves (issue 18); this says which names of the tour went
stale. Exit 1 if any did. Standard library only.

    scripts/check_tour_links.py [docs/TOUR.md]
"""

import os
import re
import sys

LINK = re.compile(r"\[`([^`]+)`\]\((\.\./[^)#]+)\)")


def main():
    tour = sys.argv[1] if len(sys.argv) > 1 else "docs/TOUR.md"
    base = os.path.dirname(os.path.abspath(tour))
    stale = []
    checked = 0
    with open(tour, encoding="utf-8") as f:
        text = f.read()
    for name, target in LINK.findall(text):
        path = os.path.normpath(os.path.join(base, target))
        if not os.path.exists(path):
            stale.append(f"{name}: {target} does not exist")
            continue
        if not path.endswith(".rs"):
            continue
        item = name.split("::")[-1]
        if item.endswith(".rs"):
            continue
        with open(path, encoding="utf-8") as src:
            code = src.read()
        if " " in name:  # a phrase of code, such as `impl Clients for Reactor`
            pattern = re.escape(name)
        else:
            pattern = rf"\b(fn|struct|enum|trait|type|mod)\s+{re.escape(item)}\b"
        checked += 1
        if not re.search(pattern, code):
            stale.append(f"{name}: no `{item}` defined in {target}")
    for line in stale:
        print(line)
    print(f"{checked} names checked, {len(stale)} stale")
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
