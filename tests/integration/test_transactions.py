"""MULTI, EXEC, DISCARD, WATCH and UNWATCH, through redis-py and byte for byte, with Redis's
semantics: queued replies, EXECABORT, runtime errors inside EXEC's reply, WATCH failing on a
change by any client, by expiry or by FLUSHALL, and transactions that no other
connection's command splits (across worker threads)."""
import threading
import time

import pytest
import redis

from conftest import SLOW
from resp import Connection, Error, Null, Simple


def test_queued_commands_run_at_exec_in_order(client, server):
    with Connection(server.port) as raw:
        assert raw.call("MULTI") == Simple("OK")
        assert raw.call("SET", "t:a", "1") == Simple("QUEUED")
        assert raw.call("INCRBY", "t:a", "41") == Simple("QUEUED")
        assert raw.call("GET", "t:a") == Simple("QUEUED")
        # Nothing has run yet: another connection sees no key.
        assert client.get("t:a") is None
        assert raw.call("EXEC") == [Simple("OK"), 42, b"42"]
        assert client.get("t:a") == b"42"
        # An empty transaction answers an empty array.
        assert raw.call("MULTI") == Simple("OK")
        assert raw.call("EXEC") == []


def test_a_runtime_error_is_one_reply_and_the_rest_runs(client, server):
    with Connection(server.port) as raw:
        raw.call("SET", "t:text", "abc")
        raw.call("MULTI")
        raw.call("INCR", "t:text")
        raw.call("SET", "t:after", "yes")
        reply = raw.call("EXEC")
        assert isinstance(reply[0], Error) and reply[0].startswith("ERR value is not an integer")
        assert reply[1] == Simple("OK")
        assert client.get("t:after") == b"yes"


def test_errors_while_queueing_abort_the_transaction(client, server):
    with Connection(server.port) as raw:
        for bad in (["NOSUCHCOMMAND", "x"], ["SET", "t:k"]):
            assert raw.call("MULTI") == Simple("OK")
            assert raw.call("SET", "t:k", "v") == Simple("QUEUED")
            assert isinstance(raw.call(*bad), Error)
            assert raw.call("EXEC") == Error(
                "EXECABORT Transaction discarded because of previous errors.")
            assert client.exists("t:k") == 0
        # The session is out of the transaction: commands run again.
        assert raw.call("SET", "t:k", "now") == Simple("OK")


def test_misplaced_transaction_commands(server):
    with Connection(server.port) as raw:
        assert raw.call("EXEC") == Error("ERR EXEC without MULTI")
        assert raw.call("DISCARD") == Error("ERR DISCARD without MULTI")
        raw.call("MULTI")
        # Neither error aborts the transaction, as in Redis.
        assert raw.call("MULTI") == Error("ERR MULTI calls can not be nested")
        assert raw.call("WATCH", "t:x") == Error("ERR WATCH inside MULTI is not allowed")
        assert raw.call("SET", "t:x", "1") == Simple("QUEUED")
        assert raw.call("EXEC") == [Simple("OK")]
        raw.call("MULTI")
        raw.call("SET", "t:x", "2")
        assert raw.call("DISCARD") == Simple("OK")
        assert raw.call("GET", "t:x") == b"1"
        assert raw.call("MULTI", "extra") == Error("ERR wrong number of arguments for 'multi' command")


def test_client_list_shows_the_queue(client, server):
    with Connection(server.port) as raw:
        raw.call("CLIENT", "SETNAME", "queuer")
        raw.call("MULTI")
        raw.call("SET", "t:q", "1")
        raw.call("GET", "t:q")
        line = [c for c in client.client_list() if c["name"] == "queuer"][0]
        assert line["multi"] == "2"
        raw.call("DISCARD")
        line = [c for c in client.client_list() if c["name"] == "queuer"][0]
        assert line["multi"] == "-1"


def watched_exec(server, key, change, wait=0):
    """WATCH KEY on one connection, let CHANGE(other client) run, then MULTI/SET/EXEC;
    returns EXEC's reply."""
    other = server.client()
    with Connection(server.port) as raw:
        assert raw.call("WATCH", key) == Simple("OK")
        change(other)
        if wait:
            time.sleep(wait)
        raw.call("MULTI")
        raw.call("SET", key, "from-transaction")
        reply = raw.call("EXEC")
    other.close()
    return reply


