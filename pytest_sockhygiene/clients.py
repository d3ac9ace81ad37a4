"""Clients: which HTTP clients a test created and never closed, and which sockets belong to whose pool.

Trackers (``hookspecs.py``) report creation and closing; this registry keeps one small record per client,
*weakly*: it never keeps a user's client alive, and it notices a client that was garbage-collected without
being closed (a weak reference's callback fires with the record, not the client). httpx removed its own unclosed-client
warning because ``__del__`` could not tell reliably; a record that knows whether ``close()`` ran can.

A client created inside another tracked client's constructor (the urllib3 PoolManager inside a
``requests.Session``) is part of that client and is not counted again.

A client is a connection leak (``clients``) only if it *used* the network: a connect was attributed to one of its
requests (``origin.request_state``), or a socket was seen in its pool. An unclosed client that never did (built to
test URL merging or request preparation, or served by respx, pytest-httpx or a mock adapter, which answer below
the client) holds no socket: it counts under ``unused_clients``, unlimited by default.

A ``close()`` that runs from a finalizer (a ``__del__`` on the stack: the client's own, or the one of an object
that holds it) is not a close by the code. Freed by reference counting, ``__del__`` runs before the weak
finalizer; freed in a reference cycle, after it. Either way the client is judged "garbage-collected without
being closed": one verdict, whichever way the collector reached it.
"""

from __future__ import annotations

import collections
import sys
import threading
import weakref
from collections.abc import Hashable, Iterable
from typing import Any, Callable

from . import origin as origin_mod
from .events import local_endpoint, peer_endpoint
from .imports import ImportWatcher
from .trackers.patching import holds_connection
from .verdict import BUSY_NOTE, Item


class ClientRecord:
    """What the plugin knows of one client. Hashable by identity and the same object for the client's whole life:
    connect events name their client by it (``SocketEvent.client``)."""

    __slots__ = (
        "__weakref__",
        "closed",
        "collected",
        "connections",
        "in_flight",
        "kind",
        "most_in_flight",
        "networked",
        "origin",
        "owner",
        "part_of",
        "pooled",
        "ref",
        "requests",
        "shared",
        "websockets",
        "windows",
    )

    def __init__(self, kind: str, origin: origin_mod.Origin | None, owner: str | None,
                 windows: tuple[Any, ...], networked: bool) -> None:
        self.kind = kind
        self.origin = origin
        self.owner = owner
        self.windows = windows  # the sinks (test window, measure blocks) open when the client was created
        self.closed = False
        self.collected = False
        self.networked = networked
        self.requests = 0
        self.in_flight: list[None] = []
        """One entry per request of its own under way now: appended as one begins, popped as it ends (returned,
        raised or was cancelled), by the trackers' request wrappers (``trackers.patching._enter_request``). A list,
        not a number: its ``append`` and ``pop`` are atomic between threads, where ``+= 1`` can lose a decrement,
        and a lost one would leave a client whose requests ran one after another reading as concurrent for the rest
        of its life."""
        self.most_in_flight = 0
        """The most requests it had under way at once: 2 or more, and its requests overlapped in time (threads,
        tasks), so its pool needed a connection per request in flight - not a new connection per request. (A race
        on it can only keep a smaller value: never one that was not in flight.)"""
        self.websockets = 0
        """Websocket handshakes among its requests (trackers that can tell: aiohttp's ``ws_connect``)."""
        self.connections = 0
        """Connects attributed to this client's requests (counted by the socket recorder, see
        ``origin.request_state``)."""
        self.pooled = False  # a socket was seen in its pool (a connect the recorder could not attribute)
        self.ref: Callable[[], Any] | None = None
        self.shared = False  # adopted process-wide client: never counted, never a session-level leak
        self.part_of: ClientRecord | None = None
        """The client whose transport made this one during a request (``ClientRegistry.created``): that client
        answers for it - its connections are that client's, it is never counted on its own."""

    def created_in(self, window: Any) -> bool:
        """The client is ``window``'s own: created while it was open, by no broader-scoped fixture."""
        return self.owner is None and window in self.windows

    def mark_pooled(self) -> None:
        """A socket was seen in its pool: it (and the client it is part of) opened a real connection."""
        self.pooled = True
        if self.part_of is not None:
            self.part_of.pooled = True

    @property
    def used(self) -> bool:
        """It opened a real connection at some point of its life (attributed connect, or a socket in its pool)."""
        return self.connections > 0 or self.pooled

    def label(self, fmt: Callable[[origin_mod.Origin | None], str]) -> str:
        if self.origin is None and self.owner:
            return f"{self.kind} ({self.owner})"
        owner = f", {self.owner}" if self.owner else ""
        return f"{self.kind} {origin_mod.created(fmt(self.origin))}{owner}"


