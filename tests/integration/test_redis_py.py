"""The commands through redis-py's own API, the way applications call them."""
import subprocess
import time

import pytest
import redis

from conftest import SLOW


def test_strings(client):
    assert client.set("k", "v") is True
    assert client.get("k") == b"v"
    assert client.set("k", "w", nx=True) is None
    assert client.set("k", "w", xx=True) is True
    assert client.set("k", "x", get=True) == b"w"
    assert client.set("k", "v", ex=100) is True
    assert 99 <= client.ttl("k") <= 100
    assert client.set("k", "v", px=100000, keepttl=False) is True
    assert client.set("k", "v2", keepttl=True) is True
    assert 99 <= client.ttl("k") <= 100
    assert client.set("k", "v", exat=int(time.time()) + 50) is True
    assert client.set("k", "v", pxat=int(time.time() * 1000) + 50000) is True
    assert client.getex("k", persist=True) == b"v"
    assert client.ttl("k") == -1
    assert client.getex("k", ex=10) == b"v"
    assert client.getdel("k") == b"v"
    assert client.get("k") is None
    assert client.setnx("n", 1) is True
    assert client.setnx("n", 2) is False
    assert client.setex("e", 100, "v") is True
    assert client.psetex("p", 100000, "v") is True
    assert client.mset({"a": 1, "b": 2}) is True
    assert client.mget("a", "b", "zz") == [b"1", b"2", None]
    assert client.msetnx({"a": 3, "c": 4}) is False
    assert client.msetnx({"c": 4, "d": 5}) is True
    assert client.strlen("a") == 1
    assert client.append("a", "23") == 3
    assert client.getrange("a", 0, 1) == b"12"
    assert client.setrange("a", 1, "xx") == 3
    assert client.get("a") == b"1xx"
    assert client.incr("i") == 1
    assert client.incrby("i", 10) == 11
    assert client.decr("i") == 10
    assert client.decrby("i", 3) == 7
    assert client.incrbyfloat("f", 1.5) == 1.5
    assert client.incrbyfloat("f", 0.25) == 1.75
    with pytest.raises(redis.exceptions.ResponseError, match="not an integer"):
        client.incr("f")


def test_keys(client):
    client.mset({"a": 1, "b": 2, "c": 3})
    assert client.exists("a", "b", "x") == 2
    assert client.type("a") == b"string"
    assert client.type("x") == b"none"
    assert client.delete("a", "x") == 1
    assert client.unlink("b") == 1
    assert client.touch("c", "x") == 1
    assert client.expire("c", 100) is True
    assert client.expire("c", 10, gt=True) is False
    assert client.expire("c", 10, lt=True) is True
    assert client.pexpire("c", 100000, xx=True) is True
    assert client.expireat("c", int(time.time()) + 100) is True
    assert client.pexpireat("c", int(time.time() * 1000) + 100000) is True
    assert 99000 <= client.pttl("c") <= 100000
    assert client.persist("c") is True
    assert client.ttl("c") == -1
    assert client.expire("nope", 10) is False
    for i in range(50):
        client.set(f"scan:{i}", i)
    assert sorted(client.keys("scan:*")) == sorted(f"scan:{i}".encode() for i in range(50))
    assert set(client.scan_iter(match="scan:*", count=7)) == {f"scan:{i}".encode()
                                                              for i in range(50)}
    assert client.randomkey() is not None
    assert client.rename("c", "c2") is True
    assert client.renamenx("c2", "scan:1") is False
    assert client.copy("c2", "c3") is True
    assert client.copy("c2", "c3", replace=True) is True
    assert client.dbsize() == 52
    assert client.flushdb() is True
    assert client.dbsize() == 0
    assert client.flushall() is True


def test_server_and_connection(client, server):
    assert client.ping() is True
    assert client.echo("hi") == b"hi"
    assert client.execute_command("SELECT", 0) is True
    info = client.info()
    assert info["redis_version"] == "7.0.0"
    assert info["tcp_port"] == server.port
    assert "db0" not in info
    client.set("x", 1)
    assert client.info("keyspace")["db0"]["keys"] == 1
    assert client.config_get("max-value") == {"max-value": str(512 * 1024 * 1024)}
    assert client.config_set("max-clients", 9000) is True
    assert client.config_get("maxclients") == {"maxclients": "9000"}
    assert client.config_set("max-clients", 10000) is True
    assert client.config_resetstat() is True
    assert client.client_setname("py") is True
    assert client.client_getname() == "py"
    client_id = client.client_id()
    mine = [c for c in client.client_list() if int(c["id"]) == client_id]
    assert len(mine) == 1 and mine[0]["name"] == "py"
    assert client.client_info()["name"] == "py"
    seconds, micros = client.time()
    assert abs(seconds - time.time()) < 5
    assert client.command_count() >= 50
    commands = client.command()
    assert commands["get"]["arity"] == 2


def test_pipeline_and_transaction_free_batches(client):
    pipe = client.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"p:{i}", i)
        pipe.get(f"p:{i}")
    results = pipe.execute()
    assert results[0::2] == [True] * 1000
    assert results[1::2] == [str(i).encode() for i in range(1000)]