def test_watch_fails_exec_on_any_change(client, server):
    unchanged = watched_exec(server, "t:w0", lambda other: other.set("t:elsewhere", 1))
    assert unchanged == [Simple("OK")]
    changes = {
        "set": lambda other: other.set("t:w1", "x"),
        "delete": lambda other: (client.set("t:w2", "x"), other.delete("t:w2")),
        "expire": lambda other: other.expire("t:w3", 100),
        "persist": lambda other: other.persist("t:w4"),
        "append": lambda other: other.append("t:w5", "more"),
        "rename": lambda other: other.rename("t:w7src", "t:w7"),
        "flushall": lambda other: other.flushall(),
    }
    client.set("t:w3", "x")
    client.set("t:w4", "x", ex=100)
    client.set("t:w5", "x" * 10000)
    client.set("t:w7src", "x")
    keys = {"set": "t:w1", "delete": "t:w2", "expire": "t:w3", "persist": "t:w4",
            "append": "t:w5", "flushall": "t:w6", "rename": "t:w7"}
    for name, change in changes.items():
        key = keys[name]
        if name == "flushall":
            client.set(key, "x")
        reply = watched_exec(server, key, change)
        assert reply == Null("*-1"), name
        if name != "flushall":
            assert client.get(key) != b"from-transaction", name


def test_watch_sees_expiry_and_the_sessions_own_change(client, server):
    client.set("t:short", "x", px=50 * SLOW)
    assert watched_exec(server, "t:short", lambda other: None, wait=0.15 * SLOW) == Null("*-1")
    with Connection(server.port) as raw:
        raw.call("WATCH", "t:own")
        raw.call("SET", "t:own", "mine")  # the watching connection's own write counts too
        raw.call("MULTI")
        raw.call("GET", "t:own")
        assert raw.call("EXEC") == Null("*-1")
        # EXEC forgot the watched keys: the next transaction runs.
        raw.call("MULTI")
        raw.call("GET", "t:own")
        assert raw.call("EXEC") == [b"mine"]
        # So do UNWATCH and DISCARD.
        raw.call("WATCH", "t:own")
        client.set("t:own", "theirs")
        raw.call("UNWATCH")
        raw.call("MULTI")
        raw.call("GET", "t:own")
        assert raw.call("EXEC") == [b"theirs"]
        raw.call("WATCH", "t:own")
        client.set("t:own", "again")
        raw.call("MULTI")
        raw.call("DISCARD")
        raw.call("MULTI")
        raw.call("GET", "t:own")
        assert raw.call("EXEC") == [b"again"]


def test_aborted_exec_is_null_in_resp3(client, server):
    with Connection(server.port) as raw:
        raw.call("HELLO", "3")
        raw.call("WATCH", "t:r3")
        client.set("t:r3", "changed")
        raw.call("MULTI")
        raw.call("GET", "t:r3")
        assert raw.call("EXEC") == Null("_")


def test_redis_py_transaction_with_watch_under_contention(start_server):
    """8 threads increment one counter with WATCH/GET/MULTI/SET/EXEC (redis-py's
    transaction() retries on WatchError): a lost update would leave it short."""
    server = start_server("--threads", "2")
    threads, rounds = 8, 25
    retries = []

    def worker():
        connection = server.client()
        failures = 0

        def increment(pipe):
            value = int(pipe.get("t:counter") or 0)
            pipe.multi()
            for i in range(20):  # a wider window between EXEC's check and the SET
                pipe.get(f"t:filler{i}")
            pipe.set("t:counter", value + 1)

        for _ in range(rounds):
            while True:
                try:
                    connection.transaction(increment, "t:counter")
                    break
                except redis.WatchError:  # transaction() retries by itself; defensive
                    failures += 1
        retries.append(failures)
        connection.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120 * SLOW)
    assert server.client().get("t:counter") == str(threads * rounds).encode()


def test_no_command_runs_between_a_transactions_commands(start_server):
    """A transaction increments two counters; readers on other connections (other worker
    threads) read both with one MGET, which locks both keys at once: they must never see
    one incremented without the other."""
    server = start_server("--threads", "2")
    setup = server.client()
    setup.mset({"{p}a": 0, "{p}b": 0})
    stop = threading.Event()
    torn = []

    def reader():
        connection = server.client()
        while not stop.is_set():
            a, b = connection.mget("{p}a", "{p}b")
            if a != b:
                torn.append((a, b))
        connection.close()

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in readers:
        thread.start()
    writer = server.client()
    try:
        for _ in range(30):
            with writer.pipeline(transaction=True) as pipe:
                pipe.incr("{p}a")
                for i in range(1000):  # a window readers fall into without exclusion
                    pipe.set(f"{{p}}filler{i}", i)
                pipe.incr("{p}b")
                pipe.execute()
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=60 * SLOW)
    assert torn == []
    a, b = setup.mget("{p}a", "{p}b")
    assert a == b == b"30"


