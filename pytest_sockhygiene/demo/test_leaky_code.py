"""Leaks: each test leaves a socket open after it ends. The plugin fails each one at teardown."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from typing import Any

import httpx

from pytest_sockhygiene.testing import LoopbackHTTPServer, wait_for

# A real leak: the object lives on in a cache or a global, so nothing (not even the garbage collector) closes it.
_CACHE: list[Any] = []


def fetch_user(client: httpx.Client, user_id: int) -> str:
    response = client.get(f"/users/{user_id}")
    response.raise_for_status()
    return response.text


def test_leak_client_never_closed(api: LoopbackHTTPServer) -> None:
    """A client is created and used but never closed: its connection stays ESTABLISHED."""
    client = httpx.Client(base_url=api.url)
    _CACHE.append(client)  # a real leak: the client lives on in a cache
    assert fetch_user(client, 1) == "ok\n"


class WebhookReceiver(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []  # noqa: RUF012 - one shared inbox, as a real handler class would have

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def notify_order_shipped(webhook_url: str, order_id: int) -> None:
    with httpx.Client() as client:
        client.post(webhook_url, json={"order": order_id, "status": "shipped"}).raise_for_status()


def test_leak_stub_server_never_shut_down() -> None:
    """A stub webhook receiver is started for the test and never shut down: its socket stays in LISTEN."""
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WebhookReceiver)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    _CACHE.append(stub)  # a real leak: the server lives on in a global registry of stubs
    notify_order_shipped(f"http://127.0.0.1:{stub.server_port}/hooks/orders", order_id=42)
    # compared as JSON, not bytes: httpx 0.28 sends compact JSON, earlier releases put spaces after separators
    assert [json.loads(body) for body in WebhookReceiver.received] == [{"order": 42, "status": "shipped"}]
    # missing: stub.shutdown(); stub.server_close()


def test_leak_pooled_connection_closed_by_server(impatient_upstream: LoopbackHTTPServer) -> None:
    """The upstream hangs up on an idle pooled connection the client keeps: the client's side is in CLOSE_WAIT."""
    client = httpx.Client(base_url=impatient_upstream.url)
    _CACHE.append(client)  # a real leak: the client lives on in a cache
    assert fetch_user(client, 7) == "ok\n"
    # the upstream's keep-alive timeout (0.1 s) expires long before httpx's keepalive_expiry (5 s)
    assert wait_for(lambda: impatient_upstream.open_connections == 0, timeout=5)


def test_leak_connection_from_background_thread(api: LoopbackHTTPServer) -> None:
    """An audit-log thread opens a connection and never closes it: a thread's leak is the test's leak."""

    def ship_audit_log() -> None:
        conn = http.client.HTTPConnection(api.host, api.port, timeout=5)
        conn.request("POST", "/audit?event=login&user=7")
        conn.getresponse().read()
        _CACHE.append(conn)  # a real leak: the connection lives on in the shipper's cache

    shipper = threading.Thread(target=ship_audit_log, name="audit-log-shipper")
    shipper.start()
    shipper.join()
