"""TCP endpoints: one normal form for addresses, and the ignore globs that match them.

Addresses reach the plugin from several places (``getsockname()``, psutil, the kernel's tables, the argument
of ``connect()``) in slightly different shapes: IPv6 tuples of four, IPv4-mapped IPv6 addresses, scope ids.
Everything is folded into ``(host, port)`` here so that comparing and printing are the same everywhere.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
from typing import Any

Endpoint = tuple[str, int]
"""A normalised ``(host, port)``; host is a bare IPv4 or IPv6 literal without brackets."""

FourTuple = tuple[Endpoint, Endpoint]
"""``(local, remote)`` of one side of a connection."""

Address = tuple[str, int]
"""A host and port as a client was told them: an IP literal (normalised) or a name, not resolved."""

LOCALHOST_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
"""Host names that mean this machine's loopback addresses."""


def parse_address(text: str, default_port: int | None = None) -> Address | None:
    """``host:port`` or ``[v6]:port`` as a client library was given it (a gRPC target's authority, a zmq
    endpoint's), the host lower-cased and normalised, never resolved; None if it is not one. With
    ``default_port``, the port may be left out: ``host``, ``[v6]`` or a bare IPv6 literal."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            return None
        port_text = rest[1:] if rest.startswith(":") else ""
    elif default_port is not None and text.count(":") > 1:  # a bare IPv6 literal
        host, port_text = text, ""
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not host:
        return None
    try:
        port = int(port_text) if port_text or default_port is None else default_port
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    return normalize_host(host.lower()), port


class ConfigError(ValueError):
    """A user-supplied value (ini, marker, option) is invalid; the message says what and where."""


@functools.lru_cache(maxsize=256)
def normalize_host(host: str) -> str:
    """Fold the spellings of one address into one: drop ``%scope`` and unwrap IPv4-mapped IPv6."""
    host = host.split("%", 1)[0]
    if ":" in host:
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            return host
        mapped = ip.ipv4_mapped
        return str(mapped) if mapped is not None else str(ip)
    return host


def endpoint_from_sockaddr(addr: Any) -> Endpoint | None:
    """``(host, port[, flow, scope])`` as Python's socket module gives it -> Endpoint, or None if not inet."""
    if isinstance(addr, tuple) and len(addr) >= 2 and isinstance(addr[0], str) and isinstance(addr[1], int):
        return (normalize_host(addr[0]), addr[1])
    return None


def format_endpoint(ep: Endpoint | None) -> str:
    """``127.0.0.1:80`` or ``[::1]:80``: the spelling ignore globs are matched against."""
    if ep is None:
        return "-"
    host, port = ep
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


_GLOB_RE = re.compile(r"^(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]+)):(?P<port>[^:]+)$")
_PORT_RE = re.compile(r"^[0-9*?\[\]!-]+$")


def _unclosed_bracket(glob: str) -> bool:
    """Whether a ``[`` of the glob has no closing ``]``: fnmatch then takes it literally, and a port number never
    contains one. The scan is fnmatch's own (``[!...]``, and a ``]`` first in the set is a member)."""
    i, n = 0, len(glob)
    while i < n:
        if glob[i] == "[":
            j = i + 1
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                return True
            i = j
        i += 1
    return False


@functools.lru_cache(maxsize=256)
def _matches_some_port(glob: str) -> bool:
    """Whether the port glob matches at least one port, 0-65535: a glob that cannot (``-5``, ``7[0-9]000``)
    would silently ignore nothing. Tried against every port (a few ms, once per distinct glob)."""
    match = re.compile(fnmatch.translate(glob)).match
    return any(match(str(p)) for p in range(65536))


class IgnorePattern:
    """An endpoint glob such as ``127.0.0.1:5432``, ``*:6379`` or ``[::1]:*``.

    A socket is ignored when the glob matches its local or its remote endpoint: a database connection is named
    by its remote address, a listener by its local one, and users write the address they know.
    """

    __slots__ = ("_hosts", "_port", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise ConfigError(f"ignore pattern must be a string like '127.0.0.1:5432', got {text!r}")
        m = _GLOB_RE.match(text.strip())
        if not m:
            raise ConfigError(
                f"malformed ignore pattern {text!r}: expected HOST:PORT such as "
                "'127.0.0.1:5432', '*:6379' or '[::1]:*'"
            )
        port = m.group("port")
        if not _PORT_RE.match(port) or (port.isdigit() and not 0 <= int(port) <= 65535):
            raise ConfigError(f"malformed ignore pattern {text!r}: port {port!r} is not a port number or glob")
        if _unclosed_bracket(port):
            raise ConfigError(f"malformed ignore pattern {text!r}: port {port!r} has a '[' that is never closed")
        if not port.isdigit() and not _matches_some_port(port):
            raise ConfigError(f"malformed ignore pattern {text!r}: port {port!r} can never match a port number "
                              "(0-65535)")
        host = m.group("v6") if m.group("v6") is not None else m.group("host")
        if not host:
            raise ConfigError(f"malformed ignore pattern {text!r}: empty host (use '*' for any host)")
        if m.group("v6") is not None and not any(c in host for c in "*?[") and ":" not in host:
            raise ConfigError(f"malformed ignore pattern {text!r}: brackets are for IPv6 addresses")
        hosts: tuple[str, ...] = (host.lower(),)
        if not any(c in host for c in "*?["):
            if host.lower() == "localhost":
                hosts = ("127.0.0.1", "::1")
            else:
                try:
                    ipaddress.ip_address(host.split("%", 1)[0])
                except ValueError:
                    raise ConfigError(
                        f"malformed ignore pattern {text!r}: {host!r} is not an IP address; host names are not "
                        "resolved (use e.g. '10.0.0.5:5432', or 'localhost' for both loopbacks)"
                    ) from None
                hosts = (normalize_host(host).lower(),)
        self.text = text
        self._hosts = hosts
        self._port = port

    def matches(self, ep: Endpoint | None) -> bool:
        if ep is None:
            return False
        host, port = ep
        return fnmatch.fnmatchcase(str(port), self._port) and any(
            fnmatch.fnmatchcase(host.lower(), h) for h in self._hosts)

    def __repr__(self) -> str:
        return f"IgnorePattern({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IgnorePattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)
