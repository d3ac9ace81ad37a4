"""Ask the kernel about known TCP 4-tuples: exact ``NETLINK_SOCK_DIAG`` lookups, ``/proc/net/tcp`` as fallback.

The plugin needs the state of connections it already knows by address, above all those that have *no* file
descriptor any more (TIME_WAIT rows belong to no process, so ``/proc/self/fd`` cannot see them). Two ways:

* :class:`SockDiag` sends one ``SOCK_DIAG_BY_FAMILY`` request per 4-tuple *without* ``NLM_F_DUMP``: the kernel
  answers with a hash-table lookup (``inet_lookup``), microseconds per tuple whatever else the machine holds.
  A dump, like ``ss`` or psutil do, walks the whole network namespace's TCP table and grows with every other
  process's sockets (a CI runner with a database and 30,000 TIME_WAIT rows makes it milliseconds per call).
* :func:`proc_net_lookup` reads ``/proc/net/tcp`` and ``/proc/net/tcp6``: the same table as text, so its cost
  grows with the machine, but it works wherever ``/proc`` does (netlink can be refused by seccomp, an LSM or a
  sandbox such as gVisor).

:func:`lookup_states` picks the first and falls back to the second for good when netlink fails.

Kernel behaviour worth knowing (checked by ``tests/test_kernel_lookup.py``):

* an exact lookup runs the *receive path's* lookup: established and TIME_WAIT rows first, then **listeners**.
  A 4-tuple that does not exist but whose local endpoint has a listener is answered with the listener's row;
  replies are therefore checked against the requested tuple and such answers count as "absent".
* a listener is found as ``(local, ("0.0.0.0", 0))`` (IPv4) or ``(local, ("::", 0))`` (IPv6): the listener's row
  has no remote endpoint, which the kernel reports as the unspecified address and port 0.
* no capability is needed: any user may look up any socket of its network namespace.
* link-local IPv6 connections bound to an interface are not found: an :data:`Endpoint` has no scope id, and the
  kernel only matches such sockets when the request names the interface.
"""

from __future__ import annotations

import _socket
import atexit
import contextlib
import errno
import functools
import itertools
import os
import select
import struct
import threading
import time
from collections.abc import Iterable

from ..endpoints import FourTuple
from . import TcpState

# --- netlink and inet_diag constants (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h) ---------------------

_AF_INET: int = _socket.AF_INET
_AF_INET6: int = _socket.AF_INET6
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLMSG_NOOP = 1
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLMSG_OVERRUN = 4
_IPPROTO_TCP = 6
_ALL_STATES = 0xFFFFFFFF
_INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_SOL_NETLINK = 270
_NETLINK_CAP_ACK = 10
_TCP_NEW_SYN_RECV = 12

_REQUEST = struct.Struct("=IHHII" "BBBxI" "HH16s16sIII")
"""``struct nlmsghdr`` + ``struct inet_diag_req_v2`` (72 bytes).

nlmsghdr: len, type, flags, seq, pid. inet_diag_req_v2: family, protocol, ext, pad, states, then
``struct inet_diag_sockid``: sport, dport (big-endian: packed from ``htons``), src[16], dst[16], if, cookie[2].
"""
_NLMSGHDR = struct.Struct("=IHHII")
_NLMSGERR = struct.Struct("=i")
_DIAG_MSG = struct.Struct("!BBBBHH16s16s")
"""Head of ``struct inet_diag_msg``: family, state, timer, retrans, then the sockid's ports and addresses.
Network byte order, which is right for the ports and makes no difference to the single bytes."""

_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_RECV_BUFFER = 1 << 16
_WANTED_RCVBUF = 1 << 20
_REPLY_COST = 2048
"""Bytes of receive buffer one reply uses (skb truesize), rounded up; sizes the batches so none is dropped."""
_MAX_CHUNK = 1024
_MIN_CHUNK = 16
_TIMEOUT = 2.0
"""Seconds to wait for the kernel's answers. Linux answers inside ``sendto`` itself, so this only bounds the
wait where it does not (an emulated netlink) or a reply is lost: a lookup must never hang a test run."""

