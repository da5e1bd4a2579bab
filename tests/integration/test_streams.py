"""Streams through redis-py and byte for byte: XADD (ids, trimming, NOMKSTREAM), XRANGE,
XREVRANGE, XLEN, XREAD, XDEL, XTRIM, XINFO, consumer groups (XGROUP, XREADGROUP, XACK,
XPENDING, XCLAIM, XAUTOCLAIM) with two consumers, strata's deduplicated appends (XADD
IDMP) under 16 threads that retry, WRONGTYPE both ways, streams moving to flash and
surviving a restart, redis-benchmark's XADD, and long streams appended to in place
(pipelined XADD with and without trimming and IDMP, checked entry by entry against a
model; wake-ups, WATCH, memory pressure and a restart)."""
import re
import subprocess
import threading
import time

import pytest
import redis

from conftest import SLOW, Server
from resp import Connection, Error, Map, Null

INVALID_ID = "Invalid stream ID specified as stream command argument"


def test_add_range_and_length(client):
    assert client.xadd("s", {"a": "1"}, id="1-1") == b"1-1"
    assert client.xadd("s", {"b": "2"}, id="1-*") == b"1-2"
    assert client.xadd("s", {"c": "3", "d": "4"}, id="5") == b"5-0"
    generated = client.xadd("s", {"e": "5"})
    milliseconds, sequence = map(int, generated.split(b"-"))
    assert milliseconds > 5 and sequence == 0
    assert client.xlen("s") == 4 and client.xlen("nokey") == 0
    assert client.xrange("s", "-", "+", count=2) == [(b"1-1", {b"a": b"1"}),
                                                      (b"1-2", {b"b": b"2"})]
    assert [e[0] for e in client.xrevrange("s", "+", "-")] == [generated, b"5-0", b"1-2", b"1-1"]
    assert [e[0] for e in client.xrange("s", "(1-1", "(5-0")] == [b"1-2"]
    assert [e[0] for e in client.xrange("s", "1", "1")] == [b"1-1", b"1-2"]  # ms alone: all seqs
    assert client.xrange("s", "5-0", "5-0") == [(b"5-0", {b"c": b"3", b"d": b"4"})]
    assert client.xrange("nokey", "-", "+") == []
    # Binary fields and values round trip.
    client.xadd("bin", {b"\x00\xff": b"\r\n\x00", b"": b""}, id="1-1")
    assert client.xrange("bin") == [(b"1-1", {b"\x00\xff": b"\r\n\x00", b"": b""})]
    for call, message in (
            (lambda: client.xadd("s", {"x": 1}, id="1-1"),
             "equal or smaller than the target stream top item"),
            (lambda: client.xadd("new", {"x": 1}, id="0-0"), "must be greater than 0-0"),
            (lambda: client.xadd("s", {"x": 1}, id="abc"), INVALID_ID),
            (lambda: client.xrange("s", "x", "+"), INVALID_ID),
            (lambda: client.xrange("s", "(+", "+"), INVALID_ID),
            (lambda: client.xrange("s", "-", "(0-0"), "invalid end ID for the interval")):
        with pytest.raises(redis.ResponseError, match=message):
            call()
    assert client.exists("new") == 0
    assert client.xadd("none", {"x": 1}, nomkstream=True) is None and client.exists("none") == 0


