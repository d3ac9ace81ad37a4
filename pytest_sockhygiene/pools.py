"""Worker threads of thread pools, and of libraries' process-wide singletons: started by one test, then working
for every test that hands them a job.

A thread a test starts and leaves running is that test's from then on (docs/ownership.md): a poller or a server it
forgot keeps doing the test's work, and nothing it does later may be blamed on another test. A pool's worker is
the opposite case. The first test that submits a job starts it; it then waits for jobs, and the next one may come
from any later test: ``ThreadPoolExecutor.submit``, ``loop.run_in_executor`` and ``asyncio.to_thread`` (the
loop's default executor is such a pool), ``anyio.to_thread.run_sync`` (anyio's worker threads on asyncio, trio's
thread cache on trio), ``multiprocessing.pool.ThreadPool``. Were it the first test's, a socket a later test leaks
through the pool would be nobody's: the first test's window is closed, and the later test's would pass it by -
a verdict that changes with test order.

So a pool's worker is never claimed by the test that started it: what it does in a test's window is that test's,
as if the test's own thread had done it. (A pool a fixture of broader scope starts - a server handling requests on
an executor - stays the fixture's: its workers inherit the fixture as any thread its threads start does.)

A worker's stack starts in the pool's code, so a job that is a library callable handed over as it is has no line
of the user's on it: ``JobOrigins`` (``ThreadPoolExecutor``), ``ThreadPoolJobOrigins`` (``multiprocessing``'s)
and ``ToThreadJobOrigins`` (anyio's and trio's ``to_thread.run_sync``) keep the line that handed the job over for
the worker running it.
"""

from __future__ import annotations

import functools
import sys
import threading
import types
from typing import Any, Callable

from . import origin as origin_mod
from .trackers.patching import PatchOnImport

POOL_WORKERS: frozenset[tuple[str, str]] = frozenset({
    ("concurrent.futures.thread", "_worker"),  # ThreadPoolExecutor, hence asyncio's default executor
    ("multiprocessing.pool", "worker"),  # ThreadPool's workers
    ("trio._core._thread_cache", "WorkerThread._work"),  # trio.to_thread, anyio.to_thread on trio
    ("anyio._backends._asyncio", "WorkerThread.run"),  # anyio.to_thread on asyncio (a Thread subclass)
    # Twisted's ThreadPool: reactor.getThreadPool(), deferToThread, the reactor's threaded name resolver (Scrapy)
    ("twisted._threads._threadworker", "ThreadWorker.__init__.<locals>.work"),
})
"""(module, qualified name) of the function a pool's worker thread runs."""


def _runs(thread: threading.Thread) -> tuple[str, str] | None:
    """(module, qualified name) of what ``thread`` runs: its ``target``, or its class's ``run``."""
    target: Any = getattr(thread, "_target", None)
    if target is None:
        target = getattr(type(thread), "run", None)
    target = getattr(target, "__func__", target)  # a bound method: the function
    module, name = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(name, str):
        return None
    return module, name


def is_pool_worker(thread: threading.Thread) -> bool:
    """Whether ``thread`` is a worker of a known thread pool (``POOL_WORKERS``), or of a library's process-wide
    singleton (``_serves_a_library_singleton``), which no test owns."""
    return _runs(thread) in POOL_WORKERS or _serves_a_library_singleton(thread)


def _serves_a_library_singleton(thread: threading.Thread) -> bool:
    """Whether ``thread`` runs a method of an object a library module holds as a global: that library's worker for
    the whole process, started by whichever test first needed it and serving every later one, as a pool's worker
    does. pycares keeps one ``_shutdown_manager`` whose thread the process's first ``Channel`` starts and which
    destroys every later channel (aiodns under aiohttp: azure-core's suite listed it as its first aiohttp test's
    thread "left running"). Only a library's module: a server a test module keeps in a global is the test's."""
    obj = getattr(getattr(thread, "_target", None), "__self__", None)
    if obj is None or isinstance(obj, (type, types.ModuleType)):
        return False
    module = sys.modules.get(getattr(type(obj), "__module__", None) or "")
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str) or not origin_mod.is_library_file(filename):
        return False
    try:
        return any(value is obj for value in list(vars(module).values()))
    except Exception:  # noqa: BLE001 - a module with an unusual namespace: not one
        return False