_forks = 0
"""Forks this process has come from (``os.register_at_fork``, counted in the child): a ``SockDiag`` opened
before the last one holds the parent's netlink port. Compared at every lookup instead of ``os.getpid()``, which
is a system call each time (glibc no longer caches it) and one of the check's few per test."""


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):  # (every platform with os.fork has it: where it is missing, nothing forks)
    os.register_at_fork(after_in_child=_forked)

_Query = tuple[FourTuple, int, int, int, bytes, bytes]
"""(key, family to ask in, local port, remote port, local address, remote address).

Addresses are canonical, the form replies are compared in: 4 bytes for IPv4 (also when asked as AF_INET6,
see :func:`_as_mapped`), 16 for IPv6."""


class NetlinkUnavailable(Exception):
    """``NETLINK_SOCK_DIAG`` cannot be used here (no netlink, refused, or it gave wrong answers): use /proc."""


# --- small helpers ------------------------------------------------------------------------------------------------


_STATES: dict[int, TcpState] = {int(s): s for s in TcpState}
_STATES[_TCP_NEW_SYN_RECV] = TcpState.SYN_RECV
"""The kernel's state numbers. Request sockets (a half-open connection a listener has not accepted yet) are
``TCP_NEW_SYN_RECV`` (12) inside the kernel; both interfaces should report them as SYN_RECV, and this maps them
in case one does not. Numbers not listed are unknown states, and such rows are left out."""


def _state(number: int) -> TcpState | None:
    """The kernel's state number as a :class:`TcpState`, or None if unknown."""
    return _STATES.get(number)


@functools.lru_cache(maxsize=1024)
def _pack_host(host: str) -> tuple[int, bytes] | None:
    """``(family, address bytes)`` of a host literal; IPv4-mapped IPv6 folds to IPv4. None if not a literal.

    Endpoints are normalised already; folding again here costs little and keeps a caller's ``::ffff:`` spelling
    from turning into a lookup the kernel answers differently. Cached: a test run talks to a handful of hosts
    (mostly loopback), and parsing them again for every tuple was a third of a lookup's cost.
    """
    if ":" in host:
        try:
            raw = _socket.inet_pton(_AF_INET6, host.split("%", 1)[0])
        except (OSError, ValueError):
            return None
        if raw[:12] == _V4_MAPPED_PREFIX:
            return _AF_INET, raw[12:]
        return _AF_INET6, raw
    try:
        return _AF_INET, _socket.inet_pton(_AF_INET, host)
    except (OSError, ValueError):
        return None


def _query(key: FourTuple) -> _Query | None:
    """The lookup for one ``(local, remote)`` tuple, or None if it cannot name a TCP socket (mixed families)."""
    try:
        (lhost, lport), (rhost, rport) = key
        local = _pack_host(lhost)
        remote = _pack_host(rhost)
    except (TypeError, ValueError, AttributeError):
        return None
    if local is None or remote is None or local[0] != remote[0]:
        return None
    if not (0 <= lport <= 0xFFFF and 0 <= rport <= 0xFFFF):
        return None
    return (key, local[0], lport, rport, local[1], remote[1])


def _as_mapped(q: _Query) -> _Query:
    """An IPv4 query asked as AF_INET6 (``::ffff:a.b.c.d``, how a dual-stack socket stores the tuple).

    The addresses stay 4 bytes: :func:`_encode_request` writes the mapped form, and replies are folded back
    to 4 bytes before they are compared.
    """
    key, _family, lport, rport, src, dst = q
    return (key, _AF_INET6, lport, rport, src, dst)


def _wire_address(family: int, raw: bytes) -> bytes:
    """An address as ``inet_diag_sockid`` holds it: 16 bytes; IPv4 in the first 4, or ``::ffff:`` for AF_INET6."""
    if family == _AF_INET6 and len(raw) == 4:
        return _V4_MAPPED_PREFIX + raw
    return raw.ljust(16, b"\x00")


def _canonical(family: int, raw: bytes) -> bytes:
    """An address from a reply in the form :func:`_query` uses: 4 bytes for IPv4 and IPv4-mapped IPv6."""
    if family == _AF_INET:
        return raw[:4]
    if raw[:12] == _V4_MAPPED_PREFIX:
        return raw[12:]
    return raw