def test_raw_replies_and_errors(server):
    with Connection(server.port) as raw:
        raw.call("DEL", "s")
        assert raw.call("XADD", "s", "1-1", "f") == Error(
            "ERR wrong number of arguments for 'xadd' command")
        assert raw.call("XADD", "s", "LIMIT", "5", "1-1", "f", "v") == Error(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy")
        assert raw.call("XADD", "s", "MAXLEN", "2", "LIMIT", "5", "1-1", "f", "v") == Error(
            "ERR syntax error, LIMIT cannot be used without the special ~ option")
        assert raw.call("XADD", "s", "MAXLEN", "-1", "1-1", "f", "v") == Error(
            "ERR The MAXLEN argument must be >= 0.")
        assert raw.call("XTRIM", "s", "FOO", "1") == Error("ERR syntax error")
        assert raw.call("XADD", "s", "1-1", "f", "v") == b"1-1"
        assert raw.call("XRANGE", "s", "-", "+", "COUNT", "0") == Null("*-1")
        assert raw.call("XREAD", "STREAMS", "s", "1-1") == Null("*-1")
        assert raw.call("XREAD", "STREAMS", "s", "t", "0") == Error(
            "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be "
            "specified.")
        assert raw.call("XREAD", "STREAMS", "s", ">") == Error(
            "ERR The > ID can be specified only when calling XREADGROUP using the GROUP "
            "<group> <consumer> option.")
        assert raw.call("XINFO", "STREAM", "nokey") == Error("ERR no such key")
        assert raw.call("XGROUP", "CREATE", "nokey", "g", "0") == Error(
            "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may "
            "want to use the MKSTREAM option to create an empty stream automatically.")
        assert raw.call("XGROUP", "FOO") == Error("ERR unknown subcommand 'FOO'. Try XGROUP HELP.")
        assert raw.call("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">") == Error(
            "NOGROUP No such key 's' or consumer group 'g' in XREADGROUP with GROUP option")
        assert raw.call("XPENDING", "s", "g") == Error("NOGROUP No such key 's' or consumer group 'g'")
        assert raw.call("XGROUP", "CREATE", "s", "g", "$") == "OK"
        assert raw.call("XGROUP", "CREATE", "s", "g", "$") == Error(
            "BUSYGROUP Consumer Group name already exists")
        assert raw.call("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">") == Null("*-1")
        assert raw.call("XPENDING", "s", "g") == [0, Null("$-1"), Null("$-1"), Null("*-1")]
        assert raw.call("XADD", "s", "2-1", "f", "v") == b"2-1"
        # RESP3: XREAD and XREADGROUP answer a map of key to entries.
        assert raw.call("HELLO", "3")[b"proto"] == 3
        assert raw.call("XREAD", "STREAMS", "s", "0") == Map(
            {b"s": [[b"1-1", [b"f", b"v"]], [b"2-1", [b"f", b"v"]]]})
        assert raw.call("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">") == Map(
            {b"s": [[b"2-1", [b"f", b"v"]]]})
        assert raw.call("XINFO", "STREAM", "s")[b"entries-added"] == 2
        assert raw.call("XRANGE", "s", "-", "+", "COUNT", "0") == Null("_")
        assert raw.call("XREAD", "STREAMS", "s", "2-1") == Null("_")
        assert raw.call("XPENDING", "s", "nogroup", "-", "+", "1") == Error(
            "NOGROUP No such key 's' or consumer group 'nogroup'")


def test_read_several_streams(client):
    client.xadd("a", {"n": "1"}, id="1-0")
    client.xadd("a", {"n": "2"}, id="2-0")
    client.xadd("b", {"n": "3"}, id="3-0")
    assert client.xread({"a": "0", "b": "0"}, count=1) == [
        [b"a", [(b"1-0", {b"n": b"1"})]], [b"b", [(b"3-0", {b"n": b"3"})]]]
    assert client.xread({"a": "1-0", "b": "3-0", "nokey": "0"}) == [[b"a", [(b"2-0", {b"n": b"2"})]]]
    assert client.xread({"a": "$", "b": "$"}) == []
    assert client.xread({"a": "2-0"}, block=10) == []  # BLOCK's time passed: nil


def test_blocking_reads_wake_on_append(server):
    """XREAD BLOCK with $ and XREADGROUP BLOCK with > wait for the next append; two
    consumers of one group blocked on a stream get one entry each."""
    client = server.client()
    client.delete("live")
    client.xadd("live", {"n": "0"}, id="1-0")
    client.xgroup_create("live", "g", id="$")
    results = {}

    def wait(name, call):
        connection = server.client()
        results[name] = call(connection)
        connection.close()

    waiters = [
        threading.Thread(target=wait, args=("read", lambda c: c.xread({"live": "$"}, block=0))),
        threading.Thread(target=wait, args=("alice", lambda c: c.xreadgroup(
            "g", "alice", {"live": ">"}, count=1, block=20_000 * SLOW))),
        threading.Thread(target=wait, args=("bob", lambda c: c.xreadgroup(
            "g", "bob", {"live": ">"}, count=1, block=20_000 * SLOW))),
    ]
    for thread in waiters:
        thread.start()
    deadline = time.time() + 10 * SLOW
    while server.info("clients")["blocked_clients"] < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert server.info("clients")["blocked_clients"] == 3
    client.xadd("live", {"n": "1"}, id="2-0")
    deadline = time.time() + 10 * SLOW
    while len(results) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert results["read"] == [[b"live", [(b"2-0", {b"n": b"1"})]]]
    client.xadd("live", {"n": "2"}, id="3-0")
    for thread in waiters:
        thread.join(timeout=10 * SLOW)
    got = sorted(results["alice"][0][1] + results["bob"][0][1])
    assert got == [(b"2-0", {b"n": b"1"}), (b"3-0", {b"n": b"2"})]
    assert client.xpending("live", "g")["pending"] == 2
    started = time.time()
    assert client.xreadgroup("g", "carol", {"live": ">"}, block=100) == []
    assert client.xread({"live": "$"}, block=100) == []
    assert time.time() - started >= 0.18  # two waits of 100 ms (clocks differ by a little)
    with pytest.raises(redis.ResponseError, match="timeout is negative"):
        client.execute_command("XREAD", "BLOCK", "-1", "STREAMS", "live", "$")


def test_trim_delete_and_info(client):
    for i in range(1, 351):
        client.xadd("big", {"f": "v"}, id=f"{i}-1")
    # Approximate trimming removes whole nodes of 100 entries, as Redis's defaults do.
    assert client.xtrim("big", maxlen=120, approximate=True) == 200
    assert client.xlen("big") == 150
    assert client.xtrim("big", minid="300", approximate=False) == 99
    assert client.xrange("big", count=1)[0][0] == b"300-1"
    assert client.xtrim("big", maxlen=10, approximate=False) == 41 and client.xlen("big") == 10
    assert client.xtrim("nokey", maxlen=0) == 0
    assert client.xdel("big", "341-1", "342-1", "999-1") == 2
    info = client.xinfo_stream("big")
    assert info["length"] == 8 and info["entries-added"] == 350
    assert info["last-generated-id"] == b"350-1" and info["max-deleted-entry-id"] == b"342-1"
    assert info["first-entry"] == (b"343-1", {b"f": b"v"})
    assert info["last-entry"] == (b"350-1", {b"f": b"v"})
    assert info["groups"] == 0
    # XADD trims after appending; a stream with no entries stays, as in Redis.
    assert client.xadd("big", {"f": "w"}, id="400-1", maxlen=2, approximate=False) == b"400-1"
    assert [e[0] for e in client.xrange("big")] == [b"350-1", b"400-1"]
    assert client.xtrim("big", maxlen=0, approximate=False) == 2
    assert client.exists("big") == 1 and client.type("big") == b"stream"
    assert client.xinfo_stream("big")["last-generated-id"] == b"400-1"
    with pytest.raises(redis.ResponseError, match="equal or smaller"):
        client.xadd("big", {"f": "v"}, id="400-1")
    # XSETID moves the last id on; a smaller one than the last entry's is refused.
    client.xadd("big", {"f": "v"}, id="401-1")
    assert client.execute_command("XSETID", "big", "500-0", "ENTRIESADDED", "600") == b"OK"
    assert client.xadd("big", {"f": "v"}, id="500-*") == b"500-1"
    assert client.xinfo_stream("big")["entries-added"] == 601
    with pytest.raises(redis.ResponseError, match="smaller than the target stream top item"):
        client.execute_command("XSETID", "big", "400-0")
    with pytest.raises(redis.ResponseError, match="no such key"):
        client.execute_command("XSETID", "nokey", "1-1")


def test_info_stream_full(server):
    with Connection(server.port) as raw:
        raw.call("DEL", "s")
        for i in range(1, 4):
            raw.call("XADD", "s", f"{i}-1", "f", "v")
        raw.call("XGROUP", "CREATE", "s", "g", "0")
        raw.call("XGROUP", "CREATE", "s", "a", "$")
        raw.call("XREADGROUP", "GROUP", "g", "c", "COUNT", "2", "STREAMS", "s", ">")
        now = int(time.time() * 1000)
        reply = raw.call("XINFO", "STREAM", "s", "FULL", "COUNT", "1")
        info = dict(zip(reply[0::2], reply[1::2]))
        assert info[b"length"] == 3 and info[b"entries"] == [[b"1-1", [b"f", b"v"]]]
        groups = [dict(zip(g[0::2], g[1::2])) for g in info[b"groups"]]
        assert [g[b"name"] for g in groups] == [b"a", b"g"]  # by name
        a, g = groups
        assert a[b"entries-read"] == Null("$-1") and a[b"lag"] == 0 and a[b"pending"] == []
        assert g[b"entries-read"] == 2 and g[b"lag"] == 1 and g[b"pel-count"] == 2
        [[entry_id, owner, delivered, count]] = g[b"pending"]  # COUNT 1
        assert (entry_id, owner, count) == (b"1-1", b"c", 1) and abs(delivered - now) < 5000
        [consumer] = [dict(zip(c[0::2], c[1::2])) for c in g[b"consumers"]]
        assert consumer[b"name"] == b"c" and consumer[b"pel-count"] == 2
        assert [p[0] for p in consumer[b"pending"]] == [b"1-1"]
        assert raw.call("XINFO", "STREAM", "s", "FOO") == Error(
            "ERR unknown subcommand or wrong number of arguments for 'STREAM'. Try XINFO HELP.")


def test_consumer_groups_with_two_consumers(client, server):
    for i in range(1, 7):
        client.xadd("jobs", {"job": str(i)}, id=f"{i}-0")
    assert client.xgroup_create("jobs", "workers", id="0") is True
    assert client.xgroup_create("fresh", "g", id="$", mkstream=True) is True
    assert client.xlen("fresh") == 0
    first = client.xreadgroup("workers", "alice", {"jobs": ">"}, count=2)
    assert first == [[b"jobs", [(b"1-0", {b"job": b"1"}), (b"2-0", {b"job": b"2"})]]]
    second = client.xreadgroup("workers", "bob", {"jobs": ">"}, count=3)
    assert [e[0] for e in second[0][1]] == [b"3-0", b"4-0", b"5-0"]
    summary = client.xpending("jobs", "workers")
    assert summary["pending"] == 5 and summary["min"] == b"1-0" and summary["max"] == b"5-0"
    assert summary["consumers"] == [{"name": b"alice", "pending": 2}, {"name": b"bob", "pending": 3}]
    assert client.xack("jobs", "workers", "1-0", "3-0", "9-9") == 2
    assert client.xack("jobs", "nogroup", "2-0") == 0
    # Alice's history: her pending entries from an id on.
    assert client.xreadgroup("workers", "alice", {"jobs": "0"}) == [
        [b"jobs", [(b"2-0", {b"job": b"2"})]]]
    rows = client.xpending_range("jobs", "workers", "-", "+", 10)
    assert [(r["message_id"], r["consumer"], r["times_delivered"]) for r in rows] == [
        (b"2-0", b"alice", 2), (b"4-0", b"bob", 1), (b"5-0", b"bob", 1)]  # history counts
    assert client.xpending_range("jobs", "workers", "-", "+", 10, consumername="alice")[0][
        "message_id"] == b"2-0"
    # Bob goes away: alice claims his oldest entry, then the rest with XAUTOCLAIM.
    time.sleep(0.05)
    claimed = client.xclaim("jobs", "workers", "alice", 20, ["4-0"])
    assert claimed == [(b"4-0", {b"job": b"4"})]
    assert client.xclaim("jobs", "workers", "alice", 10_000, ["5-0"]) == []  # not idle enough
    cursor, entries, deleted = client.execute_command(
        "XAUTOCLAIM", "jobs", "workers", "alice", "0", "0", "COUNT", "10")
    assert cursor == b"0-0" and [e[0] for e in entries] == [b"2-0", b"4-0", b"5-0"] and deleted == []
    rows = client.xpending_range("jobs", "workers", "-", "+", 10)
    assert {r["consumer"] for r in rows} == {b"alice"}
    assert [r["times_delivered"] for r in rows] == [3, 3, 2]
    assert client.xclaim("jobs", "workers", "bob", 0, ["5-0"], justid=True) == [b"5-0"]
    # A deleted entry leaves the pending list when claimed.
    client.xdel("jobs", "4-0")
    with Connection(server.port) as raw:
        # A consumer's history shows a deleted entry as its id and a null array.
        assert raw.call("XREADGROUP", "GROUP", "workers", "alice", "STREAMS", "jobs", "0") == [
            [b"jobs", [[b"2-0", [b"job", b"2"]], [b"4-0", Null("*-1")]]]]
        assert raw.call("XAUTOCLAIM", "jobs", "workers", "bob", "0", "0", "JUSTID") == [
            b"0-0", [b"2-0", b"5-0"], [b"4-0"]]
    groups = client.xinfo_groups("jobs")
    assert [(g["name"], g["consumers"], g["pending"], g["last-delivered-id"]) for g in groups] == [
        (b"workers", 2, 2, b"5-0")]
    consumers = client.xinfo_consumers("jobs", "workers")
    assert [(c["name"], c["pending"]) for c in consumers] == [(b"alice", 0), (b"bob", 2)]
    assert client.xgroup_createconsumer("jobs", "workers", "carol") == 1
    assert client.xgroup_createconsumer("jobs", "workers", "carol") == 0
    assert client.xgroup_delconsumer("jobs", "workers", "bob") == 2
    assert client.xpending("jobs", "workers")["pending"] == 0
    # The last entry, then NOACK reads, which leave nothing pending.
    assert client.xreadgroup("workers", "carol", {"jobs": ">"}) == [
        [b"jobs", [(b"6-0", {b"job": b"6"})]]]
    assert client.xreadgroup("workers", "carol", {"jobs": ">"}) == []
    assert client.xgroup_setid("jobs", "workers", "0") is True
    client.xreadgroup("workers", "dave", {"jobs": ">"}, noack=True)
    assert client.xpending("jobs", "workers")["pending"] == 1  # carol's 6-0: NOACK adds none
    assert client.xgroup_destroy("jobs", "workers") == 1
    assert client.xgroup_destroy("jobs", "workers") == 0
    with pytest.raises(redis.ResponseError, match="^NOGROUP"):
        client.xreadgroup("workers", "alice", {"jobs": ">"})


def test_deduplicated_appends(client):
    first = client.execute_command("XADD", "events", "IDMP", "agent-1", "1", "*", "step", "plan")
    again = client.execute_command("XADD", "events", "IDMP", "agent-1", "1", "*", "step", "plan")
    assert again == first and client.xlen("events") == 1
    second = client.execute_command("XADD", "events", "IDMP", "agent-1", "2", "*", "step", "act")
    assert second != first and client.xlen("events") == 2
    # A group and its pending entries stay through the appends that follow.
    client.xgroup_create("events", "g", id="0")
    assert len(client.xreadgroup("g", "c", {"events": ">"})[0][1]) == 2
    with pytest.raises(redis.ResponseError, match="below the producer's last"):
        client.execute_command("XADD", "events", "IDMP", "agent-1", "1", "*", "step", "plan")
    # Another producer's sequences are its own; IDMP goes with the other options.
    assert client.execute_command("XADD", "events", "MAXLEN", "~", "1000", "IDMP", "agent-2", "1",
                                  "*", "step", "plan") != first
    assert client.xlen("events") == 3
    assert client.xpending("events", "g")["pending"] == 2
    assert client.xinfo_stream("events")["entries-added"] == 3
    # An explicit id retried fails with Redis's error, which a producer can take as done.
    client.xadd("explicit", {"a": 1}, id="7-1")
    with pytest.raises(redis.ResponseError, match="equal or smaller"):
        client.xadd("explicit", {"a": 1}, id="7-1")
    for bad, message in ((("IDMP", "p", "x"), "IDMP sequence must be a non-negative integer"),
                         (("IDMP", "", "1"), "IDMP producer must be")):
        with pytest.raises(redis.ResponseError, match=message):
            client.execute_command("XADD", "events", *bad, "*", "f", "v")
    # The stream remembers the 1,000 producers that appended last.
    with client.pipeline(transaction=False) as pipe:
        for p in range(1001):
            pipe.execute_command("XADD", "many", "IDMP", f"p{p}", "5", "*", "f", "v")
        pipe.execute()
    assert client.execute_command("XADD", "many", "IDMP", "p1000", "5", "*", "f", "v")
    assert client.xlen("many") == 1001
    client.execute_command("XADD", "many", "IDMP", "p0", "5", "*", "f", "v")  # forgotten: new
    assert client.xlen("many") == 1002


def test_deduplicated_appends_under_16_retrying_threads(start_server):
    """16 producers append 200 events each, sending some appends twice (a retry after a
    lost reply): the stream holds each event once, in each producer's order."""
    server = start_server("--threads", "2")
    producers, events = 16, 200 if SLOW == 1 else 40
    failures = []

    def produce(number):
        connection = server.client()
        try:
            for sequence in range(1, events + 1):
                arguments = ("XADD", "history", "IDMP", f"agent-{number}", str(sequence), "*",
                             "agent", str(number), "event", str(sequence))
                first = connection.execute_command(*arguments)
                if sequence % 3 == 0 or sequence % 7 == 0:
                    if connection.execute_command(*arguments) != first:
                        failures.append((number, sequence))
        except Exception as error:  # reported below
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120 * SLOW)
    assert failures == []
    client = server.client()
    entries = client.xrange("history")
    assert len(entries) == producers * events
    seen = {}
    for _, fields in entries:
        seen.setdefault(fields[b"agent"], []).append(int(fields[b"event"]))
    assert all(order == list(range(1, events + 1)) for order in seen.values()), seen
    assert len(seen) == producers


def test_a_group_shares_work_among_concurrent_consumers(start_server):
    """4 producers append while 4 consumers of one group read with > and acknowledge:
    every entry is delivered exactly once, and nothing stays pending."""
    server = start_server("--threads", "2")
    producers, per_producer, consumers = 4, 150 if SLOW == 1 else 30, 4
    total = producers * per_producer
    setup = server.client()
    setup.xgroup_create("queue", "workers", id="0", mkstream=True)
    delivered, errors = [], []
    lock = threading.Lock()

    def produce(number):
        connection = server.client()
        for i in range(per_producer):
            connection.xadd("queue", {"job": f"{number}:{i}"})
        connection.close()

    def consume(name):
        connection = server.client()
        try:
            deadline = time.time() + 60 * SLOW
            while time.time() < deadline:
                with lock:
                    if len(delivered) >= total:
                        break
                reply = connection.xreadgroup("workers", name, {"queue": ">"}, count=5, block=50)
                for _, entries in reply:
                    with lock:
                        delivered.extend(fields[b"job"] for _, fields in entries)
                    connection.xack("queue", "workers", *[entry_id for entry_id, _ in entries])
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=consume, args=(f"c{n}",)) for n in range(consumers)]
    threads += [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90 * SLOW)
    assert errors == []
    assert len(delivered) == total and len(set(delivered)) == total
    assert setup.xpending("queue", "workers")["pending"] == 0
    assert setup.xinfo_groups("queue")[0]["lag"] == 0


