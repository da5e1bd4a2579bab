"""Hashes through redis-py and byte for byte: every command with Redis 7.0's replies and
errors, WRONGTYPE both ways, the generic key commands on a hash, RESP3's map, a feature
store's pipelined HMGET of 100 entities x 20 features, concurrent HINCRBY, and hashes
under eviction with the flash tier on (evicted whole, never written to flash as a
string)."""
import threading
import warnings

import pytest
import redis

from conftest import SLOW, Server
from resp import Connection, Error, Map, Null

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def test_set_get_and_list(client):
    assert client.hset("h", mapping={"a": "1", "b": "2"}) == 2
    assert client.hset("h", mapping={"a": "3", "c": "4"}) == 1  # a replaced, c added
    assert client.hget("h", "a") == b"3"
    assert client.hget("h", "nope") is None
    assert client.hget("nokey", "a") is None
    assert client.hmget("h", ["a", "nope", "c"]) == [b"3", None, b"4"]
    # Fields keep the order they were first set in.
    assert client.hgetall("h") == {b"a": b"3", b"b": b"2", b"c": b"4"}
    assert client.hkeys("h") == [b"a", b"b", b"c"]
    assert client.hvals("h") == [b"3", b"2", b"4"]
    assert client.hlen("h") == 3 and client.hlen("nokey") == 0
    assert client.hexists("h", "b") is True and client.hexists("h", "z") is False
    assert client.hstrlen("h", "a") == 1 and client.hstrlen("h", "z") == 0
    assert client.hgetall("nokey") == {} and client.hkeys("nokey") == []
    assert client.hsetnx("h", "a", "x") == 0 and client.hget("h", "a") == b"3"
    assert client.hsetnx("h", "d", "5") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert client.hmset("h", {"e": "6", "a": "7"}) is True
    assert client.hget("h", "a") == b"7"
    # Binary fields and values, and empty ones, round trip.
    assert client.hset("bin", b"\x00\xff", b"\r\n\x00") == 1
    assert client.hset("bin", "", "") == 1
    assert client.hgetall("bin") == {b"\x00\xff": b"\r\n\x00", b"": b""}


def test_delete_fields_and_the_empty_hash(client):
    client.hset("h", mapping={"a": 1, "b": 2, "c": 3})
    assert client.hdel("h", "a", "a", "zz") == 1
    assert client.hdel("nokey", "a") == 0
    assert client.hdel("h", "b", "c") == 2
    assert client.exists("h") == 0  # a hash with no field is gone, as in Redis


def test_increments(client):
    assert client.hincrby("h", "n", 5) == 5
    assert client.hincrby("h", "n", -7) == -2
    assert client.hincrbyfloat("h", "f", "10.5") == 10.5
    assert client.hincrbyfloat("h", "f", "0.1") == pytest.approx(10.6)
    assert client.hget("h", "f") == b"10.6"
    client.hset("h", mapping={"text": "abc", "big": str(2**63 - 1)})
    client.set("nothash", "v")
    for call, message in ((lambda: client.hincrby("h", "text", 1), "hash value is not an integer"),
                          (lambda: client.hincrby("h", "big", 1), "increment or decrement would overflow"),
                          (lambda: client.hincrby("h", "n", "x"), "value is not an integer or out of range"),
                          (lambda: client.hincrbyfloat("h", "text", 1), "hash value is not a float"),
                          (lambda: client.hincrbyfloat("h", "n", "abc"), "value is not a valid float"),
                          # Redis 7.0: an infinite increment is refused before the key's type.
                          (lambda: client.hincrbyfloat("h", "n", "+inf"), "value is NaN or Infinity"),
                          (lambda: client.hincrbyfloat("nothash", "n", "-inf"),
                           "value is NaN or Infinity")):
        with pytest.raises(redis.ResponseError, match=message):
            call()
    assert client.hget("h", "n") == b"-2"


