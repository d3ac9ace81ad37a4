"""botocore (and so boto3): the service clients ``boto3.client("s3")`` returns, ``botocore.client.S3`` and kin.

Created: ``BaseClient.__init__``. Closed: ``BaseClient.close()`` (no ``with``: botocore clients are not context
managers). Requests: ``BaseClient._make_api_call`` (one per API call, retries included).
Pool: ``client._endpoint.http_session`` (a ``botocore.httpsession.URLLib3Session``) -> its urllib3 ``_manager``
and the ``_proxy_managers`` it builds per proxy -> their pools -> idle connections (see ``urllib3.py``).

The urllib3 PoolManagers of a ``URLLib3Session`` are parts of it and never recorded on their own: a boto3 client is
reported under its own name, not as the ``urllib3.PoolManager`` inside it, and the sessions botocore's credential
providers build for the instance and container metadata endpoints (one or two per client a test makes, used only
when no other credentials are found) are not unused clients of the test's. A client whose endpoint sends through
something else (aiobotocore's aiohttp session) is not recorded: what that session is built on is tracked instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..copies import copied
from .base import ClassTracker
from .patching import after_init, building_parts, counting_requests, then_closed
from .urllib3 import manager_sockets


def _managers(session: Any) -> list[Any]:
    """The urllib3 PoolManagers of a ``URLLib3Session``: its own, and one per proxy it has sent through."""
    manager = getattr(session, "_manager", None)
    out = [manager] if manager is not None else []
    proxies = getattr(session, "_proxy_managers", None) or {}
    return out + (copied(proxies.values) or [])  # (a proxy manager added while we looked: tried again)


def _http_session(client: Any) -> Any:
    return getattr(getattr(client, "_endpoint", None), "http_session", None)


class BotocoreTracker(ClassTracker):
    """Tracks ``botocore.client.BaseClient`` (every service client) whose endpoint sends through urllib3."""

    module = "botocore"

    def __init__(self) -> None:
        super().__init__()
        self._session_cls: type | None = None

    @pytest.hookimpl
    def pytest_sockhygiene_install_tracker(self, registry: Any) -> None:
        # two modules, each patched once imported (``botocore`` alone imports neither): the session's parts first
        # (a client's session is built before the client), then the clients
        registry.when_imported(f"{self.module}.httpsession", lambda mod: self._patch_session(registry, mod))
        registry.when_imported(f"{self.module}.client", lambda mod: self._patch(registry, mod))

    def _patch_session(self, registry: Any, mod: Any) -> None:
        session_cls = mod.URLLib3Session
        self._session_cls = session_cls
        for name in ("__init__", "_get_proxy_manager"):
            if hasattr(session_cls, name):
                self._patches.wrap(session_cls, name, building_parts(registry))

    def _patch(self, registry: Any, mod: Any) -> None:
        base = mod.BaseClient
        self._classes = (base,)

        def kind(client: Any) -> str:
            cls = type(client)  # botocore.client.S3: a class botocore makes per service
            return f"{cls.__module__}.{cls.__qualname__}"

        def urllib3_session(client: Any) -> bool:
            session_cls = self._session_cls
            return session_cls is not None and isinstance(_http_session(client), session_cls)

        p = self._patches
        p.wrap(base, "__init__", after_init(registry, kind, lambda c: True, only_if=urllib3_session))
        if hasattr(base, "close"):  # (botocore 1.23.21 and newer)
            p.wrap(base, "close", then_closed(registry))
        p.wrap(base, "_make_api_call", counting_requests(registry, self.sockets))

    def sockets(self, client: Any) -> list[Any]:
        out: list[Any] = []
        for manager in _managers(_http_session(client)):
            out.extend(manager_sockets(manager))
        return out
