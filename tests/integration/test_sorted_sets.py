"""Sorted sets through redis-py and byte for byte: every command with Redis 7.0's replies
and errors (scores formatted as Redis 7.0 formats doubles, RESP3 doubles and pairs),
WRONGTYPE both ways, the generic key commands on a sorted set, concurrent ZINCRBY,
redis-benchmark's ZADD and ZPOPMIN, sorted sets moved to flash whole and back after a
restart, and the multi-key commands (ZUNION ZINTER ZDIFF, their STORE forms, ZINTERCARD,
ZRANGESTORE) against Redis 7.0.15's recorded replies, a model of Redis's arithmetic and,
where redis-server is installed, a live Redis."""
import math
import random
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time

import pytest
import redis

from conftest import SLOW, Server
from resp import Connection, Error, Null, Simple

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def test_add_score_and_range(client):
    assert client.zadd("z", {"a": 1, "b": 2, "c": 3}) == 3
    assert client.zadd("z", {"a": 5, "d": 4}) == 1  # a updated, d added
    assert client.zcard("z") == 4 and client.zcard("nokey") == 0
    assert client.zscore("z", "a") == 5.0
    assert client.zscore("z", "nope") is None and client.zscore("nokey", "a") is None
    assert client.zmscore("z", ["a", "nope", "b"]) == [5.0, None, 2.0]
    assert client.zrange("z", 0, -1) == [b"b", b"c", b"d", b"a"]
    assert client.zrange("z", 0, -1, withscores=True) == [(b"b", 2), (b"c", 3), (b"d", 4),
                                                          (b"a", 5)]
    assert client.zrange("z", 1, 2, desc=True) == [b"d", b"c"]
    assert client.zrevrange("z", 0, 0, withscores=True) == [(b"a", 5)]
    assert client.zrange("z", -2, -1) == [b"d", b"a"]
    assert client.zrange("z", 3, 1) == [] and client.zrange("nokey", 0, -1) == []
    assert client.zrank("z", "b") == 0 and client.zrevrank("z", "b") == 3
    assert client.zrank("z", "nope") is None and client.zrank("nokey", "a") is None
    # Equal scores order by member, bytes compared.
    client.zadd("eq", {"b": 0, "a": 0, "ab": 0, "\x00": 0})
    assert client.zrange("eq", 0, -1) == [b"\x00", b"a", b"ab", b"b"]
    # Binary and empty members round trip.
    assert client.zadd("bin", {b"\r\n\xff": 1, b"": 2}) == 2
    assert client.zrange("bin", 0, -1, withscores=True) == [(b"\r\n\xff", 1), (b"", 2)]


def test_zadd_options(client):
    client.zadd("z", {"a": 1, "b": 2})
    assert client.zadd("z", {"a": 9, "c": 3}, nx=True) == 1 and client.zscore("z", "a") == 1
    assert client.zadd("z", {"a": 7, "d": 4}, xx=True) == 0
    assert client.zscore("z", "a") == 7 and client.zscore("z", "d") is None
    assert client.zadd("z", {"a": 8, "b": 2, "e": 5}, ch=True) == 2  # a changed, e added
    assert client.zadd("z", {"a": 1, "b": 10}, gt=True, ch=True) == 1
    assert client.zscore("z", "a") == 8 and client.zscore("z", "b") == 10
    assert client.zadd("z", {"a": 1, "b": 20}, lt=True, ch=True) == 1
    assert client.zscore("z", "a") == 1 and client.zscore("z", "b") == 10
    assert client.zadd("z", {"a": 2.5}, incr=True) == 3.5
    assert client.zadd("z", {"a": 1}, incr=True, nx=True) is None
    assert client.zadd("z", {"new": 1}, incr=True, xx=True) is None
    assert client.zadd("z", {"a": -1}, incr=True, gt=True) is None
    assert client.zadd("nokey", {"a": 1}, xx=True) == 0 and client.exists("nokey") == 0
    assert client.zincrby("z", 1.5, "a") == 5.0
    assert client.zincrby("z", 2, "fresh") == 2.0
    for arguments, message in (
            (("z", "NX", "XX", 1, "a"), "^XX and NX options at the same time are not compatible$"),
            (("z", "GT", "LT", 1, "a"), "^GT, LT, and/or NX options at the same time are not compatible$"),
            (("z", "NX", "GT", 1, "a"), "^GT, LT, and/or NX options at the same time are not compatible$"),
            (("z", "INCR", 1, "a", 2, "b"), "^INCR option supports a single increment-element pair$"),
            (("z", 1, "a", 2), "^syntax error$"),
            (("z", "nan", "a"), "^value is not a valid float$"),
            (("z", "abc", "a"), "^value is not a valid float$"),
            (("z", "1e400", "a"), "^value is not a valid float$"),
            (("z", " 1", "a"), "^value is not a valid float$")):
        with pytest.raises(redis.ResponseError, match=message):
            client.execute_command("ZADD", *arguments)
    with pytest.raises(redis.ResponseError, match="^value is not a valid float$"):
        client.zincrby("z", "x", "a")
    client.zadd("inf", {"x": float("inf")})
    with pytest.raises(redis.ResponseError, match=r"^resulting score is not a number \(NaN\)$"):
        client.zincrby("inf", float("-inf"), "x")
    assert client.zscore("inf", "x") == float("inf")


