"""Sets through redis-py and byte for byte: every command with Redis 7.0's replies and
errors, WRONGTYPE both ways, the generic key commands on a set, a set of 10,000+ members,
concurrent SADD, SMOVE and the STORE forms, sets on flash and after a restart and a crash,
and redis-benchmark's SADD and SPOP."""
import re
import subprocess
import threading

import pytest
import redis

from conftest import SLOW, Server
from resp import Connection, Error, Null, Set

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def members(*names):
    return {name.encode() if isinstance(name, str) else name for name in names}


def test_add_remove_and_read(client):
    assert client.sadd("s", "a", "b", "c", "a") == 3
    assert client.sadd("s", "c", "d") == 1
    assert client.sadd("s", "a") == 0
    assert client.smembers("s") == members("a", "b", "c", "d")
    assert client.scard("s") == 4 and client.scard("nokey") == 0
    assert client.sismember("s", "a") is True and client.sismember("s", "z") is False
    assert client.sismember("nokey", "a") is False
    assert client.smismember("s", "a", "z", "d") == [1, 0, 1]
    assert client.smismember("nokey", "a", "b") == [0, 0]
    assert client.smembers("nokey") == set()
    assert client.srem("s", "a", "a", "zz") == 1
    assert client.srem("nokey", "a") == 0
    assert client.smembers("s") == members("b", "c", "d")
    assert client.srem("s", "b", "c", "d") == 3
    assert client.exists("s") == 0  # a set with no member is gone, as in Redis
    # Binary and empty members round trip.
    assert client.sadd("bin", b"\x00\xff", b"\r\n", b"") == 3
    assert client.smembers("bin") == {b"\x00\xff", b"\r\n", b""}
    assert client.sismember("bin", b"") is True


def test_pop_and_random_members(client, server):
    names = [f"m{i}" for i in range(10)]
    client.sadd("s", *names)
    assert client.srandmember("s").decode() in names
    assert client.srandmember("nokey") is None
    assert client.srandmember("nokey", 3) == [] and client.srandmember("s", 0) == []
    some = client.srandmember("s", 4)
    assert len(some) == 4 and len(set(some)) == 4 and set(some) <= members(*names)
    assert sorted(client.srandmember("s", 20)) == sorted(members(*names))
    repeated = client.srandmember("s", -30)
    assert len(repeated) == 30 and set(repeated) <= members(*names)
    assert client.scard("s") == 10  # SRANDMEMBER takes nothing
    one = client.spop("s")
    assert one.decode() in names and client.sismember("s", one) is False
    popped = client.spop("s", 3)
    assert len(popped) == 3 and len(set(popped)) == 3 and one not in popped
    assert client.scard("s") == 6
    assert client.spop("s", 0) == [] and client.scard("s") == 6
    rest = client.spop("s", 100)
    assert len(rest) == 6 and set(rest) | set(popped) | {one} == members(*names)
    assert client.exists("s") == 0
    assert client.spop("nokey") is None and client.spop("nokey", 2) == []
    with Connection(server.port) as raw:
        assert raw.call("SPOP", "s", "-1") == Error("ERR value is out of range, must be positive")
        assert raw.call("SPOP", "s", "x") == Error("ERR value is out of range, must be positive")
        assert raw.call("SPOP", "s", "1", "2") == Error("ERR syntax error")
        assert raw.call("SRANDMEMBER", "s", "x") == Error(
            "ERR value is not an integer or out of range")
        assert raw.call("SRANDMEMBER", "s", "1", "2") == Error("ERR syntax error")
        assert raw.call("SRANDMEMBER", "s", str(-2**63)) == Error(
            "ERR value is out of range, value must between -9223372036854775807 and "
            "9223372036854775807")
        assert raw.call("SPOP", "nokey") == Null("$-1")
        assert raw.call("SPOP", "nokey", "2") == []


def test_move(client):
    client.sadd("a", "x", "y")
    client.sadd("b", "z")
    assert client.smove("a", "b", "x") is True
    assert client.smembers("a") == members("y") and client.smembers("b") == members("x", "z")
    assert client.smove("a", "b", "nope") is False
    assert client.smove("nokey", "b", "x") is False
    assert client.smove("a", "a", "y") is True and client.smembers("a") == members("y")
    assert client.smove("a", "a", "q") is False
    assert client.smove("b", "b2", "x") is True and client.smembers("b2") == members("x")
    assert client.smove("a", "b", "y") is True and client.exists("a") == 0  # emptied: gone
    assert client.smove("b", "b", "z") is True
    client.sadd("e", "m")
    client.expire("e", 100)
    client.smove("b", "e", "z")  # the destination keeps its expiry
    assert 0 < client.ttl("e") <= 100


