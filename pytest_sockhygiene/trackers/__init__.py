"""Built-in client trackers, each a pluggy plugin on the hooks in ``hookspecs.py``.

Each patches its library only once the suite imports it (``registry.when_imported``): none imports a library
the suite does not use.
"""

from __future__ import annotations

from typing import Any


def builtin_trackers() -> list[Any]:
    from .aiohttp import AiohttpTracker
    from .botocore import BotocoreTracker
    from .httpx import HttpxTracker
    from .requests import RequestsTracker
    from .urllib3 import Urllib3Tracker

    return [HttpxTracker("httpx"), HttpxTracker("httpx2"), RequestsTracker("requests"),
            RequestsTracker("niquests"), Urllib3Tracker(), AiohttpTracker(),
            BotocoreTracker()]
