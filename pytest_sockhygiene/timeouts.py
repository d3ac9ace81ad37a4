"""How long a check may wait for a close: never past a test timeout that is still running.

The settle (``window.py``) re-checks a held socket for up to ``sockhygiene_settle`` seconds, in the test's teardown.
pytest-timeout's timer covers setup, call and teardown (unless ``timeout_func_only``), so a test that took 1.7 s of
a 2 s timeout and left a socket open would time out inside the plugin's wait: a teardown error with the plugin's
frames in it, in warn mode too, and the test's verdict lost. The wait is cut to what the timer leaves, less a
margin; with nothing left the test is judged on its first look.

Two kinds of timer are known: an interval timer (``signal.setitimer``/``alarm``, pytest-timeout's ``signal``
method, or any SIGALRM-based timeout), read with ``getitimer``; and pytest-timeout's ``thread`` method, a
``threading.Timer`` named ``pytest_timeout <nodeid>``, whose time left is its interval less the time since the
test's window opened (the timer starts just before the setup, so this errs a few milliseconds long: the margin
covers it).
"""

from __future__ import annotations

import signal
import threading
import time

MARGIN = 0.1
"""Seconds kept free before a timer fires, at least (a tenth of what is left, if more)."""

_THREAD_TIMER_PREFIX = "pytest_timeout "


def time_left(opened_at: float | None) -> float | None:
    """Seconds before a running test timeout fires, None if none is known to be running."""
    left: float | None = None
    getitimer = getattr(signal, "getitimer", None)
    if getitimer is not None:
        remaining = getitimer(signal.ITIMER_REAL)[0]
        if remaining > 0:
            left = remaining
    if opened_at is not None:
        for thread in threading.enumerate():
            if isinstance(thread, threading.Timer) and thread.name.startswith(_THREAD_TIMER_PREFIX):
                finished = getattr(thread, "finished", None)
                if finished is not None and finished.is_set():
                    continue  # cancelled
                elapsed = time.monotonic() - opened_at
                remaining = float(getattr(thread, "interval", 0)) - elapsed
                left = remaining if left is None else min(left, remaining)
    return left


def settle_within(settle: float, opened_at: float | None) -> float:
    """``settle``, cut so that the wait ends a margin before a running test timeout fires."""
    if settle <= 0:
        return settle
    left = time_left(opened_at)
    if left is None:
        return settle
    return max(0.0, min(settle, left - max(MARGIN, left / 10)))