def test_wrong_type_both_ways(client):
    client.set("s", "text")
    client.hset("h", "f", "v")
    client.xadd("x", {"f": "v"}, id="1-1")
    for call in (lambda: client.xadd("s", {"f": "v"}), lambda: client.xrange("h"),
                 lambda: client.xlen("s"), lambda: client.xread({"s": "0"}),
                 lambda: client.xgroup_create("h", "g", "0"), lambda: client.xdel("s", "1-1"),
                 lambda: client.xtrim("s", maxlen=1), lambda: client.xinfo_stream("s"),
                 lambda: client.get("x"), lambda: client.hget("x", "f"),
                 lambda: client.lpush("x", "a"), lambda: client.append("x", "a")):
        with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
            call()
    assert client.type("x") == b"stream" and client.object("encoding", "x") == b"stream"
    assert sorted(client.scan_iter(_type="stream")) == [b"x"]
    assert client.xrange("x") == [(b"1-1", {b"f": b"v"})]


def test_command_table(client, server):
    with Connection(server.port) as raw:
        xadd, xreadgroup = raw.call("COMMAND", "INFO", "xadd", "xreadgroup")
    assert xadd[1] == -5 and xadd[3:6] == [1, 1, 1] and "@stream" in xadd[6]
    assert "write" in xreadgroup[2] and "blocking" in xreadgroup[2]
    # XREAD's and XREADGROUP's keys follow STREAMS (Redis's movablekeys).
    with Connection(server.port) as raw:
        assert raw.call("COMMAND", "GETKEYS", "XREAD", "COUNT", "2", "BLOCK", "0", "STREAMS", "a",
                        "b", "0", "0") == [b"a", b"b"]
        assert raw.call("COMMAND", "GETKEYS", "XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS",
                        "streams", ">") == [b"streams"]
        assert raw.call("COMMAND", "GETKEYS", "XGROUP", "CREATE", "s", "g", "0") == [b"s"]
    assert b"xadd" in client.execute_command("ACL", "CAT", "stream")
    assert b"stream" in client.execute_command("ACL", "CAT")


