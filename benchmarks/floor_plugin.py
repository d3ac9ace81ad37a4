"""The floor: what any plugin that checks what pytest-sockhygiene checks on the violation suite must spend, and
nothing more. A benchmark condition (``run.py --floor``, ``instructions.py --floor``), never a product.

Why it exists: twelve passes of trimming the plugin left its violation-suite cost at 1.14-1.22x, and the question
for the planners is whether a different design could do better, or whether the kernel work itself is the cost.
This measures the kernel work with the least Python around it:

- per connection: the 4-tuple, from a wrapper of ``socket.socket.connect`` (one ``getsockname``) or ``accept``
  (one ``getsockname``; the peer is what accept returned), appended to a list; per close, the fd appended;
- per httpx client: wrappers of ``__init__``, ``close`` and ``__exit__`` (and the async ones) that keep a weak
  reference and a closed flag;
- per test: one young-generation collection when a client of the test's is unclosed (a dropped client is
  cyclic garbage), one exact ``sock_diag`` batch of the closed connections' tuples (the plugin's own ``SockDiag``,
  asking one end of an in-process connection), an ``fstat`` per connection still open, the counts against the
  defaults and the ``sockhygiene`` marker's keys, and one warning per violating test (it has no enforce mode: it
  stands for the plugin in warn mode) through the plugin's own ``warn_without_failing``, so pytest's per-warning
  cost is the same.

What it leaves out, which is what the plugin adds on top: the line of code that opened each connection and
client, ownership by fixtures and their threads, LISTEN and CLOSE_WAIT, settling, records, the report, the
summary, advice and the failure text's detail. Its verdicts on the violation suite are the plugin's
(``90 warnings``: 30 each of time_wait, connections and clients); on any other suite they are not to be relied on.
Loaded with ``-p floor_plugin`` and ``-p no:sockhygiene``, with this directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import gc
import os
import socket
import weakref
from collections.abc import Generator
from typing import Any

import pytest

from pytest_sockhygiene.table import LINGERING_STATES
from pytest_sockhygiene.table.kernel import lookup_states, prepare
from pytest_sockhygiene.warning import warn_without_failing

_SOCKET: Any = socket.socket
_INET = (socket.AF_INET, socket.AF_INET6)
_on = [False]
_conns: list[tuple[int, Any, Any, bool]] = []  # (fd, local, remote, the test's own connect)
_closed: list[int] = []
_clients: list[tuple[weakref.ref[Any], list[bool]]] = []  # (the client, [closed]) per client made in the test
_DEFAULTS = {"time_wait": 5, "established": 0, "clients": 0}
_wrappers: dict[str, Any] = {}  # method name -> the floor's wrapper of it (made once, at configure)


def _make_socket_wrappers() -> None:
    connect, accept, real_close = _SOCKET.connect, _SOCKET.accept, _SOCKET._real_close

    def connect_wrapper(self: Any, address: Any) -> None:
        connect(self, address)
        if _on[0] and self.family in _INET:
            _conns.append((self.fileno(), self.getsockname()[:2], address[:2], True))

    def accept_wrapper(self: Any) -> tuple[Any, Any]:
        conn, address = accept(self)
        if _on[0] and conn.family in _INET:
            _conns.append((conn.fileno(), conn.getsockname()[:2], address[:2], False))
        return conn, address

    def close_wrapper(self: Any, *args: Any) -> None:
        if _on[0]:
            _closed.append(self.fileno())
        real_close(self, *args)

    _wrappers.update(connect=connect_wrapper, accept=accept_wrapper, _real_close=close_wrapper)


def _install_sockets() -> None:
    """Put the wrappers in place, again if other code wrote its own method back (pytest-socket writes
    ``connect`` back at every test's teardown, merely installed): one identity test per method and test."""
    for name, fn in _wrappers.items():
        if _SOCKET.__dict__.get(name) is not fn:
            setattr(_SOCKET, name, fn)


def _install_clients() -> None:
    try:
        import httpx
    except ImportError:
        return
    for cls in (httpx.Client, httpx.AsyncClient):
        init = cls.__init__

        def init_wrapper(self: Any, *args: Any, __init: Any = init, **kwargs: Any) -> None:
            __init(self, *args, **kwargs)
            if _on[0]:
                flag = [False]
                self._floor_closed = flag
                _clients.append((weakref.ref(self), flag))

        cls.__init__ = init_wrapper  # type: ignore[method-assign]
        for name in ("close", "__exit__") if cls is httpx.Client else ("aclose", "__aexit__"):
            setattr(cls, name, _closing(getattr(cls, name), asynchronous=cls is not httpx.Client))


def _closing(method: Any, asynchronous: bool) -> Any:
    """``method`` (a close or an exit), marking the client closed first."""
    def mark(self: Any) -> None:
        flag = getattr(self, "_floor_closed", None)
        if flag is not None:
            flag[0] = True

    if asynchronous:
        async def async_wrapper(self: Any, *args: Any) -> Any:
            mark(self)
            return await method(self, *args)
        return async_wrapper

    def wrapper(self: Any, *args: Any) -> Any:
        mark(self)
        return method(self, *args)
    return wrapper


def pytest_configure(config: pytest.Config) -> None:
    _make_socket_wrappers()
    _install_sockets()
    _install_clients()
    prepare()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    _conns.clear()
    _closed.clear()
    _clients.clear()
    _install_sockets()
    _on[0] = True
    try:
        yield
    finally:
        _on[0] = False


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After pytest's own teardown (the test's fixtures are finalized): judge, inside pytest's per-test warnings
    capture."""
    _on[0] = False
    marker = item.get_closest_marker("sockhygiene")
    limits = {**_DEFAULTS, **(marker.kwargs if marker else {})}
    unclosed = [(ref, flag) for ref, flag in _clients if not flag[0]]
    if unclosed:
        gc.collect(0)  # a dropped client's pool is cyclic garbage: its sockets close now, as in the plugin
    shut = set(_closed)
    mine = {(local, remote) for _, local, remote, own in _conns if own}
    candidates = [(local, remote) for fd, local, remote, own in _conns
                  if fd in shut and (own or (remote, local) not in mine)]
    held = 0
    for fd, _, _, own in _conns:
        if own and fd not in shut:
            try:
                os.fstat(fd)
                held += 1
            except OSError:
                pass
    states = lookup_states(candidates) if candidates else {}
    counts = {
        "time_wait": len({frozenset(t) for t, state in states.items() if state in LINGERING_STATES}),
        "connections": sum(1 for c in _conns if c[3]),
        "established": held,
        "clients": len(unclosed),
    }
    broken = [f"{kind}: {n} > limit {limits[kind]}" for kind, n in counts.items()
              if limits.get(kind) is not None and n > limits[kind]]
    if broken:
        lineno = item.location[1] or 0
        warn_without_failing(f"sockhygiene floor: {item.nodeid}: " + "; ".join(broken),
                             str(item.path), lineno + 1)
