"""Regressions: nothing is left open, but connections are wasted. The plugin fails each test at teardown."""

from __future__ import annotations

import httpx
import pytest

from pytest_sockhygiene.testing import LoopbackHTTPServer


def get_user(base_url: str, user_id: int) -> str:
    # the regression: a new client, hence a new connection, per request
    with httpx.Client(base_url=base_url) as client:
        response = client.get(f"/users/{user_id}")
    response.raise_for_status()
    return response.text


def test_bad_new_client_per_request(api: LoopbackHTTPServer) -> None:
    """20 requests through a helper that creates a client per request: 20 TIME_WAIT entries (limit 5)."""
    users = [get_user(api.url, user_id) for user_id in range(1, 21)]
    assert len(users) == 20


def test_bad_module_level_httpx_get_in_a_loop(api: LoopbackHTTPServer) -> None:
    """`httpx.get()` creates and closes a client per call: a loop of them is a TIME_WAIT burst too."""
    for user_id in range(1, 21):
        assert httpx.get(f"{api.url}/users/{user_id}").status_code == 200


def sync_users(base_url: str, batches: list[list[int]]) -> int:
    synced = 0
    for batch in batches:
        with httpx.Client(base_url=base_url) as client:  # one client, hence one connection, per batch
            for user_id in batch:
                client.post(f"/users/{user_id}/sync").raise_for_status()
                synced += 1
    return synced


@pytest.mark.sockhygiene(connections=2)
def test_bad_sync_job_over_its_connection_budget(api: LoopbackHTTPServer) -> None:
    """The sync job may open 2 connections; it opens one per batch, 4 in all."""
    assert sync_users(api.url, [[1, 2], [3, 4], [5, 6], [7, 8]]) == 8