def test_streams_survive_flash_and_a_restart(start_server):
    """16 MiB of DRAM and about 20 MiB of streams with groups and strings: streams move to
    flash whole and come back with their groups; after a clean restart (the saved index)
    and after a crash (a scan of the records) they are all back, streams."""
    options = ("--memory", "16mb", "--ssd-size", "64mb", "--segment-size", "4mb",
               "--pace-timeout", "60000")
    server = start_server(*options)
    client = server.client()
    count = 60

    def value(i, j):
        return f"{i}/{j}/".encode() * 2000  # about 10 KB: 20 a stream, 200 KB

    for start in range(0, count, 10):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, start + 10):
                for j in range(20):
                    pipe.xadd(f"x:{i}", {"v": value(i, j)}, id=f"{j + 1}-0")
                pipe.xgroup_create(f"x:{i}", "g", id="0")
                pipe.xreadgroup("g", "c", {f"x:{i}": ">"}, count=3)
                pipe.set(f"s:{i}", f"{i}".encode() * 60000)
            pipe.execute()
    assert server.info("flash")["flash_items"] > 0
    assert client.type("x:0") == b"stream"
    assert client.xrange("x:0", count=1) == [(b"1-0", {b"v": value(0, 0)})]

    def check(instance):
        connection = instance.client()
        for i in range(0, count, 3):
            assert connection.type(f"x:{i}") == b"stream"
            assert connection.xlen(f"x:{i}") == 20
            assert connection.xrange(f"x:{i}", "20", "20") == [(b"20-0", {b"v": value(i, 19)})]
            assert connection.xpending(f"x:{i}", "g")["pending"] == 3, i
        connection.close()

    check(server)
    directory = server.directory
    server.stop()
    again = Server(directory, *options)
    try:
        assert again.info("flash")["flash_recovery_source"] == "index"
        check(again)
        client = again.client()
        assert client.xreadgroup("g", "c", {"x:1": ">"}, count=1)[0][1][0][0] == b"4-0"
        assert client.xadd("x:1", {"after": "restart"}, id="21-0") == b"21-0"
    finally:
        again.kill()  # a crash: the next start scans the records
    again = Server(directory, *options)
    try:
        assert again.info("flash")["flash_recovery_source"] == "scan"
        check(again)
    finally:
        again.stop()


