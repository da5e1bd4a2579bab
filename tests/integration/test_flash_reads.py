"""Reads of flash-resident values never block a worker: every command, HTTP GET and the
native GET read flash through the worker's io_ring (INFO flash_blocking_reads stays 0),
replies keep their order, and a value larger than the whole DRAM budget is streamed
from flash piece by piece, checked as it goes, and never sent whole when damaged."""
import glob
import hashlib
import os
import socket
import subprocess
import sys
import time

import pytest
import redis

from conftest import ROOT, SANITIZED, SLOW, Server

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402

KIB = 1024
MIB = 1024 * 1024


def value_for(key, size):
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def flash(server):
    return server.info("flash")


def start(tmp_path, *arguments):
    return Server(tmp_path, "--pace-timeout", "60000", *arguments)


def push_to_flash(server, client, prefix, count=300, size=64 * KIB):
    """Writes twice the DRAM budget of other values, so that what was written before
    moves to flash, and waits until the flash writer is done."""
    for index in range(count):
        key = f"{prefix}:{index}"
        client.set(key, value_for(key, size))
    written = -1
    deadline = time.time() + 20 * SLOW
    while time.time() < deadline and flash(server)["flash_written_bytes"] != written:
        written = flash(server)["flash_written_bytes"]
        time.sleep(0.2)


def test_every_read_path_reads_flash_without_blocking_the_worker(tmp_path):
    server = start(tmp_path, "--memory", "8mb", "--ssd-size", "256mb", "--segment-size", "8mb",
                   "--threads", "1")
    client = server.client()
    size = 64 * KIB
    keys = {name: f"cold:{name}" for name in (
        "get", "mget1", "mget2", "getrange", "getex", "getex-ex", "getdel", "setget", "append",
        "setrange", "rename", "renamenx", "copy", "http", "http-range", "head", "pipeline",
        "expire", "pexpireat", "persist", "far-expiry",
        *(f"http-close-{i}" for i in range(3)), *(f"http10-{i}" for i in range(3)))}
    for key in keys.values():
        client.set(key, value_for(key, size))
    client.expire(keys["persist"], 1000)
    # The last millisecond a client can name: its flash record saturates, nothing overflows.
    client.execute_command("SET", keys["far-expiry"], value_for(keys["far-expiry"], size),
                           "PXAT", str(2**63 - 1))
    for name in ("incr", "incrbyfloat"):
        client.set(f"cold:{name}", "41")
    with strata.Client(port=server.native_port) as native:
        native.put_batch([(f"cold:native:{i}", value_for(f"cold:native:{i}", size))
                          for i in range(4)])
    push_to_flash(server, client, "flood")
    assert flash(server)["flash_items"] > 150
    reads_before = flash(server)["flash_reads"]

    def get(name):
        return value_for(keys[name], size)

    assert client.get(keys["get"]) == get("get")
    assert client.mget([keys["mget1"], "absent", keys["mget2"]]) == [get("mget1"), None,
                                                                    get("mget2")]
    assert client.getrange(keys["getrange"], 10, 19) == get("getrange")[10:20]
    assert client.strlen(keys["append"]) == size  # from the index: nothing read
    assert client.getex(keys["getex"]) == get("getex")
    assert client.getex(keys["getex-ex"], ex=100) == get("getex-ex")
    assert 0 < client.ttl(keys["getex-ex"]) <= 100
    assert client.getdel(keys["getdel"]) == get("getdel") and not client.exists(keys["getdel"])
    assert client.set(keys["setget"], b"new", get=True) == get("setget")
    assert client.append(keys["append"], b"!") == size + 1
    assert client.setrange(keys["setrange"], 5, b"XY") == size
    assert client.getrange(keys["setrange"], 4, 7) == get("setrange")[4:5] + b"XY" + \
        get("setrange")[7:8]
    assert client.incr("cold:incr") == 42
    assert float(client.incrbyfloat("cold:incrbyfloat", 0.5)) == 41.5
    assert client.rename(keys["rename"], "renamed") and client.get("renamed") == get("rename")
    assert client.copy(keys["copy"], "copied") and client.get("copied") == get("copy")
    assert client.renamenx(keys["renamenx"], "renamed-nx")
    assert client.get("renamed-nx") == get("renamenx")
    # Setting or removing an expiry rewrites the record: the key comes back first.
    assert client.expire(keys["expire"], 500) is True and 0 < client.ttl(keys["expire"]) <= 500
    assert client.pexpireat(keys["pexpireat"], int(time.time() * 1000) + 600_000) is True
    assert 0 < client.pttl(keys["pexpireat"]) <= 600_000
    assert client.persist(keys["persist"]) is True and client.ttl(keys["persist"]) == -1
    assert client.persist(keys["expire"] + ":absent") is False
    assert client.get(keys["far-expiry"]) == get("far-expiry")
    assert client.ttl(keys["far-expiry"]) > 10 * 365 * 86400
    status, _, body = server.http(f"/keys/{keys['http']}")
    assert (status, body) == (200, get("http"))
    status, headers, body = server.http(f"/keys/{keys['http-range']}",
                                        headers={"Range": "bytes=100-199"})
    assert (status, body) == (206, get("http-range")[100:200])
    # A response that waited for flash still ends the connection the request asked to
    # end, at once (before, only the next once-a-second tick closed it).
    started = time.monotonic()
    for name in keys:
        if not name.startswith("http-close-") and not name.startswith("http10-"):
            continue
        if name.startswith("http10-"):
            request = f"GET /keys/{keys[name]} HTTP/1.0\r\n\r\n"
        else:
            request = f"GET /keys/{keys[name]} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as raw:
            raw.sendall(request.encode())
            received = b""
            while True:
                chunk = raw.recv(1 << 20)  # times out (fails) if the server keeps it open
                if not chunk:
                    break
                received += chunk
        assert received.startswith(b"HTTP/1.1 200") and received.endswith(get(name)), name
    # Six reads and closes take milliseconds; waiting for ticks would take about 3 s.
    assert time.monotonic() - started < 1.5 * SLOW
    status, headers, body = server.http(f"/keys/{keys['head']}", method="HEAD")
    assert status == 200 and int(headers["Content-Length"]) == size and body == b""
    with strata.Client(port=server.native_port) as native:
        buffers = [(f"cold:native:{i}", bytearray(size)) for i in range(4)]
        results = native.get_batch(buffers)
        for i, (status_code, length) in enumerate(results):
            assert (status_code, length) == (0, size)
            assert bytes(buffers[i][1]) == value_for(f"cold:native:{i}", size)
    # Pipelined: replies keep their order around a read that waits for flash.
    push_to_flash(server, client, "flood2")
    pipe = client.pipeline(transaction=False)
    pipe.get(keys["pipeline"])
    pipe.echo("after")
    pipe.incr("pipelined-counter")
    pipe.mget([keys["pipeline"], "absent"])
    replies = pipe.execute()
    assert replies == [get("pipeline"), b"after", 1, [get("pipeline"), None]]
    info = flash(server)
    assert info["flash_reads"] > reads_before + 15, info
    assert info["flash_blocking_reads"] == 0, info
    client.close()
    server.stop()


