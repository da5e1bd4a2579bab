"""SORT and SORT_RO: numeric, ALPHA, DESC and LIMIT on lists, sets and sorted sets; BY
with string keys and hash fields, BY nosort, GET # and patterns, STORE (a list that
replaces the destination, an empty result deletes it, blocked clients woken), SORT_RO
refusing STORE, the errors, COMMAND INFO and GETKEYS, and keys on flash. The expected
replies are Redis 7.0.15's, recorded from a reference server."""
import threading

import pytest
import redis

from conftest import SLOW
from resp import Connection, Null

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
SCORE_ERROR = "One or more scores can't be converted into double"


def b(*values):
    return [None if value is None else value.encode() for value in values]


def test_numeric_alpha_desc_and_limit_on_a_list(client):
    client.rpush("l", 3, 1, 2, 10)
    assert client.execute_command("SORT", "l") == b("1", "2", "3", "10")
    assert client.execute_command("SORT", "l", "DESC") == b("10", "3", "2", "1")
    assert client.execute_command("SORT", "l", "ALPHA") == b("1", "10", "2", "3")
    assert client.execute_command("SORT", "l", "ALPHA", "DESC") == b("3", "2", "10", "1")
    assert client.execute_command("SORT", "l", "DESC", "LIMIT", 1, 2) == b("3", "2")
    # LIMIT's clamping, as Redis's: a negative offset is 0, a negative count is all, an
    # offset past the end is nothing.
    assert client.execute_command("SORT", "l", "LIMIT", -5, 2) == b("1", "2")
    assert client.execute_command("SORT", "l", "LIMIT", 2, -1) == b("3", "10")
    assert client.execute_command("SORT", "l", "LIMIT", 3, 100) == b("10")
    assert client.execute_command("SORT", "l", "LIMIT", 10, 2) == []
    assert client.execute_command("SORT", "l", "LIMIT", 0, 0) == []
    assert client.execute_command("SORT", "l", "LIMIT", -1, -1) == b("1", "2", "3", "10")
    # The last of ASC and DESC counts; options in any order.
    assert client.execute_command("SORT", "l", "ASC", "DESC", "ASC") == b("1", "2", "3", "10")
    assert client.execute_command("SORT_RO", "l", "DESC") == b("10", "3", "2", "1")
    assert client.lrange("l", 0, -1) == b("3", "1", "2", "10")  # unchanged
    # An absent key sorts as an empty list.
    assert client.execute_command("SORT", "nokey") == []
    assert client.execute_command("SORT", "nokey", "GET", "#", "GET", "x_*") == []


def test_numbers_as_strtod_reads_them(client):
    client.rpush("f", "1.5", "-2", "+3", "inf", "-inf", "0x10", " 4", "1e2")
    assert client.execute_command("SORT", "f") == b("-inf", "-2", "1.5", "+3", " 4", "0x10",
                                                    "1e2", "inf")
    assert client.execute_command("SORT", "f", "DESC")[:2] == b("inf", "1e2")
    # Equal numbers are ordered by their bytes.
    client.rpush("eq", "01", "1", "1.0", "001")
    assert client.execute_command("SORT", "eq") == b("001", "01", "1", "1.0")
    assert client.execute_command("SORT", "eq", "DESC") == b("1.0", "1", "01", "001")
    client.rpush("empty", "")
    assert client.execute_command("SORT", "empty") == [b""]  # strtod("") is 0
    for bad in ("a", "4 ", "nan", "1e400"):
        client.delete("bad")
        client.rpush("bad", "1", bad)
        with pytest.raises(redis.ResponseError) as error:
            client.execute_command("SORT", "bad")
        assert str(error.value) == SCORE_ERROR, bad
        assert client.execute_command("SORT", "bad", "ALPHA") == sorted([b"1", bad.encode()])