def test_shutdown_command(start_server):
    server = start_server()
    client = server.client()
    client.set("k", "v")
    client.shutdown()  # redis-py treats the closed connection as success
    assert server.process.wait(timeout=30) == 0
    assert "event=stopping reason=shutdown_command" in server.read_log()


def test_getset(client):
    assert client.getset("g", "1") is None
    assert client.get("g") == b"1"
    client.set("g", "2", ex=100)
    assert client.getset("g", "3") == b"2"
    assert client.ttl("g") == -1  # GETSET clears the expiry, as SET does
    assert client.get("g") == b"3"
    with pytest.raises(redis.exceptions.ResponseError,
                       match="wrong number of arguments for 'getset' command"):
        client.execute_command("GETSET", "g")


def test_object_and_memory_usage(client):
    client.mset({"int": 12345, "neg": -7, "zero": "0", "lead": "0123", "plus": "+1",
                 "big": "99999999999999999999", "short": "hello", "e44": "x" * 44,
                 "r45": "x" * 45, "large": b"v" * (100 * 1024)})
    encodings = {k: client.object("encoding", k) for k in
                 ["int", "neg", "zero", "lead", "plus", "big", "short", "e44", "r45", "large"]}
    assert encodings == {"int": b"int", "neg": b"int", "zero": b"int", "lead": b"embstr",
                         "plus": b"embstr", "big": b"embstr", "short": b"embstr",
                         "e44": b"embstr", "r45": b"raw", "large": b"raw"}
    assert client.object("encoding", "missing") is None
    assert client.object("refcount", "int") == 1
    assert client.object("refcount", "missing") is None
    client.set("f", "v")
    assert client.object("freq", "f") == 0
    client.get("f")
    client.get("f")
    assert client.object("freq", "f") == 2  # S3-FIFO's count; OBJECT itself does not count
    for _ in range(5):
        client.get("f")
    assert client.object("freq", "f") == 3  # two bits
    assert client.object("freq", "missing") is None
    with pytest.raises(redis.exceptions.ResponseError, match="access time not tracked"):
        client.object("idletime", "f")
    with pytest.raises(redis.exceptions.ResponseError,
                       match=r"unknown subcommand 'nope'. Try OBJECT HELP."):
        client.object("nope", "f")
    small = client.memory_usage("short")
    assert 64 <= small <= 256
    assert client.memory_usage("r45") > small
    assert 100 * 1024 <= client.memory_usage("large") <= 110 * 1024
    assert client.memory_usage("large", samples=0) == client.memory_usage("large")
    assert client.memory_usage("missing") is None
    hits = client.info("stats")["keyspace_hits"]
    client.object("encoding", "short")
    client.memory_usage("short")
    assert client.info("stats")["keyspace_hits"] == hits


def test_redis_cli_memkeys(client, server):
    client.mset({"m:small": "x", "m:big": "y" * 5000, "m:int": 42})
    result = subprocess.run(["redis-cli", "-p", str(server.port), "--memkeys"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    big = client.memory_usage("m:big")
    total = sum(client.memory_usage(k) for k in ["m:small", "m:big", "m:int"])
    assert "Sampled 3 keys in the keyspace!" in out
    assert f"Biggest string found '\"m:big\"' has {big} bytes" in out
    assert f"3 strings with {total} bytes (100.00% of keys" in out


def test_object_and_memory_usage_on_flash(start_server):
    server = start_server("--pace-timeout", "60000", "--memory", "8mb", "--ssd-size", "64mb",
                          "--segment-size", "8mb", "--threads", "1")
    client = server.client()
    # Eviction works shard by shard: of many cold keys, some reach flash.
    ints = [f"cold:int:{i}" for i in range(200)]
    raws = [f"cold:raw:{i}" for i in range(200)]
    # Pipelined SETs, not one MSET: an MSET of 400 keys locks every shard it touches at
    # once, more mutexes than ThreadSanitizer's deadlock detector tracks per thread.
    with client.pipeline(transaction=False) as pipe:
        for i, k in enumerate(ints):
            pipe.set(k, 1000 + i)
        for k in raws:
            pipe.set(k, b"r" * 1000)
        pipe.execute()
    in_dram = client.memory_usage(raws[0])
    for i in range(150):
        client.set(f"fill:{i}", b"f" * (100 * 1024))

    def flash_only(keys):
        # Only the flash index entry stays in DRAM: 32 bytes and the key, 72 as allocated
        # (an integer's DRAM item is 104 bytes, the 1000-byte values' over 1000).
        return [k for k in keys if client.memory_usage(k) <= 72]

    deadline = time.time() + 10 * SLOW
    while not (flash_only(ints) and flash_only(raws)) and time.time() < deadline:
        time.sleep(0.05)
    cold_int, cold_raw = flash_only(ints)[0], flash_only(raws)[0]
    assert in_dram > 1000
    assert client.object("freq", cold_raw) == 0
    assert client.object("encoding", cold_raw) == b"raw"
    assert client.object("encoding", cold_int) == b"int"  # a short value is read to tell
    assert client.get(cold_int) == str(1000 + ints.index(cold_int)).encode()