def test_wrong_type_both_ways(client, server):
    client.set("s", "text")
    client.hset("h", "f", "v")
    for call in (lambda: client.hset("s", "f", "v"), lambda: client.hget("s", "f"),
                 lambda: client.hgetall("s"), lambda: client.hincrby("s", "f", 1),
                 lambda: client.hdel("s", "f"), lambda: client.hlen("s"),
                 lambda: client.get("h"), lambda: client.incr("h"), lambda: client.append("h", "x"),
                 lambda: client.strlen("h"), lambda: client.getrange("h", 0, -1),
                 lambda: client.getdel("h"), lambda: client.set("h", "x", get=True),
                 lambda: client.getset("h", "x"), lambda: client.setrange("h", 0, "x")):
        with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
            call()
    assert client.mget("s", "h") == [b"text", None]  # MGET answers nil for another type
    assert client.hgetall("h") == {b"f": b"v"} and client.get("s") == b"text"
    # Over HTTP the hash's bytes are not a value either.
    status, _, _ = server.http("/keys/h")
    assert status == 409
    # SET replaces a hash, as in Redis.
    assert client.set("h", "now a string") and client.type("h") == b"string"


def test_arity_and_syntax(server):
    with Connection(server.port) as raw:
        assert raw.call("HSET", "h", "f") == Error("ERR wrong number of arguments for 'hset' command")
        assert raw.call("HSET", "h", "f", "v", "g") == Error(
            "ERR wrong number of arguments for 'hset' command")
        assert raw.call("HMSET", "h", "f", "v", "g") == Error(
            "ERR wrong number of arguments for 'hmset' command")
        assert raw.call("HRANDFIELD", "h", "1", "WITHSCORES") == Error("ERR syntax error")
        assert raw.call("HSCAN", "h", "x") == Error("ERR invalid cursor")
        assert raw.call("HSCAN", "h", "0", "COUNT", "0") == Error("ERR syntax error")


def test_key_commands_on_a_hash(client):
    client.hset("h", mapping={"a": "1", "b": "2"})
    client.set("s", "x")
    assert client.type("h") == b"hash"
    assert sorted(client.scan_iter(_type="hash")) == [b"h"]
    assert sorted(client.scan_iter(_type="string")) == [b"s"]
    assert list(client.scan_iter(_type="list")) == []
    assert client.object("encoding", "h") == b"listpack"
    client.hset("big", "long", "v" * 65)
    assert client.object("encoding", "big") == b"hashtable"
    client.hset("many", mapping={f"f{i}": i for i in range(129)})
    assert client.object("encoding", "many") == b"hashtable"
    assert client.memory_usage("h") > 0
    assert client.expire("h", 100) is True
    client.hset("h", "c", "3")  # a change keeps the expiry
    assert 0 < client.ttl("h") <= 100
    assert client.copy("h", "h2") is True
    assert client.rename("h2", "h3") is True
    assert client.type("h3") == b"hash" and client.hgetall("h3") == client.hgetall("h")
    assert client.delete("h3") == 1 and client.exists("h3") == 0
    # Transactions and WATCH see hash changes.
    with client.pipeline() as pipe:
        pipe.watch("h")
        client.hincrby("h", "a", 1)  # another connection
        pipe.multi()
        pipe.hset("h", "a", "lost")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.hget("h", "a") == b"2"
    with client.pipeline() as pipe:
        pipe.hset("h", "z", "1").hincrby("h", "z", 2).hgetall("h")
        assert pipe.execute()[:2] == [1, 3]


