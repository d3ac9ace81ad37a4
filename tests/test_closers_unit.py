"""``closers``: which threads can still run code that closes a socket, read from real threads' stacks."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from pytest_sockhygiene import closers


def _frame_of(thread: threading.Thread, name: str) -> FrameType:
    """The thread's innermost frame once it is in function ``name`` (polled: it gets there on its own schedule)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert thread.ident is not None
        frame = sys._current_frames().get(thread.ident)
        if frame is not None and frame.f_code.co_name == name:
            return frame
        time.sleep(0.001)
    raise AssertionError(f"{thread.name} never reached {name}()")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.create_server(("127.0.0.1", 0))
    yield s
    s.close()


def _accept_then_stop(listener: socket.socket) -> threading.Thread:
    def serve() -> None:
        with contextlib.suppress(OSError):
            listener.accept()[0].close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_a_thread_blocked_in_accept_cannot_run_until_a_connection_comes(listener: socket.socket) -> None:
    t = _accept_then_stop(listener)
    assert closers._blocked_in_accept(_frame_of(t, "accept"))
    socket.create_connection(listener.getsockname()).close()  # wake it: it ends
    t.join(10)
    assert not t.is_alive()


def test_a_listener_with_a_timeout_wakes_by_itself(listener: socket.socket) -> None:
    listener.settimeout(30)
    t = _accept_then_stop(listener)
    assert not closers._blocked_in_accept(_frame_of(t, "accept"))
    socket.create_connection(listener.getsockname()).close()
    t.join(10)


def test_a_thread_blocked_in_recv_may_close_its_socket(listener: socket.socket) -> None:
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()

    def read() -> None:
        with conn:
            conn.recv(1)  # woken by the kernel when the client closes, and closes its side then
    t = threading.Thread(target=read, daemon=True)
    t.start()
    frame = _frame_of(t, "read")
    assert not closers._blocked_in_accept(frame)
    assert not closers.nothing_else_runs()  # (this thread's own, among others)
    client.close()
    t.join(10)
    assert conn.fileno() == -1


def test_the_count_of_threads_includes_this_one() -> None:
    count = closers._thread_count()
    assert count is not None and count >= threading.active_count()


def test_a_listener_with_a_connection_waiting_is_about_to_wake_its_thread(listener: socket.socket) -> None:
    """A connect the kernel completed into the backlog before the thread in ``accept`` was scheduled: that thread
    is about to return and may run anything (CI found the race: a kept socket judged at once beside a server
    thread that was a moment from reading it)."""
    assert not closers._pending(listener.fileno())
    client = socket.create_connection(listener.getsockname())
    try:
        assert closers._pending(listener.fileno())
        listener.accept()[0].close()
        assert not closers._pending(listener.fileno())
    finally:
        client.close()
    assert closers._pending(-1)  # a closed listener: not known to be idle


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="the kernel's word is Linux's /proc")
def test_the_kernel_says_whether_a_thread_is_in_accept(listener: socket.socket) -> None:
    """On Linux the thread's kernel wait (``wchan``) confirms the frame: a thread whose frame is ``accept`` is
    idle only while the kernel has it waiting there."""
    t = _accept_then_stop(listener)
    frame = _frame_of(t, "accept")
    assert t.native_id is not None
    deadline = time.monotonic() + 10
    while not closers._blocked_in_accept(frame, t.native_id) and time.monotonic() < deadline:
        time.sleep(0.001)  # (in the frame a moment before the kernel has it waiting)
    assert closers._blocked_in_accept(frame, t.native_id)
    assert not closers._blocked_in_accept(frame, threading.get_native_id())  # this thread is not waiting in accept
    socket.create_connection(listener.getsockname()).close()
    t.join(10)
