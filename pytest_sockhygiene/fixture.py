"""The ``sockhygiene`` fixture's object: snapshots, measured blocks, and limits changed at run time."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Callable

from .limits import Limits
from .session import Controller
from .table import SocketEntry
from .verdict import Verdict, Violation


class Measurement:
    """Counts for a ``with sockhygiene.measure() as m:`` block, filled in when the block exits."""

    def __init__(self) -> None:
        self.verdict: Verdict | None = None
        self.raised: str | None = None
        """The name of the exception the block raised: such a block is not measured (it stopped part way)."""

    def _count(self, kind: str) -> int:
        if self.verdict is None:
            if self.raised is not None:
                raise RuntimeError(f"the measure() block raised {self.raised} and was not measured")
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
    def unused_clients(self) -> int:
        """Unclosed clients that never opened a connection (not a connection leak; see ``clients``)."""
        return self._count("unused_clients")

    @property
    def counts(self) -> dict[str, int]:
        self._count("established")
        assert self.verdict is not None
        return dict(self.verdict.counts)

    @property
    def violations(self) -> list[Violation]:
        self._count("established")
        assert self.verdict is not None
        return list(self.verdict.violations)

    def __repr__(self) -> str:
        if self.verdict is not None:
            return f"Measurement({self.counts})"
        return f"Measurement({'raised ' + self.raised if self.raised is not None else 'running'})"


class MeasuredBlock:
    """What ``measure()`` returns: the context manager of one block. It can be entered once (a second ``with``
    on it would have nothing to report into: its ``Measurement`` is the first block's)."""

    def __init__(self, owner: SockHygiene, limits: Limits) -> None:
        self._owner = owner
        self._limits = limits
        self._window: Any = None
        self._entered = False
        self._measurement = Measurement()

    def __enter__(self) -> Measurement:
        self._owner._check_alive()
        if self._entered:
            raise RuntimeError("this measure() object was already used for a block; call sockhygiene.measure() "
                               "again for each block to measure")
        self._entered = True
        from .window import Window

        controller = self._owner._controller
        assert controller.table is not None and controller.recorder is not None
        controller.keep_hooks(False)
        self._window = Window(controller.table, controller.recorder, controller.client_probe)
        return self._measurement

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        window, self._window = self._window, None
        if exc_type is not None:
            recorder = self._owner._controller.recorder
            if recorder is not None:
                recorder.remove_sink(window)
            self._measurement.raised = exc_type.__name__
            return  # the exception goes on
        self._measurement.verdict = window.close(self._limits)


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
        self._ended = False

    def _end(self) -> None:
        """Called at the teardown of the test that requested the fixture: from then on the object refuses to be
        used, instead of changing limits that nothing reads any more."""
        self._ended = True

    def _check_alive(self) -> None:
        if not self._ended:
            return
        # the running test, as pytest itself publishes it ("<node id> (<phase>)")
        current = os.environ.get("PYTEST_CURRENT_TEST", "").rpartition(" (")[0]
        now = f", and is used in {current}" if current and current != self._nodeid else ""
        raise RuntimeError(f"this sockhygiene fixture object belongs to {self._nodeid}, which has ended{now}: "
                           "request the sockhygiene fixture in the test that uses it")

    @property
    def limits(self) -> Limits:
        self._check_alive()
        return self._get_limits()

    def set_limits(self, **kwargs: Any) -> Limits:
        """Override this test's limits, e.g. ``set_limits(established=1, ignore=["*:6379"])``.

        Raises ``ValueError`` (a ConfigError naming the test and the key) on a bad key or value.
        """
        self._check_alive()
        limits = Controller.runtime_limits(self._get_limits(), self._nodeid, kwargs)
        self._set_limits(limits)
        return limits

    def snapshot(self) -> list[SocketEntry]:
        self._check_alive()
        if not self._controller.usable:
            raise RuntimeError("sockhygiene cannot read the socket table here: " + "; ".join(self._controller.notices))
        assert self._controller.table is not None
        return self._controller.table.snapshot()

    def measure(self, **limits: Any) -> MeasuredBlock:
        """Count what the block leaves behind: ``with sockhygiene.measure() as m:``. Keyword limits (optional)
        decide when a result is re-checked before it is returned; they default to this test's limits. A block
        that raises is not measured (reading ``m`` then says so)."""
        self._check_alive()
        if not self._controller.usable:
            raise RuntimeError("sockhygiene cannot read the socket table here: " + "; ".join(self._controller.notices))
        current = self._get_limits()
        effective = Controller.runtime_limits(current, self._nodeid, limits) if limits else current
        return MeasuredBlock(self, effective)
