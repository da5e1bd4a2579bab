"""Every command of the foundation, in RESP2 and in RESP3 (HELLO 3), checked reply by
reply with the raw client so that types and encodings are exact (a RESP2 null is
"$-1", a RESP3 null is "_", CONFIG GET is a flat array in RESP2 and a map in RESP3)."""
import re
import time

import pytest

from resp import Connection, Double, Error, Map, Null, Simple, Verbatim

NIL = "<nil>"  # the null reply: $-1 in RESP2, _ in RESP3


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def conn(server, request):
    connection = Connection(server.port)
    if request.param == 3:
        hello = connection.call("HELLO", "3")
        assert isinstance(hello, Map) and hello[b"proto"] == 3
    assert connection.call("FLUSHALL") == "OK"
    connection.protocol = request.param
    yield connection
    connection.close()


def expected(connection, value):
    """Turns a protocol-neutral expectation into what CONNECTION's protocol sends."""
    if value == NIL:
        return Null("_") if connection.protocol == 3 else Null("$-1")
    if isinstance(value, dict):
        if connection.protocol == 3:
            return Map({k: expected(connection, v) for k, v in value.items()})
        flat = []
        for k, v in value.items():
            flat += [k, expected(connection, v)]
        return flat
    if isinstance(value, list):
        return [expected(connection, v) for v in value]
    return value


def check(connection, args, want):
    got = connection.call(*args)
    assert got == expected(connection, want), f"{args!r}: got {got!r}"
    assert type(got) is type(expected(connection, want)) or isinstance(want, (bytes, str, int))
    return got


def error(connection, args, prefix):
    got = connection.call(*args)
    assert isinstance(got, Error), f"{args!r}: expected an error, got {got!r}"
    assert got.startswith(prefix), f"{args!r}: got {got!r}"


def test_ping_echo_select(conn):
    assert conn.call("PING") == Simple("PONG") and isinstance(conn.call("PING"), Simple)
    check(conn, ["PING", "hello"], b"hello")
    check(conn, ["ECHO", b"a\r\nb\x00"], b"a\r\nb\x00")
    error(conn, ["PING", "a", "b"], "ERR wrong number of arguments for 'ping' command")
    check(conn, ["SELECT", "0"], "OK")
    error(conn, ["SELECT", "1"], "ERR DB index is out of range")
    error(conn, ["SELECT", "x"], "ERR value is not an integer or out of range")
    check(conn, ["ping"], "PONG")  # names are case-insensitive


def test_hello(conn):
    reply = conn.call("HELLO")
    if conn.protocol == 3:
        assert isinstance(reply, Map)
        fields = reply
    else:
        assert isinstance(reply, list) and len(reply) == 14
        fields = dict(zip(reply[0::2], reply[1::2]))
    assert fields[b"server"] == b"strata"
    assert fields[b"proto"] == conn.protocol
    assert fields[b"mode"] == b"standalone"
    assert isinstance(fields[b"id"], int)
    error(conn, ["HELLO", "4"], "NOPROTO unsupported protocol version")
    error(conn, ["HELLO", "x"], "ERR Protocol version is not an integer or out of range")
    error(conn, ["HELLO", "3", "BOGUS"], "ERR Syntax error in HELLO option 'BOGUS'")
    error(conn, ["HELLO", "3", "AUTH", "nobody", "pw"], "WRONGPASS")
    reply = conn.call("HELLO", str(conn.protocol), "AUTH", "default", "any", "SETNAME", "me")
    assert not isinstance(reply, Error)
    check(conn, ["CLIENT", "GETNAME"], b"me")


