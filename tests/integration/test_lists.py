"""Lists through redis-py and byte for byte: every command with Redis 7.0's replies and
errors (checked against redis-server 7.0.15), RESP3's nulls, WRONGTYPE both ways, the
generic key commands on a list, transactions, concurrent pushes and moves, eviction and a
restart (lists leave DRAM whole, never to flash), and an agent's event history written
with RPUSH and read back in LRANGE pages."""
import re
import subprocess
import threading
import time

import pytest
import redis

from conftest import SLOW, Server
from resp import Connection, Error, Null

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def test_push_range_and_length(client):
    assert client.rpush("l", "a", "b", "c") == 3
    assert client.lpush("l", "x", "y") == 5  # pushed in turn: y ends up first
    assert client.lrange("l", 0, -1) == [b"y", b"x", b"a", b"b", b"c"]
    assert client.lpushx("nokey", "a") == 0 and client.rpushx("nokey", "a") == 0
    assert client.exists("nokey") == 0
    assert client.rpushx("l", "z") == 6 and client.lpushx("l", "w") == 7
    assert client.llen("l") == 7 and client.llen("nokey") == 0
    assert client.lrange("l", -3, 100) == [b"b", b"c", b"z"]
    assert client.lrange("l", 5, 2) == [] and client.lrange("l", 100, 200) == []
    assert client.lrange("l", -100, 1) == [b"w", b"y"]
    assert client.lrange("nokey", 0, -1) == []
    assert client.lindex("l", 0) == b"w" and client.lindex("l", -1) == b"z"
    assert client.lindex("l", 99) is None and client.lindex("nokey", 0) is None
    # Binary and empty elements round trip.
    assert client.rpush("bin", b"\x00\r\n\xff", b"") == 2
    assert client.lrange("bin", 0, -1) == [b"\x00\r\n\xff", b""]


def test_pop(client, server):
    client.rpush("l", "a", "b", "c", "d", "e")
    assert client.lpop("l") == b"a" and client.rpop("l") == b"e"
    assert client.lpop("l", 2) == [b"b", b"c"]
    assert client.rpop("l", 0) == []  # an existing list and a count of 0: empty array
    assert client.rpop("l", 100) == [b"d"]
    assert client.exists("l") == 0  # a list with no element is gone, as in Redis
    assert client.lpop("l") is None and client.lpop("l", 3) is None
    with Connection(server.port) as raw:
        raw.call("RPUSH", "r", "1", "2")
        assert raw.call("RPOP", "r", "5") == [b"2", b"1"]
        assert raw.call("LPOP", "r") == Null("$-1")
        assert raw.call("LPOP", "r", "0") == Null("*-1")  # absent: a null array, even for 0
        assert raw.call("LPOP", "r", "-1") == Error("ERR value is out of range, must be positive")
        assert raw.call("LPOP", "r", "x") == Error("ERR value is out of range, must be positive")
        assert raw.call("LPOP", "r", "1", "2") == Error(
            "ERR wrong number of arguments for 'lpop' command")
        raw.call("HELLO", "3")
        assert raw.call("LPOP", "r") == Null("_")
        assert raw.call("LPOP", "r", "1") == Null("_")
        assert raw.call("LINDEX", "r", "0") == Null("_")
        assert raw.call("LPOS", "r", "a") == Null("_")
        assert raw.call("LMOVE", "r", "s", "LEFT", "LEFT") == Null("_")