_IMPORT_DEPTH = 16
"""Frames above a client's creation searched for the module-level code that made it (through a factory or two):
a client made in a test is made under pytest's few dozen frames, which are not walked to the bottom."""


_constructors_of: weakref.WeakKeyDictionary[type, frozenset[Any]] = weakref.WeakKeyDictionary()


def _constructors(cls: type) -> frozenset[Any]:
    """The code of every ``__init__`` in a client class's MRO: the frames a client's origin is found beyond.
    Kept per class (weakly: a class made in a test may go): every client of a class asks the same."""
    codes = _constructors_of.get(cls)
    if codes is None:
        found = set()
        for klass in cls.__mro__:
            code = getattr(klass.__dict__.get("__init__"), "__code__", None)
            if code is not None:
                found.add(code)
        codes = _constructors_of[cls] = frozenset(found)
    return codes


_module_locks: dict[str, Any] | None = getattr(sys.modules.get("_frozen_importlib"), "_module_locks", None)
"""importlib's locks of the modules being imported, by name (CPython 3.9-3.13): empty when no import is under
way in any thread, which is nearly always as a client is made. ``__spec__._initializing`` is only ever set while
its module's lock is held, so an empty dict answers ``made_while_imported`` without walking a frame."""


def made_while_imported(frame: Any) -> bool:
    """Whether ``frame`` (a client's creation) runs, or was called from, the top-level code of a module that is
    being imported: the innermost module-level frame on the stack belongs to a module whose import is under way
    (``__spec__._initializing``, set by importlib while it runs the module's code). A doctest's examples, code
    run with ``exec`` or ``runpy`` and the test's own module-level code at collection are not such imports, or
    are not inside a test."""
    if _module_locks is not None and not _module_locks:
        return False  # no import under way (the walk below found the same, 16 frames later)
    depth = 0
    while frame is not None and depth < _IMPORT_DEPTH:
        if frame.f_code.co_name == "<module>":
            spec = frame.f_globals.get("__spec__")
            return bool(getattr(spec, "_initializing", False))
        frame = frame.f_back
        depth += 1
    return False


_PART_DEPTH = 8
"""Frames above a client's creation searched for a part of the client whose request is under way."""


def _parts_of(outer: ClientRecord) -> tuple[Any, set[int]] | None:
    """``outer``'s client and the ``id()`` of the objects it holds as attributes, directly or in a dict attribute
    (httpx's ``_transport`` and ``_mounts``, a requests.Session's ``adapters``); None if it is gone or has none."""
    client = outer.ref() if outer.ref is not None else None
    if client is None:
        return None
    try:
        attributes = list(vars(client).values())
    except TypeError:  # no __dict__
        return None
    parts = {id(v) for v in attributes}
    for v in attributes:
        if isinstance(v, dict):
            parts.update(id(w) for w in list(v.values()))
    return client, parts


def _made_directly_by_a_part_of(outer: ClientRecord, frame: Any, constructors: frozenset[Any]) -> bool:
    """Whether the code that made a client (``frame``, past its class's constructors) is a method of a part of
    ``outer``'s client itself: its transport making its aiohttp session (httpx-aiohttp's ``get_client``), an
    adapter making its pool. Not an app that the request reached through an in-process transport and that made a
    client of its own: its frame is the app's, a few frames below the transport's."""
    while frame is not None and frame.f_code in constructors:
        frame = frame.f_back
    found = _parts_of(outer)
    if frame is None or found is None:
        return False
    client, parts = found
    owner = frame.f_locals.get("self") if "self" in frame.f_code.co_varnames else None
    return owner is not None and owner is not client and id(owner) in parts


