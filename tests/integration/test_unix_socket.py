"""The Unix socket (--unix-socket, docs/security.md): RESP and the native protocol on one
socket told apart by their first bytes, the socket file's mode and life, and users known
by their peer uid."""
import os
import socket
import stat
import struct
import subprocess
import sys
import time

import pytest
import redis

from conftest import BINARY, ROOT, SLOW, Server

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("unix")
    instance = Server(directory, "--memory", "256mb", "--ssd-size", "0",
                      "--unix-socket", directory / "strata.sock")
    instance.socket_path = str(directory / "strata.sock")
    yield instance
    instance.stop()


def ping_frame(request_id=7):
    return b"STRN" + bytes([1, 0, 0, 0]) + struct.pack("<QQIi", request_id, 2, 0, 0) + b"\0\0"


def unix_connection(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30 * SLOW)
    sock.connect(path)
    return sock


def receive_exactly(sock, length):
    data = b""
    while len(data) < length:
        piece = sock.recv(length - len(data))
        if not piece:
            raise ConnectionError("closed")
        data += piece
    return data


def test_the_socket_file_is_a_socket_of_mode_0660(server):
    status = os.lstat(server.socket_path)
    assert stat.S_ISSOCK(status.st_mode)
    assert stat.S_IMODE(status.st_mode) == 0o660
    assert "event=listening_unix" in server.read_log()


def test_redis_cli_and_redis_py_over_the_socket(server):
    result = subprocess.run(["redis-cli", "-s", server.socket_path, "ping"], capture_output=True,
                            text=True, timeout=30 * SLOW)
    assert result.stdout.strip() == "PONG", result.stdout + result.stderr
    client = redis.Redis(unix_socket_path=server.socket_path, socket_timeout=30 * SLOW)
    try:
        assert client.set("unix/key", "over the socket")
        assert client.get("unix/key") == b"over the socket"
        addresses = [entry["addr"] for entry in client.client_list()]
        assert f"unix:{os.getpid()}" in addresses, addresses
    finally:
        client.close()
    # A TCP client sees what the socket's client wrote: one store.
    tcp = server.client()
    assert tcp.get("unix/key") == b"over the socket"
    tcp.close()


def test_python_binding_over_the_same_socket(server):
    with strata.Client(unix_socket=server.socket_path) as client:
        value = os.urandom(300_000)
        client.put(b"unix/native", value)
        buffer = bytearray(len(value))
        assert client.get(b"unix/native", buffer) == len(value)
        assert bytes(buffer) == value
    with strata.Client(port=server.native_port) as tcp:
        assert tcp.exists(b"unix/native")


def test_first_bytes_choose_the_protocol(server):
    # An inline RESP command that begins like the native magic ("STRL", not "STRN").
    with unix_connection(server.socket_path) as sock:
        sock.sendall(b"STRLEN unix/key\r\n")
        assert receive_exactly(sock, 5) == b":15\r\n"
    # The native magic, split across sends: the choice waits for the fourth byte.
    with unix_connection(server.socket_path) as sock:
        frame = ping_frame()
        sock.sendall(frame[:2])
        time.sleep(0.1)
        sock.sendall(frame[2:])
        header = receive_exactly(sock, 32)
        assert header[:4] == b"STRN" and struct.unpack("<i", header[28:32])[0] == 0
    # Closing before a protocol is chosen, with one byte sent or none, costs nothing.
    for first in (b"", b"S"):
        with unix_connection(server.socket_path) as sock:
            sock.sendall(first)
    with strata.Client(unix_socket=server.socket_path) as client:
        client.ping()


def test_a_stale_socket_is_replaced_and_removed_at_stop(start_server, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays; nobody listens
    instance = start_server("--memory", "64mb", "--ssd-size", "0", "--unix-socket", path,
                            "--unix-socket-mode", "0600")
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    result = subprocess.run(["redis-cli", "-s", path, "ping"], capture_output=True, text=True,
                            timeout=30 * SLOW)
    assert result.stdout.strip() == "PONG"
    instance.stop()
    assert not os.path.exists(path)


@pytest.mark.parametrize("arguments, message", [
    (["--unix-socket-mode", "0999"], "invalid value '0999' for --unix-socket-mode"),
    (["--unix-socket", "{file}"], "exists and is not a socket"),
    (["--unix-socket", "{live}"], "another process listens there"),
])
def test_bad_socket_options_are_refused(server, tmp_path, arguments, message):
    regular = tmp_path / "regular"
    regular.write_text("not a socket")
    arguments = [argument.format(file=regular, live=server.socket_path) for argument in arguments]
    result = subprocess.run([BINARY, "--port", "0", "--http-port", "0", "--native-port", "0",
                             "--dir", str(tmp_path / "data"), "--memory", "64mb", "--ssd-size",
                             "0", *arguments], capture_output=True, text=True, timeout=60 * SLOW)
    assert result.returncode != 0
    assert message in result.stderr
    assert regular.read_text() == "not a socket"
    assert stat.S_ISSOCK(os.lstat(server.socket_path).st_mode)  # the live one is untouched


def test_users_known_by_their_peer_uid(start_server, tmp_path):
    users = tmp_path / "users"
    users.write_text(f"user default off\n"
                     f"user local on uid:{os.getuid()} namespace:a=read,write\n"
                     f"user elsewhere on uid:{os.getuid() + 4242} namespace:*=all\n")
    users.chmod(0o600)
    path = str(tmp_path / "peer.sock")
    instance = start_server("--memory", "64mb", "--ssd-size", "0", "--namespaces", "a=8mb,b=8mb",
                            "--users", users, "--unix-socket", path)
    with strata.Client(unix_socket=path, namespace="a") as local:
        local.put(b"mine", b"by uid")  # no password: the socket said who we are
        with pytest.raises(strata.Error) as refused:
            strata.Client(unix_socket=path, namespace="b").put(b"theirs", b"x")
        assert refused.value.code == strata.ERR_NOPERM
    # Over TCP the same process is nobody until it authenticates.
    with pytest.raises(strata.Error) as refused:
        strata.Client(port=instance.native_port, namespace="a")
    assert refused.value.code == strata.ERR_NOAUTH