def test_set_insert_remove_trim(client, server):
    client.rpush("l", "a", "b", "a", "c", "a")
    assert client.lset("l", 1, "B") is True and client.lset("l", -1, "A") is True
    assert client.lrange("l", 0, -1) == [b"a", b"B", b"a", b"c", b"A"]
    with pytest.raises(redis.ResponseError, match="^index out of range$"):
        client.lset("l", 99, "x")
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        client.lset("nokey", 0, "x")
    assert client.linsert("l", "BEFORE", "a", "ins") == 6  # before the first match
    assert client.linsert("l", "AFTER", "A", "end") == 7
    assert client.linsert("l", "BEFORE", "nope", "x") == -1
    assert client.linsert("nokey", "BEFORE", "a", "x") == 0
    assert client.lrange("l", 0, -1) == [b"ins", b"a", b"B", b"a", b"c", b"A", b"end"]
    assert client.lrem("l", -1, "a") == 1  # from the tail
    assert client.lrange("l", 0, -1) == [b"ins", b"a", b"B", b"c", b"A", b"end"]
    client.rpush("l", "a", "a")
    assert client.lrem("l", 1, "a") == 1 and client.lrem("l", 0, "a") == 2
    assert client.lrem("l", 0, "nope") == 0 and client.lrem("nokey", 0, "a") == 0
    assert client.ltrim("l", 1, -2) is True
    assert client.lrange("l", 0, -1) == [b"B", b"c", b"A"]
    assert client.ltrim("nokey", 0, 1) is True and client.exists("nokey") == 0
    assert client.ltrim("l", 5, 10) is True and client.exists("l") == 0  # all trimmed
    with Connection(server.port) as raw:
        raw.call("RPUSH", "l", "a")
        assert raw.call("LINSERT", "l", "MIDDLE", "a", "x") == Error("ERR syntax error")
        not_integer = Error("ERR value is not an integer or out of range")
        assert raw.call("LRANGE", "l", "x", "1") == not_integer
        assert raw.call("LINDEX", "l", "x") == not_integer
        assert raw.call("LSET", "l", "x", "v") == not_integer
        assert raw.call("LTRIM", "l", "0", "x") == not_integer
        assert raw.call("LREM", "l", "x", "a") == not_integer
        assert raw.call("LINDEX", "nokey", "x") == Null("$-1")  # the key is looked up first
        assert raw.call("LPUSH", "l") == Error("ERR wrong number of arguments for 'lpush' command")


def test_lpos(client, server):
    client.rpush("l", "a", "b", "c", "a", "b", "a")
    assert client.lpos("l", "a") == 0
    assert client.lpos("l", "a", rank=2) == 3 and client.lpos("l", "a", rank=-1) == 5
    assert client.lpos("l", "a", count=0) == [0, 3, 5]
    assert client.lpos("l", "a", count=2, rank=-1) == [5, 3]
    assert client.lpos("l", "a", maxlen=3) == 0 and client.lpos("l", "a", rank=2, maxlen=3) is None
    assert client.lpos("l", "a", count=0, maxlen=4) == [0, 3]
    assert client.lpos("l", "nope") is None and client.lpos("l", "nope", count=1) == []
    assert client.lpos("nokey", "a") is None and client.lpos("nokey", "a", count=3) == []
    with Connection(server.port) as raw:
        assert raw.call("LPOS", "l", "a", "RANK", "0") == Error(
            "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
            "or use negative to start from the end of the list")
        assert raw.call("LPOS", "l", "a", "COUNT", "-1") == Error("ERR COUNT can't be negative")
        assert raw.call("LPOS", "l", "a", "MAXLEN", "-1") == Error("ERR MAXLEN can't be negative")
        assert raw.call("LPOS", "l", "a", "BOGUS") == Error("ERR syntax error")
        assert raw.call("LPOS", "l", "a", "RANK") == Error("ERR syntax error")