def test_sets_and_sorted_sets(client):
    client.sadd("st", 5, 3, 9)
    assert client.execute_command("SORT", "st") == b("3", "5", "9")
    assert client.execute_command("SORT", "st", "DESC") == b("9", "5", "3")
    # An intset's order, as Redis 7.0 keeps small integer sets, with DESC ignored.
    assert client.execute_command("SORT", "st", "BY", "nosort") == b("3", "5", "9")
    assert client.execute_command("SORT", "st", "BY", "nosort", "DESC") == b("3", "5", "9")
    assert client.execute_command("SORT", "st", "BY", "nosort", "LIMIT", 1, 1) == b("5")
    client.sadd("ints", 10, -3, 7, 100, 2)
    assert client.execute_command("SORT", "ints", "BY", "nosort", "DESC", "LIMIT", 1, 2) == \
        b("2", "7")
    client.sadd("sa", "b", "a", "c")
    assert client.execute_command("SORT", "sa", "ALPHA") == b("a", "b", "c")
    assert client.execute_command("SORT", "sa", "ALPHA", "LIMIT", 1, 1) == b("b")
    with pytest.raises(redis.ResponseError, match=SCORE_ERROR):
        client.execute_command("SORT", "sa")
    # A sorted set sorts its members, not its scores; BY nosort keeps its order.
    client.zadd("z", {"a": 3, "b": 1, "c": 2})
    assert client.execute_command("SORT", "z", "ALPHA") == b("a", "b", "c")
    assert client.execute_command("SORT", "z", "ALPHA", "DESC") == b("c", "b", "a")
    assert client.execute_command("SORT", "z", "BY", "nosort") == b("b", "c", "a")
    assert client.execute_command("SORT", "z", "BY", "nosort", "DESC") == b("a", "c", "b")
    assert client.execute_command("SORT", "z", "BY", "nosort", "DESC", "LIMIT", 1, 5) == \
        b("c", "b")
    assert client.execute_command("SORT", "z", "BY", "nosort", "LIMIT", 1, 1) == b("c")
    client.zadd("zz", {"10": 1, "9": 2, "8": 3})
    assert client.execute_command("SORT", "zz") == b("8", "9", "10")
    assert client.execute_command("SORT", "zz", "BY", "nosort") == b("10", "9", "8")


def test_by_nosort_keeps_a_lists_order(client):
    client.rpush("l", 3, 1, 2, 10)
    assert client.execute_command("SORT", "l", "BY", "nosort") == b("3", "1", "2", "10")
    assert client.execute_command("SORT", "l", "BY", "nosort", "DESC") == b("10", "2", "1", "3")
    assert client.execute_command("SORT", "l", "BY", "nosort", "LIMIT", 1, 2) == b("1", "2")
    assert client.execute_command("SORT", "l", "BY", "nosort", "DESC", "LIMIT", 1, 2) == \
        b("2", "1")
    # A BY without '*' wins over a later one with it, as in Redis.
    client.mset({"n_3": 30, "n_1": 10, "n_2": -5, "n_10": "1e3"})
    assert client.execute_command("SORT", "l", "BY", "nosort", "BY", "n_*") == \
        b("3", "1", "2", "10")
    assert client.execute_command("SORT", "l", "BY", "n_*", "BY", "nosort") == \
        b("3", "1", "2", "10")


