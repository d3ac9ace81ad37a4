"""Built-in client trackers, each a pluggy plugin on the hooks in ``hookspecs.py``.

Each is active only when its library is importable; none imports its library unless it is installed.
"""

from __future__ import annotations

from typing import Any, List


def builtin_trackers() -> List[Any]:
    from .aiohttp import AiohttpTracker
    from .httpx import HttpxTracker
    from .requests import RequestsTracker
    from .urllib3 import Urllib3Tracker

    return [HttpxTracker("httpx"), HttpxTracker("httpx2"), RequestsTracker(), Urllib3Tracker(), AiohttpTracker()]