def test_lmove_and_rpoplpush(client, server):
    client.rpush("src", "a", "b", "c")
    assert client.lmove("src", "dst", "LEFT", "RIGHT") == b"a"
    assert client.lmove("src", "dst", "RIGHT", "LEFT") == b"c"
    assert client.lrange("src", 0, -1) == [b"b"] and client.lrange("dst", 0, -1) == [b"c", b"a"]
    assert client.rpoplpush("dst", "dst") == b"a"  # one list: a rotation
    assert client.lrange("dst", 0, -1) == [b"a", b"c"]
    assert client.lmove("src", "src", "LEFT", "RIGHT") == b"b" and client.llen("src") == 1
    assert client.rpoplpush("src", "dst") == b"b"
    assert client.exists("src") == 0 and client.lrange("dst", 0, -1) == [b"b", b"a", b"c"]
    assert client.rpoplpush("src", "dst") is None
    assert client.lmove("nokey", "dst", "LEFT", "LEFT") is None
    with Connection(server.port) as raw:
        assert raw.call("LMOVE", "dst", "x", "UP", "LEFT") == Error("ERR syntax error")
        raw.call("SET", "s", "v")
        raw.call("HSET", "h", "f", "v")
        # The destination's type is checked before anything is popped.
        assert raw.call("LMOVE", "dst", "s", "LEFT", "LEFT") == Error(WRONGTYPE)
        assert raw.call("RPOPLPUSH", "dst", "h") == Error(WRONGTYPE)
        assert raw.call("LMOVE", "s", "dst", "LEFT", "LEFT") == Error(WRONGTYPE)
        # The source is looked at first, as in Redis.
        assert raw.call("LMOVE", "nokey", "s", "LEFT", "LEFT") == Null("$-1")
    assert client.lrange("dst", 0, -1) == [b"b", b"a", b"c"]


def test_wrong_type_both_ways(client, server):
    client.set("s", "text")
    client.hset("h", "f", "v")
    client.rpush("l", "a")
    for key in ("s", "h"):
        for call in (lambda: client.lpush(key, "x"), lambda: client.rpush(key, "x"),
                     lambda: client.lpushx(key, "x"), lambda: client.rpushx(key, "x"),
                     lambda: client.lpop(key), lambda: client.rpop(key, 2),
                     lambda: client.llen(key), lambda: client.lrange(key, 0, -1),
                     lambda: client.lindex(key, 0), lambda: client.lset(key, 0, "x"),
                     lambda: client.lrem(key, 0, "x"), lambda: client.ltrim(key, 0, 1),
                     lambda: client.linsert(key, "BEFORE", "a", "b"), lambda: client.lpos(key, "a"),
                     lambda: client.lmove(key, "l", "LEFT", "LEFT")):
            with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
                call()
    for call in (lambda: client.get("l"), lambda: client.incr("l"), lambda: client.append("l", "x"),
                 lambda: client.strlen("l"), lambda: client.getrange("l", 0, -1),
                 lambda: client.getdel("l"), lambda: client.hget("l", "f"),
                 lambda: client.hset("l", "f", "v"), lambda: client.hgetall("l")):
        with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
            call()
    assert client.mget("s", "l") == [b"text", None]
    assert client.get("s") == b"text" and client.hgetall("h") == {b"f": b"v"}
    assert client.lrange("l", 0, -1) == [b"a"]
    status, _, _ = server.http("/keys/l")
    assert status == 409
    assert client.set("l", "now a string") and client.type("l") == b"string"


def test_key_commands_on_a_list(client):
    client.rpush("l", "a", "b")
    client.set("s", "x")
    client.hset("h", "f", "v")
    assert client.type("l") == b"list"
    assert sorted(client.scan_iter(_type="list")) == [b"l"]
    assert sorted(client.scan_iter(_type="hash")) == [b"h"]
    assert sorted(client.scan_iter(_type="string")) == [b"s"]
    # Redis 7.0 keeps every list in a quicklist (7.2 brought small lists in a listpack).
    assert client.object("encoding", "l") == b"quicklist"
    assert client.memory_usage("l") > 0
    assert client.expire("l", 100) is True
    client.rpush("l", "c")  # a change keeps the expiry
    assert 0 < client.ttl("l") <= 100
    assert client.copy("l", "l2") is True
    assert client.rename("l2", "l3") is True
    assert client.type("l3") == b"list" and client.lrange("l3", 0, -1) == [b"a", b"b", b"c"]
    assert client.delete("l3") == 1 and client.exists("l3") == 0
    assert client.lpop("l", 3) == [b"a", b"b", b"c"]
    assert client.ttl("l") == -2  # emptied: gone, expiry and all


