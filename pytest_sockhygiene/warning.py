"""The warning class users filter on (``-W error::pytest_sockhygiene.SockHygieneWarning``)."""

from __future__ import annotations

import pytest


class SockHygieneWarning(pytest.PytestWarning):
    """A test broke its socket limits while the plugin runs in ``warn`` mode."""