def _encode_request(q: _Query, seq: int) -> bytes:
    _key, family, lport, rport, src, dst = q
    if family == _AF_INET:  # (``_wire_address``, inline for IPv4: the usual case, two calls less per lookup)
        src_wire, dst_wire = src.ljust(16, b"\x00"), dst.ljust(16, b"\x00")
    else:
        src_wire, dst_wire = _wire_address(family, src), _wire_address(family, dst)
    return _REQUEST.pack(
        _REQUEST.size,
        _SOCK_DIAG_BY_FAMILY,
        _NLM_F_REQUEST,
        seq,
        0,
        family,
        _IPPROTO_TCP,
        0,
        _ALL_STATES,
        _socket.htons(lport),
        _socket.htons(rport),
        src_wire,
        dst_wire,
        0,
        _INET_DIAG_NOCOOKIE,
        _INET_DIAG_NOCOOKIE,
    )


def _proc_hex(family: int, raw: bytes) -> str:
    """An address as ``/proc/net/tcp{,6}`` prints it: 32-bit words in *host* byte order, ``%08X`` each.

    The kernel prints the ``__be32`` words as integers, so on little-endian machines ``127.0.0.1`` reads
    ``0100007F`` and ``::1`` reads ``00000000000000000000000001000000``.
    """
    if family == _AF_INET:
        return "{:08X}".format(struct.unpack("=I", raw)[0])
    return "".join(f"{word:08X}" for word in struct.unpack("=4I", raw))


def _proc_keys(q: _Query) -> list[tuple[str, tuple[bytes, bytes]]]:
    """Where the tuple's row can be in ``/proc/net``: ``(file, (local column, remote column))``.

    An IPv4 connection can be in ``tcp6`` too, in ``::ffff:`` form, when its socket is AF_INET6 (dual-stack).
    """
    _key, family, lport, rport, src, dst = q
    lp, rp = f":{lport:04X}", f":{rport:04X}"
    if family == _AF_INET6:
        columns = [("tcp6", _proc_hex(family, src) + lp, _proc_hex(family, dst) + rp)]
    else:
        msrc, mdst = _wire_address(_AF_INET6, src), _wire_address(_AF_INET6, dst)
        columns = [
            ("tcp", _proc_hex(family, src) + lp, _proc_hex(family, dst) + rp),
            ("tcp6", _proc_hex(_AF_INET6, msrc) + lp, _proc_hex(_AF_INET6, mdst) + rp),
        ]
    return [(name, (local.encode(), remote.encode())) for name, local, remote in columns]


def _unique_queries(tuples: Iterable[FourTuple]) -> list[_Query]:
    seen: dict[FourTuple, None] = {}
    queries: list[_Query] = []
    for key in tuples:
        if key in seen:
            continue
        seen[key] = None
        q = _query(key)
        if q is not None:
            queries.append(q)
    return queries


# --- netlink --------------------------------------------------------------------------------------------------------


