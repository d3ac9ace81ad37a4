"""Origins: the line of *user* code that opened a socket or created a client.

A connection is opened ten frames deep inside httpx, httpcore, anyio and asyncio; the line worth printing is
the first one outside the standard library and the known client libraries. Deciding that per frame is a string
test, so the answer is cached per code filename and a walk costs a few dict lookups.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
import re
import socket
import sys
import sysconfig
import threading
import weakref
from collections.abc import Iterable
from types import CodeType, FrameType
from typing import Any, Callable

LIBRARY_PACKAGES: tuple[str, ...] = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "anyio",
    "sniffio",
    "h11",
    "h2",
    "hpack",
    "certifi",
    "urllib3",
    "requests",
    "aiohttp",
    "aiohappyeyeballs",
    "yarl",
    "multidict",
    "trio",
    "uvloop",
    "gevent",
    "eventlet",
    "websockets",
    "_pytest",
    "pytest",
    "pluggy",
    "pytest_asyncio",
    "xdist",
    "execnet",
    "pytest_sockhygiene",
)
"""Top-level packages whose frames are skipped: client libraries and the test machinery itself.

A tracker plugin for another library can extend this with :func:`add_library_packages`.
"""

_lock = threading.Lock()
_library_dirs: tuple[str, ...] = ()
_is_library_cache: dict[str, bool] = {}
_stdlib_dirs: tuple[str, ...] = ()
_site_dirs: tuple[str, ...] = ()
"""Installed packages' directories (``_compute_site_dirs``): library code, not the standard library."""
_script_dirs: tuple[str, ...] = ()
"""Console scripts' directories (``_compute_script_dirs``): library code, as the standard library."""


def _absolute(path: str) -> str:
    """``os.path.abspath``, without its ``os.getcwd()`` for a path that is absolute already (a code object's file
    nearly always is): origins are taken in socket hooks that may run inside an event loop, where a checker of
    blocking calls (blockbuster) refuses ``abspath``."""
    return os.path.normpath(path) if os.path.isabs(path) else os.path.abspath(path)


def _norm(path: str) -> str:
    return os.path.normcase(_absolute(path)) + os.sep


_USER_DIRS: tuple[str, ...] = (_norm(os.path.join(os.path.dirname(__file__), "demo")),)
"""Inside this package but user code: the demo suite's tests are what the demo reports on."""

_user_files: frozenset[str] = frozenset()
"""Collected test files that live where libraries do (``add_user_files``): the user's code all the same."""


def _compute_stdlib_dirs() -> tuple[str, ...]:
    """Where the standard library lives. In a virtual environment ``platstdlib`` is ``<venv>/lib/python3.X``,
    the parent of its site-packages, so this alone would take every installed package for the standard library:
    ``_site_dirs`` carves them out (as it does the site-packages inside a plain install's standard library)."""
    paths = sysconfig.get_paths()
    dirs = {paths.get("stdlib"), paths.get("platstdlib"), os.path.dirname(os.__file__)}
    site_dirs = {paths.get("purelib"), paths.get("platlib")}
    return tuple(sorted(_norm(d) for d in dirs if d and d not in site_dirs))


def _compute_site_dirs() -> tuple[str, ...]:
    """Where installed packages live (site-packages, dist-packages, the user's site): library code, never the
    user's line, whether or not the package is in ``LIBRARY_PACKAGES``."""
    paths = sysconfig.get_paths()
    dirs = {paths.get("purelib"), paths.get("platlib")}
    with contextlib.suppress(Exception):  # (an old virtualenv's site module has neither: sysconfig's are enough)
        import site

        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    return tuple(sorted(_norm(d) for d in dirs if d))


def _compute_script_dirs() -> tuple[str, ...]:
    """Where console scripts live (``<venv>/bin``): the ``pytest`` launcher's frame sits under every test's stack,
    and is no line of the user's."""
    dirs = {sysconfig.get_path("scripts"), os.path.dirname(sys.executable)}
    with contextlib.suppress(Exception):  # (an unusual install scheme: the environment's own is enough)
        dirs.add(sysconfig.get_path("scripts", vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix}))
    return tuple(sorted(_norm(d) for d in dirs if d))


def _package_dir(name: str) -> str | None:
    mod = sys.modules.get(name)
    file = getattr(mod, "__file__", None)
    if file:
        return _norm(os.path.dirname(file)) if file.endswith("__init__.py") else None
    try:
        import importlib.util

        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return _norm(next(iter(spec.submodule_search_locations)))


_pending: tuple[str, ...] = ()
"""Library packages not imported yet: their directory is looked up once they are (``_add_imported``). A package
that is not imported has no frame on any stack, and finding one that is not imported searches ``sys.path``: ~1.3
ms for the dozen of ``LIBRARY_PACKAGES`` a suite does not use, on the first connect of a session."""


def add_library_packages(names: Iterable[str]) -> None:
    """Treat frames from these top-level packages as library code (not the origin of a socket)."""
    global _pending
    with _lock:
        _pending = tuple(dict.fromkeys((*_pending, *names)))
        _add_imported()


def _add_imported() -> None:
    """Move the pending packages that are imported now to ``_library_dirs`` (``_lock`` held)."""
    global _library_dirs, _pending
    imported = [name for name in _pending if name in sys.modules]
    if not imported:
        return
    dirs = set(_library_dirs)
    for name in imported:
        d = _package_dir(name)
        if d:
            dirs.add(d)
    _pending = tuple(name for name in _pending if name not in imported)
    _library_dirs = tuple(sorted(dirs))
    _is_library_cache.clear()


