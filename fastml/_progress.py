"""A dependency-free progress bar for the command line (``fastml bench``, ``fastml demo``).

On a terminal it redraws one line in place; elsewhere (CI logs, pipes) it prints a line per
finished item, so logs stay readable. Use as a context manager::

    with Progress(len(items), "bench") as bar:
        for item in items:
            bar.set(item.name)  # what runs now
            run(item)
            bar.advance()
"""

import sys
import time


class Progress:
    """A bar of ``total`` steps written to ``stream`` (default: stderr)."""

    def __init__(self, total, label="", stream=None, width=28, enabled=True):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.enabled = enabled
        self.done = 0
        self.what = ""
        self._t0 = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self):
        self._draw()
        return self

    def __exit__(self, *exc):
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()
        return False

    def set(self, what):
        """Say what runs now (shown after the bar)."""
        self.what = str(what)
        if self._tty:
            self._draw()

    def advance(self, steps=1):
        self.done = min(self.total, self.done + steps)
        self._draw(finished=True)

    def _draw(self, finished=False):
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._t0
        if self._tty:
            filled = self.width * self.done // self.total
            bar = "#" * filled + "-" * (self.width - filled)
            line = (f"\r{self.label} [{bar}] {self.done}/{self.total} {elapsed:6.1f}s "
                    f"{self.what}")
            self.stream.write(line[:120].ljust(120))
        elif finished:
            self.stream.write(f"{self.label} {self.done}/{self.total} {elapsed:6.1f}s "
                              f"{self.what}\n")
        self.stream.flush()