class SockDiag:
    """Exact lookups of known 4-tuples through NETLINK_SOCK_DIAG (no dump).

    Why exact lookups: each costs the kernel one hash probe, so the price does not depend on how many sockets
    the rest of the machine holds, unlike a dump or ``/proc/net/tcp``. Requests are batched, many ``nlmsghdr`` in
    one ``sendto``; Linux answers every one of them before ``sendto`` returns, so a batch costs one send and one
    ``recv`` per tuple. Batches are sized from the receive buffer: replies that do not fit would be dropped
    (the socket then reports ENOBUFS, and the lost ones are asked again in smaller batches).

    The socket is a ``_socket.socket``, the C class, so that the plugin's patches of ``socket.socket`` never see
    it, and it is AF_NETLINK, so scans that keep only AF_INET/AF_INET6 pass over it. Construction checks that
    the kernel really answers (a listener on loopback must be found): a kernel without ``inet_diag`` answers
    every lookup with ENOENT, which would otherwise read as "nothing lingers". Not for concurrent use by many
    threads at once beyond its internal lock; after ``fork()`` the child reopens its own socket on first use
    (a shared netlink socket would hand replies to whichever process reads first).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: _socket.socket | None = None
        self._forks = -1
        self._chunk = _MIN_CHUNK
        self._seq = itertools.count(1)
        self._buf = bytearray(_RECV_BUFFER)
        self._poll: select.poll | None = None
        with self._lock:
            self._open()
        try:
            self._self_test()
        except BaseException:
            self.close()
            raise

    # -- socket management --

    def _open(self) -> None:
        """Open, bind and size the netlink socket. Raises NetlinkUnavailable."""
        family = getattr(_socket, "AF_NETLINK", None)
        if family is None:
            raise NetlinkUnavailable("this platform has no AF_NETLINK")
        try:
            sock = _socket.socket(family, _socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
        except OSError as exc:
            raise NetlinkUnavailable(f"cannot open a NETLINK_SOCK_DIAG socket: {exc}") from exc
        try:
            sock.bind((0, 0))
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                # Errors then carry the failed request's header only, not its payload: smaller replies.
                sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, _WANTED_RCVBUF)
            rcvbuf = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF)
            sndbuf = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF)
        except OSError as exc:
            sock.close()
            raise NetlinkUnavailable(f"cannot set up the NETLINK_SOCK_DIAG socket: {exc}") from exc
        # Half the receive buffer, so that a batch fits with room to spare; requests must fit the send buffer.
        chunk = min(rcvbuf // (2 * _REPLY_COST), (sndbuf - 64) // _REQUEST.size, _MAX_CHUNK)
        self._chunk = max(_MIN_CHUNK, chunk)
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._sock = sock
        self._forks = _forks

    def _socket_for_this_process(self) -> _socket.socket:
        if self._sock is None:
            raise NetlinkUnavailable("SockDiag is closed")
        if self._forks != _forks:
            # Forked: the parent owns the shared netlink port; close our copy of the fd and open our own.
            self._sock.close()
            self._sock = None
            self._open()
            assert self._sock is not None
        return self._sock

    def close(self) -> None:
        """Close the netlink socket; later lookups raise NetlinkUnavailable. Idempotent."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._poll = None

    def _self_test(self) -> None:
        """Look up a fresh loopback listener; refuse netlink unless the kernel finds it.

        The probe is a ``_socket.socket`` opened and closed right here, so no hook and no later scan sees it.
        If no loopback listener can be made there is nothing to compare with, and netlink is trusted.
        """
        for family, host, unspecified in ((_AF_INET, "127.0.0.1", "0.0.0.0"), (_AF_INET6, "::1", "::")):
            try:
                probe = _socket.socket(family, _socket.SOCK_STREAM)
            except OSError:
                continue
            try:
                try:
                    probe.bind((host, 0))
                    probe.listen(1)
                    port = probe.getsockname()[1]
                except OSError:
                    continue
                key: FourTuple = ((host, port), (unspecified, 0))
                found = self.lookup([key])
            finally:
                probe.close()
            if found.get(key) != TcpState.LISTEN:
                raise NetlinkUnavailable(
                    "NETLINK_SOCK_DIAG did not find a loopback listener (no inet_diag/tcp_diag in this kernel?)"
                )
            return

    # -- lookups --

    def lookup(self, tuples: Iterable[FourTuple]) -> dict[FourTuple, TcpState]:
        """State of each ``(local, remote)`` tuple the kernel has; unknown tuples are absent from the result.

        TIME_WAIT rows are found like any other. An IPv4 tuple missed as AF_INET is asked again as AF_INET6 in
        ``::ffff:`` form, the way a dual-stack socket stores it. Raises NetlinkUnavailable if the kernel refuses
        or does not answer within a bound.
        """
        queries = _unique_queries(tuples)
        result: dict[FourTuple, TcpState] = {}
        if not queries:
            return result
        with self._lock:
            sock = self._socket_for_this_process()
            missed = self._run(sock, queries, result)
            retry = [_as_mapped(q) for q in missed if q[1] == _AF_INET]
            if retry:
                self._run(sock, retry, result)
        return result

    def _run(self, sock: _socket.socket, queries: list[_Query], result: dict[FourTuple, TcpState]) -> list[_Query]:
        """Ask for all ``queries`` in batches; fill ``result``; return the queries the kernel did not find."""
        missed: list[_Query] = []
        todo = queries
        pos = 0
        losses = 0
        while pos < len(todo):
            batch = todo[pos : pos + self._chunk]
            pos += len(batch)
            lost = self._exchange(sock, batch, result, missed)
            if lost:
                # Replies were dropped for lack of buffer: ask those again, in smaller batches from now on.
                losses += 1
                if losses > 64:
                    raise NetlinkUnavailable("NETLINK_SOCK_DIAG keeps dropping replies (ENOBUFS)")
                self._chunk = max(1, self._chunk // 2)
                todo = lost + todo[pos:]
                pos = 0
        return missed

    def _exchange(
        self,
        sock: _socket.socket,
        batch: list[_Query],
        result: dict[FourTuple, TcpState],
        missed: list[_Query],
    ) -> list[_Query]:
        """Send one batch and read until each request has its answer; return the requests whose reply was lost."""
        pending: dict[int, _Query] = {}
        parts: list[bytes] = []
        for q in batch:
            seq = next(self._seq) & 0xFFFFFFFF
            pending[seq] = q
            parts.append(_encode_request(q, seq))
        try:
            sock.sendto(b"".join(parts), (0, 0))
        except OSError as exc:
            raise NetlinkUnavailable(f"NETLINK_SOCK_DIAG refused the request: {exc}") from exc
        deadline: float | None = None
        overrun = False
        buf = self._buf
        view = memoryview(buf)
        while pending:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                if overrun:
                    break  # everything that was queued has been read; the rest was dropped
                now = time.monotonic()
                if deadline is None:
                    deadline = now + _TIMEOUT
                if now >= deadline:
                    raise NetlinkUnavailable(
                        f"NETLINK_SOCK_DIAG did not answer {len(pending)} of {len(batch)} lookups in {_TIMEOUT}s"
                    ) from None
                assert self._poll is not None
                self._poll.poll(max(1, int((deadline - now) * 1000)))
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    overrun = True
                    continue
                raise NetlinkUnavailable(f"reading NETLINK_SOCK_DIAG failed: {exc}") from exc
            self._parse(view[:n], pending, result, missed)
        return list(pending.values())

    @staticmethod
    def _parse(
        data: memoryview,
        pending: dict[int, _Query],
        result: dict[FourTuple, TcpState],
        missed: list[_Query],
    ) -> None:
        """Consume the netlink messages in ``data``: each answers (and removes) the pending request of its seq.

        Replies are checked against the request, because the kernel answers a tuple it does not have with the
        listener on the same local endpoint, if there is one. Messages for other seqs (a batch abandoned by an
        earlier error) are skipped.
        """
        offset = 0
        end = len(data)
        while offset + _NLMSGHDR.size <= end:
            length, mtype, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size or offset + length > end:
                break
            body = offset + _NLMSGHDR.size
            offset += (length + 3) & ~3
            q = pending.get(seq)
            if q is None or mtype in (_NLMSG_NOOP, _NLMSG_DONE, _NLMSG_OVERRUN):
                continue
            if mtype == _NLMSG_ERROR:
                (err,) = _NLMSGERR.unpack_from(data, body)
                if err in (-errno.EAGAIN, -errno.ENOBUFS, -errno.ENOMEM):
                    continue  # the reply could not be queued: stays pending, asked again
                del pending[seq]
                if err in (0, -errno.ENOENT) or (err == -errno.EINVAL and q[1] == _AF_INET6):
                    # ENOENT: no such socket. EINVAL for AF_INET6: a kernel without IPv6 has no such socket either.
                    missed.append(q)
                    continue
                raise NetlinkUnavailable(f"NETLINK_SOCK_DIAG lookup failed: {os.strerror(-err)}")
            if mtype != _SOCK_DIAG_BY_FAMILY or length < _NLMSGHDR.size + _DIAG_MSG.size:
                continue
            del pending[seq]
            family, number, _timer, _retrans, sport, dport, src, dst = _DIAG_MSG.unpack_from(data, body)
            key, _qfamily, lport, rport, qsrc, qdst = q
            state = _STATES.get(number)
            if family == _AF_INET:  # (``_canonical``, inline for IPv4)
                src, dst = src[:4], dst[:4]
            else:
                src, dst = _canonical(family, src), _canonical(family, dst)
            if state is None or sport != lport or dport != rport or src != qsrc or dst != qdst:
                missed.append(q)
                continue
            result[key] = state


# --- /proc fallback -------------------------------------------------------------------------------------------------


def proc_net_lookup(tuples: Iterable[FourTuple]) -> dict[FourTuple, TcpState]:
    """Same result as :meth:`SockDiag.lookup`, from ``/proc/net/tcp`` and ``/proc/net/tcp6``.

    The fallback where netlink is refused. The requested tuples are encoded the way the files print them, so
    each row costs one dict probe rather than a parse; the cost still grows with every socket in the network
    namespace. A row can be listed twice when the table changes under the read; the first one wins. The files
    are read as bytes: they are ASCII, and this path must not depend on codecs (nor on anything else that can
    fail where netlink already did).
    """
    wanted: dict[str, dict[tuple[bytes, bytes], FourTuple]] = {"tcp": {}, "tcp6": {}}
    for q in _unique_queries(tuples):
        for name, columns in _proc_keys(q):
            wanted[name][columns] = q[0]
    result: dict[FourTuple, TcpState] = {}
    for name, columns_to_key in wanted.items():
        if not columns_to_key:
            continue
        try:
            with open(f"/proc/net/{name}", "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue  # no tcp6 without IPv6
        except OSError as e:
            if _out_of_fds(e):
                raise  # for now only: the caller says so for this lookup
            _shared.proc_error = f"/proc/net/{name} cannot be read ({e.strerror or e}): TIME_WAIT is not checked"
            continue
        for line in lines[1:]:
            fields = line.split(None, 4)
            if len(fields) < 4:
                continue
            key = columns_to_key.get((fields[1], fields[2]))
            if key is None or key in result:
                continue
            try:
                state = _state(int(fields[3], 16))
            except ValueError:
                continue
            if state is not None:
                result[key] = state
    return result


# --- process-wide entry point ---------------------------------------------------------------------------------------


class _Shared:
    """The process-wide SockDiag, or the decision to use /proc from now on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.diag: SockDiag | None = None
        self.use_proc = False
        self.reason: str | None = None  # why netlink was given up, for the session's one notice
        self.proc_error: str | None = None

    def close(self) -> None:
        with self.lock:
            if self.diag is not None:
                self.diag.close()
                self.diag = None


_shared = _Shared()
atexit.register(lambda: _shared.close())


def prepare() -> None:
    """Open the process-wide netlink socket now, while fds are free: a later lookup then needs no new fd, even
    in a test that ran the process out of them. Quiet: if netlink cannot be used, the first lookup finds out
    again and says so, as it would have."""
    shared = _shared
    with shared.lock:
        if shared.diag is None and not shared.use_proc:
            with contextlib.suppress(NetlinkUnavailable, OSError):
                shared.diag = SockDiag()


def _out_of_fds(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def lookup_states(tuples: Iterable[FourTuple]) -> dict[FourTuple, TcpState]:
    """State of each known 4-tuple, through one process-wide :class:`SockDiag`, else ``/proc/net``.

    The first netlink failure (cannot open, refused, no answer) switches this process to
    :func:`proc_net_lookup` for good: a check that failed once would fail again, and paying for it on every
    call would cost more than the fallback. Thread-safe.
    """
    keys = list(tuples)
    shared = _shared
    with shared.lock:
        if not shared.use_proc:
            try:
                if shared.diag is None:
                    shared.diag = SockDiag()
                return shared.diag.lookup(keys)
            except (NetlinkUnavailable, OSError) as e:
                if _out_of_fds(e):
                    raise  # not netlink's fault: the process has no fd for a socket right now (the caller says so)
                shared.use_proc = True
                shared.reason = f"netlink sock_diag lookups failed ({e}); TIME_WAIT is read from /proc/net/tcp, " \
                                "which is slower and grows with the machine's socket count"
                if shared.diag is not None:
                    shared.diag.close()
                    shared.diag = None
    return proc_net_lookup(keys)


def degradation() -> str | None:
    """Why TIME_WAIT lookups are slower or off in this process, or None when netlink works."""
    return _shared.proc_error or _shared.reason


__all__ = ["NetlinkUnavailable", "SockDiag", "degradation", "lookup_states", "proc_net_lookup"]