def test_get_set_options(conn):
    check(conn, ["GET", "k"], NIL)
    check(conn, ["SET", "k", "v"], "OK")
    check(conn, ["GET", "k"], b"v")
    check(conn, ["SET", "k", "w", "NX"], NIL)
    check(conn, ["SET", "k", "w", "XX"], "OK")
    check(conn, ["SET", "other", "w", "XX"], NIL)
    check(conn, ["SET", "k", "x", "GET"], b"w")
    check(conn, ["SET", "fresh", "x", "GET"], NIL)
    check(conn, ["SET", "k", "y", "NX", "GET"], b"x")  # NX fails, old value returned
    check(conn, ["GET", "k"], b"x")
    check(conn, ["SET", "k", "v", "EX", "100"], "OK")
    ttl = conn.call("TTL", "k")
    assert 99 <= ttl <= 100
    check(conn, ["SET", "k", "v", "PX", "100000"], "OK")
    assert 99000 <= conn.call("PTTL", "k") <= 100000
    check(conn, ["SET", "k", "v2", "KEEPTTL"], "OK")
    assert 99000 <= conn.call("PTTL", "k") <= 100000
    check(conn, ["SET", "k", "v3"], "OK")
    check(conn, ["TTL", "k"], -1)
    at = int(time.time()) + 1000
    check(conn, ["SET", "k", "v", "EXAT", str(at)], "OK")
    assert 998 <= conn.call("TTL", "k") <= 1000
    check(conn, ["SET", "k", "v", "PXAT", str(at * 1000)], "OK")
    assert 998 <= conn.call("TTL", "k") <= 1000
    check(conn, ["SET", "k", "v", "PXAT", str(int(time.time() * 1000) - 1000)], "OK")
    check(conn, ["EXISTS", "k"], 0)  # a time in the past removes the key
    error(conn, ["SET", "k", "v", "NX", "XX"], "ERR syntax error")
    error(conn, ["SET", "k", "v", "EX", "10", "PX", "10"], "ERR syntax error")
    error(conn, ["SET", "k", "v", "EX", "10", "KEEPTTL"], "ERR syntax error")
    error(conn, ["SET", "k", "v", "EX"], "ERR syntax error")
    error(conn, ["SET", "k", "v", "BOGUS"], "ERR syntax error")
    error(conn, ["SET", "k", "v", "EX", "abc"], "ERR value is not an integer or out of range")
    error(conn, ["SET", "k", "v", "EX", "0"], "ERR invalid expire time in 'set' command")
    error(conn, ["SET", "k", "v", "PX", "-5"], "ERR invalid expire time in 'set' command")
    error(conn, ["SET", "k", "v", "EX", "9223372036854775807"],
          "ERR invalid expire time in 'set' command")
    error(conn, ["SET", "k"], "ERR wrong number of arguments for 'set' command")
    error(conn, ["GET"], "ERR wrong number of arguments for 'get' command")


def test_binary_values(conn):
    for value in [b"", b"\r\n", b"\x00", b"a\r\nb\x00c\r\n", bytes(range(256)) * 4]:
        check(conn, ["SET", b"bin\x00\r\nkey", value], "OK")
        check(conn, ["GET", b"bin\x00\r\nkey"], value)
        check(conn, ["STRLEN", b"bin\x00\r\nkey"], len(value))
    check(conn, ["SET", "", "empty key"], "OK")
    check(conn, ["GET", ""], b"empty key")


def test_values_around_the_copy_and_direct_read_thresholds(conn):
    """Values just under 512 KiB are copied into the reply and read through the read
    buffer; from 512 KiB on they are sent by reference and read straight into their
    block (docs/performance.md). Both sides of the line, pipelined, come back exact."""
    sizes = [16 * 1024 - 1, 16 * 1024, 512 * 1024 - 1, 512 * 1024, 512 * 1024 + 1,
             1024 * 1024 + 3]
    values = {size: bytes((size * 7 + i) % 251 for i in range(size)) for size in sizes}
    request = b"".join(conn.encode("SET", f"edge:{size}", value) for size, value in values.items())
    request += b"".join(conn.encode("GET", f"edge:{size}") for size in sizes)
    conn.send_raw(request)
    assert [conn.read() for _ in sizes] == ["OK"] * len(sizes)
    assert [conn.read() for _ in sizes] == [values[size] for size in sizes]


def test_getex_getdel(conn):
    check(conn, ["SET", "k", "v"], "OK")
    check(conn, ["GETEX", "k"], b"v")
    check(conn, ["TTL", "k"], -1)
    check(conn, ["GETEX", "k", "EX", "100"], b"v")
    assert 99 <= conn.call("TTL", "k") <= 100
    check(conn, ["GETEX", "k", "PX", "50000"], b"v")
    assert 49 <= conn.call("TTL", "k") <= 50
    check(conn, ["GETEX", "k", "EXAT", str(int(time.time()) + 500)], b"v")
    assert 498 <= conn.call("TTL", "k") <= 500
    check(conn, ["GETEX", "k", "PXAT", str(int(time.time() * 1000) + 500000)], b"v")
    check(conn, ["GETEX", "k", "PERSIST"], b"v")
    check(conn, ["TTL", "k"], -1)
    check(conn, ["GETEX", "missing"], NIL)
    error(conn, ["GETEX", "k", "EX"], "ERR syntax error")
    error(conn, ["GETEX", "k", "EX", "0"], "ERR invalid expire time in 'getex' command")
    error(conn, ["GETEX", "k", "PERSIST", "EX", "1"], "ERR syntax error")
    check(conn, ["GETDEL", "k"], b"v")
    check(conn, ["GETDEL", "k"], NIL)
    check(conn, ["EXISTS", "k"], 0)


def test_setnx_setex_psetex(conn):
    check(conn, ["SETNX", "k", "1"], 1)
    check(conn, ["SETNX", "k", "2"], 0)
    check(conn, ["GET", "k"], b"1")
    check(conn, ["SETEX", "k", "100", "v"], "OK")
    assert 99 <= conn.call("TTL", "k") <= 100
    check(conn, ["PSETEX", "k", "100000", "w"], "OK")
    assert 99000 <= conn.call("PTTL", "k") <= 100000
    check(conn, ["GET", "k"], b"w")
    error(conn, ["SETEX", "k", "0", "v"], "ERR invalid expire time in 'setex' command")
    error(conn, ["PSETEX", "k", "-1", "v"], "ERR invalid expire time in 'psetex' command")
    error(conn, ["SETEX", "k", "x", "v"], "ERR value is not an integer or out of range")


