"""Blocking list commands through redis-py and byte for byte: BLPOP, BRPOP, BLMOVE and
BRPOPLPUSH with Redis 7.0's replies (checked against redis-server 7.0.15): served at
once, served by a later push, timeouts, clients served in the order they blocked,
chained moves, CLIENT UNBLOCK, the blocked state in INFO and CLIENT LIST, inside MULTI,
a client that leaves while blocked (nothing is taken for it), commands pipelined behind a
blocked one, and a work queue of producers and consumers at volume with every item
delivered exactly once."""
import threading
import time

import pytest
import redis

from conftest import SANITIZED, THREAD_SANITIZED
from resp import Connection, Error, Null

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def in_thread(function, *arguments):
    """Runs FUNCTION in a thread; returns (thread, results list it appends to)."""
    results = []
    thread = threading.Thread(target=lambda: results.append(function(*arguments)))
    thread.start()
    return thread, results


def wait_blocked(client, count, seconds=10):
    """Waits until COUNT clients are blocked (INFO blocked_clients)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if client.info("clients")["blocked_clients"] == count:
            return
        time.sleep(0.01)
    raise AssertionError(f"never {count} blocked: {client.info('clients')['blocked_clients']}")


def test_served_at_once(client):
    client.rpush("b", "1", "2")
    assert client.blpop(["a", "b"], timeout=1) == (b"b", b"1")
    assert client.brpop(["a", "b"], timeout=1) == (b"b", b"2")
    assert client.exists("b") == 0  # the last element took the key with it
    client.rpush("src", "x", "y")
    assert client.blmove("src", "dst", 1, "RIGHT", "LEFT") == b"y"
    assert client.brpoplpush("src", "dst", 1) == b"x"
    assert client.lrange("dst", 0, -1) == [b"x", b"y"] and client.exists("src") == 0


def test_timeouts(server, client):
    started = time.time()
    assert client.blpop(["nothing"], timeout=0.2) is None
    assert 0.15 <= time.time() - started < 5
    assert client.blmove("nothing", "dst", 0.1) is None
    with Connection(server.port) as raw:
        assert raw.call("BLPOP", "nothing", "0.05") == Null("*-1")
        # A timed-out wait is a null array for every command (Redis 7.0); inside EXEC,
        # BLMOVE and BRPOPLPUSH answer a null bulk string.
        assert raw.call("BRPOPLPUSH", "nothing", "dst", "0.05") == Null("*-1")
        assert raw.call("BLMOVE", "nothing", "d", "LEFT", "LEFT", "0.05") == Null("*-1")
        raw.call("MULTI")
        raw.call("BLMOVE", "nothing", "d", "LEFT", "LEFT", "0")
        assert raw.call("EXEC") == [Null("$-1")]
        assert raw.call("HELLO", "3")[b"proto"] == 3
        assert raw.call("BLPOP", "nothing", "0.05") == Null("_")
        assert raw.call("BLMOVE", "nothing", "d", "LEFT", "LEFT", "0.05") == Null("_")
        assert raw.call("BLPOP", "nothing", "-1") == Error("ERR timeout is negative")
        assert raw.call("BLPOP", "nothing", "x") == Error(
            "ERR timeout is not a float or out of range")
        assert raw.call("BLMOVE", "a", "b", "UP", "LEFT", "0") == Error("ERR syntax error")
        assert raw.call("BLPOP", "nothing") == Error(
            "ERR wrong number of arguments for 'blpop' command")
    client.set("string", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.blpop(["nothing", "string"], timeout=0.1)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.blmove("string", "dst", 0.1)


def test_served_by_a_later_push(server, client):
    thread, results = in_thread(server.client().blpop, ["first", "second"], 10)
    wait_blocked(client, 1)
    blocked = [c for c in client.client_list() if "b" in c["flags"]]
    assert len(blocked) == 1 and blocked[0]["cmd"] == "blpop"
    client.rpush("second", "v1", "v2")
    thread.join(10)
    assert results == [(b"second", b"v1")]
    assert client.lrange("second", 0, -1) == [b"v2"]
    assert client.info("clients")["blocked_clients"] == 0
    # A push of another type, or to another key, does not serve it.
    thread, results = in_thread(server.client().brpop, ["k"], 10)
    wait_blocked(client, 1)
    client.rpush("other", "x")
    client.hset("k2", "f", "v")
    time.sleep(0.1)
    assert results == []
    client.lpush("k", "late")
    thread.join(10)
    assert results == [(b"k", b"late")]


def test_served_in_the_order_they_blocked(server, client):
    threads = []
    for i in range(4):
        threads.append(in_thread(server.client().brpop, ["queue"], 10))
        wait_blocked(client, i + 1)
    client.rpush("queue", "a", "b", "c", "d")  # the tail goes first
    for thread, _ in threads:
        thread.join(10)
    assert [results for _, results in threads] == [
        [(b"queue", b"d")], [(b"queue", b"c")], [(b"queue", b"b")], [(b"queue", b"a")]]
    assert client.exists("queue") == 0


def test_chained_moves(server, client):
    # A blocked on list1 -> list2, B on list2 -> list3: one push travels to list3.
    first, first_results = in_thread(server.client().blmove, "list1", "list2", 10)
    wait_blocked(client, 1)
    second, second_results = in_thread(server.client().blmove, "list2", "list3", 10)
    wait_blocked(client, 2)
    client.rpush("list1", "traveller")
    first.join(10)
    second.join(10)
    assert first_results == [b"traveller"] and second_results == [b"traveller"]
    assert client.lrange("list3", 0, -1) == [b"traveller"]
    assert client.exists("list1", "list2") == 0


def test_client_unblock(server, client):
    blocked = server.client()
    blocked_id = blocked.client_id()
    thread, results = in_thread(blocked.blpop, ["never"], 0)
    wait_blocked(client, 1)
    assert client.client_unblock(blocked_id) is True
    thread.join(10)
    assert results == [None]
    assert client.client_unblock(blocked_id) is False  # not blocked now

    errors = []

    def blpop_error():
        try:
            blocked.blpop(["never"], 0)
        except redis.ResponseError as error:
            errors.append(str(error))

    thread = threading.Thread(target=blpop_error)
    thread.start()
    wait_blocked(client, 1)
    assert client.client_unblock(blocked_id, error=True) is True
    thread.join(10)
    assert errors == ["UNBLOCKED client unblocked via CLIENT UNBLOCK"]
    with Connection(server.port) as raw:
        assert raw.call("CLIENT", "UNBLOCK", "x") == Error(
            "ERR value is not an integer or out of range")
        assert raw.call("CLIENT", "UNBLOCK", "1", "SOON") == Error(
            "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")


def test_inside_multi_it_does_not_block(client):
    pipeline = client.pipeline()
    pipeline.blpop(["empty"], 0)
    pipeline.rpush("full", "v")
    pipeline.blpop(["full"], 0)
    pipeline.blmove("empty", "x", 0)
    assert pipeline.execute() == [None, 1, (b"full", b"v"), None]


def test_a_client_that_leaves_takes_nothing(server, client):
    with Connection(server.port) as raw:
        raw.send("BLPOP", "leave", "0")
        wait_blocked(client, 1)
    wait_blocked(client, 0)
    client.rpush("leave", "kept")
    assert client.lrange("leave", 0, -1) == [b"kept"]
    # Two blocked, the first leaves before the push: the second is served.
    with Connection(server.port) as first:
        first.send("BLPOP", "leave2", "0")
        wait_blocked(client, 1)
        thread, results = in_thread(server.client().blpop, ["leave2"], 10)
        wait_blocked(client, 2)
    wait_blocked(client, 1)
    client.rpush("leave2", "for-the-second")
    thread.join(10)
    assert results == [(b"leave2", b"for-the-second")]


def test_commands_pipelined_behind_a_blocked_one(server, client):
    with Connection(server.port) as raw:
        raw.send_raw(Connection.encode("BLPOP", "pipe", "0") + Connection.encode("PING") +
                     Connection.encode("LLEN", "pipe"))
        wait_blocked(client, 1)
        client.rpush("pipe", "a", "b")
        assert raw.read() == [b"pipe", b"a"]
        assert raw.read() == "PONG"
        assert raw.read() == 1


def test_work_queue_delivers_every_item_once(server, client):
    producers, consumers = 4, 4
    per_producer = 100 if (SANITIZED or THREAD_SANITIZED) else 500
    total = producers * per_producer
    received = [[] for _ in range(consumers)]

    def consume(index):
        connection = server.client()
        while True:
            item = connection.blpop(["jobs", "stop"], 10)
            assert item is not None, "a consumer waited 10 s for work that was pushed"
            if item[0] == b"stop":
                return
            received[index].append(item[1])

    def produce(index):
        connection = server.client()
        for i in range(per_producer):
            connection.rpush("jobs", f"{index}:{i}")

    workers = [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    workers += [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for worker in workers:
        worker.start()
    for worker in workers[consumers:]:
        worker.join(60)
    deadline = time.time() + 60
    while client.llen("jobs") > 0 and time.time() < deadline:
        time.sleep(0.01)
    client.rpush("stop", *["x"] * consumers)
    for worker in workers[:consumers]:
        worker.join(60)
    items = [item for share in received for item in share]
    assert len(items) == total and len(set(items)) == total
    # Each producer's items reach each consumer in the order they were pushed.
    for share in received:
        for producer in range(producers):
            sequence = [int(item.split(b":")[1]) for item in share
                        if item.startswith(f"{producer}:".encode())]
            assert sequence == sorted(sequence)
    assert client.info("clients")["blocked_clients"] == 0


def test_lmpop_and_blmpop(server, client):
    client.rpush("l2", "a", "b", "c")
    assert client.lmpop(2, "l1", "l2", direction="LEFT", count=2) == [b"l2", [b"a", b"b"]]
    assert client.lmpop(2, "l1", "l2", direction="RIGHT") == [b"l2", [b"c"]]
    assert client.lmpop(2, "l1", "l2", direction="LEFT") is None
    with Connection(server.port) as raw:
        assert raw.call("LMPOP", "0", "l1", "LEFT") == Error("ERR numkeys should be greater than 0")
        assert raw.call("LMPOP", "3", "l1", "LEFT") == Error("ERR syntax error")
        assert raw.call("LMPOP", "1", "l1", "LEFT", "COUNT", "0") == Error(
            "ERR count should be greater than 0")
        assert raw.call("BLMPOP", "0.05", "1", "l1", "LEFT") == Null("*-1")
        assert raw.call("COMMAND", "GETKEYS", "BLMPOP", "0", "2", "a", "b", "LEFT") == [b"a", b"b"]
    blocked = server.client()
    thread, results = in_thread(
        lambda: blocked.blmpop(10, 2, "m1", "m2", direction="RIGHT", count=5))
    wait_blocked(client, 1)
    client.rpush("m2", "x", "y", "z")
    thread.join(10)
    assert results == [[b"m2", [b"z", b"y", b"x"]]]


def test_sorted_set_pops(server, client):
    client.zadd("z", {"a": 1, "b": 2, "c": 3})
    assert client.bzpopmin(["z2", "z"], 1) == (b"z", b"a", 1.0)
    assert client.zmpop(2, ["z2", "z"], max=True, count=5) == [b"z", [[b"c", b"3"], [b"b", b"2"]]]
    assert client.zmpop(1, ["z"], min=True) is None and client.exists("z") == 0
    with Connection(server.port) as raw:
        assert raw.call("ZMPOP", "0", "z", "MIN") == Error("ERR numkeys should be greater than 0")
        assert raw.call("ZMPOP", "1", "z", "MID") == Error("ERR syntax error")
        assert raw.call("BZMPOP", "0.05", "1", "z", "MIN") == Null("*-1")
        assert raw.call("BZPOPMAX", "z", "0.05") == Null("*-1")
        raw.call("ZADD", "z", "2.5", "m")
        assert raw.call("HELLO", "3")[b"proto"] == 3
        assert raw.call("BZPOPMAX", "z", "0") == [b"z", b"m", 2.5]
    blocked = server.client()
    thread, results = in_thread(lambda: blocked.bzpopmax(["y1", "y2"], 10))
    wait_blocked(client, 1)
    client.zadd("y2", {"low": 1, "high": 9})
    thread.join(10)
    assert results == [(b"y2", b"high", 9.0)]
    thread, results = in_thread(
        lambda: blocked.bzmpop(10, 1, ["y3"], min=True, count=2))
    wait_blocked(client, 1)
    client.zadd("y3", {"p": 1, "q": 2, "r": 3})
    thread.join(10)
    assert results == [[b"y3", [[b"p", b"1"], [b"q", b"2"]]]]


def test_a_push_racing_the_block_is_never_missed(server, client):
    """A push that lands between BLPOP's look at an empty list and its joining the line
    of blocked clients still serves it: 300 rounds of both at once, each BLPOP answered
    well within its 5 s timeout."""
    rounds = 100 if SANITIZED else 300
    pusher = server.client()
    with Connection(server.port) as raw:
        for i in range(rounds):
            start = threading.Barrier(2)

            def push():
                start.wait()
                pusher.rpush(f"race{i}", "v")

            thread = threading.Thread(target=push)
            thread.start()
            start.wait()
            raw.send("BLPOP", f"race{i}", "5")
            started = time.time()
            assert raw.read() == [f"race{i}".encode(), b"v"], i
            assert time.time() - started < 4, i
            thread.join()


def test_quit_pipelined_behind_a_blocked_command(server, client):
    """The connection closes (QUIT) right after its blocked command ends, inside the
    wake that ended it: nothing of the session is used after it is freed (the sanitizer
    builds check), for a timeout and for a push alike."""
    for pushed in (False, True):
        with Connection(server.port) as raw:
            raw.send_raw(Connection.encode("BLPOP", "gone", "0.1" if not pushed else "5") +
                         Connection.encode("QUIT"))
            if pushed:
                wait_blocked(client, 1)
                client.rpush("gone", "v")
                assert raw.read() == [b"gone", b"v"]
            else:
                assert raw.read() == Null("*-1")
            assert raw.read() == "OK"
    assert client.ping() is True and client.exists("gone") == 0


def test_rename_and_copy_onto_a_blocked_key_serve_it(server, client):
    thread, results = in_thread(server.client().blpop, ["dst"], 10)
    wait_blocked(client, 1)
    client.rpush("src", "moved")
    assert client.rename("src", "dst") is True
    thread.join(10)
    assert results == [(b"dst", b"moved")]
    thread, results = in_thread(server.client().bzpopmin, ["zdst"], 10)
    wait_blocked(client, 1)
    client.zadd("zsrc", {"m": 1})
    assert client.copy("zsrc", "zdst") is True
    thread.join(10)
    assert results == [(b"zdst", b"m", 1.0)]


def test_a_client_unblocked_before_a_push_does_not_keep_the_turn(server, client):
    """A and B wait on one key; A is unblocked and the push lands before A has answered:
    the element goes to B, not to nobody."""
    first = server.client()
    first_id = first.client_id()
    a, a_results = in_thread(first.blpop, ["turn"], 10)
    wait_blocked(client, 1)
    b, b_results = in_thread(server.client().blpop, ["turn"], 10)
    wait_blocked(client, 2)
    pipeline = client.pipeline(transaction=True)
    pipeline.client_unblock(first_id)
    pipeline.rpush("turn", "x")
    pipeline.execute()
    a.join(10)
    b.join(10)
    assert a_results == [None] and b_results == [(b"turn", b"x")]


def test_many_blocked_clients_each_woken_by_its_own_keys(server, client):
    """Hundreds of clients blocked at once, each on a key of its own, a shared key and its
    own key named twice: a push to one client's key serves that client and no other, the
    shared key serves the rest in the order they blocked, and clients that leave while
    blocked drop out of their keys' waiters (a later push skips them)."""
    count = 60 if SANITIZED else 300
    connections = []
    try:
        for i in range(count):
            connection = Connection(server.port)
            connection.send("BLPOP", f"own:{i}", "shared", f"own:{i}", "0")
            connections.append(connection)
            wait_blocked(client, i + 1)  # so that they block in this order
        # Every third client leaves while blocked.
        leaving = set(range(0, count, 3))
        for i in leaving:
            connections[i].close()
        wait_blocked(client, count - len(leaving))
        # Pushes to the own keys of the odd clients that stayed serve exactly those.
        own = [i for i in range(count) if i % 2 == 1 and i not in leaving]
        for i in own:
            client.rpush(f"own:{i}", f"for-{i}")
        for i in own:
            assert connections[i].read() == [f"own:{i}".encode(), f"for-{i}".encode()]
        rest = [i for i in range(count) if i % 2 == 0 and i not in leaving]
        wait_blocked(client, len(rest))
        # The left clients' keys took nothing: pushes to them stay.
        client.rpush(f"own:{min(leaving)}", "kept")
        assert client.lrange(f"own:{min(leaving)}", 0, -1) == [b"kept"]
        # The shared key serves the rest in the order they blocked.
        client.rpush("shared", *[f"s{n}" for n in range(len(rest))])
        for n, i in enumerate(rest):
            assert connections[i].read() == [b"shared", f"s{n}".encode()]
        wait_blocked(client, 0)
        assert client.exists("shared") == 0
        # With the waiters gone, a key blocked on again works as the first time.
        thread, results = in_thread(server.client().blpop, [f"own:{rest[0]}"], 10)
        wait_blocked(client, 1)
        client.rpush(f"own:{rest[0]}", "again")
        thread.join(10)
        assert results == [(f"own:{rest[0]}".encode(), b"again")]
    finally:
        for connection in connections:
            connection.close()


