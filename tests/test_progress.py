"""The estimate of the time left (steerlab.cli.progress.Remaining) on synthetic schedules: measured
from the items' completions, not from the start-up before the first one (model loading, Ray
starting and loading its workers), which click's own estimate charged to every item."""

from __future__ import annotations

import pytest

from steerlab.cli.progress import Remaining


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _click_estimate(t: float, done: int, length: int) -> float:
    """click's: the seconds since the bar started per item done, times the items left."""
    return (length - done) * t / done


def test_in_process_schedule_40_s_start_up_then_1_s_per_item():
    clock, length = _Clock(), 60
    eta = Remaining(length, clock)
    assert eta.seconds() is None and eta.text() == ""
    for i in range(1, length + 1):
        clock.t = 40.0 + i  # item i completes
        eta.update(1)
        if i == 1:
            assert eta.seconds() is None  # one completion: no rate yet
        else:
            assert eta.seconds() == pytest.approx(length - i)  # exact: 1 s per item left
    assert eta.seconds() == 0.0
    assert _click_estimate(42.0, 2, length) > 20 * (length - 2)  # what the bar showed before


def test_ray_schedule_4_workers_start_up_then_waves():
    """4 workers start together, load for 40 s, then each runs a 12-row batch in 6 s: completions
    arrive in waves of 4 batches (48 rows) every 6 s; 10 waves, 60 s in all after start-up."""
    clock, length, waves = _Clock(), 480, 10
    eta = Remaining(length, clock)
    shown = []
    for w in range(1, waves + 1):
        clock.t = 40.0 + 6.0 * w
        for _ in range(4):
            eta.update(12)
        shown.append(eta.seconds())
        clock.t += 3.0  # half-way through the next wave: counts down, not up
        mid = eta.seconds()
        if 1 < w < waves:
            assert mid == pytest.approx(6.0 * (waves - w) - 3.0)
    assert shown[0] is None  # the first wave alone says nothing about the rate
    truth = [6.0 * (waves - w) for w in range(2, waves + 1)]
    assert shown[1:] == pytest.approx(truth)
    # click's estimate after the first wave: 9 waves left at 46 s per wave, against 54 s left
    assert _click_estimate(46.0, 48, length) == pytest.approx(414.0) and _click_estimate(46.0, 48, length) > 7 * 54


def test_the_commands_lines_show_the_estimate_once_there_is_one(capsys):
    from steerlab.cli.progress import progress

    with progress("sweep", 3, every=0.0) as update:
        update(1)
        update(1)
        update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "sweep: 3 items" and lines[1] == "sweep: 1/3"  # one completion: no estimate
    assert lines[2].startswith("sweep: 2/3, about ") and lines[3] == "sweep: 3/3, about 0 s left"
