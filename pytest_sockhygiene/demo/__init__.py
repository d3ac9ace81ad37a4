"""The demo suite of pytest-sockhygiene: ``python -m pytest_sockhygiene.demo``.

Realistic tests against a real HTTP server on loopback (started once per session by ``conftest.py``): the
``test_good_*`` tests use clients the way they should be used and pass; the ``test_leak_*`` and ``test_bad_*``
tests each commit one of the mistakes this plugin exists for - a client never closed, a server never shut down,
a pooled connection left in CLOSE_WAIT, a connection leaked from a thread, a new client per request, a blown
connection budget - and fail at teardown with the plugin's report. ``__main__.py`` runs them in a subprocess
and checks that every verdict is the one the demo expects.
"""
