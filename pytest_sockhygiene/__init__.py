"""pytest-sockhygiene: connection hygiene as a test assertion.

Around each test the plugin compares this process's sockets before and after, and fails the test on leaked
ESTABLISHED, CLOSE_WAIT and LISTEN sockets, TIME_WAIT bursts the test caused, too many new connections, and
HTTP clients created and never closed. See the README and docs/ for the options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Limits", "Measurement", "SockHygiene", "SockHygieneWarning", "SocketEntry", "TcpState", "__version__"]

if TYPE_CHECKING:
    from .fixture import Measurement, SockHygiene
    from .limits import Limits
    from .table import SocketEntry, TcpState
    from .warning import SockHygieneWarning


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (the entry point does) must not import pytest-heavy modules it does not need.
    if name == "SockHygieneWarning":
        from .warning import SockHygieneWarning

        return SockHygieneWarning
    if name in ("SockHygiene", "Measurement"):
        from . import fixture

        return getattr(fixture, name)
    if name == "Limits":
        from .limits import Limits

        return Limits
    if name in ("SocketEntry", "TcpState"):
        from . import table

        return getattr(table, name)
    raise AttributeError(name)
