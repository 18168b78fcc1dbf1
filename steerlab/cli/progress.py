"""Progress of a run's work items with an estimate of the time left from measured item times.

click's own estimate divides the time since the bar started by the items done, so whatever came
before the first item completed (loading models, Ray starting its workers and loading them
there) is charged to every item: a Ray run of 48 s showed 431 s left at first. Here the clock
starts when the first items complete: the time left is the items left over the rate measured
since then (items completed after the first, over the seconds since the first), for the local
executor and Ray alike (Ray's first wave of completions arrives together, so the rate is known
from the second completion on). Before that there is no estimate, and none is shown.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click


class Remaining:
    """The estimated seconds left of ``length`` items from the completions reported to
    :meth:`update` (module docstring); ``clock`` in seconds (:func:`time.monotonic`).

    The rate is measured between completions (items completed after the first ones, over the
    seconds from the first completion to the latest), and the time since the latest completion
    is taken off: between two waves of Ray completions the estimate counts down instead of
    growing as if the rate were falling."""

    def __init__(self, length: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.length, self.clock, self.done = length, clock, 0
        self.first: tuple[float, int] | None = None  # (when, items done) at the first completion
        self.latest = 0.0  # when the latest completion was reported

    def update(self, n: int) -> None:
        if n <= 0:
            return
        self.done += n
        self.latest = self.clock()
        if self.first is None or self.latest == self.first[0]:  # a wave arriving at once is one
            self.first = (self.latest, self.done)

    def seconds(self) -> float | None:
        """Seconds left, or None while no item has completed after the first completion."""
        if self.done >= self.length:
            return 0.0
        if self.first is None or self.done == self.first[1]:
            return None
        per_item = (self.latest - self.first[0]) / (self.done - self.first[1])
        return max(0.0, (self.length - self.done) * per_item - (self.clock() - self.latest))

    def text(self) -> str:
        left = self.seconds()
        return "" if left is None else f"about {left:.0f} s left"


@contextmanager
def progress(label: str, length: int, every: float | None = 10.0) -> Iterator[Callable[[int], None]]:
    """``update(n)`` for ``length`` items: a bar on stderr when it is a terminal (with
    :class:`Remaining`'s estimate), else a line ``LABEL: N items`` and, every ``every`` seconds
    at most and at the end, ``LABEL: DONE/N, about S s left`` (None: the first line only)."""
    eta = Remaining(length)
    if sys.stderr.isatty():
        with click.progressbar(
            length=length, label=label, file=sys.stderr, show_eta=False, show_pos=True, item_show_func=lambda s: s
        ) as bar:

            def update(n: int) -> None:
                eta.update(n)
                bar.update(n, eta.text())

            yield update
        return
    click.echo(f"{label}: {length} item{'s' if length != 1 else ''}", err=True)
    last = time.monotonic()

    def line(n: int) -> None:
        nonlocal last
        eta.update(n)
        now = time.monotonic()
        if every is not None and (now - last >= every or eta.done == length):
            last = now
            left = eta.text()
            click.echo(f"{label}: {eta.done}/{length}" + (f", {left}" if left else ""), err=True)

    yield line