def test_exec_reads_and_changes_values_on_flash(start_server):
    server = start_server("--memory", "8mb", "--ssd-size", "64mb", "--segment-size", "8mb",
                          "--threads", "1", "--pace-timeout", "60000")
    client = server.client()
    with client.pipeline(transaction=False) as pipe:
        for i in range(200):
            pipe.set(f"cold:{i}", f"{i:05d}" + "v" * 1000)
        pipe.execute()
    for i in range(150):
        client.set(f"fill:{i}", b"f" * (100 * 1024))
    deadline = time.time() + 10 * SLOW
    while server.info("flash")["flash_items"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert server.info("flash")["flash_items"] > 0
    with client.pipeline(transaction=True) as pipe:
        for i in range(200):
            pipe.get(f"cold:{i}")
        pipe.append("cold:0", "+tail")
        pipe.getrange("cold:1", 0, 4)
        replies = pipe.execute()
    assert replies[:200] == [(f"{i:05d}" + "v" * 1000).encode() for i in range(200)]
    assert replies[200] == 1005 + 5
    assert replies[201] == b"00001"
    assert client.get("cold:0") == b"00000" + b"v" * 1000 + b"+tail"


def test_the_queue_is_bounded_by_max_request(start_server):
    server = start_server("--max-request", "64kb", "--max-value", "32kb")
    with Connection(server.port) as raw:
        raw.call("MULTI")
        replies = [raw.call("SET", f"t:big{i}", "x" * 10000) for i in range(8)]
        assert replies[:6] == [Simple("QUEUED")] * 6
        assert isinstance(replies[-1], Error) and "max-request" in replies[-1]
        assert raw.call("EXEC") == Error(
            "EXECABORT Transaction discarded because of previous errors.")
        assert raw.call("EXISTS", "t:big0") == 0


def test_a_transaction_interrupted_by_disconnect_runs_nothing(client, server):
    raw = Connection(server.port)
    raw.call("MULTI")
    raw.call("SET", "t:gone", "1")
    raw.close()
    time.sleep(0.1)
    assert client.exists("t:gone") == 0
    assert client.ping()


def test_exec_counts_each_queued_command_once(start_server):
    server = start_server()
    with Connection(server.port) as raw:
        raw.call("MULTI")
        raw.call("SET", "t:c", "1")
        raw.call("GET", "t:c")
        raw.call("INCR", "t:nan-after-set")
        assert raw.call("EXEC") == [Simple("OK"), b"1", 1]
    stats = server.client().info("commandstats")
    for name in ("multi", "exec", "set", "get", "incr"):
        assert stats[f"cmdstat_{name}"]["calls"] == 1, (name, stats)


def test_watch_of_a_key_already_expired_does_not_fail_exec(client, server):
    """Redis ignores the removal of a key that had expired before WATCH; one that expires
    after WATCH fails EXEC (test_watch_sees_expiry_and_the_sessions_own_change)."""
    for attempt in range(5):
        client.set("t:gone", "v", px=5)
        time.sleep(0.02)
        with Connection(server.port) as raw:
            raw.call("WATCH", "t:gone")
            raw.call("MULTI")
            raw.call("SET", "t:gone", "new")
            assert raw.call("EXEC") == [Simple("OK")], attempt


def test_shutdown_is_refused_inside_multi(server):
    with Connection(server.port) as raw:
        raw.call("MULTI")
        assert raw.call("SHUTDOWN") == Error("ERR Command not allowed inside a transaction")
        assert raw.call("EXEC") == Error(
            "EXECABORT Transaction discarded because of previous errors.")
        assert raw.call("PING") == Simple("PONG")


def test_exec_counts_its_commands_failures_as_theirs(start_server):
    server = start_server()
    with Connection(server.port) as raw:
        raw.call("SET", "t:text", "abc")
        raw.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
        raw.call("MULTI")
        raw.call("INCR", "t:text")
        reply = raw.call("EXEC")
        assert isinstance(reply[0], Error)
        logged = [entry[3][0] for entry in raw.call("SLOWLOG", "GET", "-1")]
    stats = server.client().info("commandstats")
    assert stats["cmdstat_incr"]["failed_calls"] == 1
    assert stats["cmdstat_exec"]["failed_calls"] == 0
    assert b"incr" in [name.lower() for name in logged]
    assert b"exec" not in [name.lower() for name in logged]  # EXEC: skip-slowlog