def add_user_files(filenames: Iterable[str]) -> None:
    """Treat these files as user code wherever they live: the test modules and conftest files of a suite that is
    installed, run with ``pytest --pyargs tornado.test`` (a test file under site-packages would read "opened by
    library code, with no line of the test's own code on the stack, at tornado/test/web_test.py:...")."""
    global _user_files
    _ensure_init()
    new = {os.path.normcase(_absolute(f)) for f in filenames}
    with _lock:
        _user_files = _user_files | frozenset(new)
        _is_library_cache.clear()


def library_files(filenames: Iterable[str]) -> list[str]:
    """The ones of ``filenames`` that would count as library code (``add_user_files`` needs only these). Asked once
    per run with every collected test file: those under none of the libraries' directories - nearly all - are set
    aside by one prefix test each where paths need no case folding, with no entry in the cache (a suite of
    thousands of test modules paid ~1k instructions per module for it)."""
    _ensure_init()
    if _pending and any(name in sys.modules for name in _pending):  # as is_library_file does, before the prefixes
        with _lock:
            _add_imported()
    if os.path.normcase("A") == "A" and os.sep == "/":  # POSIX: an absolute path is its own normcase(abspath())
        prefixes = _stdlib_dirs + _site_dirs + _library_dirs + _script_dirs
        filenames = [f for f in filenames if f.startswith(prefixes) or not f.startswith("/")]
    return [f for f in filenames if is_library_file(f)]


def prepare() -> None:
    """Read where the standard library and the known libraries live, at the session's start: the first origin
    taken would otherwise read it (``sysconfig``, a search of ``sys.path``) inside a socket hook."""
    _ensure_init()


def _ensure_init() -> None:
    global _stdlib_dirs, _site_dirs, _script_dirs
    if not _stdlib_dirs:
        _site_dirs = _compute_site_dirs()
        _script_dirs = _compute_script_dirs()
        _stdlib_dirs = _compute_stdlib_dirs()
        add_library_packages(LIBRARY_PACKAGES)


def is_library_file(filename: str) -> bool:
    cached = _is_library_cache.get(filename)
    if cached is not None:
        return cached
    _ensure_init()
    if _pending and any(name in sys.modules for name in _pending):  # a library imported since: its files count
        with _lock:
            _add_imported()
    if filename.startswith("<"):
        # <frozen runpy>, <string> (``python -c``, and pytest-xdist's workers: execnet's bootstrap is exec'd),
        # <remote exec>: no file a user can open. A doctest's examples (<doctest test_x.txt[2]>) are the user's
        result = not filename.startswith("<doctest")
    else:
        path = os.path.normcase(_absolute(filename))
        result = (path.startswith(_stdlib_dirs) or path.startswith(_site_dirs) or path.startswith(_library_dirs)
                  or path.startswith(_script_dirs)) and not path.startswith(_USER_DIRS) and path not in _user_files
    _is_library_cache[filename] = result
    return result


Origin = tuple[Any, ...]
"""``(filename, lineno, function)`` of the first user frame; or ``(filename, lineno, function, how)`` when the
socket's own stack had no user frame and the line is the one that started what opened it, ``how`` saying so
("opened in a task started at", "accepted by the listener at 127.0.0.1:8000 opened at"). ``filename`` is ""
when even that line is unknown (``how`` is then the whole text)."""

TASK = "opened in a task started at"
LIBRARY = "opened by library code, with no line of the test's own code on the stack, at"
UNKNOWN = "origin unknown (opened by library or C code outside Python's socket module)"
JOB = "opened by library code in a thread pool's job submitted at"
THREAD = "opened by library code in a thread started at"

DOCTEST_PREFIX = "<doctest "
"""How the code of a doctest's example is named: ``<doctest mylib.connect[1]>``, doctest's ``compile`` filename
for example 1 of the DocTest named ``mylib.connect``. No file a user can open: ``doctest_line`` maps it."""

_DOCTEST_FILENAME = re.compile(r"<doctest (?P<name>.+)\[(?P<examplenum>\d+)\]>$")
"""doctest's own pattern for it (``DocTestRunner.__LINECACHE_FILENAME_RE``)."""

_doctests: dict[str, Any] = {}
"""The DocTests of the doctest items run so far, by name (``add_doctest``). Pytest keeps every item, and so each
DocTest, for the whole run: this keeps nothing alive that would not be."""


def add_doctest(test: Any) -> None:
    """Make the lines of this DocTest's examples known (``doctest_line``): set from the doctest item as it starts,
    so that a socket its examples open - in the test's thread, or in a thread or task one of them started - is
    named by the line of the file the example is written in. A later DocTest of the same name (two README.txt in
    two directories) replaces the earlier: the running one is the one whose examples run now."""
    name = getattr(test, "name", None)
    if isinstance(name, str):
        _doctests[name] = test