# The case: 300 MB stored with 1 GiB of DRAM, then the budget cut to 64 MiB. The
# sanitizer builds move less.
BIG = (96 if SANITIZED else 300) * MIB


def big_value():
    block = hashlib.sha256(b"big").digest() * (MIB // 32)
    return b"".join(block[:MIB - 7] + bytes([i % 251]) * 7 for i in range(BIG // MIB))


def test_a_value_larger_than_dram_is_streamed_from_flash(tmp_path):
    server = start(tmp_path, "--memory", "1gb", "--max-value", "512mb")
    value = big_value()
    digest = hashlib.sha256(value).hexdigest()
    status, _, _ = server.http("/keys/big", method="PUT", body=value)
    assert status == 201
    client = server.client(socket_timeout=300 * SLOW)
    client.set("small", b"s")
    client.config_set("memory", str(64 * MIB))
    assert client.exists("big") == 1
    assert client.strlen("big") == BIG
    assert flash(server)["flash_items"] >= 1
    # HTTP: whole, a range, HEAD
    result = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{server.http_port}/keys/big"],
                            capture_output=True, timeout=300 * SLOW)
    assert result.returncode == 0 and hashlib.sha256(result.stdout).hexdigest() == digest
    status, headers, body = server.http("/keys/big", headers={"Range": f"bytes={BIG - 10}-"})
    assert (status, body) == (206, value[-10:])
    status, headers, body = server.http("/keys/big", method="HEAD")
    assert status == 200 and int(headers["Content-Length"]) == BIG
    # RESP: GET, GETRANGE, MGET
    assert hashlib.sha256(client.get("big")).hexdigest() == digest
    assert client.getrange("big", MIB - 8, MIB + 8) == value[MIB - 8:MIB + 9]
    many = client.mget(["small", "big", "absent"])
    assert many[0] == b"s" and many[2] is None and hashlib.sha256(many[1]).hexdigest() == digest
    memory = server.info("memory")
    assert memory["used_memory"] <= memory["maxmemory"] == 64 * MIB
    info = flash(server)
    assert info["flash_blocking_reads"] == 0 and info["flash_checksum_failures"] == 0
    # A client that goes away in the middle of a stream.
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET big\r\n")
            sock.recv(1 << 20)
    assert client.strlen("big") == BIG
    # Read-modify-write commands need the value in DRAM: a clear error, not a hang.
    with pytest.raises(redis.ResponseError, match="OOM"):
        client.append("big", b"x")
    assert client.strlen("big") == BIG
    client.close()
    server.stop()


def test_native_values_larger_than_dram(tmp_path):
    size = (24 if SANITIZED else 48) * MIB
    socket_path = str(tmp_path / "strata.sock")
    server = start(tmp_path, "--memory", "512mb", "--unix-socket", socket_path)
    value = bytes(range(256)) * (size // 256)
    fingerprint = b"f" * 16
    # Over the Unix socket: shared memory is passed there (docs/security.md).
    with strata.Client(unix_socket=socket_path, timeout_ms=300000) as native:
        assert native.put_batch([{"key": "native:big", "value": value,
                                  "fingerprint": fingerprint}]) == [0]
        server.client().config_set("memory", str(64 * MIB))  # a quarter is 16 MiB
        buffer = bytearray(size)
        assert native.get_batch([{"key": "native:big", "buffer": buffer,
                                  "fingerprint": fingerprint}]) == [(0, size)]
        assert bytes(buffer) == value
        assert native.get_batch([{"key": "native:big", "buffer": bytearray(size),
                                  "fingerprint": b"g" * 16}])[0][0] == strata.ERR_FINGERPRINT
        assert native.get_batch([("native:big", bytearray(100))])[0] == (
            strata.ERR_BUFFER_TOO_SMALL, size)
        region = native.shm_create(size + 4096)
        window = region[4096:4096 + size]  # inside the region: the server copies into it
        assert native.get_batch([("native:big", window)]) == [(0, size)]
        assert bytes(window) == value
    assert flash(server)["flash_blocking_reads"] == 0
    server.stop()


def test_a_damaged_value_is_never_sent_whole(tmp_path):
    server = start(tmp_path, "--memory", "1gb", "--max-value", "512mb")
    value = big_value()
    assert server.http("/keys/damaged", method="PUT", body=value)[0] == 201
    client = server.client(socket_timeout=300 * SLOW)
    client.config_set("memory", str(64 * MIB))
    assert client.strlen("damaged") == BIG
    segment = sorted(glob.glob(os.path.join(server.directory, "data", "ssd", "segment-*")))[0]
    with open(segment, "r+b") as data:  # one byte in the middle of the value
        data.seek(BIG // 2)
        byte = data.read(1)
        data.seek(BIG // 2)
        data.write(bytes([byte[0] ^ 0xFF]))
    result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
                             f"http://127.0.0.1:{server.http_port}/keys/damaged"],
                            capture_output=True, text=True, timeout=300 * SLOW)
    assert result.returncode == 18  # curl: the transfer ended before its Content-Length
    assert int(result.stdout) < BIG
    assert client.exists("damaged") == 0  # the damaged key is dropped
    assert flash(server)["flash_checksum_failures"] == 1
    assert "event=flash_checksum_failed key=damaged" in server.read_log()
    client.close()
    server.stop()


def test_a_damaged_value_closes_the_resp_connection(tmp_path):
    server = start(tmp_path, "--memory", "1gb", "--max-value", "512mb")
    value = big_value()
    assert server.http("/keys/damaged", method="PUT", body=value)[0] == 201
    client = server.client(socket_timeout=300 * SLOW)
    client.config_set("memory", str(64 * MIB))
    segment = sorted(glob.glob(os.path.join(server.directory, "data", "ssd", "segment-*")))[0]
    with open(segment, "r+b") as data:
        data.seek(BIG // 3)
        byte = data.read(1)
        data.seek(BIG // 3)
        data.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(redis.ConnectionError):
        client.get("damaged")
    other = server.client()
    assert other.get("damaged") is None and other.ping()
    other.close()
    server.stop()
