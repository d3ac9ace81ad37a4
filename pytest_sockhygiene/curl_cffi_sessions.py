"""The servers each curl_cffi session sent requests to, noted as ``request()`` is called.

curl_cffi's ``Session`` and ``AsyncSession`` hand every request to libcurl, which opens the connection in C and
keeps it for the next request: a session a session fixture made connected during the first test that used it,
which then failed with an ``established`` leak of ``origin unknown``. Nothing on the session gives that
connection's fd (the session resets its curl handle after each transfer, which forgets the last socket, and an
``AsyncSession``'s connections live in its multi handle's cache), so ``request()`` of both classes is wrapped to
note, per session, the origin each URL names (and the session's proxies, where it has any): the walk over
broader fixtures' values (``holders.py``) then places a held connection to one of them as the session's
(``far_ends.py``), as a zmq socket's endpoints are.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable, Collection, Iterable
from typing import Any
from urllib.parse import urljoin, urlsplit

from . import origin as origin_mod
from .copies import copied
from .endpoints import Address, normalize_host
from .trackers.patching import PatchOnImport

MODULE = "curl_cffi.requests.session"

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_PROXY_DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}
_NOT_YET: Any = object()
_KEPT_PER_SESSION = 64
"""Origins kept per session: a crawler's session visits many; the connections it keeps go to the latest."""


def url_address(url: Any, base_url: Any = None, defaults: dict[str, int] | None = None) -> Address | None:
    """The (host, port) a request to ``url`` connects to: relative to ``base_url`` if it names no host, the
    scheme's port if it names none. None for what is not an http(s)/ws(s) URL (or a proxy URL, with
    ``_PROXY_DEFAULT_PORTS``)."""
    if isinstance(url, bytes):
        url = url.decode("utf-8", "replace")
    if not isinstance(url, str):
        return None
    defaults = defaults or _DEFAULT_PORTS
    try:
        parts = urlsplit(url)
        if not parts.netloc and isinstance(base_url, str) and base_url:
            parts = urlsplit(urljoin(base_url, url))
        scheme = parts.scheme.lower()
        if scheme not in defaults or not parts.hostname:
            return None
        port = parts.port or defaults[scheme]
    except ValueError:  # a port out of range, a malformed netloc
        return None
    return normalize_host(parts.hostname.lower()), port


def _proxy_addresses(proxies: Any) -> Iterable[Address]:
    """The proxies a session (or one request) names: ``{"https": "http://proxy:3128", ...}`` or one URL."""
    values = proxies.values() if isinstance(proxies, dict) else (proxies,)
    for value in values:
        address = url_address(value, defaults=_PROXY_DEFAULT_PORTS)
        if address is not None:
            yield address


def _state(session: Any) -> dict[str, Any]:
    """The session's own attributes, read without running its code (no properties, no ``__getattr__``)."""
    state = getattr(session, "__dict__", None)
    return state if isinstance(state, dict) else {}


class _RequestNotes(PatchOnImport):
    """``request()`` of curl_cffi's ``Session`` and ``AsyncSession``: each origin it is asked for is noted on the
    way in. One watch of the module for both classes (two watches of one module would each wrap its loader)."""

    MODULE, METHOD = MODULE, "request"
    CLASSES = ("Session", "AsyncSession")

    def __init__(self, on_error: Callable[[BaseException], None],
                 origins: weakref.WeakKeyDictionary[Any, dict[Address, origin_mod.Origin | None]]) -> None:
        super().__init__(on_error)
        self._origins = origins

    def _patch(self, module: Any) -> None:
        if self._watcher is not None and not self._patches:  # (as PatchOnImport's: not after an uninstall, nor twice)
            for name in self.CLASSES:
                cls = getattr(module, name, None)
                if isinstance(cls, type) and "request" in vars(cls):
                    self._patches.wrap(cls, self.METHOD, self.wrapper)

    def wrapper(self, original: Any) -> Any:
        origins = self._origins
        on_error = self._on_error

        def note(session: Any, url: Any, kwargs: dict[str, Any]) -> None:
            try:
                state = _state(session)
                noted = origins.get(session)
                if noted is None:
                    noted = origins[session] = {}
                found = [url_address(url, state.get("base_url")), *_proxy_addresses(state.get("proxies") or {})]
                for key in ("proxies", "proxy"):
                    if kwargs.get(key):
                        found.extend(_proxy_addresses(kwargs[key]))
                for address in found:
                    if address is not None:
                        # the user's line that first sent the session there (a walk of the stack, once per origin)
                        first = noted.pop(address, _NOT_YET)
                        noted[address] = origin_mod.capture(skip=1) if first is _NOT_YET else first  # latest last
                if len(noted) > _KEPT_PER_SESSION:  # (threads may share a session: a copy, and pops that never raise)
                    for stale in tuple(noted)[:-_KEPT_PER_SESSION]:
                        noted.pop(stale, None)
            except Exception as e:  # noqa: BLE001 - never let a plugin fault reach the user's request
                on_error(e)

        if inspect.iscoroutinefunction(original):  # AsyncSession's: still a coroutine function to whoever asks

            async def arequest(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True
                note(self, url, kwargs)
                return await original(self, method, url, *args, **kwargs)

            return arequest

        def request(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            note(self, url, kwargs)
            return original(self, method, url, *args, **kwargs)

        return request


class CurlCffiRequests:
    """The origins of the requests of every curl_cffi session alive, per session (weakly: kept only as long as
    the session); its ``patches`` are installed with the socket hooks."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self.origins: weakref.WeakKeyDictionary[Any, dict[Address, origin_mod.Origin | None]] = (
            weakref.WeakKeyDictionary())
        """Session -> the origins it was sent to, oldest first, each with the user's line that first sent it there."""
        self.patches = (_RequestNotes(on_error, self.origins),)

    @staticmethod
    def session_type() -> type | None:
        """curl_cffi's session base class, if curl_cffi is imported already (the walk imports nothing)."""
        cls = getattr(sys.modules.get(MODULE), "BaseSession", None)
        return cls if isinstance(cls, type) else None

    @staticmethod
    def is_closed(session: Any) -> bool:
        return _state(session).get("_closed") is True

    def addresses(self, session: Any) -> list[Address]:
        """Where ``session``'s requests went; none once it is closed (what goes there now is someone else's)."""
        if self.is_closed(session):
            return []
        try:
            return list(self.origins.get(session, ()))
        except TypeError:  # not weakly referenceable: never noted
            return []

    def others_sent_to(self, address: Address, but: Collection[int]) -> bool:
        """Whether a session alive and not closed, other than those whose ``id()`` is in ``but`` (the broader
        fixtures'), was sent to ``address``'s port (by port alone: a name and an address that may be the same host
        are not told apart, so this says yes where it cannot tell)."""
        port = address[1]
        sessions = copied(self.origins.items)  # (a request noted in another thread while we looked: tried again)
        if sessions is None:
            return True  # cannot tell: one connection each, as for a channel
        for other, noted in sessions:
            if id(other) in but or self.is_closed(other):
                continue
            if any(p == port for _, p in tuple(noted)):  # (a copy made in one step: a request may add meanwhile)
                return True
        return False


__all__ = ["CurlCffiRequests", "url_address"]