def test_score_and_lex_ranges(client):
    client.zadd("z", {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5})
    assert client.zrangebyscore("z", 2, 4) == [b"b", b"c", b"d"]
    assert client.zrangebyscore("z", "(2", "(4") == [b"c"]
    assert client.zrangebyscore("z", "-inf", "+inf", start=1, num=2, withscores=True) == \
        [(b"b", 2), (b"c", 3)]
    assert client.zrangebyscore("z", "-inf", "+inf", start=-1, num=2) == []
    assert client.zrangebyscore("z", "-inf", "+inf", start=3, num=-1) == [b"d", b"e"]
    assert client.zrevrangebyscore("z", 4, "(1") == [b"d", b"c", b"b"]
    assert client.zrevrangebyscore("z", "+inf", "-inf", start=1, num=1) == [b"d"]
    assert client.zrange("z", "(1", 3, byscore=True) == [b"b", b"c"]
    assert client.zrange("z", 3, "(1", byscore=True, desc=True, withscores=True) == \
        [(b"c", 3), (b"b", 2)]
    assert client.zrange("z", "-inf", "+inf", byscore=True, offset=1, num=2) == [b"b", b"c"]
    assert client.zcount("z", 2, "(4") == 2 and client.zcount("z", "-inf", "+inf") == 5
    assert client.zcount("nokey", 0, 1) == 0
    with pytest.raises(redis.ResponseError, match="^min or max is not a float$"):
        client.zrangebyscore("z", "abc", 1)
    with pytest.raises(redis.ResponseError, match="^min or max is not a float$"):
        client.zcount("z", 1, "x")
    client.zadd("lex", {m: 0 for m in "abcdef"})
    assert client.zrangebylex("lex", "[b", "(d") == [b"b", b"c"]
    assert client.zrangebylex("lex", "-", "+", start=2, num=2) == [b"c", b"d"]
    assert client.zrevrangebylex("lex", "[d", "(a") == [b"d", b"c", b"b"]
    assert client.zrange("lex", "(e", "+", bylex=True) == [b"f"]
    assert client.zrange("lex", "+", "[e", bylex=True, desc=True) == [b"f", b"e"]
    assert client.zrangebylex("lex", "[d", "[b") == [] and client.zrangebylex("lex", "+", "-") == []
    assert client.zlexcount("lex", "[b", "[d") == 3 and client.zlexcount("lex", "-", "+") == 6
    with pytest.raises(redis.ResponseError, match="^min or max not valid string range item$"):
        client.zrangebylex("lex", "b", "d")
    with pytest.raises(redis.ResponseError, match="^min or max not valid string range item$"):
        client.zlexcount("lex", "[a", "")
    # Lex ranges over unequal scores: what Redis 7.0 answers (it walks its listpack).
    client.zadd("mixed", {"b": 1, "a": 2, "d": 3, "c": 4})
    assert client.zrangebylex("mixed", "[a", "[c") == [b"b", b"a"]
    assert client.zrangebylex("mixed", "-", "+", start=1, num=2) == [b"a", b"d"]
    assert client.zrevrangebylex("mixed", "[c", "[a") == [b"c", b"d", b"a", b"b"]
    assert client.zrevrangebylex("mixed", "+", "-", start=1, num=2) == [b"d", b"a"]
    assert client.zlexcount("mixed", "[b", "[c") == 2
    for arguments, message in (
            (("z", 0, -1, "LIMIT", 0, 1),
             "^syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX$"),
            (("lex", "-", "+", "BYLEX", "WITHSCORES"),
             "^syntax error, WITHSCORES not supported in combination with BYLEX$"),
            (("z", 0, -1, "BYSCORE", "BYLEX"), "^syntax error$"),
            (("z", 0, -1, "REV", "REV"), "^syntax error$"),
            (("z", "a", "b"), "^value is not an integer or out of range$")):
        with pytest.raises(redis.ResponseError, match=message):
            client.execute_command("ZRANGE", *arguments)
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        client.execute_command("ZRANGEBYSCORE", "z", 1, 2, "REV")


def test_remove_and_pop(client):
    client.zadd("z", {m: i for i, m in enumerate("abcdefgh")})
    assert client.zrem("z", "a", "a", "nope") == 1 and client.zrem("nokey", "a") == 0
    assert client.zremrangebyrank("z", 0, 0) == 1  # b
    assert client.zremrangebyscore("z", "(6", "+inf") == 1  # h
    assert client.zremrangebylex("z", "-", "[c") == 1  # c, all scores differ but c is first
    assert client.zrange("z", 0, -1) == [b"d", b"e", b"f", b"g"]
    assert client.zpopmin("z") == [(b"d", 3)]
    assert client.zpopmax("z", 2) == [(b"g", 6), (b"f", 5)]
    assert client.zpopmin("z", 0) == []
    assert client.zpopmin("z", 10) == [(b"e", 4)]
    assert client.exists("z") == 0  # the last member went: the key is gone
    assert client.zpopmin("nokey") == [] and client.zpopmax("nokey", 3) == []
    with pytest.raises(redis.ResponseError, match="^value is out of range, must be positive$"):
        client.zpopmin("z", -1)
    client.zadd("z", {"a": 1})
    assert client.zremrangebyscore("z", 0, 10) == 1 and client.exists("z") == 0
    client.zadd("z", {"a": 1})
    assert client.zrem("z", "a") == 1 and client.exists("z") == 0


def test_random_members_and_scan(client):
    members = {f"m{i}": i for i in range(20)}
    client.zadd("z", members)
    assert client.zrandmember("z").decode() in members
    assert client.zrandmember("nokey") is None and client.zrandmember("nokey", 3) == []
    picked = client.zrandmember("z", 5)
    assert len(picked) == 5 and len(set(picked)) == 5
    assert sorted(client.zrandmember("z", 50)) == sorted(m.encode() for m in members)
    assert len(client.zrandmember("z", -50)) == 50
    pairs = client.zrandmember("z", -4, withscores=True)
    assert len(pairs) == 8
    assert all(float(pairs[i + 1]) == members[pairs[i].decode()] for i in range(0, 8, 2))
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        client.execute_command("ZRANDMEMBER", "z", 1, "FOO")
    cursor, found = client.zscan("z", 0, match="m1*")
    assert cursor == 0
    assert sorted(found) == sorted((m.encode(), s) for m, s in members.items() if m.startswith("m1"))
    assert client.zscan("nokey", 0) == (0, [])
    with pytest.raises(redis.ResponseError, match="^invalid cursor$"):
        client.execute_command("ZSCAN", "z", "abc")
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        client.execute_command("ZSCAN", "z", 0, "COUNT", 0)