def test_transactions(client):
    client.rpush("l", "a")
    with client.pipeline() as pipe:
        pipe.rpush("l", "b").lmove("l", "m", "LEFT", "RIGHT").rpoplpush("m", "l")
        pipe.lrange("l", 0, -1).llen("m")
        assert pipe.execute() == [2, b"a", b"a", [b"a", b"b"], 0]
    with client.pipeline() as pipe:
        pipe.watch("l")
        client.rpush("l", "c")  # another connection
        pipe.multi()
        pipe.lpop("l")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.lrange("l", 0, -1) == [b"a", b"b", b"c"]


def test_concurrent_pushes_keep_every_element_in_order(start_server):
    server = start_server("--threads", "2")
    threads, rounds = 8, 100

    def work(number):
        connection = server.client()
        for i in range(rounds):
            connection.rpush("shared", f"{number}:{i}")
        connection.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60 * SLOW)
    elements = [element.decode() for element in server.client().lrange("shared", 0, -1)]
    assert len(elements) == threads * rounds
    for number in range(threads):
        mine = [int(e.split(":")[1]) for e in elements if e.startswith(f"{number}:")]
        assert mine == list(range(rounds))


def test_concurrent_moves_conserve_elements(start_server):
    server = start_server("--threads", "2")
    client = server.client()
    client.rpush("a", *range(50))
    client.rpush("b", *range(50, 100))
    threads, rounds = 4, 50

    def work(number):
        connection = server.client()
        for i in range(rounds):
            source, target = ("a", "b") if (number + i) % 2 else ("b", "a")
            connection.lmove(source, target, "LEFT" if i % 3 else "RIGHT", "RIGHT")
        connection.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60 * SLOW)
    together = client.lrange("a", 0, -1) + client.lrange("b", 0, -1)
    assert sorted(int(element) for element in together) == list(range(100))


