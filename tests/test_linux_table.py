"""The Linux backend's fd-table look (``pytest_sockhygiene.table.linux``), against real sockets."""

from __future__ import annotations

import os
import socket
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux backend")


@pytest.mark.skipif(not os.path.isdir("/proc/thread-self/fd"), reason="needs /proc/thread-self (Linux 3.17+)")
def test_linux_table_lists_thread_self_and_sees_the_same_sockets() -> None:
    """The fd table is listed through /proc/thread-self/fd (cheaper to resolve); it is the process's table, so a
    scan finds exactly what a listing of /proc/self/fd finds, and a new socket makes the quick look fail."""
    from pytest_sockhygiene.table.linux import LinuxTable, socket_inodes

    table = LinuxTable()
    assert table._dir == "/proc/thread-self/fd"
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        before = table.scan()
        assert set(before.ids) == set(socket_inodes()) and os.fstat(listener.fileno()).st_ino in before.ids
        assert table.unchanged(before) is before
        extra = socket.socket()
        try:
            assert table.unchanged(before) is None
        finally:
            extra.close()
    finally:
        listener.close()