def test_mget_mset_msetnx(conn):
    check(conn, ["MSET", "a", "1", "b", "2", "c", "3"], "OK")
    check(conn, ["MGET", "a", "missing", "c"], [b"1", NIL, b"3"])
    check(conn, ["MSETNX", "d", "4", "a", "9"], 0)
    check(conn, ["MGET", "d", "a"], [NIL, b"1"])
    check(conn, ["MSETNX", "d", "4", "e", "5"], 1)
    check(conn, ["MGET", "d", "e"], [b"4", b"5"])
    check(conn, ["MSET", "a", "x", "a", "y"], "OK")  # the last one wins
    check(conn, ["GET", "a"], b"y")
    error(conn, ["MSET", "a", "1", "b"], "ERR wrong number of arguments for 'mset' command")
    error(conn, ["MSETNX", "a"], "ERR wrong number of arguments for 'msetnx' command")


def test_del_unlink_exists_type_touch(conn):
    check(conn, ["MSET", "a", "1", "b", "2"], "OK")
    check(conn, ["EXISTS", "a", "b", "a", "c"], 3)
    check(conn, ["TYPE", "a"], "string")
    assert isinstance(conn.call("TYPE", "a"), Simple)
    check(conn, ["TYPE", "none"], "none")
    check(conn, ["TOUCH", "a", "b", "c"], 2)
    check(conn, ["DEL", "a", "c"], 1)
    check(conn, ["UNLINK", "b", "b"], 1)
    check(conn, ["EXISTS", "a", "b"], 0)


def test_strlen_append_ranges(conn):
    check(conn, ["STRLEN", "k"], 0)
    check(conn, ["APPEND", "k", "Hello"], 5)
    check(conn, ["APPEND", "k", " World"], 11)
    check(conn, ["GET", "k"], b"Hello World")
    check(conn, ["STRLEN", "k"], 11)
    check(conn, ["GETRANGE", "k", "0", "4"], b"Hello")
    check(conn, ["GETRANGE", "k", "-5", "-1"], b"World")
    check(conn, ["GETRANGE", "k", "6", "100"], b"World")
    check(conn, ["GETRANGE", "k", "5", "2"], b"")
    check(conn, ["GETRANGE", "k", "-1", "-5"], b"")
    check(conn, ["GETRANGE", "missing", "0", "5"], b"")
    check(conn, ["SETRANGE", "k", "6", "Redis"], 11)
    check(conn, ["GET", "k"], b"Hello Redis")
    check(conn, ["SETRANGE", "pad", "3", "x"], 4)
    check(conn, ["GET", "pad"], b"\x00\x00\x00x")
    check(conn, ["SETRANGE", "missing", "5", ""], 0)
    check(conn, ["EXISTS", "missing"], 0)
    check(conn, ["SETRANGE", "k", "0", ""], 11)
    error(conn, ["SETRANGE", "k", "-1", "x"], "ERR offset is out of range")
    error(conn, ["SETRANGE", "k", "1099511627776", "x"],
          "ERR string exceeds maximum allowed size (max-value)")
    error(conn, ["GETRANGE", "k", "a", "1"], "ERR value is not an integer or out of range")


def test_counters(conn):
    check(conn, ["INCR", "n"], 1)
    check(conn, ["INCRBY", "n", "41"], 42)
    check(conn, ["DECR", "n"], 41)
    check(conn, ["DECRBY", "n", "50"], -9)
    check(conn, ["GET", "n"], b"-9")
    check(conn, ["SET", "n", "9223372036854775806"], "OK")
    check(conn, ["INCR", "n"], 9223372036854775807)
    error(conn, ["INCR", "n"], "ERR increment or decrement would overflow")
    error(conn, ["DECRBY", "n", "-9223372036854775808"], "ERR decrement would overflow")
    check(conn, ["SET", "s", "abc"], "OK")
    error(conn, ["INCR", "s"], "ERR value is not an integer or out of range")
    check(conn, ["SET", "s", " 1"], "OK")
    error(conn, ["INCR", "s"], "ERR value is not an integer or out of range")
    error(conn, ["INCRBY", "n", "x"], "ERR value is not an integer or out of range")
    check(conn, ["SET", "f", "10.50"], "OK")
    check(conn, ["INCRBYFLOAT", "f", "0.1"], b"10.6")
    check(conn, ["INCRBYFLOAT", "f", "-5"], b"5.6")
    check(conn, ["INCRBYFLOAT", "new", "3.0e3"], b"3000")
    check(conn, ["SET", "f", "5.0e3"], "OK")
    check(conn, ["INCRBYFLOAT", "f", "2.0e2"], b"5200")
    error(conn, ["INCRBYFLOAT", "s", "1"], "ERR value is not a valid float")
    error(conn, ["INCRBYFLOAT", "f", "abc"], "ERR value is not a valid float")
    error(conn, ["INCRBYFLOAT", "f", "inf"], "ERR increment would produce NaN or Infinity")
    # Counters keep the key's time to live.
    check(conn, ["SET", "t", "1", "EX", "100"], "OK")
    check(conn, ["INCR", "t"], 2)
    assert 99 <= conn.call("TTL", "t") <= 100