def test_scores_formatted_as_redis_7_0(server):
    """Redis 7.0 answers scores with %.17g (ZSCORE, ZRANGE, ZINCRBY) and ZSCAN with
    integers where the score is one; RESP3 gets doubles and [member, score] pairs."""
    with Connection(server.port) as conn:
        conn.call("FLUSHALL")
        assert conn.call("ZADD", "z", "1.1", "a", "2", "b", "3e20", "c", "inf", "d", "-0", "e",
                         "123456789012345678", "g") == 6
        assert conn.call("ZSCORE", "z", "a") == b"1.1000000000000001"
        assert conn.call("ZSCORE", "z", "c") == b"3e+20"
        assert conn.call("ZSCORE", "z", "d") == b"inf"
        assert conn.call("ZSCORE", "z", "e") == b"0"
        assert conn.call("ZSCORE", "z", "g") == b"1.2345678901234568e+17"
        assert conn.call("ZINCRBY", "z", "0.1", "a") == b"1.2000000000000002"
        assert conn.call("ZSCAN", "z", "0") == [b"0", [b"e", b"0", b"a", b"1.2000000000000002",
                                                       b"b", b"2", b"g", b"123456789012345680",
                                                       b"c", b"3e+20", b"d", b"inf"]]
        assert conn.call("ZSCORE", "nokey", "a") == Null("$-1")
        assert conn.call("ZADD", "z", "NX", "INCR", "1", "a") == Null("$-1")
        assert conn.call("ZPOPMIN", "nokey") == []
        assert conn.call("SET", "s", "v") == "OK"
        assert conn.call("ZADD", "s", "1", "a") == Error(WRONGTYPE)
        # RESP3
        conn.call("HELLO", "3")
        conn.send("ZSCORE", "z", "a")
        assert conn._line() == b",1.2000000000000002"
        conn.send("ZSCORE", "z", "d")
        assert conn._line() == b",inf"
        assert conn.call("ZRANGE", "z", "0", "1", "WITHSCORES") == [[b"e", 0.0], [b"a", 1.2000000000000002]]
        assert conn.call("ZRANGE", "z", "0", "1") == [b"e", b"a"]
        assert conn.call("ZPOPMIN", "z") == [b"e", 0.0]  # no count: flat
        assert conn.call("ZPOPMAX", "z", "1") == [[b"d", float("inf")]]  # a count: pairs
        assert conn.call("ZMSCORE", "z", "b", "nope") == [2.0, Null("_")]
        assert conn.call("ZRANDMEMBER", "z", "-2", "WITHSCORES")[0][0] in (b"a", b"b", b"c", b"g")
        assert conn.call("ZADD", "z", "INCR", "1", "b") == 3.0
        assert conn.call("ZADD", "z", "XX", "INCR", "1", "nope") == Null("_")


def test_wrong_type_both_ways(client):
    client.set("s", "text")
    client.zadd("z", {"a": 1})
    client.hset("h", "f", "v")
    client.rpush("l", "x")
    for key in ("s", "h", "l"):
        for call in (lambda: client.zadd(key, {"a": 1}), lambda: client.zscore(key, "a"),
                     lambda: client.zrange(key, 0, -1), lambda: client.zcard(key),
                     lambda: client.zincrby(key, 1, "a"), lambda: client.zrem(key, "a"),
                     lambda: client.zpopmin(key), lambda: client.zrandmember(key),
                     lambda: client.zscan(key, 0), lambda: client.zrank(key, "a"),
                     lambda: client.zcount(key, 0, 1), lambda: client.zlexcount(key, "-", "+"),
                     lambda: client.zmscore(key, ["a"]), lambda: client.zremrangebyrank(key, 0, 1),
                     lambda: client.zrangebyscore(key, 0, 1)):
            with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
                call()
    for call in (lambda: client.get("z"), lambda: client.hget("z", "a"),
                 lambda: client.lrange("z", 0, -1), lambda: client.append("z", "x"),
                 lambda: client.incr("z")):
        with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
            call()
    assert client.get("s") == b"text" and client.zscore("z", "a") == 1.0


def test_key_commands_on_a_sorted_set(client):
    client.zadd("z", {"a": 1, "b": 2})
    client.set("s", "x")
    assert client.type("z") == b"zset"
    assert sorted(client.scan_iter(_type="zset")) == [b"z"]
    assert sorted(client.scan_iter(_type="string")) == [b"s"]
    assert client.object("encoding", "z") == b"listpack"
    client.zadd("long", {"m" * 65: 1})
    assert client.object("encoding", "long") == b"skiplist"
    client.zadd("many", {f"m{i}": i for i in range(129)})
    assert client.object("encoding", "many") == b"skiplist"
    assert client.zcard("many") == 129
    assert client.expire("z", 100) is True
    client.zadd("z", {"c": 3})  # a change keeps the expiry
    assert 0 < client.ttl("z") <= 100
    assert client.rename("z", "z2") is True and client.exists("z") == 0
    assert client.type("z2") == b"zset" and client.zrange("z2", 0, -1) == [b"a", b"b", b"c"]
    assert client.copy("z2", "z3") is True and client.zcard("z3") == 3
    assert client.delete("z2", "z3") == 2 and client.exists("z2") == 0
    # Transactions and WATCH see sorted set changes.
    client.zadd("w", {"a": 1})
    with client.pipeline() as pipe:
        pipe.watch("w")
        client.zincrby("w", 1, "a")  # another connection
        pipe.multi()
        pipe.zadd("w", {"a": 100})
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.zscore("w", "a") == 2.0
    with client.pipeline() as pipe:
        pipe.zadd("w", {"b": 5}).zincrby("w", 2, "b").zrange("w", 0, -1, withscores=True)
        assert pipe.execute() == [1, 7.0, [(b"a", 2.0), (b"b", 7.0)]]


def test_command_table(server):
    with Connection(server.port) as conn:
        info = conn.call("COMMAND", "INFO", "zadd", "zrange", "zpopmin", "zscan")
        flags = {entry[0]: set(entry[2]) for entry in info}
        assert flags[b"zadd"] == {"write", "denyoom", "fast"}
        assert flags[b"zrange"] == {"readonly"} and flags[b"zpopmin"] == {"write", "fast"}
        assert all(entry[3:6] == [1, 1, 1] for entry in info)
        assert all("@sortedset" in entry[6] for entry in info)
        docs = conn.call("COMMAND", "DOCS", "zadd")
        assert docs[1][docs[1].index(b"group") + 1] == b"sorted-set"  # Redis's name
        assert conn.call("COMMAND", "GETKEYS", "ZADD", "k", "1", "a") == [b"k"]
        assert conn.call("COMMAND", "GETKEYS", "ZRANGE", "k", "0", "-1") == [b"k"]
        assert b"zadd" in conn.call("ACL", "CAT", "sortedset")
        assert b"sortedset" in conn.call("ACL", "CAT")