def check_list(client, key, model):
    """KEY holds exactly MODEL: LLEN, the whole LRANGE, ranges and LINDEX near both ends
    (walked from the nearer end) and in the middle."""
    assert client.llen(key) == len(model)
    assert client.lrange(key, 0, -1) == model
    n = len(model)
    for start, stop in ((0, 9), (-10, -1), (n // 2 - 3, n // 2 + 3), (n - 5, n + 5), (-n - 5, 2)):
        assert client.lrange(key, start, stop) == model[start if start >= -n else 0:
                                                        (stop + 1) if stop != -1 else None], \
            (start, stop)
    for index in (0, 1, n // 3, n // 2, n - 2, n - 1, -1, -2, -n, n, -n - 1):
        expected = model[index] if -n <= index < n else None
        assert client.lindex(key, index) == expected, index


def test_large_list_changes_at_both_ends(client, server):
    """A list of more than 16 KiB lives in a value block, where pushes and pops run in
    place; every change agrees with a model, keeps the expiry, and tells WATCH."""
    model = [f"m{i}".encode() * 3 for i in range(3000)]  # about 50 KB encoded
    client.rpush("big", *model)
    check_list(client, "big", model)
    client.expire("big", 1000)
    for round in range(20):
        left = [f"l{round}:{i}".encode() for i in range(round % 3 + 1)]
        right = [f"r{round}:{i}".encode() for i in range(round % 4 + 1)]
        assert client.lpush("big", *left) == len(model) + len(left)
        model[:0] = left[::-1]
        assert client.rpush("big", *right) == len(model) + len(right)
        model.extend(right)
        assert client.lpushx("big", b"", b"\x00\r\n") == len(model) + 2
        model[:0] = [b"\x00\r\n", b""]
        assert client.rpushx("big", b"\xff" * 100) == len(model) + 1
        model.append(b"\xff" * 100)
        assert client.lpop("big") == model.pop(0)
        assert client.rpop("big") == model.pop()
        count = round % 5 + 1
        assert client.lpop("big", count) == model[:count]
        del model[:count]
        assert client.rpop("big", count) == model[::-1][:count]
        del model[-count:]
        if round % 5 == 0:
            check_list(client, "big", model)
    check_list(client, "big", model)
    assert 0 < client.ttl("big") <= 1000
    # An in-place change is a change for WATCH.
    with client.pipeline() as pipe:
        pipe.watch("big")
        server.client().rpush("big", "another")
        pipe.multi()
        pipe.lpop("big")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    model.append(b"another")
    assert client.object("encoding", "big") == b"quicklist"
    # Popping everything deletes the key.
    assert client.rpop("big", len(model) + 1) == model[::-1]
    assert client.exists("big") == 0
    # A list of another type's key: WRONGTYPE on every path.
    client.set("s", "x" * 20000)
    for command in (("LPUSH", "s", "a"), ("RPUSH", "s", "a"), ("LPOP", "s"), ("RPOP", "s", "2"),
                    ("LLEN", "s"), ("LRANGE", "s", "0", "1"), ("LINDEX", "s", "0")):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            client.execute_command(*command)


def test_reads_during_pushes_and_pops_see_whole_lists(start_server):
    """One connection pushes at both ends and pops while others read the whole list with
    LRANGE: a change runs in place when no reader holds the list and by compare-and-swap
    while one does, and every read sees a list some sequence of whole changes left."""
    server = start_server("--threads", "2")
    client = server.client()
    base = [b"b" * 20 for _ in range(1000)]  # about 28 KB: in a value block
    client.rpush("q", *base)
    rounds = 300 if SLOW == 1 else 100
    done = threading.Event()
    seen = []  # the readers' snapshots, as hashes of tuples

    def read():
        connection = server.client()
        while not done.is_set():
            seen.append(hash(tuple(connection.lrange("q", 0, -1))))
        connection.close()

    def states():
        """Every list the writer's commands leave, in order (the writer's model)."""
        lefts, rights = [], []
        yield lefts + base + rights
        for i in range(rounds):
            lefts.insert(0, f"l{i}".encode())
            yield lefts + base + rights
            rights.append(f"r{i}".encode())
            yield lefts + base + rights
            if i % 3 == 2:
                lefts.pop(0)
                yield lefts + base + rights
                rights.pop()
                yield lefts + base + rights

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        writer = server.client()
        for i in range(rounds):
            assert writer.lpush("q", f"l{i}") > len(base)
            assert writer.rpush("q", f"r{i}") > len(base)
            if i % 3 == 2:
                assert writer.lpop("q") == f"l{i}".encode()
                assert writer.rpop("q") == f"r{i}".encode()
    finally:
        done.set()
        for thread in readers:
            thread.join(timeout=60 * SLOW)
    every = [tuple(state) for state in states()]
    assert client.lrange("q", 0, -1) == list(every[-1])
    possible = {hash(state) for state in every}
    assert len(seen) > 10
    assert all(snapshot in possible for snapshot in seen)


def test_redis_benchmark_lists(server):
    """redis-benchmark's list tests on its one list "mylist" from 50 connections: every
    reply is right (the client counts a wrong one as an error), in reasonable time, and
    what the pushes left is all there: n pushed at each end, n popped from each end, then
    n pushed again for LRANGE."""
    requests = 20000 if SLOW == 1 else 2000
    client = server.client()
    client.delete("mylist")
    began = time.monotonic()
    result = subprocess.run(["redis-benchmark", "-p", str(server.port), "-q", "-t",
                             "lpush,rpush,lpop,rpop,lrange_100", "-n", str(requests)],
                            capture_output=True, text=True, timeout=300 * SLOW)
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    output = result.stdout.replace("\r", "\n")
    assert "error" not in output.lower(), output
    for name in ("LPUSH", "RPUSH", "LPOP", "RPOP", "LRANGE_100"):
        assert re.search(rf"^{name}.*: [0-9.]+ requests per second", output, re.M), output
    assert elapsed < 120 * SLOW, output
    assert client.llen("mylist") == requests
    assert [len(element) for element in client.lrange("mylist", 0, 99)] == [3] * 100  # -d 3


def test_agent_history_pattern(client):
    """An agent's conversation log: events appended with RPUSH as they happen, read back
    in pages with LRANGE, the newest first with negative indexes, and capped with LTRIM."""
    session = "agent:session:42:events"
    events = [f'{{"turn": {i}, "role": "{"user" if i % 2 else "assistant"}", "text": "{"x" * (i % 50)}"}}'
              for i in range(300)]
    with client.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.rpush(session, event)
        assert pipe.execute() == list(range(1, 301))
    pages = [client.lrange(session, start, start + 49) for start in range(0, 300, 50)]
    assert [e.decode() for page in pages for e in page] == events
    assert [e.decode() for e in client.lrange(session, -10, -1)] == events[-10:]
    assert client.ltrim(session, -100, -1) is True
    assert client.llen(session) == 100 and client.lindex(session, 0).decode() == events[200]


def test_introspection(client, server):
    with Connection(server.port) as raw:
        info = raw.call("COMMAND", "INFO", "lpush", "lmove", "lrange")
        docs = raw.call("COMMAND", "DOCS", "lpos")
        keys = raw.call("COMMAND", "GETKEYS", "LMOVE", "a", "b", "LEFT", "RIGHT")
    assert [entry[:6] for entry in info] == [
        [b"lpush", -3, ["write", "denyoom", "fast"], 1, 1, 1],
        [b"lmove", 5, ["write", "denyoom"], 1, 2, 1],
        [b"lrange", 4, ["readonly"], 1, 1, 1]]
    assert [entry[6] for entry in info] == [["@write", "@list", "@fast"],
                                            ["@write", "@list", "@slow"],
                                            ["@read", "@list", "@slow"]]
    assert "list" in client.acl_cat()
    assert {"lpush", "rpoplpush", "lpos"} <= set(client.acl_cat("list"))
    assert b"llen" in client.command_list(category="list")
    assert docs[1][docs[1].index(b"group") + 1] == b"list"
    assert keys == [b"a", b"b"]
    assert {"blpop", "brpop", "blmove", "brpoplpush"} <= set(client.acl_cat("blocking"))
    with Connection(server.port) as raw:
        blpop = raw.call("COMMAND", "INFO", "blpop")[0]
    assert blpop[:6] == [b"blpop", -3, ["write", "noscript", "blocking"], 1, -2, 1]
    assert blpop[6] == ["@write", "@list", "@slow", "@blocking"]


def test_lists_move_to_flash_whole_and_survive_a_restart(start_server):
    """16 MiB of DRAM, about 24 MiB of lists and 8 MiB of strings: lists move to flash
    whole and come back whole on their next command, in order; after a restart every
    list is back, a list."""
    options = ("--memory", "16mb", "--ssd-size", "64mb", "--segment-size", "4mb",
               "--pace-timeout", "60000")
    server = start_server(*options)
    client = server.client()

    def element(i, j):
        return f"{i}/{j}/".encode() * 6000  # about 48 KB: 4 a list, 192 KB

    for start in range(0, 125, 25):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, start + 25):
                pipe.rpush(f"l:{i}", *[element(i, j) for j in range(4)])
                pipe.set(f"s:{i}", f"{i}".encode() * 8000)
            pipe.execute()
    assert server.info("flash")["flash_items"] > 0
    assert client.type("l:0") == b"list"
    for i in range(125):
        assert client.lrange(f"l:{i}", 0, -1) == [element(i, j) for j in range(4)], i
    assert server.info("memory")["used_memory"] <= 16 * 1024 * 1024
    assert all(client.get(f"s:{i}") == f"{i}".encode() * 8000 for i in range(125))
    directory = server.directory
    server.stop()
    again = Server(directory, *options)
    try:
        client = again.client()
        assert client.get("s:7") == b"7" * 8000
        for i in range(0, 125, 5):
            assert client.type(f"l:{i}") == b"list"
            assert client.lrange(f"l:{i}", 0, -1) == [element(i, j) for j in range(4)], i
        assert client.rpoplpush("l:0", "l:1") == element(0, 3)
        assert client.llen("l:1") == 5
    finally:
        again.stop()
