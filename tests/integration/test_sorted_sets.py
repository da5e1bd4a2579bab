"""Sorted sets through redis-py and byte for byte: every command with Redis 7.0's replies
and errors (scores formatted as Redis 7.0 formats doubles, RESP3 doubles and pairs),
WRONGTYPE both ways, the generic key commands on a sorted set, concurrent ZINCRBY,
redis-benchmark's ZADD and ZPOPMIN, and sorted sets moved to flash whole and back after a
restart."""
import re
import subprocess
import threading

import pytest
import redis

from conftest import SLOW, Server
from resp import Connection, Error, Null

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