def test_redis_benchmark_xadd(server):
    """redis-benchmark 7.0 has no built-in XADD test (-t xadd runs nothing): its command
    form sends XADD mystream * myfield myvalue."""
    requests = "20000" if SLOW == 1 else "2000"
    server.client().delete("mystream")
    result = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-n", requests, "-q",
         "XADD", "mystream", "*", "myfield", "myvalue"],
        capture_output=True, text=True, timeout=300 * SLOW,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout.replace("\r", "\n")
    assert "error" not in output.lower(), output
    assert re.search(r"^XADD.*: [0-9.]+ requests per second", output, re.M), output
    client = server.client()
    assert client.xlen("mystream") == int(requests)
    ids = [entry[0] for entry in client.xrange("mystream")]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split(b"-")))) and len(set(ids)) == len(ids)


# ---- long streams: XADD appends in place (encoding version 2) --------------------------------

LONG = 50_000 if SLOW == 1 else 8_000  # entries in a long stream (fewer under sanitizers)
BATCH = 1_000  # XADDs per pipeline


def parse_id(text):
    milliseconds, sequence = text.split(b"-")
    return int(milliseconds), int(sequence)


def model_trim(entries, strategy, approximate, threshold, limit=0):
    """The entries left when XADD's or XTRIM's trimming (STRATEGY MAXLEN or MINID) runs
    on ENTRIES ((id tuple, fields) pairs, all live): exact trimming removes entries one by
    one; approximate trimming removes whole nodes of 100 from the head (strata's and
    Redis's stream-node-max-entries), at most LIMIT entries (10,000 without one)."""
    if strategy is None:
        return entries
    if not approximate:
        if strategy == "MAXLEN":
            return entries[max(0, len(entries) - threshold):]
        cut = 0
        while cut < len(entries) and entries[cut][0] < threshold:
            cut += 1
        return entries[cut:]
    limit = limit or 10_000
    at = 0
    while at < len(entries):
        in_node = min(100, len(entries) - at)
        if strategy == "MAXLEN":
            goes = len(entries) - at - in_node >= threshold
        else:
            goes = entries[at + in_node - 1][0] < threshold
        if not goes or at + in_node > limit:
            break
        at += in_node
    return entries[at:]