def _example_start(filename: str) -> tuple[str, int, str] | None:
    """For a doctest example's code (``filename``: ``<doctest NAME[i]>``): the file the example is written in, the
    line before its first (a 1-based line of its code adds to it) and NAME; or None if its DocTest is not known or
    has no file or line. doctest counts both a DocTest's line in its file and an example's line in the DocTest
    from 0 (pytest's failure location is ``test.lineno + example.lineno + 1``, an example's first line)."""
    m = _DOCTEST_FILENAME.match(filename)
    test = _doctests.get(m["name"]) if m is not None else None
    if m is None or test is None or not test.filename or test.lineno is None:
        return None
    examples = test.examples
    i = int(m["examplenum"])
    if i >= len(examples):
        return None
    return str(test.filename), int(test.lineno) + int(examples[i].lineno), m["name"]


def doctest_line(filename: str, lineno: int) -> tuple[str, int]:
    """The file and line of line ``lineno`` of a doctest example's code (``filename``: ``<doctest NAME[i]>``); as
    they are where its DocTest is not known."""
    start = _example_start(filename)
    return (start[0], start[1] + lineno) if start is not None else (filename, lineno)


def doctest_origin(filename: str, lineno: int, function: str) -> Origin:
    """The origin of a frame running a doctest example's code (``DOCTEST_PREFIX``): the line of the file the
    example is written in, the example's own code (``<module>``) named for its doctest (``doctest
    mylib.connect``, pytest's ``[doctest] mylib.connect``); as it is where its DocTest is not known."""
    start = _example_start(filename)
    if start is None:
        return (filename, lineno, function)
    return (start[0], start[1] + lineno, f"doctest {start[2]}" if function == "<module>" else function)


STARTED_AT_ATTR = "_sockhygiene_started_at"
"""On a thread started while a window was open (``events.ThreadStarts``): the user's line that started it, for a
socket the thread opens with no line of the user's on its own stack (``Thread(target=requests.get, ...)``)."""

pool_job = threading.local()
"""``pool_job.origin``: the user's line that submitted the thread-pool job running in this thread now
(``pools.JobOrigins``), for a socket the job opens with no line of the user's on its own stack
(``pool.submit(socket.create_connection, ...)``, ``asyncio.to_thread(httpx.get, ...)``): the worker's stack starts
in ``concurrent.futures``. Per thread, not a context variable: ``asyncio.to_thread`` runs the job in a copy of the
submitter's context, where a variable the worker set would not be seen."""

task_origin: contextvars.ContextVar[tuple[Any, ...] | None] = contextvars.ContextVar(
    "sockhygiene_task_origin", default=None)
"""The user's line that created the asyncio task (or scheduled the callback) running now, and the library call
that line made, if any (``task_start``): ``(file, line, function, call)``.

A task copies the context when it is created, so setting this around ``create_task`` (see
``events.TaskOrigins``) gives each task the line that started it; its child tasks inherit it. A connect whose own
stack reaches the event loop without passing a user frame (anyio's ``connect_tcp`` races its attempts in child
tasks) is then reported as opened in the task started at that line.
"""

task_origins: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = weakref.WeakKeyDictionary()
"""asyncio tasks created while a window was open -> the line that started each (``events.TaskOrigins``). Read when
a stack reaches its task's start with no line in ``task_origin`` because the code running there switched to a
context copied elsewhere: mcp's client queues each request with the sender's context and starts its task with
``sender_ctx.run(task_group.start_soon, ...)``, a snapshot of the test's own task, which holds no line. The task
running then is the one that starts the new one, and its line is what started it (``_running_task_origin``)."""


class _Anchor:
    """A key ``task_origins`` keeps for good: its entry keeps the mapping's dict tracked by the garbage collector.
    Emptied, the collector untracks a dict, and the next task's entry tracks it anew: a new gc-tracked object
    around a loop's run, which a test that diffs ``gc.get_objects()`` sees (grpclib's test_memory)."""


_ANCHOR = _Anchor()
task_origins[_ANCHOR] = ()


def _running_task_origin() -> tuple[Any, ...] | None:
    """The line that started the asyncio task running now (``task_origins``), or None."""
    if len(task_origins) < 2:  # (the anchor alone: no task was started in a window)
        return None
    tasks = sys.modules.get("asyncio.tasks")
    try:
        task = tasks.current_task() if tasks is not None else None
    except RuntimeError:  # no running loop in this thread
        return None
    return task_origins.get(task) if task is not None else None


_boundary: Any = None
_trio_boundary: Any = None


def set_task_boundary(code: Any) -> None:
    """The code object where a task's or callback's stack begins (asyncio's ``Handle._run``; None: none): a walk
    that gets there without finding a user frame falls back to ``task_origin``. Compared by identity, one ``is``
    per frame walked."""
    global _boundary
    _boundary = code


def set_trio_task_boundary(code: Any) -> None:
    """``set_task_boundary`` for trio, whose tasks' stacks begin at its run loop (``trio._core._run.unrolled_run``;
    None: trio not in use). A second variable, not a set of code objects: an ``is`` per frame, where ``in`` would
    hash each frame's code object."""
    global _trio_boundary
    _trio_boundary = code

NO_REQUEST: tuple[Origin | FrameType | None, Any | None, Any | None, bool] = (None, None, None, False)
"""``request_state`` outside any tracked client's request."""

request_state: contextvars.ContextVar[tuple[Origin | FrameType | None, Any | None, Any | None, bool]] = \
    contextvars.ContextVar("sockhygiene_request", default=NO_REQUEST)