def _made_by_a_part_of(outer: ClientRecord, frame: Any) -> bool:
    """Whether a frame near ``frame`` (a client's creation) runs a method of an object ``outer``'s client holds as
    an attribute, directly or in a dict attribute (httpx's ``_transport`` and ``_mounts``, a requests.Session's
    ``adapters``): the client's own machinery, not the code its request reached (an app behind an ASGI
    transport, whose clients are the test's as any others)."""
    found = _parts_of(outer)
    if found is None:
        return False
    client, parts = found
    for _ in range(_PART_DEPTH):
        if frame is None:
            return False
        owner = frame.f_locals.get("self") if "self" in frame.f_code.co_varnames else None
        if owner is not None and owner is not client and id(owner) in parts:
            return True
        frame = frame.f_back
    return False


def _mark_collected(record: ClientRecord) -> None:
    record.collected = True


def _watched(client: Any, record: ClientRecord) -> weakref.ref[Any]:
    """A weak reference to ``client`` that marks ``record`` collected when the client goes. The record holds it
    (``record.ref``) for as long as the registry holds the record, which is what keeps the callback armed: a
    ``weakref.finalize`` would do the same through a registry of its own, at three times the cost per client."""
    return weakref.ref(client, lambda _ref: _mark_collected(record))


_FINALIZER_DEPTH = 12
"""Frames looked at above the tracker's close wrapper. A finalizer that closes a client calls close() itself or
through a method or two of its own (``__del__`` -> ``self.close()`` -> ``self._client.close()``): a few frames,
never a dozen. Each close walks them all when no ``__del__`` is there: at 40 that was pytest's whole stack, at
every close."""


_walk_ends: frozenset[Any] = frozenset()
"""Code objects where that walk stops (``end_finalizer_walk_at``): pytest's calls into a test function or fixture.
A finalizer's close runs above them, so it is found before them; the close of a test's own ``with`` block meets
one two or three frames up, instead of walking all twelve."""


def end_finalizer_walk_at(codes: Iterable[Any]) -> None:
    """Stop the finalizer rule's walk at frames running these code objects (the plugin passes pytest's)."""
    global _walk_ends
    _walk_ends = frozenset(codes)


def _in_finalizer() -> bool:
    """Whether a ``__del__`` is running on this thread's stack: the close under way is the collector's doing."""
    ends = _walk_ends
    try:
        frame: Any = sys._getframe(2)
        for _ in range(_FINALIZER_DEPTH):
            code = frame.f_code
            if code.co_name == "__del__":
                return True
            if code in ends:
                return False
            frame = frame.f_back
    except (ValueError, AttributeError):  # the top of the stack: at _getframe (a bare thread), or f_back None
        return False
    return False


class FirstAnswer:
    """Asks a ``firstresult`` hook about one client the way pluggy does when no implementation is a wrapper: the
    most recently registered (and ``tryfirst``) first, the first answer that is not None wins. Without pluggy's
    call machinery, which costs more than a built-in tracker's answer, and the registry asks at every look of a
    test for each client it created. The implementations are read again at every call (a conftest registered
    since is asked too); any wrapper among them and the hook is called as usual. Hook-call monitoring (pytester's
    recorder, ``pytest --debug``) does not see these calls, as it does not see ``patching._leave_request``'s
    direct question to a tracker; and a recorder then keeps no client alive through a recorded call."""

    __slots__ = ("_caller", "_impls", "_plain")

    def __init__(self, caller: Any) -> None:
        self._caller = caller
        self._impls: Any = None
        self._plain: list[tuple[Callable[..., Any], bool]] | None = None

    def __call__(self, client: Any) -> Any:
        impls = self._caller.get_hookimpls()
        if impls != self._impls:  # (HookImpl compares by identity: a new list of the same ones is equal)
            self._impls = impls
            plain = not any(getattr(i, "hookwrapper", False) or getattr(i, "wrapper", False) for i in impls)
            self._plain = [(i.function, bool(i.argnames)) for i in reversed(impls)] if plain else None
        if self._plain is None:
            return self._caller(client=client)
        for function, takes_client in self._plain:
            answer = function(client) if takes_client else function()
            if answer is not None:
                return answer
        return None