def test_combining(client, server):
    client.sadd("a", "1", "2", "3", "4")
    client.sadd("b", "3", "4", "5")
    client.sadd("c", "4", "6")
    assert client.sinter("a", "b") == members("3", "4")
    assert client.sinter("a", "b", "c") == members("4")
    assert client.sinter("a", "nokey") == set()
    assert client.sinter("a") == members("1", "2", "3", "4")
    assert client.sunion("a", "b", "c") == members("1", "2", "3", "4", "5", "6")
    assert client.sunion("nokey", "c") == members("4", "6")
    assert client.sdiff("a", "b") == members("1", "2")
    assert client.sdiff("a", "b", "c") == members("1", "2")
    assert client.sdiff("a", "nokey") == members("1", "2", "3", "4")
    assert client.sdiff("nokey", "a") == set()
    assert client.sintercard(2, ["a", "b"]) == 2
    assert client.sintercard(2, ["a", "b"], limit=1) == 1
    assert client.sintercard(2, ["a", "b"], limit=0) == 2
    assert client.sintercard(2, ["a", "nokey"]) == 0
    # The STORE forms answer the size, replace any type and drop its expiry.
    client.set("dest", "a string")
    client.expire("dest", 100)
    assert client.sinterstore("dest", ["a", "b"]) == 2
    assert client.type("dest") == b"set" and client.smembers("dest") == members("3", "4")
    assert client.ttl("dest") == -1
    assert client.sunionstore("dest", ["a", "c"]) == 5
    assert client.smembers("dest") == members("1", "2", "3", "4", "6")
    assert client.sdiffstore("dest", ["a", "b"]) == 2
    assert client.smembers("dest") == members("1", "2")
    assert client.sdiffstore("a", ["a", "c"]) == 3  # a source can be the destination
    assert client.smembers("a") == members("1", "2", "3")
    assert client.sinterstore("dest", ["a", "nokey"]) == 0
    assert client.exists("dest") == 0  # an empty result deletes the destination
    with Connection(server.port) as raw:
        for arguments, message in (
                (("0", "a"), "ERR numkeys should be greater than 0"),
                (("-1", "a"), "ERR numkeys should be greater than 0"),
                (("x", "a"), "ERR numkeys should be greater than 0"),
                (("3", "a"), "ERR Number of keys can't be greater than number of args"),
                (("1", "a", "LIMIT", "-1"), "ERR LIMIT can't be negative"),
                (("1", "a", "LIMIT", "x"), "ERR LIMIT can't be negative"),
                (("1", "a", "FOO", "1"), "ERR syntax error"),
                (("1", "a", "LIMIT"), "ERR syntax error")):
            assert raw.call("SINTERCARD", *arguments) == Error(message), arguments
        assert raw.call("SUNION") == Error("ERR wrong number of arguments for 'sunion' command")
        assert raw.call("SINTERSTORE", "d") == Error(
            "ERR wrong number of arguments for 'sinterstore' command")


def test_resp3_replies(client, server):
    """As Redis 7.0 in RESP3: a set type for SMEMBERS, SINTER, SUNION, SDIFF and SPOP with a
    count; arrays for SRANDMEMBER and SSCAN."""
    client.sadd("s", "a", "b")
    with Connection(server.port) as raw:
        raw.call("HELLO", "3")
        for command in (("SMEMBERS", "s"), ("SINTER", "s"), ("SUNION", "s"), ("SDIFF", "s")):
            reply = raw.call(*command)
            assert isinstance(reply, Set) and sorted(reply) == [b"a", b"b"], command
        for command in (("SMEMBERS", "nokey"), ("SPOP", "nokey", "2"), ("SINTER", "s", "nokey")):
            reply = raw.call(*command)
            assert isinstance(reply, Set) and reply == [], command
        reply = raw.call("SRANDMEMBER", "s", "2")
        assert type(reply) is list and sorted(reply) == [b"a", b"b"]
        assert type(raw.call("SSCAN", "s", "0")[1]) is list
        reply = raw.call("SPOP", "s", "5")
        assert isinstance(reply, Set) and sorted(reply) == [b"a", b"b"]
        assert raw.call("SPOP", "s") == Null("_")
        assert raw.call("COMMAND", "GETKEYS", "SINTERCARD", "2", "a", "b", "LIMIT", "1") == [
            b"a", b"b"]
        assert raw.call("COMMAND", "GETKEYS", "SINTERCARD", "3", "a", "b") == Error(
            "ERR Invalid arguments specified for command")


