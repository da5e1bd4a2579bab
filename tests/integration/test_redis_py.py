"""The commands through redis-py's own API, the way applications call them."""
import time

import pytest
import redis


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
