"""Run a callback when a module is imported (at once, if it already is).

Trackers patch a client library only when the user's code imports it: the plugin never imports a library the
suite does not use (aiohttp alone costs most of a second), and a client created at import time of a test module
(during collection) is already tracked, because the patches go in as soon as the library has been executed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Callable

Callback = Callable[[ModuleType], None]


class _NotifyingLoader(importlib.abc.Loader):
    """The module's own loader, plus a call to the watcher once the module has been executed."""

    def __init__(self, loader: Any, on_loaded: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._on_loaded = on_loaded

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        module.__loader__ = self._loader  # leave the module as if we had never been there
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._on_loaded(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class ImportWatcher(importlib.abc.MetaPathFinder):
    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._callbacks: dict[str, list[Callback]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._on_error = on_error

    def when_imported(self, name: str, callback: Callback) -> None:
        module = sys.modules.get(name)
        if module is not None:
            self._run([callback], module)
            return
        with self._lock:
            self._callbacks.setdefault(name, []).append(callback)
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._callbacks or getattr(self._local, "busy", False):
            return None
        self._local.busy = True  # the real finders below are asked through importlib, which asks us again
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._local.busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _NotifyingLoader(spec.loader, lambda module: self._loaded(fullname, module))
        return spec

    def _loaded(self, name: str, module: ModuleType) -> None:
        with self._lock:
            callbacks = self._callbacks.pop(name, [])
        self._run(callbacks, module)

    def _run(self, callbacks: list[Callback], module: ModuleType) -> None:
        for cb in callbacks:
            try:
                cb(module)
            except Exception as e:  # noqa: BLE001 - a tracker fault must not break the user's import
                self._on_error(e)

    def close(self) -> None:
        with self._lock:
            self._callbacks.clear()
            if self in sys.meta_path:
                sys.meta_path.remove(self)