def test_scan(client, server):
    names = [f"m{i}" for i in range(30)]
    client.sadd("s", *names)
    assert set(client.sscan_iter("s")) == members(*names)
    assert set(client.sscan_iter("s", match="m1*")) == members("m1", *[f"m1{i}" for i in range(10)])
    cursor, found = client.sscan("s", 0, match="m2[0-2]", count=1)
    assert cursor == 0 and set(found) == members("m20", "m21", "m22")
    assert client.sscan("nokey", 0) == (0, [])
    with Connection(server.port) as raw:
        assert raw.call("SSCAN", "s", "x") == Error("ERR invalid cursor")
        assert raw.call("SSCAN", "s", "0", "COUNT", "0") == Error("ERR syntax error")
        assert raw.call("SSCAN", "s", "0", "COUNT", "x") == Error(
            "ERR value is not an integer or out of range")
        assert raw.call("SSCAN", "s", "0", "FOO") == Error("ERR syntax error")
        # As Redis: a missing key answers an empty scan before the options are read.
        assert raw.call("SSCAN", "nokey", "0", "COUNT", "0") == [b"0", []]


def test_wrong_type_both_ways(client, server):
    client.set("str", "text")
    client.sadd("set", "m")
    for call in (lambda: client.sadd("str", "m"), lambda: client.srem("str", "m"),
                 lambda: client.smembers("str"), lambda: client.sismember("str", "m"),
                 lambda: client.smismember("str", "m"), lambda: client.scard("str"),
                 lambda: client.spop("str"), lambda: client.srandmember("str"),
                 lambda: client.sscan("str", 0), lambda: client.sinter("nokey", "str"),
                 lambda: client.sunion("set", "str"), lambda: client.sdiff("set", "str"),
                 lambda: client.sinterstore("d", ["nokey", "str"]),
                 lambda: client.sintercard(2, ["set", "str"]),
                 lambda: client.smove("str", "set", "m"), lambda: client.smove("set", "str", "m"),
                 lambda: client.get("set"), lambda: client.incr("set"),
                 lambda: client.append("set", "x"), lambda: client.hget("set", "f"),
                 lambda: client.lpush("set", "x")):
        with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
            call()
    assert client.smove("nokey", "str", "m") is False  # as Redis: the source is looked at first
    assert client.smembers("set") == members("m") and client.get("str") == b"text"
    assert client.exists("d") == 0
    status, _, _ = server.http("/keys/set")  # over HTTP a set's bytes are not a value
    assert status == 409
    assert client.set("set", "now a string") and client.type("set") == b"string"


def test_key_commands_on_a_set(client):
    client.sadd("s", "a", "b")
    client.set("str", "x")
    assert client.type("s") == b"set"
    assert sorted(client.scan_iter(_type="set")) == [b"s"]
    assert sorted(client.scan_iter(_type="string")) == [b"str"]
    assert client.object("encoding", "s") == b"hashtable"
    client.sadd("ints", *range(512))
    assert client.object("encoding", "ints") == b"intset"
    client.sadd("ints", 512)
    assert client.object("encoding", "ints") == b"hashtable"
    client.sadd("small", 1, -2, 3)
    assert client.object("encoding", "small") == b"intset"
    assert client.memory_usage("s") > 0
    assert client.expire("s", 100) is True
    client.sadd("s", "c")  # a change keeps the expiry
    assert 0 < client.ttl("s") <= 100
    assert client.copy("s", "s2") is True
    assert client.rename("s2", "s3") is True
    assert client.type("s3") == b"set" and client.smembers("s3") == members("a", "b", "c")
    assert client.delete("s3") == 1 and client.exists("s3") == 0
    with client.pipeline() as pipe:
        pipe.watch("s")
        client.sadd("s", "d")  # another connection
        pipe.multi()
        pipe.sadd("s", "lost")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.sismember("s", "lost") is False
    with client.pipeline() as pipe:
        pipe.sadd("t", "1").smove("t", "u", "1").sunionstore("v", ["u", "s"]).scard("v")
        assert pipe.execute() == [1, True, 5, 5]


def test_command_table(client, server):
    with Connection(server.port) as raw:
        assert raw.call("COMMAND", "GETKEYS", "SMOVE", "a", "b", "m") == [b"a", b"b"]
        assert raw.call("COMMAND", "GETKEYS", "SUNIONSTORE", "d", "a", "b") == [b"d", b"a", b"b"]
        info = raw.call("COMMAND", "INFO", "SADD")[0]
        assert info[:6] == [b"sadd", -3, ["write", "denyoom", "fast"], 1, 1, 1]
        assert "@set" in info[6]
        assert b"sadd" in raw.call("ACL", "CAT", "set")
        assert b"set" in raw.call("ACL", "CAT")