class ClientRegistry:
    """Records of clients; the trackers' side of the interface is :meth:`created`, :meth:`closed`,
    :meth:`request`, :meth:`constructing`, :meth:`adopt` and :meth:`when_imported`."""

    def __init__(self, current_owner: Callable[[], str | None], current_sinks: Callable[[], tuple[Any, ...]],
                 hook: Any = None) -> None:
        self._current_owner = current_owner
        self._current_sinks = current_sinks
        self.hook = hook
        self._answers: dict[str, FirstAnswer] = {}
        """The client hooks' ``FirstAnswer``s by name, each made when first asked (``_ask``)."""
        self._by_id: dict[int, ClientRecord] = {}  # live clients, to find a record from close() / send()
        self.held: list[ClientRecord] = []
        """Every record not yet forgotten (ids are reused after collection). Empty on the clean path of a suite
        with no tracked client alive, which is checked for every test: a plain attribute, not a property."""
        self.recorded = 0
        """How many records were ever made: a window during which it did not move created no client, and with no
        socket event and the same fds it is clean whatever clients other code keeps alive (a session fixture's,
        a plugin's): its check need not ask about any of them."""
        self.unseen_connects = 0
        """Clients found right after a request with a connection in their pool that no connect of theirs was seen
        opening and that is no socket module's socket (``trackers.patching._leave_request``): C code opened it -
        an event loop such as uvloop, a C library - so the connections and TIME_WAIT counts miss what it opened
        and closed. Said in the session health. (A client that connects outside a request, in its constructor,
        has a socket module's socket there: not counted.)"""
        self._local = threading.local()
        self._lock = threading.Lock()
        self._imports: ImportWatcher | None = None
        self.on_error: Callable[[BaseException], None] = lambda e: None

    # -- the trackers' interface -----------------------------------------------------------------------------

    def created(self, client: Any, kind: str | None = None, networked: bool = True) -> None:
        """A client was created. ``networked=False`` for a client whose transport cannot hold a socket (a mock,
        ASGI or WSGI transport): it is remembered but never counted."""
        if getattr(self._local, "depth", 0) > 1:
            return  # built inside another tracked client's constructor: part of that client
        key = id(client)
        existing = self._by_id.get(key)
        if existing is not None and not existing.collected:
            return  # recorded already (a subclass's constructor calling the base class's)
        outer = origin_mod.request_state.get()[2]
        if outer is not None and _made_by_a_part_of(outer, sys._getframe(2)):
            # made by the transport of a client during its request (a transport that makes its aiohttp session on
            # first use): part of that client, whoever's request it was - a session fixture's client's first
            # request in a test must not make the test the owner of its lazily made pool
            owner, windows = outer.owner, outer.windows
            # the client the test made answers for it, when its own part made it (not an app its request reached)
            part_of: ClientRecord | None = (
                (outer.part_of or outer)
                if _made_directly_by_a_part_of(outer, sys._getframe(2), _constructors(type(client))) else None)
        else:
            part_of = None
            owner, windows = self._current_owner(), self._current_sinks()
            if (owner is not None or windows) and made_while_imported(sys._getframe(2)):
                # module-level code run as its module is imported (an app's ``_session = requests.Session()``,
                # imported lazily by the first request in a test, or in a server fixture's thread): the module's
                # client, as if imported at collection - never the importing test's or fixture's, whichever runs
                # first (the verdict would otherwise depend on the order of the tests)
                owner, windows = None, ()
        # no line of the user's on the stack (``pool.map(requests.get, urls)``): what is known, as for a socket
        # (the frame the walk starts at called the tracker's wrapper of the constructor: ``made``)
        where = origin_mod.capture_outside(sys._getframe(2), _constructors(type(client)), sys._getframe(1)) \
            or origin_mod.capture_library(skip=2)
        record = ClientRecord(kind or type(client).__qualname__, where, owner, windows, networked)
        record.part_of = part_of
        try:
            record.ref = _watched(client, record)
        except TypeError:
            record.ref = None  # not weak-referenceable: it will be judged by its close() alone
        with self._lock:
            self._by_id[key] = record
            self.held.append(record)
            self.recorded += 1

    def adopt(self, client: Any, kind: str, owner: str) -> None:
        """Record a client that existed before tracking started and is shared by the whole process (a library's
        module-level default client): never counted, and the sockets in its pool are ``owner``'s."""
        record = ClientRecord(kind, None, owner, (), networked=True)
        record.shared = True
        try:
            record.ref = _watched(client, record)
        except TypeError:
            return
        with self._lock:
            self._by_id[id(client)] = record
            self.held.append(record)
            self.recorded += 1

    def closed(self, client: Any) -> None:
        """``close()`` ran, unless from a finalizer: see the module's docstring (the ``__del__`` rule)."""
        record = self._by_id.get(id(client))
        if record is not None and not record.collected and not _in_finalizer():
            record.closed = True

    def record_of(self, client: Any) -> ClientRecord | None:
        """The live client's record, if it has one (nothing is counted)."""
        record = self._by_id.get(id(client))
        return record if record is not None and not record.collected else None

    def owner_now(self) -> str | None:
        """The owner of what the calling thread does now (``Ownership.current``): None, the test's."""
        return self._current_owner()

    def request(self, client: Any) -> ClientRecord | None:
        """A request starts: count it; the client's record (None for a client not recorded, such as one built
        inside another tracked client's constructor) is what the connects it makes are attributed to."""
        record = self._by_id.get(id(client))
        if record is not None and not record.collected:
            record.requests += 1
            return record
        return None

    def when_imported(self, module: str, callback: Callable[[Any], None]) -> None:
        """Call ``callback(module)`` once ``module`` is imported (now, if it already is): trackers patch their
        library only if the suite uses it, and before any client of it can be created."""
        if self._imports is None:
            self._imports = ImportWatcher(self.on_error)
        self._imports.when_imported(module, callback)

    def close(self) -> None:
        if self._imports is not None:
            self._imports.close()

    def constructing(self) -> _Constructing:
        """Wrap a tracked constructor: clients created inside it (nested) are not recorded separately."""
        return _Constructing(self._local)

    # -- what windows ask ----------------------------------------------------------------------------------------

    def records(self) -> list[ClientRecord]:
        with self._lock:
            return list(self.held)

    def is_closed(self, record: ClientRecord) -> bool:
        if record.closed:
            return True
        client = record.ref() if record.ref is not None else None
        if client is None or self.hook is None:
            return False
        return bool(self._ask("pytest_sockhygiene_client_is_closed", client))

    def _ask(self, hook_name: str, client: Any) -> Any:
        ask = self._answers.get(hook_name)
        if ask is None:
            ask = self._answers[hook_name] = FirstAnswer(getattr(self.hook, hook_name))
        return ask(client)

    def sockets_of(self, client: Any) -> list[Any]:
        """The sockets of the client's pooled connections, as its tracker gives them, without a mock library's
        stand-ins (``holds_connection``)."""
        if self.hook is None:
            return []
        try:
            return [s for s in self._ask("pytest_sockhygiene_client_sockets", client) or () if holds_connection(s)]
        except Exception:  # noqa: BLE001 - a tracker that cannot read a pool must not break the verdict
            return []

    def adopt_held_by_fixtures(self, window: Any, roots: list[tuple[str, Any]]) -> bool:
        """Give the unclosed clients ``window`` created that a value of a broader fixture holds to that fixture (a
        session fixture's lazily built client - aiobotocore's - makes its aiohttp session on its first request, in
        whichever test sends it; the fixture closes it at its teardown): ``holders.fixture_holders``. Each client
        is looked for once per window (``window.walked``); a walk that fails leaves them the test's, as before.
        Whether any was given."""
        from .holders import fixture_holders

        candidates: dict[int, Any] = {}
        live = []
        for record in self.records():
            key = ("client", id(record))
            if (record.collected or record.closed or record.ref is None or key in window.walked
                    or not record.created_in(window)):
                continue
            client = record.ref()
            if client is None:
                continue
            window.mark_walked((key,))
            candidates[id(client)] = record
            live.append(client)  # (held until the walk ends: an id is only unique while its object lives)
        if not candidates:
            return False
        try:
            found = fixture_holders({}, roots, {k: id(r) for k, r in candidates.items()})
        except Exception:  # noqa: BLE001 - a value the walk cannot read: the clients stay the test's
            return False
        by_record = {id(r): r for r in candidates.values()}
        for record_id, label in found.items():
            record = by_record[record_id]  # type: ignore[index]
            record.owner, record.windows = label, ()
            if record.part_of is not None and record.part_of.created_in(window):
                record.part_of.owner, record.part_of.windows = label, ()
        return bool(found)

    def probe(self, window: Any, identity_of_socket: Callable[[Any], Hashable | None],
              need_sockets: bool, fmt: Callable[[origin_mod.Origin | None], str]) -> Probe:
        """Unclosed clients created in ``window`` (used and unused); and, if sockets changed, which sockets belong
        to whose pool."""
        unclosed: list[ClientRecord] = []
        unused: list[ClientRecord] = []
        owned: dict[Hashable, str] = {}
        notes: dict[Hashable, str] = {}
        created_here: list[ClientRecord] = []
        for record in self.records():
            mine = record.created_in(window)
            if mine:
                created_here.append(record)
            elif not need_sockets:
                continue  # the clean path: nothing to ask a tracker about others' clients
            # another's client is not asked whether it is closed (a hook call per client at every look of a test
            # that connected outside its own clients): a closed client's pool holds no socket, so asking it for
            # its sockets answers the same
            closed = self.is_closed(record) if mine else record.closed
            if closed and not mine:
                continue
            client = record.ref() if record.ref is not None and not record.collected else None
            sockets: list[Any] = []
            # A client without a pool the built-in tracker recognises (networked=False: a mock, ASGI or wrapping
            # transport) is still asked when ownership is needed: a user's client_sockets hook may know the pool
            # a wrapping transport hides (docs/clients.md); the built-in trackers answer nothing for it.
            if client is not None and not closed and (need_sockets or (record.networked and not record.used)):
                sockets = self.sockets_of(client)
                if sockets:
                    record.mark_pooled()
            if mine and not closed and record.part_of is None:  # (a part is its client's: that one is counted)
                (unclosed if record.used else unused).append(record)
            if not need_sockets:
                continue
            busy = self._busy_sockets(client) if mine and sockets else set()
            for sock in sockets:
                ident = identity_of_socket(sock)
                if ident is None:
                    continue
                whose = record.part_of or record  # (the client the user made, not its transport's own)
                if mine:
                    notes[ident] = (f"in the pool of {whose.label(fmt)}{self._keepalive_note(client, record.kind)}"
                                    + (f"; {BUSY_NOTE}" if id(sock) in busy else ""))
                else:
                    owned[ident] = f"pool of {whose.label(fmt)}"
        return Probe(unclosed, owned, notes, created_here, unused)

    def _busy_sockets(self, client: Any) -> set[int]:
        """``id()`` of the pooled sockets a request or an unclosed response holds (the tracker's
        ``client_busy_sockets``); empty when it cannot tell."""
        try:
            return {id(s) for s in self._ask("pytest_sockhygiene_client_busy_sockets", client) or ()}
        except Exception:  # noqa: BLE001 - a tracker that cannot tell leaves the diagnosis as it was
            return set()

    def used(self, record: ClientRecord) -> bool:
        """Whether the client opened a real connection, looking into its pool if no connect was attributed."""
        if record.used:
            return True
        client = record.ref() if record.ref is not None and not record.collected else None
        if client is not None and record.networked and self.sockets_of(client):
            record.mark_pooled()
        return record.used

    def _keepalive_note(self, client: Any, kind: str = "") -> str:
        """``, keepalive_expiry=5s``: the client's idle limit, under its library's name for it (aiohttp's is
        ``keepalive_timeout``)."""
        if self.hook is None:
            return ""
        try:
            expiry = self._ask("pytest_sockhygiene_client_keepalive", client)
        except Exception:  # noqa: BLE001
            return ""
        setting = "keepalive_timeout" if "aiohttp." in kind else "keepalive_expiry"
        return f", {setting}={expiry:g}s" if expiry is not None else ""

    def forget(self, window: Any) -> None:
        """After a window closed: drop records that can no longer matter (closed or collected, and judged)."""
        with self._lock:
            done = [r for r in self.held
                    if (r.closed or r.collected) and (window in r.windows or not r.windows)]
            if not done:
                return
            gone = set(map(id, done))
            self.held = [r for r in self.held if id(r) not in gone]
            for key, record in list(self._by_id.items()):
                if id(record) in gone:
                    del self._by_id[key]