def fields_of(i):
    """Entry I's fields: sizes vary, so entries are not all the same length."""
    return {b"i": str(i).encode(), b"pad": b"x" * (i % 13), b"bin": bytes([i % 256, 0, 13, 10])}


def assert_stream_is(client, key, entries, added, last_id):
    """KEY holds exactly ENTRIES ((id tuple, fields) pairs), entry by entry, and XLEN,
    XREVRANGE and XINFO STREAM agree."""
    got = client.xrange(key)
    assert len(got) == len(entries)
    for (got_id, got_fields), (want_id, want_fields) in zip(got, entries):
        assert parse_id(got_id) == want_id and got_fields == want_fields, (got_id, want_id)
    assert client.xlen(key) == len(entries)
    def model(reply):
        return [(parse_id(i), fields) for i, fields in reply]

    # Ranges with COUNT (walked from the header, not decoded): the head, the tail, around
    # the middle, exclusive bounds, a range past the end.
    assert model(client.xrevrange(key, count=3)) == entries[::-1][:3]
    assert model(client.xrange(key, count=5)) == entries[:5]
    if entries:
        middle = len(entries) // 2
        at = "%d-%d" % entries[middle][0]
        assert model(client.xrange(key, min=at, count=7)) == entries[middle:middle + 7]
        assert model(client.xrevrange(key, max=at, count=7)) == \
            entries[max(0, middle - 6):middle + 1][::-1]
        assert model(client.xrange(key, min="(" + at, count=2)) == entries[middle + 1:middle + 3]
        low = "%d-%d" % entries[max(0, middle - 3)][0]
        assert model(client.xrevrange(key, max="(" + at, min=low, count=10)) == \
            entries[max(0, middle - 3):middle][::-1]
        assert client.xrange(key, min="%d-%d" % (entries[-1][0][0] + 1, 0), count=3) == []
        assert client.xrevrange(key, max=low, min=at, count=3) == []  # start after end
    info = client.xinfo_stream(key)
    assert info["length"] == len(entries)
    assert info["entries-added"] == added
    assert parse_id(info["last-generated-id"]) == last_id
    if entries:
        assert parse_id(info["first-entry"][0]) == entries[0][0]
        assert info["first-entry"][1] == entries[0][1]
        assert parse_id(info["last-entry"][0]) == entries[-1][0]
        assert parse_id(info["recorded-first-entry-id"]) == entries[0][0]
    else:
        assert info["first-entry"] is None and info["last-entry"] is None


def append_many(client, key, count, start=0, trim=None, explicit=False):
    """Appends COUNT entries (numbered from START) to KEY with pipelined XADD, each with
    TRIM (strategy, approximate, threshold: an int, or for MINID a function of the entry
    number giving the id tuple), ids `*` or explicit (number+1)-5. Returns the replies."""
    replies = []
    for first in range(start, start + count, BATCH):
        with client.pipeline(transaction=False) as pipe:
            for i in range(first, min(first + BATCH, start + count)):
                arguments = ["XADD", key]
                if trim is not None:
                    strategy, approximate, threshold = trim
                    if callable(threshold):
                        threshold = "%d-%d" % threshold(i)
                    arguments += [strategy] + (["~"] if approximate else []) + [threshold]
                arguments.append(f"{i + 1}-5" if explicit else "*")
                for field, value in fields_of(i).items():
                    arguments += [field, value]
                pipe.execute_command(*arguments)
            replies += pipe.execute()
    return replies


