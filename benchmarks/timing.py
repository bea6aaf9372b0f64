"""Timing primitives: summaries of repeated measurements and measured subprocesses.

The machine is shared and noisy, so every figure is reported as the median of repeats with its
min and max, and ratios are taken between measurements made side by side in one run. Processes
are timed whole (interpreter start to exit) because that is what a user waits for: a Dagster run
worker and a ``dbt`` command both start cold (a *warm* run, forked from the warm run worker,
starts its dbt from the worker's dbt fork server; the figures that measure one say so).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    """Median, min and max of repeated measurements (and the raw values, for the JSON)."""

    median: float
    min: float
    max: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no measurements to summarise")
        return cls(statistics.median(values), min(values), max(values), tuple(values))

    def to_dict(self, digits: int = 4) -> dict[str, object]:
        return {
            "median": round(self.median, digits),
            "min": round(self.min, digits),
            "max": round(self.max, digits),
            "values": [round(v, digits) for v in self.values],
        }

    def fmt(self, spec: str = ".2f", unit: str = "") -> str:
        """``1.23 (1.10–1.40)``: median, then the range."""
        return f"{self.median:{spec}}{unit} ({self.min:{spec}}–{self.max:{spec}}{unit})"


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Stats:
    """Per-repeat ratios of paired measurements (taken side by side), summarised."""
    return Stats.of([a / b for a, b in zip(numerators, denominators, strict=True)])


@dataclass(frozen=True)
class ProcessResult:
    """One finished subprocess: its wall time, exit code, output and peak memory."""

    args: tuple[str, ...]
    wall_s: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float

    def check(self) -> ProcessResult:
        """Raise with the output's tail when the process failed (benchmarks must not lie)."""
        if self.returncode != 0:
            tail = "\n".join((self.stdout + self.stderr).strip().splitlines()[-25:])
            raise RuntimeError(f"{' '.join(self.args[:4])} … exited {self.returncode}:\n{tail}")
        return self


def run_process(
    args: Sequence[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str] | None = None
) -> ProcessResult:
    """Run ``args`` to completion; wall time from fork to exit, peak RSS from ``wait4``.

    ``wait4`` returns the resource usage of that one child (``getrusage(RUSAGE_CHILDREN)``
    would mix in every earlier child), so the peak memory is this process's own. Output goes
    to temporary files rather than pipes, because reading pipes needs ``communicate``, which
    reaps the child itself and loses its rusage.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(args), env=dict(env), cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ProcessResult(
            args=tuple(args),
            wall_s=wall,
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        )


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as elapsed: …`` then ``elapsed[0]`` holds the seconds."""
    holder: list[float] = []
    started = time.perf_counter()
    try:
        yield holder
    finally:
        holder.append(time.perf_counter() - started)


def progress(message: str) -> None:
    """One progress line on stderr, with the wall clock, flushed (runs take many minutes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