"""The tracked client request under way, set by client trackers around ``send`` (``trackers/patching.py``): one
tuple, so that a request costs one ``set`` and one ``reset`` (four variables took four of each, at every request
of every test). Its four parts:

``[0]``, the user's line that started the outermost request (read it with :func:`request_origin_now`). An async
client connects inside a task of its own (anyio races connection attempts in a task group), and that task's stack
never reaches the user's coroutine. Context variables are copied into child tasks, so a connect made for a tracked
request still finds the user's line: an async request stores the line itself. A sync request stores the frame that
sent it instead (``sys._getframe``, no walk): its connects run on that same stack while the request is under way,
so the line is looked for only when a connect needs it, not at each of the (many more) requests.

``[1]``, the record (``clients.ClientRecord``) of the innermost recorded client whose request is under way, the one
whose pool opens the connection (a ``requests.Session``'s request is the session's, since the urllib3 pool inside
it is not recorded on its own; a user's PoolManager used by an adapter mounted in a session is the PoolManager's).
None inside the request of a client with no pool of its own (mock, ASGI, WSGI transports). The socket recorder
attaches it to every connect it sees (``SocketEvent.client``) and counts the connect on the record
(``ClientRecord.connections``): so a client knows whether it ever opened a real connection (an unclosed client
that never did is not a connection leak), and a connection knows which client's pool opened it. Copied into child
tasks like the line, so anyio's racing connect attempts are attributed too.

``[2]``, the record of the innermost recorded client whose request is under way, pool or none (``[1]`` is None
inside a client with no pool of its own): a client created by that client's transport during the request - a
transport that makes its aiohttp session on first use - is part of it (``ClientRegistry.created``).

``[3]``, True while the test's own request through a client with no pool (an ASGI or WSGI app's test client,
starlette's ``TestClient``) is under way, in the test's thread and in every thread and task the app runs it in
(anyio copies the context into its portal and worker threads). What the app does for that request is the test's,
though a broader fixture entered the client and so started the thread that runs the app (``Ownership.current``).
"""


def request_origin_now() -> Origin | None:
    """The user's line of the request under way (``request_state[0]``), found from the stored frame if a sync
    request stored one (failing a user's line, the library's that sent it: ``sender_of``)."""
    value = request_state.get()[0]
    if value is None or isinstance(value, tuple):
        return value
    return _walk(value) or sender_of(value)


def sender_of(frame: FrameType | None) -> Origin | None:
    """For a client's request with no user line on its stack: the library line that sent it - the first frame,
    from ``frame`` (the one that called the client's ``send``, inside the client's library) outwards and within
    the task, of a library other than the client's. Without it the connection was named by the innermost library
    frame of its connect: anyio's ``connect_tcp``, or a wrapper of ``socket.connect`` (blockbuster's, which MCP's
    suite turns on in every test), where MCP's SDK sends its requests from a task started in a context of its own
    (``ctx.run(tg.start_soon, ...)``), which no line of the test's started."""
    if frame is None:
        return None
    package = str(frame.f_globals.get("__name__") or "").partition(".")[0]
    boundary, trio = _boundary, _trio_boundary
    while frame is not None and frame.f_code is not boundary and frame.f_code is not trio:
        code = frame.f_code
        if (str(frame.f_globals.get("__name__") or "").partition(".")[0] != package
                and _library_frame_kind(code.co_filename) == _LIBRARY_FRAME):
            return (code.co_filename, frame.f_lineno, code.co_name, LIBRARY)
        frame = frame.f_back
    return None

def reset_quietly(var: contextvars.ContextVar[Any], token: Any) -> None:
    """``var.reset(token)``, never failing the user's call that the plugin's wrapper surrounds (a request, a task's
    creation). A reset out of order - another reset of the same variable in this context ran in between (a request
    ended in a finalizer, a generator resumed elsewhere) - raises LookupError (the variable is already unset) or
    ValueError (the token belongs to another context): the variable is then left as it is, which loses at most an
    origin line."""
    try:  # noqa: SIM105 - at every request and task: no context manager's cost
        var.reset(token)
    except (LookupError, ValueError, RuntimeError):
        pass


def capture(skip: int = 1) -> Origin | None:
    """The first frame above the caller that is not library code, or None if every frame is library code."""
    return _walk(sys._getframe(skip + 1))


def _walk(frame: FrameType | None, passed: list[FrameType] | None = None) -> Origin | None:
    """:func:`capture`, from ``frame`` outwards. ``passed``: where to put the library frames walked past on the
    way to the user's line (``capture_outside``)."""
    boundary, trio = _boundary, _trio_boundary
    known = _is_library_cache
    while frame is not None:
        code = frame.f_code
        if code is boundary or code is trio:
            started = task_origin.get() or _running_task_origin()
            if started is not None:
                return (started[0], started[1], started[2], TASK)
            # a task nobody's line started: go on, into the code that runs the loop
        else:
            library = known.get(code.co_filename)  # (is_library_file's cache, read here: a call less per frame)
            if not (library if library is not None else is_library_file(code.co_filename)):
                if code.co_filename.startswith(DOCTEST_PREFIX):  # (only an origin's frame pays: one test)
                    return doctest_origin(code.co_filename, frame.f_lineno, code.co_name)
                return (code.co_filename, frame.f_lineno, code.co_name)
            if passed is not None:
                passed.append(frame)
        frame = frame.f_back
    return None


def stack_depth(frame: FrameType | None) -> int:
    """How many frames ``frame`` is from the bottom of its thread's stack (itself counted)."""
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