class _Constructing:
    __slots__ = ("_local",)

    def __init__(self, local: threading.local) -> None:
        self._local = local

    def __enter__(self) -> None:
        self._local.depth = getattr(self._local, "depth", 0) + 1

    def __exit__(self, *exc: Any) -> None:
        self._local.depth -= 1


class Probe:
    __slots__ = ("created", "notes", "owned", "unclosed", "unused")

    def __init__(self, unclosed: list[ClientRecord], owned: dict[Hashable, str], notes: dict[Hashable, str],
                 created: list[ClientRecord], unused: list[ClientRecord] | None = None) -> None:
        self.unclosed = unclosed  # unclosed clients that opened a real connection: ``clients``
        self.owned = owned
        self.notes = notes
        self.created = created
        self.unused = unused or []  # unclosed clients that never opened one: ``unused_clients``


COLLECTED_UNCLOSED = "garbage-collected without being closed"
"""A client's note when the collector freed it before anything closed it."""


def client_items(records: Iterable[ClientRecord]) -> list[Item]:
    """Unclosed clients grouped by kind and origin (a loop that leaks 30 clients is one line with count 30).

    A client another thread closed after the look found it open is left out: its ``close()`` marks it closed before
    the client can be freed, so one both closed and collected now was closed, not dropped. Counted, it was reported
    as "garbage-collected without being closed", and as final, when a coroutine on a background event loop closed
    it while the look ran (about 1 test in 300 of that shape, under load)."""
    groups: dict[tuple[str, Any, bool], int] = collections.Counter()
    for r in records:
        if r.closed:
            continue
        groups[(r.kind, r.origin, r.collected)] += 1
    out = []
    for (kind, origin, collected), n in groups.items():
        note = COLLECTED_UNCLOSED if collected else "still open"
        out.append(Item(state=kind, local=None, remote=None, origin=origin, count=n, note=note, pending=not collected))
    return out


def created_items(records: Iterable[ClientRecord]) -> list[Item]:
    """Clients a window created, grouped by kind and origin; the note says how many requests each made."""
    groups: dict[tuple[str, Any], list[int]] = collections.defaultdict(list)
    for r in records:
        groups[(r.kind, r.origin)].append(r.requests)
    out = []
    for (kind, origin), requests in groups.items():
        per = sorted(set(requests))
        each = (f"{per[0]} request{'s' if per[0] != 1 else ''} each" if len(per) == 1
                else f"{min(per)}-{max(per)} requests each")
        out.append(Item(state=kind, local=None, remote=None, origin=origin, count=len(requests), note=each))
    return out


def socket_identity(identity_of: Callable[..., Hashable | None]) -> Callable[[Any], Hashable | None]:
    """Adapt a table's ``identity_of(fd, local, remote)`` to a socket-like object (socket, TransportSocket)."""

    def of(sock: Any) -> Hashable | None:
        try:
            fd = sock.fileno()
            local = local_endpoint(sock)
            if fd < 0 or local is None:
                return None
            return identity_of(fd, local, peer_endpoint(sock))
        except (OSError, AttributeError, ValueError):
            return None

    return of