def test_a_key_that_became_another_type_does_not_end_the_wait(server, client):
    """Woken for a key that now holds another type, a blocked command waits on, where its
    first run would answer WRONGTYPE: Redis serves a blocked client only from a key of the
    type it waits for (Redis's "ZADD + DEL + SET should not awake blocked client")."""
    cases = [  # (the blocked command, a write of the type it waits for, what it gets)
        (("BLPOP", "k", "0"), lambda pipe: pipe.rpush("k", "bar"), [b"k", b"bar"]),
        (("BZPOPMIN", "k", "0"), lambda pipe: pipe.zadd("k", {"bar": 1}), [b"k", b"bar", b"1"]),
        (("BLMOVE", "k", "dst", "LEFT", "LEFT", "0"), lambda pipe: pipe.rpush("k", "bar"),
         b"bar"),
    ]
    for command, write, expected in cases:
        client.delete("k", "dst")
        with Connection(server.port) as blocked:
            blocked.send(*command)
            wait_blocked(client, 1)
            with client.pipeline() as pipe:  # MULTI: written, deleted, made a string
                write(pipe)
                pipe.delete("k")
                pipe.set("k", "foo")
                pipe.execute()
            time.sleep(0.1)
            assert client.info("clients")["blocked_clients"] == 1, command
            client.delete("k")
            write(client)
            assert blocked.read() == expected, command
    # XREAD BLOCK: a stream written, deleted and made a list while it waits.
    client.delete("s1")
    with Connection(server.port) as blocked:
        blocked.send("XREAD", "BLOCK", "20000", "STREAMS", "s1", "$")
        wait_blocked(client, 1)
        with client.pipeline() as pipe:
            pipe.xadd("s1", {"old": "value"})
            pipe.delete("s1")
            pipe.lpush("s1", "x")
            pipe.execute()
        time.sleep(0.1)
        assert client.info("clients")["blocked_clients"] == 1
        client.delete("s1")
        client.xadd("s1", {"new": "abcd1234"}, id="1-1")
        assert blocked.read() == [[b"s1", [[b"1-1", [b"new", b"abcd1234"]]]]]


