"""What every built-in tracker shares: install when the library is imported, undo at the end, and answer the
per-client hooks only for clients of its own classes (pluggy's firstresult hooks stop at the first non-None)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from .patching import Patches


class ClassTracker:
    """Base of a tracker for one library's client classes. Subclasses set ``module``, fill ``self._classes`` and
    wrap methods with ``self._patches`` in :meth:`_patch`, and answer :meth:`sockets` (and, if they can,
    :meth:`is_closed` and :meth:`keepalive`) for their own clients."""

    module: str = ""

    def __init__(self) -> None:
        self._patches = Patches()
        self._classes: tuple[type, ...] = ()

    def _patch(self, registry: Any, mod: Any) -> None:
        raise NotImplementedError

    def _mine(self, client: Any) -> bool:
        return bool(self._classes) and isinstance(client, self._classes)

    def sockets(self, client: Any) -> list[Any]:
        raise NotImplementedError

    def is_closed(self, client: Any) -> bool | None:
        return False

    def keepalive(self, client: Any) -> float | None:
        return None

    def busy_sockets(self, client: Any) -> list[Any] | None:
        """The pooled sockets a request or an unclosed response holds; None if the library cannot tell."""
        return None

    @pytest.hookimpl
    def pytest_sockhygiene_install_tracker(self, registry: Any) -> None:
        registry.when_imported(self.module, lambda mod: self._patch(registry, mod))

    @pytest.hookimpl
    def pytest_sockhygiene_uninstall_tracker(self, registry: Any) -> None:
        self._patches.undo()

    @pytest.hookimpl
    def pytest_sockhygiene_client_sockets(self, client: Any) -> Iterable[Any] | None:
        return self.sockets(client) if self._mine(client) else None

    @pytest.hookimpl
    def pytest_sockhygiene_client_is_closed(self, client: Any) -> bool | None:
        return self.is_closed(client) if self._mine(client) else None

    @pytest.hookimpl
    def pytest_sockhygiene_client_busy_sockets(self, client: Any) -> Iterable[Any] | None:
        return self.busy_sockets(client) if self._mine(client) else None

    @pytest.hookimpl
    def pytest_sockhygiene_client_keepalive(self, client: Any) -> float | None:
        return self.keepalive(client) if self._mine(client) else None
