"""Session health: how close this run came to the machine's limits (ephemeral ports, file descriptors)."""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable

PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
TIME_WAIT_SECONDS = 60.0
"""Linux keeps a TIME_WAIT entry for 60 s (TCP_TIMEWAIT_LEN): the span over which a run's entries pile up."""


def ephemeral_port_count() -> int | None:
    """How many local ports outgoing connections can use (Linux), or None where unknown."""
    try:
        with open(PORT_RANGE_FILE) as f:
            low, high = (int(x) for x in f.read().split()[:2])
    except (OSError, ValueError):
        return None
    return high - low + 1


try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None  # type: ignore[assignment]


def fd_limit() -> int | None:
    """The soft RLIMIT_NOFILE in force now (a test may lower it), None if unlimited or unknown. Asked after every
    test that used a socket: the module is imported once, here, not at each call."""
    if _resource is None:
        return None
    soft, _ = _resource.getrlimit(_resource.RLIMIT_NOFILE)
    return None if soft == _resource.RLIM_INFINITY else int(soft)


def open_fd_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the listing's own fd
    except OSError:
        pass
    try:
        import psutil

        proc = psutil.Process()
        return int(proc.num_fds() if hasattr(proc, "num_fds") else proc.num_handles())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return None


def peak_time_wait(points: Iterable[tuple[float, int]], span: float = TIME_WAIT_SECONDS) -> int:
    """The most TIME_WAIT entries alive at once, from (time a test ended, entries it left) pairs: each entry
    lives ``span`` seconds, so the peak is the largest sum over any ``span``-long stretch."""
    pts = sorted((t, n) for t, n in points if n > 0)
    times = [t for t, _ in pts]
    prefix = [0]
    for _, n in pts:
        prefix.append(prefix[-1] + n)
    best = 0
    for i, (t, _) in enumerate(pts):
        start = bisect.bisect_left(times, t - span)
        best = max(best, prefix[i + 1] - prefix[start])
    return best