def test_large_set(client):
    """A set grows past the linear-search size into one of 12,000 members, fast (a
    hash table per command, not a scan per member)."""
    total, batch = 12000, 500
    for start in range(0, total, batch):
        assert client.sadd("big", *range(start, start + batch)) == batch
        assert client.sadd("big", start, start + batch - 1) == 0
    assert client.scard("big") == total
    assert client.sismember("big", 11999) is True and client.sismember("big", 12000) is False
    assert client.srem("big", *range(0, total, 2)) == total // 2
    assert client.sinter("big", "big") == {str(i).encode() for i in range(1, total, 2)}
    assert client.sintercard(1, ["big"], limit=10) == 10
    assert len(client.spop("big", 1000)) == 1000 and client.scard("big") == total // 2 - 1000


def test_concurrent_adds_and_moves_lose_nothing(start_server):
    server = start_server("--threads", "2")
    threads, rounds = 8, 100 if SLOW == 1 else 30

    def work(number):
        connection = server.client()
        for i in range(rounds):
            connection.sadd("shared", f"{number}:{i}")
            connection.sadd(f"own:{number}", i)
            connection.smove(f"own:{number}", "moved", i)
            connection.sunionstore(f"copy:{number}", ["moved"])
        connection.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60 * SLOW)
    client = server.client()
    assert client.scard("shared") == threads * rounds
    assert client.smembers("moved") == {str(i).encode() for i in range(rounds)}
    assert all(client.exists(f"own:{n}") == 0 for n in range(threads))


def test_sets_move_to_flash_whole_and_survive_restart_and_crash(start_server):
    """32 MiB of DRAM and about 64 MiB of sets: sets move to flash whole and come back on
    their next command (the multi-key ones too); a clean restart (the saved index) and a
    crash (a scan of the records) bring every set back as a set."""
    options = ("--memory", "32mb", "--ssd-size", "512mb", "--segment-size", "8mb",
               "--pace-timeout", "60000")
    server = start_server(*options)
    client = server.client()
    count, size = 2000, 20

    def member(i, j):
        return f"{i}/{j}/".encode() * 200  # about 1.6 KB: 32 KB a set, 64 MB in all

    def expected(i):
        return {member(i, j) for j in range(size)}

    for start in range(0, count, 100):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, start + 100):
                pipe.sadd(f"s:{i}", *expected(i))
            pipe.execute()
    assert server.info("flash")["flash_items"] > 0
    assert client.type("s:0") == b"set"
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        client.get("s:0")
    # Commands on several keys that were on flash.
    assert client.sunion("s:1", "s:3") == expected(1) | expected(3)
    assert client.sinter("s:4", "s:5") == set()
    assert client.smove("s:6", "s:7", member(6, 0)) is True
    assert client.sismember("s:7", member(6, 0)) is True and client.scard("s:6") == size - 1
    assert client.sadd("s:6", member(6, 0)) == 1 and client.srem("s:7", member(6, 0)) == 1
    assert client.sunionstore("u", ["s:8", "s:9"]) == 2 * size
    assert client.rename("s:2", "s:2b") is True and client.smembers("s:2b") == expected(2)
    client.rename("s:2b", "s:2")
    for i in range(count):
        assert client.smembers(f"s:{i}") == expected(i), i

    def check_all(instance, extra):
        connection = instance.client()
        for i in range(0, count, 7):
            assert connection.type(f"s:{i}") == b"set", i
            assert connection.smembers(f"s:{i}") == expected(i), i
        assert connection.sadd("s:5", extra) == 1  # and it can change
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


def benchmark(server, *arguments):
    result = subprocess.run(["redis-benchmark", "-p", str(server.port), *arguments, "-q"],
                            capture_output=True, text=True, timeout=300 * SLOW)
    assert result.returncode == 0, result.stderr
    output = result.stdout.replace("\r", "\n")
    assert "error" not in output.lower(), output
    return output


def test_redis_benchmark_sadd_and_spop(server):
    """redis-benchmark's SADD and SPOP (on one member, without -r), then SADD with -r, which
    grows one set to thousands of members: all complete without an error."""
    output = benchmark(server, "-t", "sadd,spop", "-n", "20000" if SLOW == 1 else "2000")
    for name in ("SADD", "SPOP"):
        assert re.search(rf"^{name}.*: [0-9.]+ requests per second", output, re.M), output
    requests = 5000 if SLOW == 1 else 500
    output = benchmark(server, "-t", "sadd", "-r", "1000000", "-n", str(requests))
    assert re.search(r"^SADD.*: [0-9.]+ requests per second", output, re.M), output
    assert requests * 0.9 < server.client().scard("myset") <= requests