def test_expiry_commands(conn):
    check(conn, ["SET", "k", "v"], "OK")
    check(conn, ["EXPIRE", "k", "100"], 1)
    assert 99 <= conn.call("TTL", "k") <= 100
    check(conn, ["PEXPIRE", "k", "200000"], 1)
    assert 199 <= conn.call("TTL", "k") <= 200
    check(conn, ["EXPIREAT", "k", str(int(time.time()) + 300)], 1)
    assert 298 <= conn.call("TTL", "k") <= 300
    check(conn, ["PEXPIREAT", "k", str(int(time.time() * 1000) + 400000)], 1)
    assert 398 <= conn.call("TTL", "k") <= 400
    assert abs(conn.call("EXPIRETIME", "k") - (time.time() + 400)) < 3
    assert abs(conn.call("PEXPIRETIME", "k") / 1000 - (time.time() + 400)) < 3
    check(conn, ["EXPIRE", "k", "10", "NX"], 0)
    check(conn, ["EXPIRE", "k", "10", "XX"], 1)
    check(conn, ["EXPIRE", "k", "5", "GT"], 0)
    check(conn, ["EXPIRE", "k", "50", "GT"], 1)
    check(conn, ["EXPIRE", "k", "60", "LT"], 0)
    check(conn, ["EXPIRE", "k", "20", "LT"], 1)
    check(conn, ["PERSIST", "k"], 1)
    check(conn, ["PERSIST", "k"], 0)
    check(conn, ["TTL", "k"], -1)
    check(conn, ["PTTL", "k"], -1)
    check(conn, ["EXPIRETIME", "k"], -1)
    check(conn, ["EXPIRE", "k", "10", "GT"], 0)  # no expiry counts as forever
    check(conn, ["EXPIRE", "k", "10", "LT"], 1)
    check(conn, ["TTL", "missing"], -2)
    check(conn, ["PTTL", "missing"], -2)
    check(conn, ["EXPIRETIME", "missing"], -2)
    check(conn, ["EXPIRE", "missing", "10"], 0)
    check(conn, ["PERSIST", "missing"], 0)
    check(conn, ["EXPIRE", "k", "-1"], 1)  # a past time deletes
    check(conn, ["EXISTS", "k"], 0)
    check(conn, ["SET", "k", "v"], "OK")
    check(conn, ["EXPIREAT", "k", "0"], 1)
    check(conn, ["EXISTS", "k"], 0)
    error(conn, ["EXPIRE", "k", "10", "NX", "XX"],
          "ERR NX and XX, GT or LT options at the same time are not compatible")
    error(conn, ["EXPIRE", "k", "10", "GT", "LT"],
          "ERR GT and LT options at the same time are not compatible")
    error(conn, ["EXPIRE", "k", "10", "BAD"], "ERR Unsupported option BAD")
    error(conn, ["EXPIRE", "k", "x"], "ERR value is not an integer or out of range")
    error(conn, ["EXPIRE", "k", "9223372036854775807"], "ERR invalid expire time in 'expire' command")


def test_keys_scan_randomkey(conn):
    check(conn, ["RANDOMKEY"], NIL)
    names = [f"user:{i}" for i in range(300)] + ["other:1", "other:2"]
    for name in names:
        conn.send("SET", name, "x")
    for _ in names:
        assert conn.read() == "OK"
    assert sorted(conn.call("KEYS", "*")) == sorted(n.encode() for n in names)
    assert sorted(conn.call("KEYS", "other:*")) == [b"other:1", b"other:2"]
    assert sorted(conn.call("KEYS", "user:1?")) == sorted(f"user:1{d}".encode() for d in range(10))
    assert sorted(conn.call("KEYS", "other:[1]")) == [b"other:1"]
    assert conn.call("KEYS", "nothing*") == []
    seen = set()
    cursor = b"0"
    rounds = 0
    while True:
        reply = conn.call("SCAN", cursor, "COUNT", "25")
        assert isinstance(reply, list) and len(reply) == 2
        cursor, keys = reply
        seen.update(keys)
        rounds += 1
        if cursor == b"0":
            break
    assert seen == {n.encode() for n in names}
    assert rounds > 1
    seen = set()
    cursor = b"0"
    while True:
        cursor, keys = conn.call("SCAN", cursor, "MATCH", "other:*", "COUNT", "1000")
        seen.update(keys)
        if cursor == b"0":
            break
    assert seen == {b"other:1", b"other:2"}
    cursor, keys = conn.call("SCAN", "0", "TYPE", "hash", "COUNT", "1000")
    assert keys == []
    found = set()
    cursor = b"0"
    while True:
        cursor, keys = conn.call("SCAN", cursor, "TYPE", "string", "COUNT", "1000")
        found.update(keys)
        if cursor == b"0":
            break
    assert len(found) == len(names)
    assert conn.call("RANDOMKEY").decode() in names
    error(conn, ["SCAN", "abc"], "ERR invalid cursor")
    error(conn, ["SCAN", "0", "COUNT", "0"], "ERR syntax error")
    error(conn, ["SCAN", "0", "BOGUS", "1"], "ERR syntax error")
    error(conn, ["SCAN", "0", "COUNT", "x"], "ERR value is not an integer or out of range")


