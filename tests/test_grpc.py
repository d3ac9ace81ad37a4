"""End to end, with the real grpcio: a broader fixture's channel owns the connection its C core opens lazily
(``grpc_channels.py``), and a test's own leaked channel is still the test's.

Found running a session-scoped channel fixture with grpcio 1.85: the first test that called it failed with an
``established`` leak, "origin unknown" - gRPC's C core connects when the first call is made, outside Python's
socket module, and keeps the connection for the next test. The server here is grpcio's own, with a generic
handler (no generated code, no protobuf).
"""

from __future__ import annotations

import importlib.util

import pytest

from pytest_sockhygiene.far_ends import Claims, names
from pytest_sockhygiene.grpc_channels import target_addresses

from conftest import dedent, established_by_test

# looked for, not imported: the inner runs import it in their own processes, and this worker forks for
# pytest-forked's tests
HAS_GRPC = importlib.util.find_spec("grpc") is not None

SUITE = dedent("""
    import asyncio
    from concurrent import futures

    import grpc
    import pytest

    KEEP = []


    def _echo(request, context):
        return request


    @pytest.fixture(scope="session")
    def target():
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "t.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}),))
        port = server.add_insecure_port("{host}:0")
        server.start()
        yield f"{host}:{{port}}"
        server.stop(None)


    @pytest.fixture(scope="session")
    def echo(target):
        # a stub method over a session channel that connects on its first call, in whichever test makes it
        channel = grpc.insecure_channel(target)
        yield channel.unary_unary("/t.Echo/Echo")
        channel.close()


    @pytest.fixture(scope="module")
    def module_echo(target):
        # its own connection (a local subchannel pool: channels with the same target otherwise share one)
        channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        yield channel.unary_unary("/t.Echo/Echo")
        channel.close()


    @pytest.fixture(scope="session")
    def aio_echo(target):
        # grpc.aio's channel on a loop of the fixture's own (no asyncio plugin needed): its C channel keeps the
        # target as a value, the sync one's as a method
        loop = asyncio.new_event_loop()

        async def make():
            return grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])

        channel = loop.run_until_complete(make())
        method = channel.unary_unary("/t.Echo/Echo")
        yield method, lambda data: loop.run_until_complete(method(data, timeout=10))
        loop.run_until_complete(channel.close())
        loop.close()


    def own_channel(target):
        channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        KEEP.append(channel)  # never closed
        return channel.unary_unary("/t.Echo/Echo")


    def test_a_session_channel_first_called(echo):
        assert echo(b"a", timeout=10) == b"a"


    def test_b_session_channel_again(echo):
        assert echo(b"b", timeout=10) == b"b"


    def test_c_own_channel_left_open_beside_the_session_one(echo, target):
        assert echo(b"c", timeout=10) == b"c"
        assert own_channel(target)(b"c", timeout=10) == b"c"


    def test_d_module_channel_first_called_with_an_own_one_left_open(module_echo, target):
        assert own_channel(target)(b"d", timeout=10) == b"d"
        assert module_echo(b"d", timeout=10) == b"d"


    def test_e_module_channel_again(module_echo):
        assert module_echo(b"e", timeout=10) == b"e"


    def test_f_own_channel_closed(target):
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            assert channel.unary_unary("/t.Echo/Echo")(b"f", timeout=10) == b"f"


    def test_g_asyncio_channel_first_called(aio_echo):
        assert aio_echo[1](b"g") == b"g"


    def test_h_asyncio_channel_again(aio_echo):
        assert aio_echo[1](b"h") == b"h"
""")


@pytest.mark.skipif(not HAS_GRPC, reason="grpcio is not installed")
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_broader_fixtures_channel_owns_what_it_connects_and_a_tests_own_channel_stays_the_tests(
        pytester, run, host):
    pytester.makepyfile(test_g=SUITE.replace("{host}", host).replace("{{port}}", "{port}"))
    result, established = established_by_test(pytester, run)
    # the session's and the module's channels connect during a test and keep the connection: not the test's
    assert established["test_a_session_channel_first_called"] == 0, result.stdout.str()
    assert established["test_b_session_channel_again"] == 0
    assert established["test_e_module_channel_again"] == 0
    assert established["test_f_own_channel_closed"] == 0
    assert established["test_g_asyncio_channel_first_called"] == 0
    assert established["test_h_asyncio_channel_again"] == 0
    # a channel the test made and left open is its leak, beside a broader channel to the same server; the
    # module's channel connects in the same test as the test's own, and one of the two is the test's
    assert established["test_c_own_channel_left_open_beside_the_session_one"] == 1, result.stdout.str()
    assert established["test_d_module_channel_first_called_with_an_own_one_left_open"] == 1
    result.assert_outcomes(passed=8, errors=2)
    result.stdout.fnmatch_lines(["*established: 1 > limit 0*", "*ESTABLISHED * origin unknown (opened by library "
                                 "or C code outside Python's socket module)"])


