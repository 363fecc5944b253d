"""Progress bars for the long-running commands (``import_legacy_tracker``, ``prune_bounce_events``).

The library functions report progress through a plain callback and know nothing of
terminals; the commands turn those reports into tqdm bars with :class:`ProgressBars`.
A bar is drawn on the command's standard error, and only when that is a terminal:
under cron, in a pipe or in a log nothing is written, so the output stays what the
command prints on standard output.
"""

from __future__ import annotations

from types import TracebackType

from django.core.management.base import OutputWrapper
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information


class _Bar(tqdm):  # type: ignore[misc]  # tqdm is untyped
    """A tqdm bar without tqdm's monitor thread (a command's bars need no watchdog)."""

    monitor_interval = 0


class _UnstyledStream:
    """A command's stderr as tqdm writes to it: no added newline, no error colour."""

    def __init__(self, out: OutputWrapper) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(text, style_func=str, ending="")

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return self._out.isatty()

    def fileno(self) -> int:
        # tqdm asks the terminal for its width through this.
        return int(self._out.fileno())

    @property
    def encoding(self) -> str | None:
        return getattr(self._out, "encoding", None)


class ProgressBars:
    """One tqdm bar per phase of a command's work, on its stderr, only on a terminal.

    :meth:`show` is the callback: the phase's name, how many items are done, the
    phase's total if known, and an optional note (e.g. bytes freed). A new phase
    closes the previous bar and opens its own. Use as a context manager, so the last
    bar is closed (with its newline) even when the work fails.
    """

    def __init__(self, stream: OutputWrapper, *, unit: str = "rows") -> None:
        self._stream = _UnstyledStream(stream)
        self._disable = not stream.isatty()
        self._unit = unit
        self._phase: str | None = None
        self._bar: _Bar | None = None

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def show(self, phase: str, done: int, total: int | None = None, note: str = "") -> None:
        """Show ``done`` of ``total`` items of ``phase`` (a new bar for a new phase)."""
        if self._bar is None or phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = _Bar(
                desc=phase,
                total=total,
                unit=f" {self._unit}",
                file=self._stream,
                disable=self._disable,
                dynamic_ncols=True,
            )
        bar = self._bar
        if total is not None and bar.total != total:
            bar.total = total
        if note:
            bar.set_postfix_str(note, refresh=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        """Finish the current bar: its last state stays on the screen."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._phase = None