def test_group_reads_end_when_their_stream_goes(server, client):
    """An XREADGROUP blocked on a stream ends with Redis 7.0's errors when the stream is
    deleted, set to another type, renamed away or flushed, or its group destroyed; an XREAD
    without a group waits on. Each error counts in INFO's total_error_replies."""
    def blocked_read():
        connection = Connection(server.port)
        connection.send("XREADGROUP", "GROUP", "g", "alice", "BLOCK", "0", "STREAMS", "s", ">")
        return connection

    gone = Error("UNBLOCKED the stream key no longer exists")
    ends = [lambda: client.delete("s"), lambda: client.set("s", "v"),
            lambda: client.rename("s", "elsewhere"), lambda: client.flushall()]
    for end in ends:
        client.flushall()
        client.xadd("s", {"f": "v"}, id="1-1")
        client.xgroup_create("s", "g", id="$")
        client.execute_command("CONFIG", "RESETSTAT")
        with blocked_read() as reader, Connection(server.port) as plain_reader:
            plain_reader.send("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
            wait_blocked(client, 2)
            end()
            assert reader.read() == gone
            wait_blocked(client, 1)  # the XREAD without a group waits on
            client.delete("s")
            client.xadd("s", {"new": "entry"}, id="2-1")
            assert plain_reader.read() == [[b"s", [[b"2-1", [b"new", b"entry"]]]]]
        assert client.info("stats")["total_error_replies"] == 1
    client.flushall()
    client.xadd("s", {"f": "v"}, id="1-1")
    client.xgroup_create("s", "g", id="$")
    with blocked_read() as reader:
        wait_blocked(client, 1)
        client.xgroup_destroy("s", "g")
        assert reader.read() == Error(
            "NOGROUP the consumer group this client was blocked on no longer exists")