def test_rename_copy(conn):
    check(conn, ["SET", "a", "1", "EX", "100"], "OK")
    check(conn, ["RENAME", "a", "b"], "OK")
    check(conn, ["EXISTS", "a"], 0)
    check(conn, ["GET", "b"], b"1")
    assert 99 <= conn.call("TTL", "b") <= 100  # the expiry moves with the value
    error(conn, ["RENAME", "a", "c"], "ERR no such key")
    check(conn, ["SET", "c", "3"], "OK")
    check(conn, ["RENAMENX", "b", "c"], 0)
    check(conn, ["RENAMENX", "b", "d"], 1)
    check(conn, ["RENAME", "d", "d"], "OK")
    check(conn, ["COPY", "d", "e"], 1)
    check(conn, ["GET", "e"], b"1")
    check(conn, ["COPY", "d", "c"], 0)
    check(conn, ["COPY", "d", "c", "REPLACE"], 1)
    check(conn, ["GET", "c"], b"1")
    check(conn, ["COPY", "missing", "x"], 0)
    check(conn, ["COPY", "d", "f", "DB", "0"], 1)
    error(conn, ["COPY", "d", "g", "DB", "1"], "ERR DB index is out of range")
    error(conn, ["COPY", "d", "d"], "ERR source and destination objects are the same")
    error(conn, ["COPY", "d", "g", "BOGUS"], "ERR syntax error")


def test_dbsize_flush(conn):
    check(conn, ["MSET", "a", "1", "b", "2"], "OK")
    check(conn, ["DBSIZE"], 2)
    check(conn, ["FLUSHDB"], "OK")
    check(conn, ["DBSIZE"], 0)
    check(conn, ["SET", "a", "1"], "OK")
    check(conn, ["FLUSHALL", "ASYNC"], "OK")
    check(conn, ["DBSIZE"], 0)
    check(conn, ["FLUSHALL", "SYNC"], "OK")
    error(conn, ["FLUSHALL", "NOW"], "ERR syntax error")


def test_info(conn):
    conn.call("SET", "k", "v", "EX", "100")
    reply = conn.call("INFO")
    if conn.protocol == 3:
        assert isinstance(reply, Verbatim) and reply.format == "txt"
    else:
        assert isinstance(reply, bytes) and not isinstance(reply, Verbatim)
    text = bytes(reply).decode()
    for section in ["# Server", "# Clients", "# Memory", "# Stats", "# Replication",
                    "# Keyspace", "# Strata"]:
        assert section in text
    assert text.index("# Stats") < text.index("# Replication") < text.index("# CPU")
    assert "db0:keys=1,expires=1,avg_ttl=0" in text
    fields = dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)
    assert fields["role"] == "master" and fields["connected_slaves"] == "0"
    assert re.fullmatch("[0-9a-f]{40}", fields["run_id"]) and fields["redis_git_sha1"] == "00000000"
    assert len(fields["master_replid"]) == 40 and fields["master_repl_offset"] == "0"
    replication = bytes(conn.call("INFO", "replication")).decode()
    assert replication.startswith("# Replication\r\nrole:master\r\n")
    assert "# Server" not in replication
    assert int(fields["used_memory"]) <= int(fields["maxmemory"])
    assert fields["strata_eviction_policy"] == "s3fifo"
    memory_only = bytes(conn.call("INFO", "memory")).decode()
    assert "# Memory" in memory_only and "# Server" not in memory_only
    both = bytes(conn.call("INFO", "strata", "keyspace")).decode()
    assert "# Strata" in both and "# Keyspace" in both and "# Memory" not in both
    assert bytes(conn.call("INFO", "nosuchsection")) == b""


