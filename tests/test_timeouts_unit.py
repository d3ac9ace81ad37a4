"""The check's wait is cut to what a running test timeout leaves (``timeouts.py``), read from the real timers."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from pytest_sockhygiene.timeouts import MARGIN, settle_within, time_left


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no interval timers here")
def test_an_interval_timer_cuts_the_wait() -> None:
    previous = signal.signal(signal.SIGALRM, lambda *_: None)  # (it never fires: cancelled below)
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        left = time_left(None)
        assert left is not None and 4.0 < left <= 5.0
        assert settle_within(0.5, None) == 0.5  # plenty left: the whole settle
        assert 3.0 < settle_within(60.0, None) <= 5.0 - max(MARGIN, 0.4)  # cut, less the margin
        for _ in range(20):  # (until the timer is seen still running after the call: it ran during it, too)
            signal.setitimer(signal.ITIMER_REAL, 0.09)
            cut = settle_within(60.0, None)
            if signal.getitimer(signal.ITIMER_REAL)[0] > 0:
                break
        assert cut == 0.0  # nothing left past the margin: judged on the first look
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_pytest_timeouts_thread_timer_cuts_the_wait_from_when_the_window_opened() -> None:
    timer = threading.Timer(10.0, lambda: None)
    timer.name = "pytest_timeout test_x.py::test_y"  # (pytest-timeout's thread method names it so)
    timer.start()
    try:
        opened = time.monotonic() - 8.0  # the window opened 8 s ago: about 2 s left
        left = time_left(opened)
        assert left is not None and 1.5 < left <= 2.0
        assert 1.0 < settle_within(60.0, opened) < 2.0
    finally:
        timer.cancel()
        timer.join()
    assert time_left(time.monotonic()) is None  # no timer running: no cut
    assert settle_within(0.5, time.monotonic()) == 0.5


def test_another_timer_is_not_a_test_timeout() -> None:
    timer = threading.Timer(10.0, lambda: None)  # a user's debounce timer, say
    timer.start()
    try:
        assert time_left(time.monotonic()) is None
    finally:
        timer.cancel()
        timer.join()
