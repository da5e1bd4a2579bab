"""Bad input: each case gets an error reply, the connection is closed where the
stream cannot be trusted any more, and the server and its other clients carry on."""
import socket
import threading
import time

import pytest
import redis

from conftest import SANITIZED, SLOW
from resp import Connection, Error


def assert_alive(server):
    client = server.client()
    try:
        assert client.ping()
        client.set("alive", "yes")
        assert client.get("alive") == b"yes"
    finally:
        client.close()


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$1099511627776\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$-7\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*2\r\n$4\r\nECHO\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*-0\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*01\r\n$4\r\nPING\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$04\r\nPING\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1000000\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*2\r\n$3\r\nGET\r\n:12\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*1\r\n$4\r\nPINGxx\r\n", b"-ERR Protocol error: expected CRLF after bulk data\r\n"),
        (b"SET a \"unbalanced\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
    ],
    ids=["garbage-count", "bulk-2^40", "negative-bulk", "null-bulk-argument", "minus-zero-count",
         "leading-zero-count", "leading-zero-bulk", "million-array",
         "wrong-type-byte", "missing-crlf", "unbalanced-quotes"],
)
def test_protocol_errors_close_the_connection(server, payload, message):
    bystander = server.client()
    bystander.set("before", "1")
    with Connection(server.port) as connection:
        # A valid command first: its reply must arrive before the error.
        connection.send_raw(b"PING\r\n" + payload + b"*1\r\n$4\r\nPING\r\n")
        data = connection.read_all_raw()
    assert data == b"+PONG\r\n" + message
    assert bystander.get("before") == b"1"
    bystander.close()
    assert_alive(server)


def test_empty_multibulk_is_ignored(server):
    # As Redis does: a multibulk length of 0 or less is an empty command, skipped.
    with Connection(server.port) as connection:
        connection.send_raw(b"*-10\r\n*-1\r\n*0\r\nPING\r\n*-99999\r\n*1\r\n$4\r\nPING\r\n")
        assert connection.read() == "PONG"
        assert connection.read() == "PONG"
        assert connection.call("ECHO", "still open") == b"still open"


def test_garbage_bytes(server):
    with Connection(server.port) as connection:
        connection.send_raw(b"*\x01\xff\xfe garbage\r\n")
        data = connection.read_all_raw()
    assert data.startswith(b"-ERR Protocol error")
    # Binary junk without a newline is an inline command that never ends: past the
    # 64 KiB inline limit it is refused.
    junk = bytes(b for b in range(1, 256) if b not in (10, 13, ord("*")))
    with Connection(server.port) as connection:
        connection.send_raw(junk * 300)
        data = connection.read_all_raw()
    assert data == b"-ERR Protocol error: too big inline request\r\n"
    assert_alive(server)


def test_inline_command_too_long(server):
    with Connection(server.port) as connection:
        connection.send_raw(b"SET k " + b"x" * (70 * 1024) + b"\r\n")
        data = connection.read_all_raw()
    assert data == b"-ERR Protocol error: too big inline request\r\n"
    # A long but acceptable inline command works.
    with Connection(server.port) as connection:
        connection.send_raw(b"SET inline " + b"y" * 60000 + b"\r\n")
        assert connection.read() == "OK"
        assert connection.call("STRLEN", "inline") == 60000
    assert_alive(server)


def test_disconnect_mid_value_stores_nothing(server):
    client = server.client()
    client.delete("partial", "partial-big")
    # Small value, cut inside the body.
    with Connection(server.port) as connection:
        connection.send_raw(b"*3\r\n$3\r\nSET\r\n$7\r\npartial\r\n$10\r\n01234")
    # Large value (received straight into a value block), cut halfway.
    with Connection(server.port) as connection:
        connection.send_raw(b"*3\r\n$3\r\nSET\r\n$11\r\npartial-big\r\n$4000000\r\n")
        connection.send_raw(b"z" * 2000000)
    # Cut between the value and its CRLF.
    with Connection(server.port) as connection:
        connection.send_raw(b"*3\r\n$3\r\nSET\r\n$7\r\npartial\r\n$3\r\nabc")
    time.sleep(0.2)
    assert client.exists("partial", "partial-big") == 0
    assert_alive(server)
    client.close()


def test_value_over_max_value(start_server):
    server = start_server("--max-value", "1mb", "--max-request", "8mb")
    with Connection(server.port) as connection:
        reply = connection.call("SET", "big", b"x" * (1024 * 1024 + 1))
        assert isinstance(reply, Error)
        assert reply == "ERR argument of 1048577 bytes exceeds max-value (1048576 bytes)"
        # The connection stays usable and nothing was stored.
        assert connection.call("EXISTS", "big") == 0
        assert connection.call("SET", "fits", b"x" * (1024 * 1024)) == "OK"
        assert connection.call("STRLEN", "fits") == 1024 * 1024
        # APPEND past max-value is refused too, and the value is unchanged.
        reply = connection.call("APPEND", "fits", "more")
        assert reply == "ERR string exceeds maximum allowed size (max-value)"
        assert connection.call("STRLEN", "fits") == 1024 * 1024
    # Beyond max-request the stream is not read any further.
    with Connection(server.port) as connection:
        connection.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9000000\r\n")
        assert connection.read_all_raw() == b"-ERR Protocol error: invalid bulk length\r\n"
    assert_alive(server)


