"""Running the real evlog with its stdout on a pseudo-terminal, as a user at a terminal sees it.

Tables, colours and widths depend on stdout being a terminal, so these tests
give evlog one (``os.openpty``) of a chosen width and read everything it draws.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios


def terminal_output(
    *args: str, log: str, columns: int = 100, env: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """Run evlog with stdout on a pseudo-terminal; its exit code, raw output (with escape codes) and stderr."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    env.update(COLUMNS=str(columns), TERM="xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "COLORTERM"):
        env.pop(name, None)
    env.update(extra)
    process = subprocess.Popen(
        [sys.executable, "-m", "evlog", *args, "--log", log],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.stderr is not None
    stderr = process.stderr.read()
    code = process.wait(timeout=60)
    return code, b"".join(chunks).decode(), stderr