def test_by_string_keys_and_hash_fields(client):
    client.rpush("l", 3, 1, 2, 10)
    client.mset({"n_3": 30, "n_1": 10, "n_2": -5, "n_10": "1e3"})
    assert client.execute_command("SORT", "l", "BY", "n_*") == b("2", "1", "3", "10")
    assert client.execute_command("SORT", "l", "BY", "n_*", "DESC") == b("10", "3", "1", "2")
    assert client.execute_command("SORT", "l", "BY", "n_*", "LIMIT", 1, 2) == b("1", "3")
    # A missing key sorts as 0 (ties by the element's bytes); with ALPHA, first.
    client.mset({"w_3": "c", "w_1": "a", "w_2": "b"})
    assert client.execute_command("SORT", "l", "BY", "w_*", "ALPHA", "GET", "#", "GET", "w_*") \
        == b("10", None, "1", "a", "2", "b", "3", "c")
    assert client.execute_command("SORT", "l", "BY", "w_*", "ALPHA", "DESC", "GET", "#") == \
        b("3", "2", "1", "10")
    client.hset("h_1", "f", 9)
    client.hset("h_2", "f", "x")
    with pytest.raises(redis.ResponseError, match=SCORE_ERROR):
        client.execute_command("SORT", "l", "BY", "h_*->f")
    client.hset("h_2", "f", -1)
    assert client.execute_command("SORT", "l", "BY", "h_*->f", "GET", "h_*->f", "GET", "#") == \
        b("-1", "2", None, "10", None, "3", "9", "1")
    # Two missing values tie: Redis's glibc qsort() keeps their order, as strata does.
    assert client.execute_command("SORT", "l", "BY", "h_*->f", "ALPHA", "GET", "#") == \
        b("3", "10", "2", "1")
    # A key of another type names nothing: a list, a hash without ->, a string with ->.
    client.delete("w_1", "w_2", "w_3")
    client.rpush("w_1", "x")
    client.hset("w_2", "a", "b")
    client.set("w_3", 7)
    assert client.execute_command("SORT", "l", "BY", "w_*") == b("1", "10", "2", "3")
    assert client.execute_command("SORT", "l", "BY", "w_*", "GET", "w_*") == \
        b(None, None, None, "7")
    assert client.execute_command("SORT", "l", "BY", "w_*->a", "ALPHA", "GET", "w_*->a",
                                  "GET", "#") == b(None, "3", None, "1", None, "10", "b", "2")


def test_get_patterns(server, client):
    client.rpush("l", 3, 1, 2)
    client.mset({"v_1": "one", "v_3": "three"})
    client.hset("h_2", mapping={"f": "F2", "g": "G2"})
    assert client.execute_command("SORT", "l", "GET", "#") == b("1", "2", "3")
    assert client.execute_command("SORT", "l", "GET", "v_*", "GET", "#", "GET", "h_*->f") == \
        b("one", "1", None, None, "2", "F2", "three", "3", None)
    # A pattern without '*' names nothing; "->" with no field is part of the key name.
    assert client.execute_command("SORT", "l", "GET", "nostar") == b(None, None, None)
    client.set("x_1->", "arrow")
    assert client.execute_command("SORT", "l", "GET", "x_*->") == b("arrow", None, None)
    assert client.execute_command("SORT", "l", "GET", "h_*->g", "GET", "h_*->nope") == \
        b(None, None, "G2", None, None, None)
    # RESP3: an array, missing values null.
    with Connection(server.port) as raw:
        raw.call("HELLO", "3")
        assert raw.call("SORT", "l", "GET", "v_*") == [b"one", Null("_"), b"three"]
    with Connection(server.port) as raw:
        assert raw.call("SORT", "l", "GET", "v_*") == [b"one", Null("$-1"), b"three"]


