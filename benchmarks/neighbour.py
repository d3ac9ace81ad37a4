"""A noisy neighbour: keeps about N TIME_WAIT rows on the machine, for benchmarks/run.py.

It runs a loopback listener and, in the same thread, short connections to it that the *client* closes first,
so each one leaves the client side in TIME_WAIT for 60 s (Linux's fixed TCP_TIMEWAIT_LEN). Once a tick it
counts its own TIME_WAIT rows in /proc/net/tcp (rows whose remote port is its listener's) and opens just enough
connections to get back to the target: never more than needed.

Every loop is bounded: at most ``--burst`` connections per tick, at most ``--max-per-minute`` connections in
any minute (in case the kernel recycles TIME_WAIT ports faster than expected), ``--max-seconds`` of life in
total, and it exits as soon as its parent is gone or it gets SIGTERM/SIGINT.

    python benchmarks/neighbour.py --target 5000

prints ``ready <port> <count>`` on stdout once the count is reached (or ``notready <port> <count>`` after
``--ramp-timeout`` seconds), then ``count <n>`` lines when asked with SIGUSR1 (not needed by run.py).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import sys
import time

TIME_WAIT = "06"


def count_time_wait(port: int) -> int:
    """TIME_WAIT rows whose remote endpoint is 127.0.0.1:port (the client sides this process left behind)."""
    want = f":{port:04X}"
    n = 0
    with open("/proc/net/tcp", "rb") as f:
        f.readline()
        for line in f:
            fields = line.split(None, 4)
            if len(fields) >= 4 and fields[3] == b"06" and fields[2].endswith(want.encode()):
                n += 1
    return n


def one_connection(listener: socket.socket, addr: tuple[str, int]) -> None:
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        c.settimeout(2.0)
        c.connect(addr)
        s, _ = listener.accept()
    except OSError:
        c.close()
        raise
    c.close()  # the client closes first: its side goes FIN_WAIT2 -> TIME_WAIT
    try:
        s.settimeout(2.0)
        s.recv(1)  # EOF from the client's FIN
    except OSError:
        pass
    finally:
        s.close()  # LAST_ACK -> CLOSED on the server side


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=int, default=5000, help="TIME_WAIT rows to keep (default 5000)")
    ap.add_argument("--tick", type=float, default=1.0, help="seconds between counts (default 1.0)")
    ap.add_argument("--burst", type=int, default=2500, help="most connections per tick (default 2500)")
    ap.add_argument("--max-per-minute", type=int, default=0,
                    help="most connections in any 60 s (default 3x target)")
    ap.add_argument("--max-seconds", type=float, default=1800.0, help="exit after this long (default 1800)")
    ap.add_argument("--ramp-timeout", type=float, default=60.0,
                    help="report notready if the target is not reached in this long (default 60)")
    args = ap.parse_args()
    if not 0 < args.target <= 20000:
        ap.error("--target must be in 1..20000")
    max_per_minute = args.max_per_minute or 3 * args.target

    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(2.0)
    addr = listener.getsockname()
    port = addr[1]
    parent = os.getppid()
    started = time.monotonic()
    recent: collections.deque[float] = collections.deque()  # times of connections in the last 60 s
    announced = False
    errors = 0
    while not stop:
        now = time.monotonic()
        if now - started > args.max_seconds or os.getppid() != parent:
            break
        while recent and now - recent[0] > 60.0:
            recent.popleft()
        have = count_time_wait(port)
        if not announced and (have >= args.target * 0.98 or now - started > args.ramp_timeout):
            word = "ready" if have >= args.target * 0.98 else "notready"
            print(f"{word} {port} {have}", flush=True)
            announced = True
        want = min(args.target - have, args.burst, max_per_minute - len(recent))
        for _ in range(max(0, want)):
            if stop:
                break
            try:
                one_connection(listener, addr)
            except OSError:
                errors += 1
                if errors > 100:
                    print("too many connection errors; exiting", file=sys.stderr, flush=True)
                    return 1
                break
            recent.append(time.monotonic())
        if announced or want <= 0:
            # sleep out the rest of the tick; the ramp-up goes on without sleeping
            time.sleep(max(0.0, args.tick - (time.monotonic() - now)))
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