def test_target_addresses_follow_grpcs_naming():
    assert target_addresses("localhost:50051") == [("localhost", 50051)]
    assert target_addresses("dns:///svc:7") == [("svc", 7)]
    assert target_addresses("dns://8.8.8.8/svc:7") == [("svc", 7)]
    assert target_addresses("ipv4:10.0.0.1:5,10.0.0.2:6") == [("10.0.0.1", 5), ("10.0.0.2", 6)]
    assert target_addresses("ipv6:[::1]:9") == [("::1", 9)]
    assert target_addresses("[::ffff:127.0.0.1]:9") == [("127.0.0.1", 9)]
    assert target_addresses("svc") == [("svc", 443)]
    assert target_addresses("grpc:50051") == [("grpc", 50051)]  # a host named like a scheme
    for not_tcp in ("unix:/tmp/s", "unix-abstract:x", "vsock:2:1234", "xds:///svc", "google-c2p:///svc"):
        assert target_addresses(not_tcp) == [], not_tcp


def test_names_matches_literals_exactly_localhost_to_loopback_and_other_names_by_port():
    assert names([("127.0.0.1", 5)], ("127.0.0.1", 5))
    assert not names([("127.0.0.1", 5)], ("127.0.0.2", 5))
    assert not names([("127.0.0.1", 5)], ("127.0.0.1", 6))
    assert names([("localhost", 5)], ("::1", 5)) and names([("localhost", 5)], ("127.0.0.1", 5))
    assert not names([("localhost", 5)], ("10.0.0.1", 5))
    assert names([("svc", 5)], ("10.0.0.1", 5))  # not resolved: the look never waits on DNS
    assert not names([("svc", 5)], None)


def test_claims_give_an_object_one_connection_per_address_until_it_is_gone():
    claims = Claims()
    label, addresses, channel = "session fixture 'echo'", [("localhost", 5)], 1
    peers = {7: ("127.0.0.1", 5), 8: ("127.0.0.1", 5), 9: ("127.0.0.1", 6)}
    # one of the two connections to its address, none to another port (a window opened at 10, looked at 11)
    assert claims.place(label, channel, addresses, {7: "a", 8: "b", 9: "c"}, (), peers, {"a", "b", "c"},
                        10, 11) == ["a"]
    # a second look in the same window: the channel has its connection
    assert claims.place(label, channel, addresses, {8: "b"}, (), peers, {"a", "b"}, 10, 12) == []
    # the next test: its connection is still held, so a new one to the same address is not its own
    assert claims.place(label, channel, addresses, {10: "d"}, (), {10: ("127.0.0.1", 5)}, {"a", "d"}, 20, 21) == []
    # its connection is gone: it reconnected
    assert claims.place(label, channel, addresses, {10: "d"}, (), {10: ("127.0.0.1", 5)}, {"d"}, 30, 31) == ["d"]
    # another fixture's object to the same address is given its own connection
    assert claims.place("session fixture 'other'", 2, addresses, {11: "e"}, (), {11: ("::1", 5)}, {"d", "e"},
                        30, 31) == ["e"]


def test_claims_give_each_object_of_a_fixture_a_connection_in_one_test_but_none_in_a_later_one():
    """A fixture's pool of pylibmc clones, or two zmq sockets to one endpoint: each object opens a connection of
    its own to the same address in the test that first uses them (keyed by fixture alone, the second was the
    test's leak). In a later test a fixture that still holds a connection it was given takes no new one: a
    ``ThreadMappedPool`` also reaches its master client, which never connects, and must not take the connection
    that test left open itself."""
    claims = Claims()
    label, addresses = "session fixture 'pool'", [("127.0.0.1", 5)]
    peers = {7: ("127.0.0.1", 5), 8: ("127.0.0.1", 5), 9: ("127.0.0.1", 5)}
    wanted, held = {7: "a", 8: "b", 9: "c"}, {"a", "b", "c"}
    assert claims.place(label, 1, addresses, wanted, (), peers, held, 10, 11) == ["a"]
    assert claims.place(label, 2, addresses, wanted, {"a"}, peers, held, 10, 11) == ["b"]
    # the third connection is no object's: the test's
    assert claims.place(label, 1, addresses, wanted, {"a", "b"}, peers, held, 10, 11) == []
    # the next test opens another and leaves it: the pool's master (object 3) does not take it
    assert claims.place(label, 3, addresses, {10: "d"}, (), {10: ("127.0.0.1", 5)}, held | {"d"}, 20, 21) == []