def test_config(conn):
    reply = conn.call("CONFIG", "GET", "max-clients")
    check(conn, ["CONFIG", "GET", "max-clients"], {b"max-clients": b"10000"})
    check(conn, ["CONFIG", "GET", "maxmemory"], {b"maxmemory": b"536870912"})
    check(conn, ["CONFIG", "GET", "save"], {b"save": b""})
    check(conn, ["CONFIG", "GET", "appendonly"], {b"appendonly": b"no"})
    reply = conn.call("CONFIG", "GET", "max-*")
    names = set(reply.keys()) if conn.protocol == 3 else set(reply[0::2])
    assert names == {b"max-clients", b"max-value", b"max-request", b"max-arguments"}
    check(conn, ["CONFIG", "GET", "nothing"], {})
    check(conn, ["CONFIG", "SET", "max-clients", "5000"], "OK")
    check(conn, ["CONFIG", "GET", "max-clients"], {b"max-clients": b"5000"})
    check(conn, ["CONFIG", "SET", "maxclients", "10000", "log-level", "info"], "OK")
    check(conn, ["CONFIG", "GET", "log-level"], {b"log-level": b"info"})
    error(conn, ["CONFIG", "SET", "port", "1"],
          "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config")
    error(conn, ["CONFIG", "SET", "memory", "lots"],
          "ERR CONFIG SET failed (possibly related to argument 'memory') - expected a size")
    error(conn, ["CONFIG", "SET", "bogus", "1"],
          "ERR Unknown option or number of arguments for CONFIG SET - 'bogus'")
    # All or nothing: the valid first change is undone when the second is refused.
    error(conn, ["CONFIG", "SET", "max-clients", "77", "max-value", "nonsense"],
          "ERR CONFIG SET failed (possibly related to argument 'max-value')")
    check(conn, ["CONFIG", "GET", "max-clients"], {b"max-clients": b"10000"})
    error(conn, ["CONFIG", "SET", "max-value", "2gb"],
          "ERR CONFIG SET failed (possibly related to argument 'max-value') - max-request")
    error(conn, ["CONFIG", "GET"], "ERR wrong number of arguments for 'config|get' command")
    error(conn, ["CONFIG", "BOGUS"], "ERR unknown subcommand 'BOGUS'. Try CONFIG HELP.")
    # A fixed setting takes the value it has (Redis's test harness sets save ""), no other.
    check(conn, ["CONFIG", "SET", "save", "", "appendonly", "no", "max-clients", "9000"], "OK")
    check(conn, ["CONFIG", "GET", "max-clients"], {b"max-clients": b"9000"})
    error(conn, ["CONFIG", "SET", "max-clients", "10000", "save", "900 1"],
          "ERR CONFIG SET failed (possibly related to argument 'save') - strata has it fixed at ''")
    check(conn, ["CONFIG", "GET", "max-clients"], {b"max-clients": b"9000"})
    error(conn, ["CONFIG", "SET", "appendonly", "no", "max-clients", "10000", "max-value", "x"],
          "ERR CONFIG SET failed (possibly related to argument 'max-value')")
    check(conn, ["CONFIG", "GET", "max-clients"], {b"max-clients": b"9000"})  # undone
    check(conn, ["CONFIG", "SET", "max-clients", "10000"], "OK")
    check(conn, ["CONFIG", "RESETSTAT"], "OK")
    assert isinstance(conn.call("CONFIG", "HELP"), list)


def test_encoding_thresholds(conn):
    """Redis's encoding thresholds are settable (also by their ziplist names) and decide
    what OBJECT ENCODING reports, as in Redis 7.0 (checked against redis-server 7.0.15)."""
    try:
        check(conn, ["CONFIG", "GET", "hash-max-ziplist-entries"],
              {b"hash-max-ziplist-entries": b"128"})
        check(conn, ["CONFIG", "SET", "hash-max-ziplist-entries", "4"], "OK")
        check(conn, ["CONFIG", "GET", "hash-max-listpack-entries"],
              {b"hash-max-listpack-entries": b"4"})
        conn.call("HSET", "small", "a", "1", "b", "2", "c", "3", "d", "4")
        check(conn, ["OBJECT", "ENCODING", "small"], b"listpack")
        conn.call("HSET", "small", "e", "5")
        check(conn, ["OBJECT", "ENCODING", "small"], b"hashtable")
        check(conn, ["CONFIG", "SET", "hash-max-listpack-value", "3"], "OK")
        conn.call("HSET", "long", "a", "1234")
        check(conn, ["OBJECT", "ENCODING", "long"], b"hashtable")
        check(conn, ["CONFIG", "SET", "zset-max-ziplist-entries", "2", "zset-max-ziplist-value",
                     "64"], "OK")
        conn.call("ZADD", "z", "1", "a", "2", "b")
        check(conn, ["OBJECT", "ENCODING", "z"], b"listpack")
        conn.call("ZADD", "z", "3", "c")
        check(conn, ["OBJECT", "ENCODING", "z"], b"skiplist")
        check(conn, ["CONFIG", "SET", "set-max-intset-entries", "2"], "OK")
        conn.call("SADD", "s", "1", "2")
        check(conn, ["OBJECT", "ENCODING", "s"], b"intset")
        conn.call("SADD", "s", "3")
        check(conn, ["OBJECT", "ENCODING", "s"], b"hashtable")
        check(conn, ["CONFIG", "SET", "list-max-ziplist-size", "16", "list-compress-depth",
                     "1"], "OK")
        check(conn, ["CONFIG", "GET", "list-max-listpack-size"],
              {b"list-max-listpack-size": b"16"})
        conn.call("RPUSH", "l", "a")
        check(conn, ["OBJECT", "ENCODING", "l"], b"quicklist")
        check(conn, ["CONFIG", "SET", "stream-node-max-entries", "10", "stream-node-max-bytes",
                     "0"], "OK")
        for i in range(1, 26):
            conn.call("XADD", "st", f"{i}-1", "f", "v")
        check(conn, ["XTRIM", "st", "MAXLEN", "~", "12"], 10)  # one run of 10 (Redis: the same)
        check(conn, ["XLEN", "st"], 15)
        error(conn, ["CONFIG", "SET", "hash-max-listpack-entries", "many"],
              "ERR CONFIG SET failed (possibly related to argument 'hash-max-listpack-entries')")
    finally:
        conn.call("CONFIG", "SET", "hash-max-listpack-entries", "128", "hash-max-listpack-value",
                  "64", "zset-max-listpack-entries", "128", "zset-max-listpack-value", "64",
                  "set-max-intset-entries", "512", "list-max-listpack-size", "-2",
                  "list-compress-depth", "0", "stream-node-max-entries", "100",
                  "stream-node-max-bytes", "4096")