def test_random_fields_and_scan(client, server):
    fields = {f"f{i}": f"v{i}" for i in range(10)}
    client.hset("h", mapping=fields)
    one = client.hrandfield("h")
    assert one.decode() in fields
    assert client.hrandfield("nokey") is None
    assert client.hrandfield("nokey", 3) == []
    assert client.hrandfield("h", 0) == []
    some = client.hrandfield("h", 4)
    assert len(some) == 4 and len(set(some)) == 4
    assert sorted(client.hrandfield("h", 20)) == sorted(f.encode() for f in fields)
    repeated = client.hrandfield("h", -30)
    assert len(repeated) == 30 and set(repeated) <= {f.encode() for f in fields}
    pairs = client.hrandfield("h", 3, withvalues=True)
    assert len(pairs) == 6
    for field, value in zip(pairs[::2], pairs[1::2]):
        assert fields[field.decode()].encode() == value
    assert dict(client.hscan_iter("h")) == {k.encode(): v.encode() for k, v in fields.items()}
    assert dict(client.hscan_iter("h", match="f1*")) == {b"f1": b"v1"}
    cursor, found = client.hscan("h", 0, match="f[23]", count=1)
    assert cursor == 0 and found == {b"f2": b"v2", b"f3": b"v3"}
    with Connection(server.port) as raw:
        raw.call("HELLO", "3")
        assert raw.call("HGETALL", "h") == Map({f.encode(): v.encode() for f, v in fields.items()})
        assert raw.call("HGETALL", "nokey") == Map()
        pairs = raw.call("HRANDFIELD", "h", "-2", "WITHVALUES")
        assert len(pairs) == 2 and all(len(pair) == 2 for pair in pairs)
        assert raw.call("HRANDFIELD", "nokey") == Null("_")
        assert raw.call("HSCAN", "h", "0", "MATCH", "f9", "NOVALUES") == [b"0", [b"f9"]]


def test_feature_store_pattern(client):
    """Feast-style online store: 100 entities x 20 features written with pipelined HSET,
    read back with pipelined HMGET, every value checked."""
    entities, features = 100, 20
    names = [f"feature_{j}" for j in range(features)]

    def value(i, j):
        return f"{i * 1000 + j}:{'x' * (j % 7)}".encode()

    with client.pipeline(transaction=False) as pipe:
        for i in range(entities):
            pipe.hset(f"fs:driver:{i}", mapping={names[j]: value(i, j) for j in range(features)})
        assert pipe.execute() == [features] * entities
    for _ in range(3):
        with client.pipeline(transaction=False) as pipe:
            for i in range(entities):
                pipe.hmget(f"fs:driver:{i}", names)
            rows = pipe.execute()
        assert rows == [[value(i, j) for j in range(features)] for i in range(entities)]


def test_concurrent_increments_lose_nothing(start_server):
    server = start_server("--threads", "2")
    threads, rounds = 8, 100

    def work(number):
        connection = server.client()
        for i in range(rounds):
            connection.hincrby("counters", "shared", 1)
            connection.hset("counters", f"own:{number}", i)
        connection.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60 * SLOW)
    client = server.client()
    assert client.hget("counters", "shared") == str(threads * rounds).encode()
    assert client.hlen("counters") == threads + 1
    assert all(client.hget("counters", f"own:{n}") == str(rounds - 1).encode()
               for n in range(threads))


def test_overwrites_of_the_same_length(server, client):
    """HSET and HMSET that give existing fields values of the old values' lengths change
    the hash in place; every other change takes the rewriting path. Either way replies,
    values, the expiry and WATCH are as Redis's."""
    client.hset("h", mapping={"a": "1111", "b": "2222", "c": "x"})
    assert client.hset("h", "a", "9999") == 0
    assert client.hset("h", mapping={"b": "8888", "c": "y"}) == 0
    assert client.hmset("h", {"a": "7777"}) is True
    assert client.execute_command("HSET", "h", "a", "5555", "a", "6666") == 0  # the last wins
    assert client.hgetall("h") == {b"a": b"6666", b"b": b"8888", b"c": b"y"}
    assert client.hset("h", "a", "shorter") == 0  # another length: rewritten
    assert client.hset("h", mapping={"b": "1234", "new": "v"}) == 1  # a new field too
    assert client.hgetall("h") == {b"a": b"shorter", b"b": b"1234", b"c": b"y", b"new": b"v"}
    assert client.hlen("h") == 4
    # The expiry stays.
    client.expire("h", 100)
    assert client.hset("h", "b", "4321") == 0
    assert 0 < client.ttl("h") <= 100
    # A write in place fails a transaction watching the key.
    with client.pipeline() as pipe:
        pipe.watch("h")
        other = server.client()
        assert other.hset("h", "b", "5678") == 0
        other.close()
        pipe.multi()
        pipe.hget("h", "b")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    # A hash large enough for a value block of its own.
    big = {f"field:{i:05d}": f"{i:08d}" for i in range(2000)}
    client.hset("big", mapping=big)
    update = {f"field:{i:05d}": f"{i + 1:08d}" for i in range(0, 2000, 7)}
    assert client.hset("big", mapping=update) == 0
    big.update(update)
    assert client.hgetall("big") == {k.encode(): v.encode() for k, v in big.items()}
    client.set("string", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.hset("string", "a", "b")


def test_overwrites_in_place_never_show_a_torn_value(start_server):
    """Writers overwrite fixed-width fields while readers read the whole hash: every value
    a reader sees is one some writer wrote, whole."""
    server = start_server("--threads", "2")
    fields, rounds = 20, 300 if SLOW == 1 else 60
    server.client().hset("features", mapping={f"f{i:02d}": "w0-000000" for i in range(fields)})
    failures = []

    def write(number):
        connection = server.client()
        for n in range(rounds):
            connection.hset("features", mapping={f"f{i:02d}": f"w{number}-{n:06d}"
                                                  for i in range(0, fields, 1 + number)})
        connection.close()

    def read():
        connection = server.client()
        for _ in range(rounds):
            values = connection.hgetall("features")
            if len(values) != fields or any(
                    len(v) != 9 or not v.startswith(b"w") or v[2:3] != b"-" for v in values.values()):
                failures.append(values)
        connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60 * SLOW)
    assert failures == []
    final = server.client().hgetall("features")
    assert final[b"f00"] in {f"w{n}-{rounds - 1:06d}".encode() for n in range(3)}


