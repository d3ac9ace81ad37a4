"""The ``sockhygiene`` fixture's object: snapshots, measured blocks, and limits changed at run time."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional

from .limits import Limits
from .session import Controller
from .table import SocketEntry
from .verdict import Verdict, Violation


class Measurement:
    """Counts for a ``with sockhygiene.measure() as m:`` block, filled in when the block exits."""

    def __init__(self) -> None:
        self.verdict: Optional[Verdict] = None

    def _count(self, kind: str) -> int:
        if self.verdict is None:
            raise RuntimeError("the measure() block has not finished yet")
        return self.verdict.counts[kind]

    @property
    def established(self) -> int:
        return self._count("established")

    @property
    def close_wait(self) -> int:
        return self._count("close_wait")

    @property
    def listen(self) -> int:
        return self._count("listen")

    @property
    def time_wait(self) -> int:
        return self._count("time_wait")

    @property
    def connections(self) -> int:
        return self._count("connections")

    @property
    def clients(self) -> int:
        return self._count("clients")

    @property
    def counts(self) -> Dict[str, int]:
        self._count("established")
        assert self.verdict is not None
        return dict(self.verdict.counts)

    @property
    def violations(self) -> List[Violation]:
        self._count("established")
        assert self.verdict is not None
        return list(self.verdict.violations)

    def __repr__(self) -> str:
        return f"Measurement({self.counts if self.verdict is not None else 'running'})"


class SockHygiene:
    """The current test's tracker (the ``sockhygiene`` fixture).

    ``snapshot()`` lists this process's TCP sockets now; ``measure()`` counts what a block leaves behind, judged
    by the same rules as the test; ``set_limits(...)`` changes this test's limits from inside the test.
    """

    def __init__(self, controller: Controller, nodeid: str, get_limits: Callable[[], Limits],
                 set_limits: Callable[[Limits], None]) -> None:
        self._controller = controller
        self._nodeid = nodeid
        self._get_limits = get_limits
        self._set_limits = set_limits

    @property
    def limits(self) -> Limits:
        return self._get_limits()

    def set_limits(self, **kwargs: Any) -> Limits:
        """Override this test's limits, e.g. ``set_limits(established=1, ignore=["*:6379"])``.

        Raises ``ValueError`` (a ConfigError naming the test and the key) on a bad key or value.
        """
        limits = Controller.runtime_limits(self._get_limits(), self._nodeid, kwargs)
        self._set_limits(limits)
        return limits

    def snapshot(self) -> List[SocketEntry]:
        if not self._controller.usable:
            raise RuntimeError("sockhygiene cannot read the socket table here: " + "; ".join(self._controller.notices))
        assert self._controller.table is not None
        return self._controller.table.snapshot()

    @contextlib.contextmanager
    def measure(self, **limits: Any) -> Iterator[Measurement]:
        """Count what the block leaves behind. Keyword limits (optional) decide when a result is re-checked
        before it is returned; they default to this test's limits."""
        if not self._controller.usable:
            raise RuntimeError("sockhygiene cannot read the socket table here: " + "; ".join(self._controller.notices))
        assert self._controller.table is not None and self._controller.recorder is not None
        from .window import Window

        effective = Controller.runtime_limits(self._get_limits(), self._nodeid, limits) if limits else self._get_limits()
        m = Measurement()
        self._controller.keep_hooks(False)
        window = Window(self._controller.table, self._controller.recorder, self._controller.client_probe)
        try:
            yield m
        except BaseException:
            self._controller.recorder.remove_sink(window)
            raise
        m.verdict = window.close(effective)
