"""Tracker for aiohttp (placeholder until implemented)."""

from __future__ import annotations


class AiohttpTracker:
    """Inactive placeholder."""