def test_long_stream_appends_in_place(client):
    """LONG pipelined XADDs on one stream (each appended in place once the stream is
    large), with a consumer group and its pending entries along: every entry, the
    header's counts and the group read back exactly."""
    entries = []
    replies = append_many(client, "long", 1_500)
    client.xgroup_create("long", "g", id="0")
    delivered = client.xreadgroup("g", "c", {"long": ">"}, count=10)[0][1]
    replies += append_many(client, "long", LONG - 1_500, start=1_500)
    for i, reply in enumerate(replies):
        entries.append((parse_id(reply), fields_of(i)))
    assert [e[0] for e in entries] == sorted(set(e[0] for e in entries))
    assert_stream_is(client, "long", entries, LONG, entries[-1][0])
    # XREAD after the last id (read from the header) and after the one before it.
    last, before_last = ("%d-%d" % e[0] for e in (entries[-1], entries[-2]))
    assert client.xread({"long": last}) == [] and client.xread({"long": "$"}, count=5) == []
    assert client.xread({"long": before_last}, count=5) == [[b"long", [(last.encode(),
                                                                        entries[-1][1])]]]
    assert [parse_id(i) for i, _ in delivered] == [e[0] for e in entries[:10]]
    assert client.xpending("long", "g")["pending"] == 10
    group = client.xinfo_groups("long")[0]
    assert group["entries-read"] == 10 and group["lag"] == LONG - 10
    # Errors are Redis's, and change nothing.
    with pytest.raises(redis.ResponseError, match="equal or smaller than the target"):
        client.xadd("long", {"f": "v"}, id="%d-%d" % entries[-1][0])
    with pytest.raises(redis.ResponseError, match="equal or smaller than the target"):
        client.xadd("long", {"f": "v"}, id="1-*")
    assert client.xlen("long") == LONG
    # An explicit id and ms-* after the last.
    last_ms = entries[-1][0][0]
    assert client.xadd("long", {"a": "1"}, id=f"{last_ms + 10}-7") == f"{last_ms + 10}-7".encode()
    assert client.xadd("long", {"a": "2"}, id=f"{last_ms + 10}-*") == f"{last_ms + 10}-8".encode()
    assert client.xrevrange("long", count=2) == [
        (f"{last_ms + 10}-8".encode(), {b"a": b"2"}), (f"{last_ms + 10}-7".encode(), {b"a": b"1"})]
    assert client.xinfo_stream("long")["entries-added"] == LONG + 2
    # A trim of most of the stream at once (more than an append in place walks).
    assert client.xadd("long", {"b": "3"}, id=f"{last_ms + 11}-0", maxlen=10,
                       approximate=False) == f"{last_ms + 11}-0".encode()
    kept = client.xrange("long")
    assert len(kept) == 10 and kept[-1] == (f"{last_ms + 11}-0".encode(), {b"b": b"3"})
    assert [parse_id(i) for i, _ in kept[:7]] == [e[0] for e in entries[-7:]]
    assert client.xinfo_stream("long")["entries-added"] == LONG + 3


@pytest.mark.parametrize("trim", [
    ("MAXLEN", True, 3_000), ("MAXLEN", False, 2_000), ("MAXLEN", True, 0),
    ("MINID", False, lambda i: (max(0, i - 1_500), 0)),
    ("MINID", True, lambda i: (max(0, i - 2_345), 9))])