def test_hashes_move_to_flash_whole_and_survive_restart_and_crash(start_server):
    """32 MiB of DRAM, about 64 MiB of hashes and 8 MiB of strings: hashes move to flash
    whole and come back on their next command, with their type; a clean restart (the
    saved index) and a crash (a scan of the records) bring every hash back as a hash."""
    options = ("--memory", "32mb", "--ssd-size", "512mb", "--segment-size", "8mb",
               "--pace-timeout", "60000")
    server = start_server(*options)
    client = server.client()
    names = [f"field{j}" for j in range(20)]
    count = 2000

    def value(i, j):
        return f"{i}/{j}/".encode() * 200  # about 1.6 KB: 32 KB a hash, 64 MB in all

    def expected(i):
        return {f.encode(): value(i, j) for j, f in enumerate(names)}

    for start in range(0, count, 100):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, start + 100):
                pipe.hset(f"h:{i}", mapping={f: value(i, j) for j, f in enumerate(names)})
                pipe.set(f"s:{i}", f"{i}".encode() * 1000)
            pipe.execute()
    assert server.info("flash")["flash_items"] > 0
    assert server.info("memory")["used_memory"] <= 32 * 1024 * 1024
    # The first hashes written are on flash by now: their type is known without a read,
    # a string command refuses them, and a hash command brings them back whole.
    assert client.type("h:0") == b"hash"
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        client.get("h:0")
    assert client.hget("h:1", "field3") == value(1, 3)
    assert client.rename("h:2", "h:2b") is True and client.hgetall("h:2b") == expected(2)
    client.rename("h:2b", "h:2")
    for i in range(count):
        assert client.hgetall(f"h:{i}") == expected(i), i
    assert all(client.get(f"s:{i}") == f"{i}".encode() * 1000 for i in range(0, count, 50))

    def check_all(instance, counter):
        connection = instance.client()
        for i in range(0, count, 7):
            assert connection.type(f"h:{i}") == b"hash", i
            assert connection.hgetall(f"h:{i}") == expected(i), i
        assert connection.hincrby("h:5", counter, 3) == 3  # and it can change
        connection.close()

    directory = server.directory
    server.stop()  # a clean stop saves the flash index
    again = Server(directory, *options)
    try:
        assert again.info("flash")["flash_recovery_source"] == "index"
        check_all(again, "after-stop")
    finally:
        again.kill()  # a crash: the next start scans the records
    again = Server(directory, *options)
    try:
        assert again.info("flash")["flash_recovery_source"] == "scan"
        check_all(again, "after-crash")
    finally:
        again.stop()