def test_store(client):
    client.rpush("l", 3, 1, 2, 10)
    client.mset({"n_3": 30, "n_1": 10, "n_2": -5})
    assert client.execute_command("SORT", "l", "STORE", "out") == 4
    assert client.type("out") == b"list"
    assert client.lrange("out", 0, -1) == b("1", "2", "3", "10")
    # GET values are stored, a missing one as "".
    assert client.execute_command("SORT", "l", "BY", "n_*", "GET", "n_*", "GET", "#",
                                  "STORE", "out") == 8
    assert client.lrange("out", 0, -1) == b("-5", "2", "", "10", "10", "1", "30", "3")
    # The destination of another type, with an expiry, is replaced (without the expiry).
    client.set("out", "string", ex=100)
    assert client.execute_command("SORT", "l", "DESC", "LIMIT", 0, 2, "STORE", "out") == 2
    assert client.lrange("out", 0, -1) == b("10", "3") and client.ttl("out") == -1
    # An empty result deletes the destination.
    assert client.execute_command("SORT", "l", "LIMIT", 0, 0, "STORE", "out") == 0
    assert client.exists("out") == 0
    client.rpush("out", "x")
    assert client.execute_command("SORT", "nokey", "STORE", "out") == 0
    assert client.exists("out") == 0
    # Sorting a key into itself.
    assert client.execute_command("SORT", "l", "DESC", "STORE", "l") == 4
    assert client.lrange("l", 0, -1) == b("10", "3", "2", "1")
    # A set with BY nosort is sorted ALPHA for STORE (DESC too), as in Redis.
    client.sadd("ints", 10, -3, 7, 100, 2)
    assert client.execute_command("SORT", "ints", "BY", "nosort", "STORE", "io") == 5
    assert client.lrange("io", 0, -1) == b("-3", "10", "100", "2", "7")
    client.sadd("letters", *"pbkazq")
    assert client.execute_command("SORT", "letters", "BY", "nosort", "DESC", "STORE", "lo") == 6
    assert client.lrange("lo", 0, -1) == b("z", "q", "p", "k", "b", "a")
    # A failed sort stores nothing.
    client.rpush("bad", "a")
    with pytest.raises(redis.ResponseError, match=SCORE_ERROR):
        client.execute_command("SORT", "bad", "STORE", "io")
    assert client.lrange("io", 0, -1) == b("-3", "10", "100", "2", "7")
    # Inside MULTI, the stored list is seen by the next command.
    with client.pipeline() as pipe:
        pipe.execute_command("SORT", "ints", "STORE", "m")
        pipe.lrange("m", 0, -1)
        assert pipe.execute() == [5, b("-3", "2", "7", "10", "100")]


def test_store_wakes_a_blocked_client(server, client):
    client.rpush("l", 3, 1, 2)
    popped = []
    waiter = server.client()

    def wait():
        popped.append(waiter.blpop("dest", timeout=10 * SLOW))

    thread = threading.Thread(target=wait)
    thread.start()
    for _ in range(200):
        if client.info("clients")["blocked_clients"] == 1:
            break
        threading.Event().wait(0.02)
    assert client.execute_command("SORT", "l", "DESC", "STORE", "dest") == 3
    thread.join(timeout=20 * SLOW)
    assert popped == [(b"dest", b"3")]
    assert client.lrange("dest", 0, -1) == b("2", "1")
    waiter.close()


def test_errors(client):
    client.rpush("l", 1, 2)
    client.set("s", "x")
    client.hset("h", "a", "b")
    for key in ("s", "h"):
        with pytest.raises(redis.ResponseError, match="^" + WRONGTYPE):
            client.execute_command("SORT", key)
        with pytest.raises(redis.ResponseError, match="^" + WRONGTYPE):
            client.execute_command("SORT_RO", key)
    syntax = [("foo",), ("LIMIT", 1), ("LIMIT",), ("GET",), ("BY",), ("STORE",),
              ("LIMIT", 1, 2, 3)]
    for arguments in syntax:
        with pytest.raises(redis.ResponseError) as error:
            client.execute_command("SORT", "l", *arguments)
        assert str(error.value) == "syntax error", arguments
    # Syntax errors come before the key's type is looked at.
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        client.execute_command("SORT", "s", "foo")
    for arguments in (("LIMIT", "a", 1), ("LIMIT", 1, "a"), ("LIMIT", 1, "9999999999999999999")):
        with pytest.raises(redis.ResponseError) as error:
            client.execute_command("SORT", "l", *arguments)
        assert str(error.value) == "value is not an integer or out of range", arguments
    # SORT_RO has no STORE.
    with pytest.raises(redis.ResponseError, match="^syntax error$"):
        client.execute_command("SORT_RO", "l", "STORE", "x")
    assert client.exists("x") == 0
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'sort'"):
        client.execute_command("SORT")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'sort_ro'"):
        client.execute_command("SORT_RO")