def user_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame from ``frame`` outwards that is not library code, stopping at the start of a task or
    callback (where :func:`capture` would use the line that started it), or None."""
    boundary, trio = _boundary, _trio_boundary
    while frame is not None:
        code = frame.f_code
        if code is boundary or code is trio:
            return None
        if not is_library_file(code.co_filename):
            return frame
        frame = frame.f_back
    return None


def capture_outside(frame: FrameType | None, codes: frozenset[CodeType] | set[CodeType],
                    made: FrameType | None = None) -> Origin | None:
    """:func:`capture` from ``frame``, past the frames that run one of ``codes``: a client's origin is the line
    that made it, not its own class's constructor (a project's ``class GitHub(httpx.Client)`` whose ``__init__``
    calls ``super().__init__``, found in starlette's own suite, where every TestClient was "created at
    starlette/testclient.py in __init__"). ``made``: the frame ``frame`` called, if known (the tracker's wrapper
    of the constructor), so that a wrapper of that constructor is known for one (``_passes_through``)."""
    while frame is not None and frame.f_code in codes:
        made, frame = frame, frame.f_back
    passed: list[FrameType] = []
    origin = _walk(frame, passed)
    if origin is not None and len(origin) > 3 and origin[3] == TASK:
        return _task_made_inside(origin)
    if origin is None or len(origin) > 3 or not passed:
        return origin  # the user's line made it (``httpx.Client()``)
    inside = _outermost_call(passed, made)
    return (*origin, made_inside(inside)) if inside is not None else origin


def _task_made_inside(origin: Origin) -> Origin:
    """A client made in a task with no line of the user's on its stack: if the user's line that started the task
    made a library call (``task_start``), the client was made inside that call - "created inside
    gql.Client.__aenter__(), called at ...", as when no task stands between them. Whether a library's call runs
    its work in a task of its own is its detail, and one that changes with Python (``asyncio.wait_for`` makes a
    task before 3.12 and none after), so the label must not depend on it. A task the user's line started itself
    (``asyncio.create_task(lib.fetch())``) has no such call: it stays "created in a task started at"."""
    started = task_origin.get()
    call = started[3] if started is not None and len(started) > 3 else None
    return (origin[0], origin[1], origin[2], f"{MADE_INSIDE}{call}(), called at") if call else origin


def _outermost_call(passed: list[FrameType], made: FrameType | None = None) -> FrameType | None:
    """The call the user's line made, of the library frames walked past (innermost first): the outermost frame of
    an installed package, else of the standard library (a library's ``@contextmanager`` is entered through
    contextlib: the library's is the name), never this plugin's own. A coroutine that only awaits one it was
    handed (``await await_if_coro(node.perform_request())``, elastic-transport's suite) made nothing: the call is
    the coroutine it awaits, which the user's line made too. Nor did a wrapper handed the very function it calls
    (OpenTelemetry's ``instrumented_init(wrapped, instance, args, kwargs)`` around ``ClientSession.__init__``):
    the user called the constructor. ``made``: the frame ``passed[0]`` called (the client's constructor)."""
    stdlib = None
    for i in range(len(passed) - 1, -1, -1):
        frame = passed[i]
        inner = passed[i - 1] if i else made
        if inner is not None and _passes_through(frame, inner):
            continue
        kind = _library_frame_kind(frame.f_code.co_filename)
        if kind == _LIBRARY_FRAME:
            return frame
        if kind == _STDLIB_FRAME and stdlib is None:
            stdlib = frame
    return stdlib


_AWAITING = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def _passes_through(frame: FrameType, inner: FrameType, functions: bool = True) -> bool:
    """Whether ``frame`` only passes the call on to ``inner``, which it was handed as an argument: a coroutine
    awaiting the coroutine (or generator) ``inner`` runs (``asyncio.wait_for``, a library's ``await_if_coro``),
    or a wrapper handed the function ``inner`` runs (wrapt's ``wrapper(wrapped, instance, args, kwargs)``:
    OpenTelemetry's instrumentations). Not the call that did the work. ``functions`` False: the coroutine case
    only, which costs nothing for a plain function's frame (at every connect: reading a frame's locals does)."""
    code = frame.f_code
    awaiting = code.co_flags & _AWAITING
    if not awaiting and not functions:
        return False
    target = inner.f_code
    try:
        local = frame.f_locals
        for name in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]:
            value = local.get(name)
            if awaiting and (getattr(value, "cr_frame", None) is inner or getattr(value, "gi_frame", None) is inner):
                return True
            function = getattr(value, "__func__", value)  # (a bound method: its function)
            if getattr(function, "__code__", None) is target:
                return True
    except Exception:  # noqa: BLE001 - a frame whose locals cannot be read: not known to pass through
        return False
    return False


MADE_INSIDE = "opened inside "
"""How a client's origin starts when library code made it inside a call the user's line made (``made_inside``)."""


def made_inside(frame: FrameType) -> str:
    """``opened inside socketio.simple_client.SimpleClient.connect(), called at``: a client a library made inside
    the call the user's line made, which the user may never have seen (engineio's ``requests.Session``, made at
    its connect and dropped unclosed at its disconnect). ``created`` turns it into "created inside ..."."""
    return f"{MADE_INSIDE}{_call_name(frame)}(), called at"


def _public_name(module: Any, code: CodeType, qualname: str) -> str | None:
    """``httpx.get``, not ``httpx._api.get``: the name the user called, where the function ``code`` runs (or its
    class) is the one its top-level package exports under the same name; else None. ``module``: where the
    function (or the class it is named by) is defined; ``qualname``: its name there (``_qualname``), worked out
    once by the caller."""
    if not isinstance(module, str) or "." not in module:
        return None
    top = module.split(".", 1)[0]
    if "<" in qualname:
        return None  # a nested function: nothing exports it
    first, *rest = qualname.split(".")
    obj: Any = getattr(sys.modules.get(top), "__dict__", {}).get(first)  # (no module __getattr__: no lazy import)
    for part in rest:
        if not isinstance(obj, type):
            return None
        obj = getattr(obj, part, None)
    obj = getattr(obj, "__func__", obj)  # (a classmethod, read from its class)
    return f"{top}.{qualname}" if getattr(obj, "__code__", None) is code else None


def calling_line(on_error: Callable[[BaseException], None]) -> Origin | None:
    """The user's line that called the wrapper calling this, as ``(file, line, function)`` (a task's "how" left
    out: the line is handed on to what it starts), or None. For the plugin's wrappers of ``create_task``,
    ``submit`` and ``run_sync``: a fault of the walk goes to ``on_error``, never into the user's call."""
    try:
        started = _walk(sys._getframe(2))  # (0: here, 1: the wrapper, 2: its caller - as ``capture(skip=1)`` there)
    except Exception as e:  # noqa: BLE001
        on_error(e)
        return None
    return started[:3] if started is not None else None


_TASK_APIS = ("asyncio.", "anyio.", "trio.Nursery.", "trio.lowlevel.")
"""Modules of the calls that only start a task (``asyncio.create_task``, ``gather``, ``run``, anyio's
``start_soon``): a task started through one of them is named by its own coroutine, the call that does the work."""


def task_start(on_error: Callable[[BaseException], None]) -> tuple[Any, ...] | None:
    """For the wrapper of ``create_task``: the user's line that created the task, ``(file, line, function, call)``,
    ``call`` being the library call that line made (``tornado.testing.AsyncHTTPTestCase.fetch``, whose loop then
    started the task that connects), or None; None when no user line is on the stack. The connects of the task
    and of its child tasks are named by that call (``capture_call``), not by a private coroutine of the library's
    the user never called (``tornado.simple_httpclient._HTTPConnection.run``). A fault of the walk goes to
    ``on_error``."""
    try:
        started, call = capture_call(skip=2)  # (0: capture_call, 1: here, 2: the wrapper, 3: its caller)
    except Exception as e:  # noqa: BLE001
        on_error(e)
        return None
    if started is None:
        return None
    if call is not None and (call.startswith(_TASK_APIS) or call == "trio.run"):  # (not trio.run_process)
        call = None
    return (started[0], started[1], started[2], call)


def capture_library(skip: int = 1) -> Origin | None:
    """For a socket call with no user frame on its stack: in a thread pool's job, the user's line that submitted
    it; otherwise the first frame outside the standard library and this plugin (the library that made the call),
    so the report says what is known rather than "C code"."""
    submitted = getattr(pool_job, "origin", None)
    if submitted is not None:  # a pool's job: the line that submitted it says more than the pool's own code
        return (submitted[0], submitted[1], submitted[2], JOB)
    started = getattr(threading.current_thread(), STARTED_AT_ATTR, None)
    if started is not None:  # a thread the test started: the line that started it says more than the library's
        return (started[0], started[1], started[2], THREAD)
    frame: FrameType | None = sys._getframe(skip + 1)
    first: Origin | None = None  # failing a library's frame: the first one outside the socket module
    while frame is not None:
        code = frame.f_code
        kind = _library_frame_kind(code.co_filename)
        if kind == _LIBRARY_FRAME:
            return (code.co_filename, frame.f_lineno, code.co_name, LIBRARY)
        if kind == _STDLIB_FRAME and first is None:
            first = (code.co_filename, frame.f_lineno, code.co_name, LIBRARY)
        frame = frame.f_back
    return first


_SKIPPED_FRAME, _STDLIB_FRAME, _LIBRARY_FRAME = 0, 1, 2
_library_frame_kinds: dict[str, int] = {}
"""Code filename -> what :func:`capture_library` makes of its frames. Cached: normalising a path per frame cost
~190 us for a 40-frame stack, on every connect made with no user line on the stack (a library's pool thread)."""


def _in_stdlib(path: str) -> bool:
    """Whether a normalised path is the standard library's: under its directories and not under an installed
    packages' directory (a plain install's site-packages, and a venv's whole ``lib/python3.X``, are inside them)."""
    return path.startswith(_stdlib_dirs) and not path.startswith(_site_dirs)


def _library_frame_kind(filename: str) -> int:
    cached = _library_frame_kinds.get(filename)
    if cached is not None:
        return cached
    _ensure_init()
    if filename.startswith("<"):  # (<frozen runpy>: no path to make absolute, which may need os.getcwd())
        kind = _STDLIB_FRAME
    else:
        own = _package_dir("pytest_sockhygiene") or ""
        path = os.path.normcase(_absolute(filename))
        if (own and path.startswith(own)) or path == os.path.normcase(_absolute(socket.__file__)):
            kind = _SKIPPED_FRAME
        elif _in_stdlib(path) or path.startswith(_script_dirs):
            kind = _STDLIB_FRAME  # (the standard library, or a launcher: what a library called, not which one)
        else:
            kind = _LIBRARY_FRAME
    _library_frame_kinds[filename] = kind
    return kind


def capture_call(skip: int = 1) -> tuple[Origin | None, str | None]:
    """:func:`capture`, plus the library call the user's line made to get here: the outermost library frame
    below the user's frame, as ``module.qualname`` (``urllib.request.urlopen``, ``socket.create_connection``,
    ``http.client.HTTPConnection.connect``), or None when the user's frame called the hooked method itself. It
    names the API that opened a connection no tracked client made (``report.py`` prints it)."""
    origin, call, _on = capture_call_on(skip + 1)
    return origin, call


def _self_of(frame: FrameType | None) -> Any:
    """A weak reference to the object whose method ``frame`` runs (its first parameter is ``self``), else None.
    None for an event loop too: its ``create_connection`` makes a new transport each call, as a function would,
    and holds no connection of its own (asyncssh's suite: a connection per algorithm read "one object made every
    call", told to keep its connection open)."""
    if frame is None:
        return None
    code = frame.f_code
    if not code.co_argcount or code.co_varnames[0] != "self":
        return None
    try:
        obj = frame.f_locals["self"]
        events = sys.modules.get("asyncio.events")
        if events is not None and isinstance(obj, events.AbstractEventLoop):
            return None
        return weakref.ref(obj)
    except (KeyError, TypeError):  # deleted, or an object that takes no weak reference
        return None


def capture_call_on(skip: int = 1) -> tuple[Origin | None, str | None, Any]:
    """:func:`capture_call`, plus a weak reference to the object the call was made on when it is a method
    (``_self_of``): whether each call went through a new object (a new ``httplib2.Http`` per request) or one
    object reconnected (``verdict.connection_sources``)."""
    frame: FrameType | None = sys._getframe(skip + 1)
    called: FrameType | None = None
    inner: FrameType | None = None  # the frame ``called`` called
    boundary, trio = _boundary, _trio_boundary
    known = _is_library_cache
    while frame is not None:
        code = frame.f_code
        if code is boundary or code is trio:  # a task's or callback's stack: the line that started it, as capture()
            started = task_origin.get() or _running_task_origin()
            if started is not None:
                # the call the starting line made (``AsyncHTTPTestCase.fetch``), if it was known there; else the
                # task's own coroutine (``asyncio.create_task(lib.fetch())``: ``lib.fetch``)
                call = started[3] if len(started) > 3 else None
                return (started[0], started[1], started[2], TASK), call or _call_name(called, inner), None
        else:
            library = known.get(code.co_filename)  # (is_library_file's cache, read here: a call less per frame)
            if not (library if library is not None else is_library_file(code.co_filename)):
                if called is not None and inner is not None and _passes_through(called, inner, functions=False):
                    called = inner  # a pass-through awaiter (``_outermost_call``): the coroutine it awaits
                where = (doctest_origin(code.co_filename, frame.f_lineno, code.co_name)
                         if code.co_filename.startswith(DOCTEST_PREFIX)
                         else (code.co_filename, frame.f_lineno, code.co_name))
                return where, _call_name(called, inner), _self_of(called)
        inner, called = called, frame
        frame = frame.f_back
    return None, None, None


def _call_name(frame: FrameType | None, inner: FrameType | None = None) -> str | None:
    """``module.qualname`` of ``frame``; of ``inner`` when ``frame`` is asyncio's wrapper of an awaitable that is
    not a coroutine (``loop.run_until_complete(connect(...))`` on an object with ``__await__``, as websockets'
    legacy ``connect`` is): the task's coroutine is then ``asyncio.tasks._wrap_awaitable``, which the user never
    called."""
    if frame is None:
        return None
    if (inner is not None and frame.f_code.co_name == "_wrap_awaitable"
            and frame.f_globals.get("__name__") == "asyncio.tasks"):
        frame = inner
    code = frame.f_code
    name = _call_names.get(code)
    if name is None:
        # (``pymemcache.Client.get``, not ``pymemcache.client.base.Client.get``)
        qualname = _qualname(frame)
        name = _public_name(frame.f_globals.get("__name__"), code, qualname)
        if name is None:
            module = frame.f_globals.get("__name__") or os.path.splitext(os.path.basename(code.co_filename))[0]
            name = f"{module}.{qualname}"
        if len(_call_names) >= _CALL_NAMES_KEPT:
            _call_names.clear()
        _call_names[code] = name
    if code.co_argcount and code.co_varnames[0] == "self" and "." in name:
        return _inherited_name(frame, code, name)
    return name


def _inherited_name(frame: FrameType, code: CodeType, name: str) -> str:
    """``zeep.AsyncClient.__init__``, not ``zeep.Client.__init__``: a method an object's class inherits is named by
    that class, the one the user's line made or called (zeep's ``AsyncClient`` runs ``Client.__init__``, which
    makes an ``httpx.Client``: "created inside zeep.Client.__init__()" sent a reader to the sync client). ``name``:
    the method's own, returned where the object's class is the one that defines it. Per (code, class), cached."""
    try:
        cls = type(frame.f_locals["self"])
    except Exception:  # noqa: BLE001 - no self after all (deleted): the method's own name
        return name
    if name.rsplit(".", 2)[-2:-1] == [cls.__name__]:
        return name  # (the defining class itself, or one of the same name: nothing to tell)
    key = (code, cls)
    inherited = _inherited_names.get(key)
    if inherited is None:
        if getattr(getattr(cls, code.co_name, None), "__code__", None) is not code:
            inherited = name  # the class overrides it, and calls this one through super(): this one ran
        else:
            qualname = f"{cls.__qualname__}.{code.co_name}"
            inherited = _public_name(cls.__module__, code, qualname)
            if inherited is None:
                # not exported: named by it only if nothing in its name is private (asyncio's event loop is a
                # ``_UnixSelectorEventLoop``: ``asyncio.BaseEventLoop.create_connection`` says more)
                private = any(part.startswith("_") for part in f"{cls.__module__}.{cls.__qualname__}".split("."))
                inherited = name if private else f"{cls.__module__}.{qualname}"
        if len(_inherited_names) >= _CALL_NAMES_KEPT:
            _inherited_names.clear()
        _inherited_names[key] = inherited
    return inherited


def _qualname(frame: FrameType) -> str:
    """The qualified name of ``frame``'s function: ``co_qualname`` from Python 3.11 on. Before, a method's class
    is found from its ``self`` - the class in its type's MRO whose attribute of that name runs this code - so that
    a method reads ``sdk.Client.call``, not ``sdk.call``, on every version (an SDK's method that makes a client
    per call is told by it: ``verdict.made_inside_method``). Asked once per code object (``_call_names``)."""
    code = frame.f_code
    qualname = getattr(code, "co_qualname", None)
    if qualname is not None:
        return str(qualname)
    if code.co_argcount and code.co_varnames[0] == "self":
        try:
            mro = type(frame.f_locals["self"]).__mro__
        except Exception:  # noqa: BLE001 - no self after all (deleted): the bare name
            return code.co_name
        for klass in mro:
            if getattr(klass.__dict__.get(code.co_name), "__code__", None) is code:
                return f"{klass.__qualname__}.{code.co_name}"
    return code.co_name


_call_names: dict[CodeType, str] = {}
"""``_call_name``'s answer per code object: the same for every call of one function, asked at every connect no
tracked client made (a burst of them names one API dozens of times)."""
_CALL_NAMES_KEPT = 4096

_inherited_names: dict[tuple[CodeType, type], str] = {}
"""``_inherited_name``'s answer per (code object, class of the object it ran for)."""


@functools.lru_cache(maxsize=1024)
def relative_path(filename: str, rootdir: str | None) -> str:
    """``filename`` relative to ``rootdir`` when it is inside it, else as it is. Cached: ``os.path.relpath`` costs
    several microseconds, and a report formats the same few files' origins again and again. A name that is not
    absolute (a Cython module's code, ``uvloop/loop.pyx``) is as it is: ``relpath`` would resolve it against the
    current directory, which a test may have changed (sanic's suite), and name a file that does not exist."""
    if rootdir and os.path.isabs(filename):
        try:
            rel = os.path.relpath(filename, rootdir)
            if not rel.startswith(".."):
                return rel
        except ValueError:
            pass
    return filename


def short_path(filename: str, rootdir: str | None) -> str:
    """Relative to the rootdir; a library's file by its path inside site-packages, the standard library's by its
    path inside it (concurrent/futures/thread.py): the same text on every machine."""
    filename = relative_path(filename, rootdir)
    marker = os.sep + "site-packages" + os.sep
    if marker in filename:
        return filename.rsplit(marker, 1)[1]
    if os.path.isabs(filename):
        _ensure_init()
        path = _norm(filename)[:-1]
        if _in_stdlib(path):
            for d in _stdlib_dirs:
                if path.startswith(d):
                    return path[len(d):]
    return filename


def created(where: str) -> str:
    """What a client's formatted origin reads as after its kind: ``created at test_x.py:3 in test_x``, or, for an
    origin that says how the socket or client came to be (no line of the user's on its stack), the same words with
    "created" for "opened": ``created by library code in a thread pool's job submitted at ...``."""
    if where == UNKNOWN:
        return "created by library or C code (origin unknown)"
    if where.startswith("opened "):
        return "created " + where[len("opened "):]
    return f"created at {where}"


def format_origin(origin: Origin | None, rootdir: str | None = None) -> str:
    if origin is None:
        return UNKNOWN
    filename, lineno, func = origin[:3]
    how = origin[3] if len(origin) > 3 else ""
    if not filename:
        return str(how) or UNKNOWN
    # one form for a file whichever way its line was found: a test module installed in site-packages and run with
    # ``--pyargs`` (tornado's suite) read absolute on its plain lines and short in its tasks' lines, side by side
    where = f"{short_path(filename, rootdir)}:{lineno} in {func}"
    return f"{how} {where}" if how else where


@functools.lru_cache(maxsize=64)
def accepted_origin(listener_local: Any | None, listener_origin: Origin | None) -> Origin:
    """An accepted socket's origin: its listener's address and the line that opened the listener. The same for
    every socket a listener accepts: cached (it runs in a server's accept loop, once per connection)."""
    from .endpoints import format_endpoint

    at = (f"accepted by the listener at {format_endpoint(listener_local)}" if listener_local
          else "accepted by a listener")
    if listener_origin is None or not listener_origin[0]:
        return ("", 0, "", at + " (the listener's origin is unknown)")
    return (listener_origin[0], listener_origin[1], listener_origin[2], at + " opened at")