def test_long_stream_appends_with_trimming(client, trim):
    """XADD with MAXLEN or MINID, exact and approximate (`~`), on a long stream: what
    stays is what the trimming model keeps after every single append."""
    count = LONG // 2
    replies = append_many(client, "trimmed", count, trim=trim, explicit=True)
    strategy, approximate, threshold = trim
    entries = []
    for i, reply in enumerate(replies):
        assert reply == f"{i + 1}-5".encode()
        entries.append(((i + 1, 5), fields_of(i)))
        bound = threshold(i) if callable(threshold) else threshold
        entries = model_trim(entries, strategy, approximate, bound)
    assert_stream_is(client, "trimmed", entries, count, (count, 5))
    # XTRIM after the appends agrees with the model too.
    if strategy == "MAXLEN" and threshold:
        assert client.xtrim("trimmed", maxlen=threshold // 3, approximate=True) == \
            len(entries) - len(model_trim(entries, "MAXLEN", True, threshold // 3))


def test_long_stream_deduplicated_appends(client):
    """XADD IDMP on a long stream from 5 producers, every 7th append sent twice (a
    retry): a retry answers the first id and appends nothing; a stale sequence is
    refused with the producer's error; MAXLEN ~ trims along."""
    entries, replies_seen, added = [], {}, 0
    for first in range(0, LONG // 2, BATCH):
        sent = []
        with client.pipeline(transaction=False) as pipe:
            for i in range(first, first + BATCH):
                producer, sequence = f"agent-{i % 5}", i // 5 + 1
                arguments = ["XADD", "dedup", "IDMP", producer, sequence, "MAXLEN", "~", 5_000,
                             "*"]
                for field, value in fields_of(i).items():
                    arguments += [field, value]
                pipe.execute_command(*arguments)
                sent.append(i)
                if i % 7 == 0:
                    pipe.execute_command(*arguments)
                    sent.append(-1 - i)  # the retry of entry i
                if i % 500 == 499:  # a sequence the producer has gone past
                    pipe.execute_command("XADD", "dedup", "IDMP", producer, sequence - 1, "*",
                                         "f", "v")
                    sent.append(None)
            replies = pipe.execute(raise_on_error=False)
        for i, reply in zip(sent, replies):
            if i is None:
                assert isinstance(reply, redis.ResponseError)
                assert "below the producer's last" in str(reply)
            elif i < 0:
                assert reply == replies_seen[-1 - i]
            else:
                replies_seen[i] = reply
                added += 1
                entries.append((parse_id(reply), fields_of(i)))
                entries = model_trim(entries, "MAXLEN", True, 5_000)
    assert_stream_is(client, "dedup", entries, added, entries[-1][0])
    # A retry of each producer's latest still answers its first id.
    last = LONG // 2 - 1
    for i in range(last - 4, last + 1):
        arguments = ["XADD", "dedup", "IDMP", f"agent-{i % 5}", i // 5 + 1, "*", "x", "y"]
        assert client.execute_command(*arguments) == replies_seen[i]
    assert client.xlen("dedup") == len(entries)


def test_long_stream_append_wakes_readers_and_breaks_watch(server):
    """An in-place append on a long stream wakes a blocked XREAD and fails a WATCHing
    transaction, as a rewrite does."""
    client = server.client()
    client.delete("watched")
    append_many(client, "watched", 2_000, explicit=True)
    results = {}

    def wait():
        connection = server.client()
        results["read"] = connection.xread({"watched": "$"}, block=20_000 * SLOW)
        connection.close()

    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = time.time() + 10 * SLOW
    while server.info("clients")["blocked_clients"] < 1 and time.time() < deadline:
        time.sleep(0.01)
    assert server.info("clients")["blocked_clients"] == 1
    assert client.xadd("watched", {"n": "1"}, id="5000-0") == b"5000-0"
    waiter.join(timeout=10 * SLOW)
    assert results["read"] == [[b"watched", [(b"5000-0", {b"n": b"1"})]]]
    with client.pipeline(transaction=True) as pipe:
        pipe.watch("watched")
        other = server.client()
        assert other.xadd("watched", {"n": "2"}, id="5001-0") == b"5001-0"
        other.close()
        pipe.multi()
        pipe.xlen("watched")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.xlen("watched") == 2_002


def test_long_stream_survives_flash_and_restart(start_server):
    """A long stream built by in-place appends, under memory pressure and through a clean
    restart (read back from flash), reads back whole; appends after go on. Flash is large
    enough that the clean stop's writes need no reclaim (which may drop the coldest keys,
    whole: once in about 20 runs, the stream among them, with 64 MiB)."""
    options = ("--memory", "16mb", "--ssd-size", "128mb", "--segment-size", "4mb",
               "--pace-timeout", "60000")
    server = start_server(*options)
    client = server.client()
    count = LONG // 2
    replies = append_many(client, "kept", count)
    entries = [(parse_id(reply), fields_of(i)) for i, reply in enumerate(replies)]
    for start in range(0, 24, 8):  # 24 MiB of strings: more than DRAM holds, less than flash
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, start + 8):
                pipe.set(f"s:{i}", b"%d" % i * (1 << 20))
            pipe.execute()
    assert server.info("flash")["flash_items"] > 0
    assert_stream_is(client, "kept", entries, count, entries[-1][0])
    directory = server.directory
    server.stop()
    again = Server(directory, *options)
    try:
        connection = again.client()
        assert_stream_is(connection, "kept", entries, count, entries[-1][0])
        replies = append_many(connection, "kept", 2_000, start=count,
                              trim=("MAXLEN", True, count))
        for i, reply in enumerate(replies, start=count):
            entries.append((parse_id(reply), fields_of(i)))
            entries = model_trim(entries, "MAXLEN", True, count)
        assert_stream_is(connection, "kept", entries, count + 2_000, entries[-1][0])
    finally:
        again.stop()


def test_long_stream_concurrent_appenders(start_server):
    """4 connections on 2 workers append pipelined to one long stream at once: appends in
    place, rewrites with room and lost races (which go back to appending in place) lose
    no entry and keep each connection's order."""
    server = start_server("--threads", "2")
    writers, each = 4, LONG // 8
    failures = []

    def produce(number):
        connection = server.client()
        try:
            for first in range(0, each, BATCH):
                with connection.pipeline(transaction=False) as pipe:
                    for i in range(first, min(first + BATCH, each)):
                        pipe.xadd("shared", {"w": str(number), "i": str(i), "pad": "p" * (i % 50)})
                    pipe.execute()
        except Exception as error:  # reported below
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120 * SLOW)
    assert failures == []
    client = server.client()
    entries = client.xrange("shared")
    assert len(entries) == writers * each == client.xlen("shared")
    ids = [parse_id(i) for i, _ in entries]
    assert ids == sorted(set(ids))
    seen = {}
    for _, fields in entries:
        seen.setdefault(fields[b"w"], []).append(int(fields[b"i"]))
    assert all(order == list(range(each)) for order in seen.values()) and len(seen) == writers
    assert client.xinfo_stream("shared")["entries-added"] == writers * each


def test_group_setid_takes_first_and_last(client):
    """XGROUP SETID takes - and + as Redis 7.0 does (CREATE does not): a group set back to
    - delivers every entry again (Redis's "PEL NACK reassignment after XGROUP SETID")."""
    for _ in range(4):
        client.xadd("events", {"f1": "v1"})
    client.xgroup_create("events", "g1", id="$")
    client.xadd("events", {"f1": "v1"})
    assert len(client.xreadgroup("g1", "c1", {"events": ">"})[0][1]) == 1
    assert client.execute_command("XGROUP", "SETID", "events", "g1", "-") == b"OK"
    assert len(client.xreadgroup("g1", "c2", {"events": ">"})[0][1]) == 5
    assert client.execute_command("XGROUP", "SETID", "events", "g1", "+") == b"OK"
    assert client.xinfo_groups("events")[0]["last-delivered-id"] == \
        b"18446744073709551615-18446744073709551615"
    with pytest.raises(redis.ResponseError, match="Invalid stream ID"):
        client.execute_command("XGROUP", "CREATE", "events", "g2", "-")