class JobOrigins(PatchOnImport):
    """Gives every job a ``ThreadPoolExecutor`` is handed while a window is open the user's line that submitted it
    (``origin.pool_job``), by wrapping ``ThreadPoolExecutor.submit`` - the one way in for ``submit``, ``map``,
    ``loop.run_in_executor`` and ``asyncio.to_thread``. A socket a job opens with no line of the user's on its own
    stack (a library callable submitted as it is: ``pool.submit(socket.create_connection, addr)``) is then
    reported as opened in the job submitted at that line, not at ``concurrent/futures/thread.py``. Outside windows
    a submit costs one check; inside, one stack walk (submits are rare beside socket calls).

    The job runs inside a small function of ours that sets the line for the worker thread and clears it after
    (``__tracebackhide__``: pytest leaves it out of a failing job's traceback)."""

    MODULE, CLASS, METHOD = "concurrent.futures.thread", "ThreadPoolExecutor", "submit"

    def __init__(self, is_recording: Callable[[], bool], on_error: Callable[[BaseException], None]) -> None:
        super().__init__(on_error)
        self._is_recording = is_recording

    def wrapper(self, original: Any) -> Any:
        recording, on_error, calling_line = self._is_recording, self._on_error, origin_mod.calling_line

        def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            started = calling_line(on_error) if recording() else None
            if started is None:
                return original(self, fn, *args, **kwargs)
            return original(self, _run_job, started, fn, *args, **kwargs)

        return submit


class ThreadPoolJobOrigins(JobOrigins):
    """``JobOrigins`` for ``multiprocessing.pool.ThreadPool``: its jobs go through a task queue, not ``submit``.
    Every way in passes the job's callable first through one of four methods of ``Pool`` (``apply`` and ``map``,
    ``starmap`` and their ``_async`` forms call ``apply_async`` and ``_map_async``). Only a ``ThreadPool``'s jobs are
    wrapped: a process ``Pool`` pickles its jobs for another process, where no window of this one is open."""

    MODULE, CLASS = "multiprocessing.pool", "Pool"
    METHODS = ("apply_async", "_map_async", "imap", "imap_unordered")

    def wrapper(self, original: Any) -> Any:
        recording, on_error, calling_line = self._is_recording, self._on_error, origin_mod.calling_line
        from multiprocessing.pool import ThreadPool  # (imported: this wraps its module's Pool)

        def handing_over(self: Any, func: Any, /, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            started = calling_line(on_error) if recording() and isinstance(self, ThreadPool) else None
            if started is not None:
                func = functools.partial(_run_job, started, func)
            return original(self, func, *args, **kwargs)

        return handing_over


class ToThreadJobOrigins(JobOrigins):
    """``JobOrigins`` for ``anyio.to_thread.run_sync``: anyio's workers (its own threads on asyncio, trio's thread
    cache on trio) take jobs from a queue, not through ``ThreadPoolExecutor.submit``, so
    ``await anyio.to_thread.run_sync(requests.get, url)`` would read "opened by library code at" anyio's worker.
    The module's function is wrapped (the way in for its callers, starlette's ``run_in_threadpool`` among them);
    a caller that bound ``run_sync`` to a name of its own before the plugin started keeps the original."""

    MODULE, CLASS, METHOD = "anyio.to_thread", "", "run_sync"

    def wrapper(self, original: Any) -> Any:
        recording, on_error, calling_line = self._is_recording, self._on_error, origin_mod.calling_line

        async def run_sync(func: Any, /, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # (a failing job's traceback is the job's, not ours)
            started = calling_line(on_error) if recording() else None
            if started is not None:
                func = functools.partial(_run_job, started, func)
            return await original(func, *args, **kwargs)

        return run_sync


class TrioToThreadJobOrigins(ToThreadJobOrigins):
    """``ToThreadJobOrigins`` for ``trio.to_thread.run_sync`` called by the user (anyio's trio backend bound its own
    name for it at import, and goes through ``anyio.to_thread.run_sync`` first)."""

    MODULE = "trio.to_thread"


def _run_job(submitted: origin_mod.Origin, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """A submitted job, run with the line that submitted it known to this worker thread (``origin.pool_job``)."""
    __tracebackhide__ = True
    job = origin_mod.pool_job
    previous = getattr(job, "origin", None)  # (a job run inline by another job's thread: its line comes back)
    job.origin = submitted
    try:
        return fn(*args, **kwargs)
    finally:
        job.origin = previous
