"""Progress bars and log output on stderr (rich), never on stdout.

Bars are shown only when stderr is a terminal and ``--quiet`` is off, so logs
in files and pipes stay clean.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["stderr_console", "setup_logging", "ByteProgress", "human_bytes"]


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


class _PlainHandler(logging.Handler):
    """``Warning: message`` lines on stderr (one line each, no timestamps)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = {"WARNING": "Warning: ", "ERROR": "Error: "}.get(record.levelname, "")
            sys.stderr.write(f"{prefix}{record.getMessage()}\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(quiet: bool = False) -> None:
    logger = logging.getLogger("mlmcorpus")
    logger.handlers[:] = [_PlainHandler()]
    logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.INFO)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class ByteProgress:
    """A bar over input bytes: ``with ByteProgress(total, label) as p: p.advance(n)``.

    Does nothing (and costs nothing) when disabled.
    """

    def __init__(self, total: int | None, label: str, enabled: bool | None = None, info: bool = False):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = enabled
        self.label = label
        self.show_info = info
        self.total = total or None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._pending = 0
        self._last = 0.0
        self.started = time.perf_counter()

    def __enter__(self) -> ByteProgress:
        self.started = time.perf_counter()
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                *([TextColumn("{task.fields[info]}")] if self.show_info else []),
                console=stderr_console(),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total, info="")
        return self

    def advance(self, n: int) -> None:
        if self._progress is None or self._task is None:
            return
        self._pending += n
        now = time.perf_counter()
        if now - self._last > 0.1:
            self._progress.update(self._task, advance=self._pending)
            self._pending = 0
            self._last = now

    def set_info(self, text: str) -> None:
        """Text shown after the bar (e.g. documents and instances so far)."""
        if self._progress is not None:
            self._progress.update(self._task, info=text)  # type: ignore[arg-type]

    def set_label(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)  # type: ignore[arg-type]

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(et, ev, tb)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