def test_claims_give_a_fixture_in_a_later_test_only_what_replaces_a_connection_it_held_before():
    """A fixture's object whose connection ended reconnects in a later test: the fixture takes as many new ones as
    it has lost since an earlier test, not one per object (ci53: a ``ThreadMappedPool``'s clone lost its connection
    under load and reconnected, and its master, which never connects, took the connection the test left open)."""
    claims = Claims()
    label, addresses, clone, master = "module fixture 'mapped'", [("127.0.0.1", 5)], 2, 3
    one = {7: ("127.0.0.1", 5)}
    assert claims.place(label, clone, addresses, {7: "a"}, (), one, {"a"}, 10, 11) == ["a"]
    # the next test: "a" ended; the clone opened "d" (the lower number), the test "e", which it leaves open
    peers = {10: ("127.0.0.1", 5), 11: ("127.0.0.1", 5)}
    wanted, held = {10: "d", 11: "e"}, {"d", "e"}
    assert claims.place(label, master, addresses, wanted, (), peers, held, 20, 21) == ["d"]
    assert claims.place(label, clone, addresses, wanted, {"d"}, peers, held, 20, 21) == []  # "e" is the test's
    # a pool of two clones: one of them reconnects in a later test, and the fixture takes that one connection
    pool = "session fixture 'pool'"
    two = {7: ("127.0.0.1", 5), 8: ("127.0.0.1", 5)}
    assert claims.place(pool, 1, addresses, {7: "p", 8: "q"}, (), two, {"p", "q"}, 10, 11) == ["p"]
    assert claims.place(pool, 2, addresses, {7: "p", 8: "q"}, {"p"}, two, {"p", "q"}, 10, 11) == ["q"]
    later = {12: ("127.0.0.1", 5), 13: ("127.0.0.1", 5)}
    wanted, held = {12: "r", 13: "s"}, {"q", "r", "s"}  # "p" ended
    assert claims.place(pool, 1, addresses, wanted, (), later, held, 20, 21) == ["r"]
    assert claims.place(pool, 2, addresses, wanted, {"r"}, later, held, 20, 21) == []  # holds "q" still
    assert claims.place(pool, 3, addresses, wanted, {"r"}, later, held, 20, 21) == []  # the master: "s" the test's


def test_claims_take_all_gives_a_pool_every_connection_to_its_origin_and_note_counts_them_for_its_sharers():
    """A curl_cffi session is a pool (``FarEnds._place_pools``): where nothing outside the fixtures was sent to its
    origin, it takes every connection there; a fixture session sharing that origin under another spelling
    (``localhost``) is noted as holding them too, so that in a later test neither takes the test's own."""
    claims = Claims()
    peers = {7: ("127.0.0.1", 5), 8: ("127.0.0.1", 5), 9: ("127.0.0.1", 6)}
    wanted = {7: "a", 8: "b", 9: "c"}
    keys = claims.take_all("session fixture 's'", 1, [("127.0.0.1", 5)], wanted, {"b"}, peers, 11)
    assert keys == ["a"]  # "b" placed already, "c" another port
    assert claims.take_all("session fixture 's'", 1, [("localhost", 5)], wanted, (), peers, 11) == ["a", "b"]
    claims.note("session fixture 'other'", 2, ("localhost", 5), "a", 11)
    # a later test: the other fixture holds "a" from before, so it takes none of the test's
    later = {10: ("127.0.0.1", 5)}
    assert claims.place("session fixture 'other'", 2, [("localhost", 5)], {10: "d"}, (), later, {"a", "d"},
                        20, 21) == []


def test_claims_forget_what_is_no_longer_held():
    claims = Claims()
    peers = {7: ("127.0.0.1", 5), 8: ("127.0.0.1", 5)}
    claims.take_all("session fixture 's'", 1, [("127.0.0.1", 5)], {7: "a", 8: "b"}, (), peers)
    claims.note("session fixture 'other'", 2, ("localhost", 5), "a")
    claims.forget_gone({"b"})
    assert claims._given == {("session fixture 's'", ("127.0.0.1", 5)): {"b": (1, 0.0)}}
    claims.forget_gone(())
    assert claims._given == {}