def test_client(conn):
    client_id = conn.call("CLIENT", "ID")
    assert isinstance(client_id, int) and client_id > 0
    check(conn, ["CLIENT", "GETNAME"], NIL)
    check(conn, ["CLIENT", "SETNAME", "worker-1"], "OK")
    check(conn, ["CLIENT", "GETNAME"], b"worker-1")
    error(conn, ["CLIENT", "SETNAME", "has space"], "ERR Client names cannot contain spaces")
    check(conn, ["CLIENT", "SETINFO", "LIB-NAME", "tests"], "OK")
    listing = conn.call("CLIENT", "LIST")
    if conn.protocol == 3:
        assert isinstance(listing, Verbatim)
    lines = bytes(listing).decode().strip().split("\n")
    mine = [line for line in lines if f"id={client_id} " in line]
    assert len(mine) == 1
    assert "name=worker-1" in mine[0] and f"resp={conn.protocol}" in mine[0]
    assert "lib-name=tests" in mine[0] and " cmd=client|list " in mine[0]
    only = bytes(conn.call("CLIENT", "LIST", "ID", str(client_id))).decode()
    assert only.count("\n") == 1 and f"id={client_id} " in only
    info = bytes(conn.call("CLIENT", "INFO")).decode()
    assert info.startswith(f"id={client_id} ")
    check(conn, ["CLIENT", "SETNAME", ""], "OK")
    check(conn, ["CLIENT", "GETNAME"], NIL)
    error(conn, ["CLIENT", "BOGUS"], "ERR unknown subcommand 'BOGUS'. Try CLIENT HELP.")
    error(conn, ["CLIENT", "SETNAME"], "ERR wrong number of arguments for 'client|setname' command")


def test_command_introspection(conn):
    count = conn.call("COMMAND", "COUNT")
    assert isinstance(count, int) and count >= 50
    everything = conn.call("COMMAND")
    assert len(everything) == count
    info = conn.call("COMMAND", "INFO", "get", "nosuch")
    assert info[0][0] == b"get" and info[0][1] == 2
    assert info[0][2] == ["readonly", "fast"]
    assert info[0][3:6] == [1, 1, 1]
    assert info[1] == expected(conn, NIL)
    docs = conn.call("COMMAND", "DOCS", "set")
    if conn.protocol == 3:
        assert isinstance(docs, Map) and b"summary" in docs[b"set"]
    else:
        assert docs[0] == b"set" and b"summary" in docs[1]
    names = conn.call("COMMAND", "LIST")
    assert b"getex" in names and b"client|list" in names
    assert len([name for name in names if b"|" not in name]) == count


def test_time(conn):
    seconds, micros = conn.call("TIME")
    assert abs(int(seconds) - time.time()) < 5
    assert 0 <= int(micros) < 1000000


def test_unknown_command(conn):
    error(conn, ["FOOBAR", "a", "b"],
          "ERR unknown command 'FOOBAR', with args beginning with: 'a' 'b' ")
    error(conn, ["PFADD", "hll", "v"], "ERR unknown command 'PFADD'")
    # An argument with CR LF does not break the error line.
    got = conn.call("NOPE", "a\r\nb")
    assert isinstance(got, Error) and "\n" not in got
    check(conn, ["PING"], "PONG")


def test_quit(server):
    with Connection(server.port) as connection:
        connection.send("QUIT")
        connection.send("PING")  # ignored: the connection closes after QUIT
        assert connection.read_all_raw() == b"+OK\r\n"


def test_double_free_protocol_switch(server):
    # Switching back and forth between protocols changes only the encoding.
    with Connection(server.port) as connection:
        connection.call("HELLO", "3")
        assert connection.call("GET", "nope") == Null("_")
        connection.call("HELLO", "2")
        assert connection.call("GET", "nope") == Null("$-1")
        assert isinstance(connection.call("INCRBYFLOAT", "f", "1.5"), bytes)
        assert not isinstance(connection.call("INCRBYFLOAT", "f", "1.5"), Double)


