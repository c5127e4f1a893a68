# Drives a program on a pseudo-terminal, as a person at a keyboard would:
#   menu_pty.py PROGRAM ARG... -- STEP...
# STEP is `expect=TEXT` (wait until the screen shows TEXT after what was
# already matched), `type=TEXT` (type TEXT; `\n` is Enter), `ctrl-c` or
# `ctrl-d`. Prints the whole screen output (the terminal's `\r\n` turned
# into `\n`), then a last line `EXIT CODE` or `SIGNAL N`. Exits 3 when a
# step waits more than 20 s (the screen so far is printed first).
import os
import pty
import select
import sys
import time

sep = sys.argv.index("--")
argv, steps = sys.argv[1:sep], sys.argv[sep + 1:]

pid, master = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)

screen = b""
seen = 0  # how much of `screen` earlier expects consumed


def pump(deadline):
    global screen
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([master], [], [], left)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the program closed the terminal
                return None
            if not chunk:
                return None
            screen += chunk
            return True


def done(code):
    sys.stdout.write(screen.decode("utf-8", "replace").replace("\r\n", "\n"))
    sys.stdout.flush()
    sys.exit(code)


for step in steps:
    if step.startswith("expect="):
        want = step[len("expect="):].encode().replace(b"\n", b"\r\n")
        deadline = time.monotonic() + 20
        while screen.find(want, seen) < 0:
            if not pump(deadline):
                sys.stdout.write("TIMEOUT waiting for %r\n" % want)
                done(3)
        seen = screen.find(want, seen) + len(want)
    elif step.startswith("type="):
        os.write(master, step[len("type="):].replace("\\n", "\n").encode())
    elif step == "ctrl-c":
        os.write(master, b"\x03")
    elif step == "ctrl-d":
        os.write(master, b"\x04")
    else:
        sys.stdout.write("bad step %r\n" % step)
        done(2)

# Read until the program closes the terminal, then reap it.
deadline = time.monotonic() + 20
while pump(deadline):
    pass
while True:
    done_pid, status = os.waitpid(pid, os.WNOHANG)
    if done_pid:
        break
    if time.monotonic() > deadline + 5:
        os.kill(pid, 9)
        screen += b"HUNG (killed)\n"
        _, status = os.waitpid(pid, 0)
        break
    time.sleep(0.01)
if os.WIFEXITED(status):
    screen += b"EXIT %d\n" % os.WEXITSTATUS(status)
else:
    screen += b"SIGNAL %d\n" % os.WTERMSIG(status)
done(0)