def test_command_info_getkeys_and_acl(server, client):
    with Connection(server.port) as raw:
        info = raw.call("COMMAND", "INFO", "sort", "sort_ro")
        assert info[0][:7] == [b"sort", -2, ["write", "denyoom",
                                               "movablekeys"], 1, 1, 1,
                               ["@write", "@set", "@sortedset",
                                "@list", "@slow", "@dangerous"]]
        assert info[1][:7] == [b"sort_ro", -2, ["readonly", "movablekeys"],
                               1, 1, 1,
                               ["@read", "@set", "@sortedset",
                                "@list", "@slow", "@dangerous"]]
        assert raw.call("COMMAND", "GETKEYS", "SORT", "a", "BY", "b", "GET", "c", "STORE",
                        "d") == [b"a", b"d"]
        assert raw.call("COMMAND", "GETKEYS", "SORT", "a", "STORE", "b", "STORE", "c", "LIMIT",
                        1, 2, "GET", "STORE", "BY", "STORE") == [b"a", b"c"]
        assert raw.call("COMMAND", "GETKEYS", "SORT_RO", "a", "GET", "b") == [b"a"]
        assert b"dangerous" in raw.call("ACL", "CAT")
        assert set(raw.call("ACL", "CAT", "dangerous")) >= {b"sort", b"sort_ro"}
        assert b"sort" in raw.call("ACL", "CAT", "list")
        assert b"sort_ro" in raw.call("ACL", "CAT", "read")
        assert b"sort_ro" not in raw.call("ACL", "CAT", "write")


def test_scripts(client):
    client.rpush("l", 3, 1, 2)
    assert client.eval("return redis.call('SORT', KEYS[1], 'DESC')", 1, "l") == b("3", "2", "1")
    assert client.eval("return redis.call('SORT', KEYS[1], 'STORE', KEYS[2])", 2, "l", "o") == 3
    assert client.lrange("o", 0, -1) == b("1", "2", "3")
    with pytest.raises(redis.ResponseError, match="Write commands are not allowed"):
        client.eval_ro("return redis.call('SORT', KEYS[1])", 1, "l")
    assert client.eval_ro("return redis.call('SORT_RO', KEYS[1])", 1, "l") == b("1", "2", "3")


def test_keys_on_flash(start_server):
    """32 MiB of DRAM and about 48 MiB of values: the sorted list and the keys its BY and
    GET patterns name move to flash, and SORT reads them back."""
    server = start_server("--memory", "32mb", "--ssd-size", "256mb", "--segment-size", "8mb",
                          "--pace-timeout", "60000")
    client = server.client()
    count = 600
    pad = "p" * 80_000
    client.rpush("l", *range(count))
    for start in range(0, count, 50):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, start + 50):
                # Sorted by -i; the strings are long, their numbers after spaces.
                pipe.hset(f"h_{i}", mapping={"n": -i, "pad": pad})
                pipe.set(f"s_{i}", " " * 1000 + str(i))
            pipe.execute()
    assert server.info("flash")["flash_items"] > 0
    expected = [str(i).encode() for i in reversed(range(count))]
    assert client.execute_command("SORT", "l", "BY", "h_*->n") == expected
    assert client.execute_command("SORT", "l", "BY", "s_*", "DESC", "LIMIT", 0, 3) == expected[:3]
    got = client.execute_command("SORT", "l", "BY", "h_*->n", "LIMIT", 0, 5, "GET", "s_*",
                                 "GET", "h_*->pad")
    assert got[0] == b" " * 1000 + b"599" and got[1] == pad.encode()
    assert len(got) == 10
    assert client.execute_command("SORT", "l", "BY", "h_*->n", "GET", "h_*->n",
                                  "STORE", "out") == count
    assert client.lrange("out", 0, 2) == [b"-599", b"-598", b"-597"]
    client.close()
