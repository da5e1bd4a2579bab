"""Recovery in the open: after a crash the ports open at once, while the flash index is
rebuilt in the background; until it is whole /health answers 503 "recovering", RESP
answers -LOADING (as Redis does while it loads), the native protocol BUSY and HTTP
/keys/ 503, then everything is served. A stop during recovery loses nothing."""
import hashlib
import os
import signal
import socket
import struct
import sys

import pytest
import redis

from conftest import ROOT, SANITIZED, SLOW, Server

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402

MIB = 1024 * 1024
# Enough data that a scan takes a good part of a second, so the test sees it running.
DATA = (384 if SANITIZED else 1024) * MIB
VALUE = 256 * 1024
KEYS = DATA // VALUE


def value_for(key):
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (VALUE // len(seed) + 1))[:VALUE]


def fill(server):
    client = server.client()
    pipe = client.pipeline(transaction=False)
    for index in range(KEYS):
        key = f"kept:{index}"
        pipe.set(key, value_for(key))
        if index % 64 == 63:
            pipe.execute()
    pipe.execute()
    client.close()


def arguments(tmp_path):
    # Write-through, so that every acknowledged value is on flash before kill -9.
    return ("--memory", "64mb", "--ssd-size", "4gb", "--pace-timeout", "60000",
            "--write-policy", "through", "--dir", str(tmp_path / "data"))


def native_frame(opcode, body, count):
    return b"STRN" + bytes([1, opcode, 0, 0]) + struct.pack("<QQIi", 1, len(body), count, 0) + body


def native_get_status(port):
    """The frame status of a native GET of one key, on a raw connection."""
    key = b"kept:0"
    body = struct.pack("<H", 7) + b"default" + struct.pack("<IIQQ", len(key), 0, 1 << 20, 0) + \
        b"\0" * 16 + key
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(native_frame(2, body, 1))
        header = b""
        while len(header) < 32:
            header += sock.recv(32 - len(header))
        return struct.unpack("<i", header[28:32])[0]


def test_ports_open_while_the_index_is_rebuilt(tmp_path):
    first = Server(tmp_path / "first", *arguments(tmp_path))
    fill(first)
    first.kill()  # a crash: no saved index, the next start scans every segment
    # systemd's notification socket (src/server/notify.c): not READY=1 until the index is whole.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    server = Server(tmp_path / "second", *arguments(tmp_path), wait_ready=False,
                    environment={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=30 * SLOW)
    seen = {"loading": False}
    # At once, while the scan runs:
    status, headers, body = server.http("/health")
    if status == 503:
        seen["loading"] = True
        assert body == b"unavailable: recovering\n" and headers.get("Retry-After") == "1"
        assert client.info("server")["loading"] == 1
        with pytest.raises(redis.exceptions.BusyLoadingError):
            client.get("kept:0")
        with pytest.raises(redis.exceptions.BusyLoadingError):
            client.set("written:during", "no")
        assert native_get_status(server.native_port) == strata.ERR_BUSY
        with strata.Client(port=server.native_port) as native:
            native.ping()  # the connection itself is fine
        status, headers, _ = server.http("/keys/kept:0")
        assert status == 503 and headers.get("Retry-After") == "1"
    assert seen["loading"], "recovery was over before the test could see it"
    server.wait_ready()
    log = server.read_log()
    assert log.index("event=listening protocol=resp") < log.index("event=flash_recovered")
    assert log.index("event=recovering") < log.index("event=ready")
    notify.settimeout(10 * SLOW)
    messages = [notify.recv(4096).decode()]
    while "READY=1" not in messages[-1].split("\n"):
        messages.append(notify.recv(4096).decode())
    notify.close()
    assert messages[0] == "STATUS=recovering: rebuilding the flash index", messages
    assert all("READY=1" not in message for message in messages[:-1]), messages
    assert server.http("/health")[0] == 200
    assert client.info("server")["loading"] == 0
    assert client.info("flash")["flash_recovery_source"] == "scan"
    assert client.dbsize() == KEYS
    for index in range(0, KEYS, 97):
        key = f"kept:{index}"
        assert client.get(key) == value_for(key)
    assert client.exists("written:during") == 0
    client.close()
    server.stop()


def test_a_stop_during_recovery_loses_nothing(tmp_path):
    first = Server(tmp_path / "first", *arguments(tmp_path))
    fill(first)
    first.kill()
    server = Server(tmp_path / "second", *arguments(tmp_path), wait_ready=False)
    server.process.send_signal(signal.SIGTERM)  # while it scans
    assert server.process.wait(timeout=60 * SLOW) == 0
    server.stopped = True
    server.log.close()
    log = server.read_log()
    assert "event=flash_recovery_stopped" in log, "the scan was over before the stop"
    assert "event=flash_index_saved" not in log  # an index half rebuilt is not saved
    again = Server(tmp_path / "third", *arguments(tmp_path))
    client = again.client()
    assert client.dbsize() == KEYS
    for index in range(0, KEYS, 101):
        key = f"kept:{index}"
        assert client.get(key) == value_for(key)
    client.close()
    again.stop()
