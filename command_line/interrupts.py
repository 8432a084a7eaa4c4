"""Ctrl-C in a terminal command: one line, no tracebacks, exit status 130.

A terminal sends Ctrl-C to every process of the command at once: the CLI, dbt, Dagster's
helpers. Each of them may print what it was doing or a traceback while it stops, and Dagster
logs the interrupted step with its stack. Once the user has asked to stop, none of that is
news: the command goes quiet at the first interrupt and ends with one line of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator

INTERRUPTED_EXIT_STATUS = 130  # 128 + SIGINT, as shells report it
WATCHED = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Whether the user asked the command to stop (see `quiet_on_interrupt`)."""

    def __init__(self, signals: socket.socket) -> None:
        self.requested = threading.Event()
        self._signals = signals
        self._terminal = os.dup(1)
        self._said = False
        self._lock = threading.Lock()
        self._actions: list = []
        self._closed = threading.Event()

    def pending(self) -> bool:
        """Whether an interrupt arrived, noticed the moment it did: the signal module writes
        each signal's number to `signals` whichever handler runs, and it is only peeked at."""
        if not self.requested.is_set():
            try:
                arrived = self._signals.recv(256, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except OSError:
                arrived = b""
            if any(signum in arrived for signum in WATCHED):
                self.note()
        return self.requested.is_set()

    def note(self) -> None:
        """The first interrupt: silence everything this process prints from now on, and start
        what was registered with `then`."""
        with self._lock:
            if self.requested.is_set():
                return
            self.requested.set()
        with open(os.devnull, "wb") as devnull:
            for fd in (1, 2):
                with contextlib.suppress(OSError):
                    os.dup2(devnull.fileno(), fd)
        for action in self._actions:
            threading.Thread(target=action, name="on-interrupt", daemon=True).start()

    def then(self, action) -> None:
        """Run `action` in a thread of its own once the first interrupt arrives."""
        self._actions.append(action)

    def _watch(self) -> None:
        # Notice an interrupt even while nothing is printed (a quiet dbt model, say).
        while not self.requested.is_set() and not self._closed.wait(0.2):
            self.pending()

    def exit(self, line: str) -> None:
        """End the command with its one line about the interrupt."""
        # Whatever is left to run (cleanup, a second Ctrl-C) stays quiet.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if not self._said:
            self._said = True
            os.write(self._terminal, (line + "\n").encode())
        raise SystemExit(INTERRUPTED_EXIT_STATUS)


class _Gate:
    """A text stream that writes nothing once an interrupt is pending, checked before every
    write, so no line slips out between the signal and the moment the command notices it."""

    def __init__(self, stream, interrupts: Interrupts) -> None:
        self._stream = stream
        self._interrupts = interrupts

    def write(self, text: str) -> int:
        if self._interrupts.pending():
            return len(text)
        return self._stream.write(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def quiet_on_interrupt() -> Iterator[Interrupts]:
    """Notice the first SIGINT or SIGTERM whoever handles it, and print nothing after it.

    Dagster installs its own SIGINT handler while a run executes (it turns the signal into an
    interruption of the running step), so this command's handler does not see those; the
    signal module's wakeup file descriptor receives every signal whichever handler runs.
    Outside a run, the first interrupt raises KeyboardInterrupt and later ones are ignored."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    interrupts = Interrupts(reader)

    def handle(signum, frame) -> None:
        if not interrupts.requested.is_set():
            interrupts.note()
            raise KeyboardInterrupt

    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, handle) for signum in WATCHED}
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Gate(sys.stdout, interrupts), _Gate(sys.stderr, interrupts)
    threading.Thread(target=interrupts._watch, name="interrupt-watch", daemon=True).start()
    try:
        yield interrupts
    finally:
        interrupts._closed.set()
        sys.stdout, sys.stderr = streams
        signal.set_wakeup_fd(previous_fd)
        if not interrupts.requested.is_set():
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        writer.close()
        reader.close()
