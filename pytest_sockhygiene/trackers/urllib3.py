"""Tracker for urllib3 (placeholder until implemented)."""

from __future__ import annotations


class Urllib3Tracker:
    """Inactive placeholder."""