def test_getset(conn):
    check(conn, ["GETSET", "g", "1"], NIL)
    check(conn, ["SET", "g", "2", "EX", "100"], "OK")
    check(conn, ["GETSET", "g", "3"], b"2")
    check(conn, ["TTL", "g"], -1)
    check(conn, ["GET", "g"], b"3")
    error(conn, ["GETSET", "g"], "ERR wrong number of arguments for 'getset' command")
    error(conn, ["GETSET", "g", "1", "2"], "ERR wrong number of arguments for 'getset' command")


def test_object(conn):
    check(conn, ["SET", "i", "-42"], "OK")
    check(conn, ["SET", "s", "0042"], "OK")
    check(conn, ["SET", "r", "x" * 45], "OK")
    check(conn, ["OBJECT", "ENCODING", "i"], b"int")
    check(conn, ["OBJECT", "ENCODING", "s"], b"embstr")
    check(conn, ["OBJECT", "ENCODING", "r"], b"raw")
    check(conn, ["OBJECT", "ENCODING", "missing"], NIL)
    check(conn, ["OBJECT", "FREQ", "i"], 0)
    check(conn, ["OBJECT", "FREQ", "missing"], NIL)
    check(conn, ["OBJECT", "REFCOUNT", "i"], 1)
    check(conn, ["OBJECT", "REFCOUNT", "missing"], NIL)
    check(conn, ["OBJECT", "IDLETIME", "missing"], NIL)
    error(conn, ["OBJECT", "IDLETIME", "i"],
          "ERR An LRU maxmemory policy is not selected, access time not tracked.")
    help_lines = conn.call("OBJECT", "HELP")
    assert help_lines[0] == "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert all(isinstance(line, Simple) for line in help_lines) and "HELP" in help_lines
    error(conn, ["OBJECT"], "ERR wrong number of arguments for 'object' command")
    error(conn, ["OBJECT", "ENCODING"],
          "ERR wrong number of arguments for 'object|encoding' command")
    error(conn, ["OBJECT", "freq", "i", "j"],
          "ERR wrong number of arguments for 'object|freq' command")
    error(conn, ["OBJECT", "HELP", "x"], "ERR wrong number of arguments for 'object|help' command")
    error(conn, ["OBJECT", "nope", "i"], "ERR unknown subcommand 'nope'. Try OBJECT HELP.")


def test_memory(conn):
    check(conn, ["SET", "k", "v"], "OK")
    usage = conn.call("MEMORY", "USAGE", "k")
    assert isinstance(usage, int) and 64 <= usage <= 256
    check(conn, ["MEMORY", "USAGE", "k", "SAMPLES", "0"], usage)
    check(conn, ["memory", "usage", "k", "samples", "5"], usage)
    check(conn, ["MEMORY", "USAGE", "missing"], NIL)
    error(conn, ["MEMORY", "USAGE", "k", "SAMPLES", "x"],
          "ERR value is not an integer or out of range")
    error(conn, ["MEMORY", "USAGE", "k", "SAMPLES"], "ERR syntax error")
    error(conn, ["MEMORY", "USAGE", "k", "BOGUS", "1"], "ERR syntax error")
    help_lines = conn.call("MEMORY", "HELP")
    assert help_lines[0] == "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert all(isinstance(line, Simple) for line in help_lines)
    error(conn, ["MEMORY"], "ERR wrong number of arguments for 'memory' command")
    error(conn, ["MEMORY", "USAGE"], "ERR wrong number of arguments for 'memory|usage' command")
    error(conn, ["MEMORY", "DOCTOR"], "ERR unknown subcommand 'DOCTOR'. Try MEMORY HELP.")


def test_client_reply(server):
    """CLIENT REPLY OFF, ON and SKIP, byte for byte as redis-server 7.0.15 answers the same
    pipeline; a blocked command whose reply is skipped sends nothing when it is served."""
    with Connection(server.port) as raw:
        raw.send_raw(b"CLIENT REPLY OFF\r\nSET a 1\r\nGET a\r\nCLIENT REPLY ON\r\nGET a\r\n"
                     b"CLIENT REPLY SKIP\r\nGET a\r\nPING\r\nCLIENT REPLY BAD\r\n"
                     b"CLIENT REPLY SKIP\r\nCLIENT REPLY OFF\r\nPING\r\nCLIENT REPLY ON\r\n")
        assert raw.read_all_raw(timeout=1) == (b"+OK\r\n$1\r\n1\r\n+PONG\r\n-ERR syntax error\r\n"
                                                b"+OK\r\n")
        raw.send_raw(b"CLIENT REPLY SKIP\r\nBLPOP queue 0\r\nPING\r\n")
        client = server.client()
        deadline = time.time() + 10
        while client.info("clients")["blocked_clients"] != 1 and time.time() < deadline:
            time.sleep(0.01)
        client.rpush("queue", "x")
        assert raw.read_all_raw(timeout=1) == b"+PONG\r\n"
        assert client.llen("queue") == 0  # it was served, silently
        client.close()