def test_big_sorted_set_changes_stay_in_order(client):
    """Many members in one ZADD, into a set already big: the settle and the member index."""
    count = 3000 if SLOW == 1 else 600
    client.zadd("big", {f"m{i}": (i * 7919) % count for i in range(count)})
    assert client.zcard("big") == count
    # Re-score half of them and add as many, in one command.
    changes = {f"m{i}": -i - 1 for i in range(0, count, 2)}
    changes.update({f"n{i}": i + 0.5 for i in range(count // 2)})
    assert client.zadd("big", changes, ch=True) == count
    expected = {f"m{i}": (-i - 1 if i % 2 == 0 else (i * 7919) % count) for i in range(count)}
    expected.update({f"n{i}": i + 0.5 for i in range(count // 2)})
    ordered = sorted(expected.items(), key=lambda pair: (pair[1], pair[0].encode()))
    assert client.zrange("big", 0, -1, withscores=True) == [(m.encode(), s) for m, s in ordered]
    assert client.zrem("big", *[f"n{i}" for i in range(count // 2)]) == count // 2
    assert client.zcard("big") == count
    assert client.zrank("big", f"m{count - 2}") == 0


def test_concurrent_increments_lose_nothing(start_server):
    server = start_server("--threads", "2")
    threads, rounds = 8, 100 if SLOW == 1 else 40

    def work(number):
        connection = server.client()
        for _ in range(rounds):
            connection.zincrby("scores", 1, "shared")
            connection.zadd("scores", {f"own:{number}": 1}, incr=True)
        connection.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60 * SLOW)
    client = server.client()
    assert client.zscore("scores", "shared") == threads * rounds
    assert client.zcard("scores") == threads + 1
    assert all(client.zscore("scores", f"own:{n}") == rounds for n in range(threads))


def test_redis_benchmark_zadd_and_zpopmin(server):
    result = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-t", "zadd,zpopmin",
         "-n", "20000" if SLOW == 1 else "4000", "-q"],
        capture_output=True, text=True, timeout=120 * SLOW)
    assert result.returncode == 0, result.stderr
    output = result.stdout.replace("\r", "\n")
    assert "error" not in output.lower(), output
    rates = dict(re.findall(r"^(ZADD|ZPOPMIN): ([0-9.]+) requests per second", output, re.M))
    assert float(rates["ZADD"]) > 0 and float(rates["ZPOPMIN"]) > 0, output


def test_sorted_sets_move_to_flash_whole_and_survive_a_restart(start_server):
    """16 MiB of DRAM, about 20 MiB of sorted sets and 2 MiB of strings: sorted sets move to flash
    whole and come back whole on their next command, in order; after a restart every set
    is back, a sorted set."""
    options = ("--memory", "16mb", "--ssd-size", "64mb", "--segment-size", "4mb",
               "--pace-timeout", "60000")
    server = start_server(*options)
    client = server.client()
    sets = 200

    def members(i):
        return {f"{i}/{j}/".encode() * 1000 + b"!": j * 1.5 - i for j in range(20)}  # ~100 KB

    def expected(i):
        return sorted(members(i).items(), key=lambda pair: (pair[1], pair[0]))

    for start in range(0, sets, 25):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, start + 25):
                pipe.zadd(f"z:{i}", members(i))
                pipe.set(f"s:{i}", f"{i}".encode() * 8000)
            pipe.execute()
    assert server.info("flash")["flash_items"] > 0
    assert client.type("z:0") == b"zset"
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        client.get("z:0")
    # The multi-key commands bring their keys back from flash first (the first written
    # are the first evicted).
    reads = server.info("flash")["flash_reads"]
    union = client.zunion(["z:0", "z:1", "z:2"], withscores=True)
    assert dict(union) == {**members(0), **members(1), **members(2)}
    assert server.info("flash")["flash_reads"] > reads
    assert client.zinterstore("both", ["z:3", "z:3"]) == 20
    assert client.zrange("both", 0, 0, withscores=True) == [(expected(3)[0][0], -6.0)]
    assert client.execute_command("ZRANGESTORE", "some", "z:4", 0, 4) == 5
    assert client.zrange("some", 0, -1, withscores=True) == expected(4)[:5]
    assert client.delete("both", "some") == 2
    for i in range(sets):
        assert client.zrange(f"z:{i}", 0, -1, withscores=True) == expected(i), i
    directory = server.directory
    server.stop()
    again = Server(directory, *options)
    try:
        client = again.client()
        for i in range(0, sets, 5):
            assert client.type(f"z:{i}") == b"zset"
            assert client.zrange(f"z:{i}", 0, -1, withscores=True) == expected(i), i
        assert client.zpopmin("z:0") == [expected(0)[0]]
        assert client.zcard("z:0") == 19
    finally:
        again.stop()


# ---- ZUNION ZINTER ZDIFF, their STORE forms, ZINTERCARD, ZRANGESTORE --------------------

# Each command with Redis 7.0.15's reply (recorded from redis-server 7.0.15, RESP2): plain
# sets count with score 1, infinities, NaN from a weight (0) and from inf + -inf (0),
# -0 (answered "-0", stored as 0), and every error in Redis's order (numkeys, then every
# key's type, then the options).
COMBINE_CASES = [
    ('FLUSHALL', Simple('OK')),
    ('ZADD a 1 x 2 y 3 z', 3),
    ('ZADD b 10 y 20 z 30 w', 3),
    ('SADD s y w q', 3),
    ('SET str v', Simple('OK')),
    ('ZADD inf inf x -inf y', 2),
    ('ZADD ninf -inf x inf y', 2),
    ('ZADD one 1 x', 1),
    ('ZADD infb inf x', 1),
    ('ZADD big 1 x 2 p 3 q 4 r', 4),
    ('ZUNION 3 a b s WITHSCORES', [b'q', b'1', b'x', b'1', b'y', b'13', b'z', b'23', b'w', b'31']),
    ('ZUNION 3 a b s', [b'q', b'x', b'y', b'z', b'w']),
    ('ZINTER 3 a b s WITHSCORES', [b'y', b'13']),
    ('ZDIFF 2 a s WITHSCORES', [b'x', b'1', b'z', b'3']),
    ('ZDIFF 2 s a WITHSCORES', [b'q', b'1', b'w', b'1']),
    ('ZDIFF 2 big a', [b'p', b'q', b'r']),
    ('ZDIFF 2 a big', [b'y', b'z']),
    ('ZDIFF 2 nokey a', []),
    ('ZDIFF 1 s', [b'q', b'w', b'y']),
    ('ZUNION 2 a b WEIGHTS 2 -1 AGGREGATE MAX WITHSCORES', [b'w', b'-30', b'x', b'2', b'y', b'4', b'z', b'6']),
    ('ZUNION 2 a b WEIGHTS 2 -1 AGGREGATE min WITHSCORES', [b'w', b'-30', b'z', b'-20', b'y', b'-10', b'x', b'2']),
    ('ZUNION 2 a b WEIGHTS 0.5 1.5 WITHSCORES', [b'x', b'0.5', b'y', b'16', b'z', b'31.5', b'w', b'45']),
    ('ZINTER 2 a b WEIGHTS 2 3 AGGREGATE MIN WITHSCORES', [b'y', b'4', b'z', b'6']),
    ('ZINTER 2 a b AGGREGATE MAX AGGREGATE MIN WITHSCORES', [b'y', b'2', b'z', b'3']),
    ('ZUNION 2 inf ninf WITHSCORES', [b'x', b'0', b'y', b'0']),
    ('ZUNION 2 inf ninf AGGREGATE MIN WITHSCORES', [b'x', b'-inf', b'y', b'-inf']),
    ('ZUNION 2 inf ninf AGGREGATE MAX WITHSCORES', [b'x', b'inf', b'y', b'inf']),
    ('ZUNION 1 inf WEIGHTS 0 WITHSCORES', [b'x', b'0', b'y', b'0']),
    ('ZUNION 1 a WEIGHTS -0 WITHSCORES', [b'x', b'-0', b'y', b'-0', b'z', b'-0']),
    ('ZUNION 1 a WEIGHTS inf WITHSCORES', [b'x', b'inf', b'y', b'inf', b'z', b'inf']),
    ('ZUNION 1 a WeIgHtS 2 AGGREGATE sum WITHSCORES withscores', [b'x', b'2', b'y', b'4', b'z', b'6']),
    ('ZINTER 2 one infb WEIGHTS 1 0 WITHSCORES', [b'x', b'0']),
    ('ZINTER 2 one infb WEIGHTS 1 0 AGGREGATE MAX WITHSCORES', [b'x', b'1']),
    ('ZINTER 2 infb one WEIGHTS 0 1 WITHSCORES', [b'x', b'1']),
    ('ZINTER 2 a nokey WITHSCORES', []),
    ('ZUNION 2 nokey nokey2', []),
    ('ZUNION 2 a a WITHSCORES', [b'x', b'2', b'y', b'4', b'z', b'6']),
    ('ZINTER 2 a a WITHSCORES', [b'x', b'2', b'y', b'4', b'z', b'6']),
    ('ZDIFF 2 a a', []),
    ('ZINTERCARD 2 a b', 2),
    ('ZINTERCARD 2 a b LIMIT 1', 1),
    ('ZINTERCARD 2 a b LIMIT 0', 2),
    ('ZINTERCARD 2 s b', 2),
    ('ZINTERCARD 3 a b s', 1),
    ('ZINTERCARD 1 nokey', 0),
    ('ZUNION 0 a', Error("ERR at least 1 input key is needed for 'zunion' command")),
    ('ZUNION -1 a', Error("ERR at least 1 input key is needed for 'zunion' command")),
    ('ZUNION abc a', Error('ERR value is not an integer or out of range')),
    ('ZUNION 3 a b', Error('ERR syntax error')),
    ('ZUNIONSTORE d 0 a', Error("ERR at least 1 input key is needed for 'zunionstore' command")),
    ('ZINTERSTORE d 0 a', Error("ERR at least 1 input key is needed for 'zinterstore' command")),
    ('ZDIFFSTORE d 0 a', Error("ERR at least 1 input key is needed for 'zdiffstore' command")),
    ('ZINTER 0 a', Error("ERR at least 1 input key is needed for 'zinter' command")),
    ('ZDIFF 0 a', Error("ERR at least 1 input key is needed for 'zdiff' command")),
    ('ZINTERCARD 0 a', Error("ERR at least 1 input key is needed for 'zintercard' command")),
    ('ZINTERCARD 3 a', Error('ERR syntax error')),
    ('ZUNION 1 str WEIGHTS abc', Error(WRONGTYPE)),
    ('ZUNION 2 a str', Error(WRONGTYPE)),
    ('ZINTER 2 str nokey', Error(WRONGTYPE)),
    ('ZDIFFSTORE d 2 a str', Error(WRONGTYPE)),
    ('ZINTERCARD 2 a str', Error(WRONGTYPE)),
    ('ZUNION 1 a WEIGHTS abc', Error('ERR weight value is not a float')),
    ('ZUNION 1 a WEIGHTS 1e400', Error('ERR weight value is not a float')),
    ('ZUNION 1 a WEIGHTS nan', Error('ERR weight value is not a float')),
    ('ZUNION 1 a WEIGHTS " 1"', Error('ERR weight value is not a float')),
    ('ZINTERSTORE d 2 a b WEIGHTS 1 x', Error('ERR weight value is not a float')),
    ('ZUNION 1 a WEIGHTS 1 2', Error('ERR syntax error')),
    ('ZUNION 2 a b WEIGHTS 1', Error('ERR syntax error')),
    ('ZUNION 1 a AGGREGATE foo', Error('ERR syntax error')),
    ('ZUNION 1 a AGGREGATE', Error('ERR syntax error')),
    ('ZDIFF 1 a WEIGHTS 1', Error('ERR syntax error')),
    ('ZDIFF 1 a AGGREGATE SUM', Error('ERR syntax error')),
    ('ZUNIONSTORE d 1 a WITHSCORES', Error('ERR syntax error')),
    ('ZINTERCARD 1 a LIMIT -1', Error("ERR LIMIT can't be negative")),
    ('ZINTERCARD 1 a LIMIT abc', Error("ERR LIMIT can't be negative")),
    ('ZINTERCARD 1 a WITHSCORES', Error('ERR syntax error')),
    ('ZINTERCARD 1 a LIMIT', Error('ERR syntax error')),
    ('ZINTERCARD 1 a WEIGHTS 1', Error('ERR syntax error')),
    ('ZUNION 1', Error("ERR wrong number of arguments for 'zunion' command")),
    ('ZUNIONSTORE d 1', Error("ERR wrong number of arguments for 'zunionstore' command")),
    ('ZINTERCARD 1', Error("ERR wrong number of arguments for 'zintercard' command")),
]

STORE_CASES = [
    ('FLUSHALL', Simple('OK')),
    ('ZADD a 1 x 2 y 3 z', 3),
    ('ZADD b 10 y 20 z 30 w', 3),
    ('SADD s y w q', 3),
    ('SET str v', Simple('OK')),
    ('SET d v', Simple('OK')),
    ('EXPIRE d 100', 1),
    ('ZUNIONSTORE d 2 a s', 5),
    ('TTL d', -1),
    ('TYPE d', Simple('zset')),
    ('ZRANGE d 0 -1 WITHSCORES', [b'q', b'1', b'w', b'1', b'x', b'1', b'y', b'3', b'z', b'3']),
    ('ZINTERSTORE d 2 a b WEIGHTS 1 2', 2),
    ('ZRANGE d 0 -1 WITHSCORES', [b'y', b'22', b'z', b'43']),
    ('ZUNIONSTORE d 1 a WEIGHTS -0', 3),
    ('ZRANGE d 0 -1 WITHSCORES', [b'x', b'0', b'y', b'0', b'z', b'0']),
    ('ZDIFFSTORE d 2 a b', 1),
    ('ZRANGE d 0 -1 WITHSCORES', [b'x', b'1']),
    ('ZINTERSTORE d 2 a nokey', 0),
    ('EXISTS d', 0),
    ('ZUNIONSTORE d 1 s', 3),
    ('ZRANGE d 0 -1 WITHSCORES', [b'q', b'1', b'w', b'1', b'y', b'1']),
    ('ZDIFFSTORE d 2 nokey a', 0),
    ('EXISTS d', 0),
    ('ZUNIONSTORE d 1 str', Error(WRONGTYPE)),
    ('ZUNIONSTORE a 2 a b', 4),
    ('ZRANGE a 0 -1 WITHSCORES', [b'x', b'1', b'y', b'12', b'z', b'23', b'w', b'30']),
    ('ZUNIONSTORE str 1 b AGGREGATE MAX', 3),
    ('TYPE str', Simple('zset')),
    ('ZADD src 1 a 2 b 3 c 4 d', 4),
    ('ZRANGESTORE dst src 0 1', 2),
    ('ZRANGE dst 0 -1 WITHSCORES', [b'a', b'1', b'b', b'2']),
    ('ZRANGESTORE dst src (1 3 BYSCORE', 2),
    ('ZRANGE dst 0 -1 WITHSCORES', [b'b', b'2', b'c', b'3']),
    ('ZRANGESTORE dst src 5 1 BYSCORE REV LIMIT 1 2', 2),
    ('ZRANGE dst 0 -1 WITHSCORES', [b'b', b'2', b'c', b'3']),
    ('ZRANGESTORE dst src [b + BYLEX', 3),
    ('ZRANGE dst 0 -1 WITHSCORES', [b'b', b'2', b'c', b'3', b'd', b'4']),
    ('ZRANGESTORE dst src + [b BYLEX REV LIMIT 1 1', 1),
    ('ZRANGE dst 0 -1 WITHSCORES', [b'c', b'3']),
    ('ZRANGESTORE dst src 0 -1 REV', 4),
    ('ZRANGE dst 0 -1 WITHSCORES', [b'a', b'1', b'b', b'2', b'c', b'3', b'd', b'4']),
    ('ZRANGESTORE dst src 1 2 REV', 2),
    ('ZRANGE dst 0 -1 WITHSCORES', [b'b', b'2', b'c', b'3']),
    ('ZRANGESTORE dst src -inf +inf BYSCORE LIMIT 1 -1', 3),
    ('ZRANGE dst 0 -1 WITHSCORES', [b'b', b'2', b'c', b'3', b'd', b'4']),
    ('ZRANGESTORE dst src 10 20', 0),
    ('EXISTS dst', 0),
    ('ZRANGESTORE dst src 0 -1 WITHSCORES', Error('ERR syntax error')),
    ('ZRANGESTORE dst src 0 -1 LIMIT 0 1', Error('ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX')),
    ('ZRANGESTORE dst src a b BYSCORE', Error('ERR min or max is not a float')),
    ('ZRANGESTORE dst src a b BYLEX', Error('ERR min or max not valid string range item')),
    ('ZRANGESTORE dst src a b', Error('ERR value is not an integer or out of range')),
    ('ZRANGESTORE dst src 0 -1 foo', Error('ERR syntax error')),
    ('ZRANGESTORE dst src 0 0', 1),
    ('ZRANGESTORE dst nokey 0 -1', 0),
    ('EXISTS dst', 0),
    ('ZRANGESTORE dst s 0 -1', Error(WRONGTYPE)),
    ('SET str2 v', Simple('OK')),
    ('ZRANGESTORE dst str2 0 -1', Error(WRONGTYPE)),
    ('ZRANGESTORE src src 1 2', 2),
    ('ZRANGE src 0 -1 WITHSCORES', [b'b', b'2', b'c', b'3']),
    ('ZRANGESTORE dst src 0', Error("ERR wrong number of arguments for 'zrangestore' command")),
]


def run_cases(port, cases):
    with Connection(port) as conn:
        for line, expected in cases:
            reply = conn.call(*shlex.split(line))
            assert reply == expected and type(reply) is type(expected), (line, reply, expected)


def test_combine_commands_as_redis_7_0(server):
    run_cases(server.port, COMBINE_CASES)


def test_store_forms_and_zrangestore_as_redis_7_0(server):
    """The destination's old value (any type) and expiry go; an empty result deletes it;
    a destination among the inputs is read before it is replaced."""
    run_cases(server.port, STORE_CASES)


def test_combine_resp3_pairs(server):
    """RESP3: WITHSCORES gives [member, score] pairs of doubles, as Redis 7.0."""
    with Connection(server.port) as conn:
        conn.call("FLUSHALL")
        conn.call("ZADD", "a", "1", "x", "2.5", "y", "inf", "z")
        conn.call("SADD", "s", "x", "q")
        conn.call("HELLO", "3")
        assert conn.call("ZUNION", "2", "a", "s", "WITHSCORES") == [
            [b"q", 1.0], [b"x", 2.0], [b"y", 2.5], [b"z", float("inf")]]
        assert conn.call("ZINTER", "2", "a", "s", "WITHSCORES") == [[b"x", 2.0]]
        assert conn.call("ZDIFF", "2", "a", "s", "WITHSCORES") == [[b"y", 2.5],
                                                                  [b"z", float("inf")]]
        assert conn.call("ZDIFF", "2", "a", "s") == [b"y", b"z"]
        assert conn.call("ZUNION", "1", "nokey", "WITHSCORES") == []
        assert conn.call("ZINTERCARD", "2", "a", "s") == 1
        conn.send("ZUNION", "1", "a", "WEIGHTS", "-1", "WITHSCORES")
        assert conn._line() == b"*3"
        assert [conn._line() for _ in range(6)] == [b"*2", b"$1", b"z", b",-inf", b"*2", b"$1"]


def test_combine_command_table(server):
    with Connection(server.port) as conn:
        names = ["zunion", "zinter", "zdiff", "zunionstore", "zinterstore", "zdiffstore",
                 "zintercard", "zrangestore"]
        info = {entry[0]: entry for entry in conn.call("COMMAND", "INFO", *names)}
        for name in ("zunion", "zinter", "zdiff", "zintercard"):
            entry = info[name.encode()]
            assert entry[1] == -3 and set(entry[2]) == {"readonly", "movablekeys"}
            assert entry[3:6] == [0, 0, 0] and set(entry[6]) == {"@read", "@sortedset", "@slow"}
        for name in ("zunionstore", "zinterstore", "zdiffstore"):
            entry = info[name.encode()]
            assert entry[1] == -4 and set(entry[2]) == {"write", "denyoom", "movablekeys"}
            assert entry[3:6] == [1, 1, 1] and set(entry[6]) == {"@write", "@sortedset", "@slow"}
        entry = info[b"zrangestore"]
        assert entry[1] == -5 and set(entry[2]) == {"write", "denyoom"} and entry[3:6] == [1, 2, 1]
        getkeys = lambda *line: conn.call("COMMAND", "GETKEYS", *line)  # noqa: E731
        assert getkeys("ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2") == [b"d", b"a", b"b"]
        assert getkeys("ZDIFFSTORE", "d", "1", "a") == [b"d", b"a"]
        assert getkeys("ZUNION", "2", "a", "b") == [b"a", b"b"]
        assert getkeys("ZINTERCARD", "1", "a", "LIMIT", "1") == [b"a"]
        assert getkeys("ZRANGESTORE", "d", "s", "0", "1") == [b"d", b"s"]
        for line in (("ZUNIONSTORE", "d", "5", "a"), ("ZUNIONSTORE", "d", "0", "a"),
                     ("ZINTERSTORE", "d", "x", "a")):
            assert getkeys(*line) == Error("ERR Invalid arguments specified for command")
        in_category = conn.call("ACL", "CAT", "sortedset")
        assert all(name.encode() in in_category for name in names)
        assert b"zunionstore" in conn.call("ACL", "CAT", "write")
        assert b"zunion" in conn.call("ACL", "CAT", "read")


def test_store_forms_wake_blocked_pops_and_fail_watch(server, client):
    """A STORE form's destination is changed like any write: BZPOPMIN blocked on it is
    served, and a WATCH on it fails EXEC."""
    client.zadd("a", {"x": 1, "y": 2})
    client.sadd("s", "q")
    for store in (lambda: client.zunionstore("dst", ["a", "s"]),
                  lambda: client.zinterstore("dst", ["a", "a"]),
                  lambda: client.execute_command("ZDIFFSTORE", "dst", 1, "a"),
                  lambda: client.execute_command("ZRANGESTORE", "dst", "a", 0, 0)):
        client.delete("dst")
        waiter = server.client()
        results = []
        thread = threading.Thread(target=lambda: results.append(waiter.bzpopmin("dst", 10)))
        thread.start()
        deadline = time.time() + 10 * SLOW
        while client.info("clients")["blocked_clients"] != 1 and time.time() < deadline:
            time.sleep(0.01)
        assert client.info("clients")["blocked_clients"] == 1
        assert store() >= 1
        thread.join(10 * SLOW)
        assert results and results[0][0] == b"dst", results
        waiter.close()
    for store in (lambda: client.zunionstore("w", ["a"]),
                  lambda: client.zinterstore("w", ["a", "nokey"]),  # deletes it
                  lambda: client.execute_command("ZRANGESTORE", "w", "a", 0, 0)):
        client.zadd("w", {"old": 1})
        with client.pipeline() as pipe:
            pipe.watch("w")
            store()  # from another connection
            pipe.multi()
            pipe.set("w", "mine")
            with pytest.raises(redis.WatchError):
                pipe.execute()
    # Inside MULTI they run as any command.
    with client.pipeline() as pipe:
        pipe.zunionstore("m", ["a", "s"]).zrange("m", 0, -1).zinter(["a", "s"])
        assert pipe.execute() == [3, [b"q", b"x", b"y"], []]


def connections_on_another_worker(server, busy, count):
    """COUNT new connections to SERVER, opened while BUSY's worker sleeps (DEBUG SLEEP):
    another worker accepts them, so they run in parallel with BUSY."""
    sleeper = threading.Thread(target=busy.execute_command, args=("DEBUG", "SLEEP", 0.5 * SLOW))
    sleeper.start()
    time.sleep(0.1 * SLOW)
    connections = [server.client() for _ in range(count)]
    for connection in connections:
        connection.ping()
    sleeper.join()
    return connections


def test_combine_reads_are_atomic(start_server):
    """Writers each set their member's score in "left", then the same score in "right"
    (pipelined: the two land back to back), so at every moment left's score >= right's.
    ZINTER and ZINTERSTORE of left, a big "middle" and right (WEIGHTS 1 0 -1), run
    meanwhile on another worker, must never see right ahead of left: they read every key
    together, with no write between the reads (reading middle takes a while)."""
    server = start_server("--threads", "2")
    reader = server.client()
    writers = connections_on_another_worker(server, reader, 3)
    members = {f"m{w}": 0 for w in range(len(writers))}
    filler = 20000 if SLOW == 1 else 4000
    for start in range(0, filler, 5000):
        reader.zadd("middle", {f"f{i}": i for i in range(start, min(start + 5000, filler))})
    reader.zadd("middle", members)
    reader.zadd("left", members)
    reader.zadd("right", members)
    keys = {"left": 1, "middle": 0, "right": -1}
    rounds = 300 if SLOW == 1 else 60
    stop = threading.Event()
    written, seen = [], []

    def write(writer, member):
        score = 0
        with writer.pipeline(transaction=False) as pipe:
            while not stop.is_set():
                score += 1
                pipe.zadd("left", {member: score}).zadd("right", {member: score}).execute()
        written.append(score)

    threads = [threading.Thread(target=write, args=pair) for pair in zip(writers, members)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(rounds):
            seen.extend(score for _, score in reader.zinter(keys, withscores=True))
            reader.zinterstore("seen", keys)
            seen.extend(score for _, score in reader.zrange("seen", 0, -1, withscores=True))
    finally:
        stop.set()
        for thread in threads:
            thread.join(30 * SLOW)
    assert len(written) == len(writers) and min(written) > 0
    assert len(seen) == rounds * 2 * len(writers)
    assert min(seen) >= 0, sorted(seen)[:5]


def combine_model(operation, inputs, weights, aggregate):
    """What Redis 7.0 computes (t_zset.c zunionInterDiffGenericCommand()): INPUTS are
    dicts member -> score (None for an absent key); the union and intersection take
    them smallest first (ties in the order given), the first input's weighted score 0
    where NaN; a SUM that is NaN is 0. Returns [(member, score)] in Redis's order."""
    def fold(target, value):
        if aggregate == "SUM":
            total = target + value
            return 0.0 if math.isnan(total) else total
        if aggregate == "MIN":
            return value if value < target else target
        return value if value > target else target

    def weighted(score, weight):
        value = score * weight
        return 0.0 if math.isnan(value) else value

    sets = [(dict(s or {}), weights[i], i) for i, s in enumerate(inputs)]
    result = {}
    if operation == "DIFF":
        first = sets[0][0]
        result = {m: s for m, s in first.items() if not any(m in other for other, _, _ in sets[1:])}
    else:
        sets.sort(key=lambda entry: (len(entry[0]), entry[2]))
        if operation == "UNION":
            for members, weight, _ in sets:
                for member, score in members.items():
                    value = weighted(score, weight)
                    result[member] = fold(result[member], value) if member in result else value
        else:
            for member, score in sets[0][0].items():
                if all(member in other for other, _, _ in sets[1:]):
                    value = weighted(score, sets[0][1])
                    for other, weight, _ in sets[1:]:
                        value = fold(value, other[member] * weight)
                    result[member] = value
    return sorted(result.items(), key=lambda pair: (pair[1], pair[0].encode()))


@pytest.fixture(scope="module")
def reference_redis(tmp_path_factory):
    """A redis-server to compare with, when one is installed (None otherwise: the
    randomized test then checks against combine_model() alone)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                                "--dir", str(directory)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    connection = redis.Redis(port=port)
    deadline = time.time() + 10
    while True:
        try:
            connection.ping()
            break
        except redis.ConnectionError:
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield connection
    connection.close()
    process.terminate()
    process.wait(10)


def test_combine_random_against_model_and_redis(client, reference_redis):
    """Random sets (sorted and plain, infinities, -0, shared members), random commands:
    strata's replies equal combine_model()'s and, where redis-server is installed, Redis
    7.0's byte for byte (errors included), and each STORE form's stored result."""
    rng = random.Random(20261130)
    scores = ["1", "2", "-1", "0", "-0", "0.5", "1.5", "7", "inf", "-inf", "3e20"]
    weights = ["1", "2", "-1", "0", "-0", "0.5", "inf", "-inf"]
    keys = ["k0", "k1", "k2", "s0", "s1", "none"]
    servers = [client] + ([reference_redis] if reference_redis is not None else [])
    rounds = 120 if SLOW == 1 else 30

    def call(connection, *arguments):
        try:
            return connection.execute_command(*arguments)
        except redis.ResponseError as error:
            return Error(str(error))

    def as_python(reply):
        return [(reply[i].decode(), float(reply[i + 1])) for i in range(0, len(reply), 2)]

    for _ in range(rounds):
        contents = {}
        commands = []
        for key in ("k0", "k1", "k2"):
            members = {f"m{rng.randint(0, 7)}": rng.choice(scores) for _ in range(rng.randint(0, 6))}
            contents[key] = {m: float(s) + 0.0 for m, s in members.items()} or None
            if members:
                commands.append(["ZADD", key, *[x for m, s in members.items() for x in (s, m)]])
        for key in ("s0", "s1"):
            members = {f"m{rng.randint(0, 7)}" for _ in range(rng.randint(0, 5))}
            contents[key] = {m: 1.0 for m in members} or None
            if members:
                commands.append(["SADD", key, *members])
        for connection in servers:
            connection.flushall()
            for command in commands:
                connection.execute_command(*command)
        for _ in range(6):
            operation = rng.choice(["UNION", "INTER", "DIFF"])
            store = rng.random() < 0.4
            count = rng.randint(1, 3)
            chosen = [rng.choice(keys) for _ in range(count)]
            chosen_weights = [1.0] * count
            aggregate = "SUM"
            options = []
            if operation != "DIFF" and rng.random() < 0.6:
                texts = [rng.choice(weights) for _ in range(count)]
                chosen_weights = [float(w) for w in texts]
                options += ["WEIGHTS", *texts]
            if operation != "DIFF" and rng.random() < 0.5:
                aggregate = rng.choice(["SUM", "MIN", "MAX"])
                options += ["AGGREGATE", aggregate.lower()]
            name = "Z" + operation + ("STORE" if store else "")
            line = [name, *(["dst"] if store else []), count, *chosen, *options]
            if not store:
                line.append("WITHSCORES")
            replies = [call(connection, *line) for connection in servers]
            if store:
                replies = [(reply, call(connection, "ZRANGE", "dst", 0, -1, "WITHSCORES"),
                            call(connection, "EXISTS", "dst"))
                           for reply, connection in zip(replies, servers)]
            assert all(reply == replies[0] for reply in replies), (line, replies)
            expected = combine_model(operation, [contents.get(k) for k in chosen],
                                     chosen_weights, aggregate)
            if store:
                stored = [(m, s + 0.0) for m, s in expected]  # -0 is stored as 0
                assert replies[0][0] == len(expected), (line, replies[0])
                assert as_python(replies[0][1]) == stored, (line, replies[0], stored)
                assert replies[0][2] == (1 if expected else 0)
            else:
                got = as_python(replies[0])
                assert got == expected, (line, got, expected)
                # -0 is answered as Redis answers it.
                assert [math.copysign(1, s) for _, s in got] == \
                    [math.copysign(1, s) for _, s in expected], (line, got, expected)
            cardinality = [call(c, "ZINTERCARD", count, *chosen) for c in servers]
            assert cardinality == [len(combine_model("INTER", [contents.get(k) for k in chosen],
                                                     [1.0] * count, "SUM"))] * len(servers)