def test_eviction_makes_room_and_oversized_values_are_refused(start_server):
    server = start_server("--memory", "16mb")
    client = server.client()
    budget = server.info("memory")["maxmemory"]
    assert budget == 16 * 1024 * 1024
    # Fill the budget with small values, then store one that fits only after eviction.
    for i in range(100):
        client.set(f"filler:{i}", b"f" * 100000)
    big = b"B" * (10 * 1024 * 1024)
    assert client.set("big", big) is True
    assert client.get("big") == big
    stats = server.info()
    assert stats["evicted_keys"] > 0
    assert stats["used_memory"] <= budget
    # Larger than the whole budget: an OOM error, nothing stored, nothing evicted.
    keys_before = client.dbsize()
    with pytest.raises(redis.exceptions.ResponseError, match="OOM"):
        client.set("huge", b"H" * (17 * 1024 * 1024))
    assert client.exists("huge") == 0
    assert client.dbsize() == keys_before
    assert client.get("big") == big
    client.close()


def test_thousand_clients_pipelining(server):
    """1,000 concurrent clients, each pipelining 100 commands: every reply arrives in
    order."""
    clients = 1000
    commands = 100
    sockets = []
    try:
        for _ in range(clients):
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=60))
        payloads = []
        for c in range(clients):
            parts = []
            for i in range(commands):
                key = f"c{c}:k{i}"
                if i % 2 == 0:
                    parts.append(Connection.encode("SET", key, f"v{c}-{i}"))
                else:
                    parts.append(Connection.encode("GET", f"c{c}:k{i - 1}"))
            payloads.append(b"".join(parts))
        for sock, payload in zip(sockets, payloads):
            sock.sendall(payload)
        failures = []

        def expected_reply(c):
            parts = []
            for i in range(commands):
                if i % 2 == 0:
                    parts.append(b"+OK\r\n")
                else:
                    value = f"v{c}-{i - 1}".encode()
                    parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
            return b"".join(parts)

        def collect(indexes):
            for c in indexes:
                want = expected_reply(c)
                got = b""
                while len(got) < len(want):
                    chunk = sockets[c].recv(65536)
                    if not chunk:
                        break
                    got += chunk
                if got != want:
                    failures.append(c)

        threads = [threading.Thread(target=collect, args=(range(t, clients, 8),)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert server.info("clients")["connected_clients"] >= clients
    finally:
        for sock in sockets:
            sock.close()
    assert_alive(server)


def test_max_clients(start_server):
    server = start_server("--max-clients", "5")
    held = [server.client() for _ in range(5)]
    for connection in held:
        assert connection.ping()
    with Connection(server.port) as extra:
        assert extra.read_all_raw() == b"-ERR max number of clients reached\r\n"
    assert held[0].info("stats")["rejected_connections"] >= 1
    held.pop().connection_pool.disconnect()
    # The freed place is taken as soon as the server has seen the close: until then a
    # newcomer is still refused, so try again for a while.
    deadline = time.time() + 10 * SLOW
    while True:
        replacement = server.client()
        try:
            assert replacement.ping()
            break
        except redis.ConnectionError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
        finally:
            replacement.connection_pool.disconnect()
    for connection in held:
        connection.connection_pool.disconnect()


def test_client_output_limit(start_server):
    server = start_server("--client-output-limit", "1mb")
    client = server.client()
    for i in range(3000):
        client.set(f"key:{i:05d}:" + "p" * 400, "v")
    # KEYS * builds a reply of over 1 MiB in one go: the client is disconnected.
    with Connection(server.port) as connection:
        connection.send("KEYS", "*")
        data = connection.read_all_raw()
    assert len(data) < 1024 * 1024
    info = client.info()
    assert info["strata_output_limit_disconnects"] >= 1
    assert client.ping()
    client.close()


def test_slow_reader_is_paced_not_buffered(server):
    """A client that pipelines many large GETs but does not read is slowed down: the
    server stops taking its commands instead of queueing every reply in memory."""
    client = server.client()
    value = b"r" * (256 * 1024)
    client.set("large", value)
    rss_before = server.info("memory")["used_memory_rss"]
    with Connection(server.port) as connection:
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        # 500 MiB of replies (125 MiB in the sanitized builds, whose copies are slow: still
        # over a hundred times the output at which the server stops taking commands).
        count = 500 if SANITIZED else 2000
        request = Connection.encode("GET", "large") * count
        sender = threading.Thread(target=lambda: _send_quietly(connection.sock, request))
        sender.start()
        time.sleep(1.0)
        rss_during = server.info("memory")["used_memory_rss"]
        # Now read everything: every reply must be complete and correct.
        want = b"$%d\r\n%s\r\n" % (len(value), value)
        received = 0
        buffer = b""
        while received < count:
            chunk = connection.sock.recv(1 << 20)
            assert chunk
            buffer += chunk
            while len(buffer) >= len(want):
                assert buffer[: len(want)] == want
                buffer = buffer[len(want):]
                received += 1
        sender.join()
    if not SANITIZED:  # AddressSanitizer's quarantine keeps freed memory resident
        assert rss_during - rss_before < 64 * 1024 * 1024
    client.close()


def _send_quietly(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass
