"""Tracker for requests (placeholder until implemented)."""

from __future__ import annotations


class RequestsTracker:
    """Inactive placeholder."""
