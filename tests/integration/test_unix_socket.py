"""The Unix socket (--unix-socket, docs/security.md): RESP and the native protocol on one
socket told apart by their first bytes, the socket file's mode and life, users known by
their peer uid, and shared memory whose memfd is passed with SCM_RIGHTS."""
import fcntl
import os
import socket
import stat
import struct
import subprocess
import sys
import time

import pytest
import redis

from conftest import BINARY, ROOT, SLOW, Server, write_users_file
from native_wire import C_TESTS, frame, get_entry, name, read_frame, receive_exactly

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
    return frame(0, name(b""), 0, request_id=request_id)


def shm_frame(size, reserved=0):
    return frame(9, name(b"") + struct.pack("<QQ", reserved, size), 1)


def memfd(size, seals=fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW):
    fd = os.memfd_create("strata-test", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def unix_connection(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30 * SLOW)
    sock.connect(path)
    return sock


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
    users = write_users_file(tmp_path / "users",
                             f"user default off\n"
                             f"user local on uid:{os.getuid()} namespace:a=read,write "
                             f"namespace:default=read\n"
                             f"user elsewhere on uid:{os.getuid() + 4242} namespace:*=all\n")
    path = str(tmp_path / "peer.sock")
    instance = start_server("--memory", "64mb", "--ssd-size", "0", "--namespaces", "a=8mb,b=8mb",
                            "--users", users, "--unix-socket", path)
    with strata.Client(unix_socket=path, namespace="a") as local:
        local.put(b"mine", b"by uid")  # no password: the socket said who we are
        with pytest.raises(strata.Error) as refused:
            strata.Client(unix_socket=path, namespace="b").put(b"theirs", b"x")
        assert refused.value.code == strata.ERR_NOPERM
    # Values moved through shared memory are under the same rights.
    with strata.Client(unix_socket=path, namespace="b") as on_b:
        region = on_b.shm_create(1 << 20)
        region[:5] = b"hello"
        for call in (lambda: on_b.put(b"theirs", region[:5]),
                     lambda: on_b.get(b"theirs", region[4096:8192])):
            with pytest.raises(strata.Error) as refused:
                call()
            assert refused.value.code == strata.ERR_NOPERM
    # Over TCP the same process is nobody until it authenticates.
    with pytest.raises(strata.Error) as refused:
        strata.Client(port=instance.native_port, namespace="a")
    assert refused.value.code == strata.ERR_NOAUTH
    # RESP on the socket knows the peer too: its rights, no AUTH.
    resp = redis.Redis(unix_socket_path=path, socket_timeout=30 * SLOW)
    try:
        assert resp.execute_command("ACL", "WHOAMI") in (b"local", "local")
        assert resp.get("nothing") is None
        with pytest.raises(redis.exceptions.NoPermissionError):
            resp.set("nothing", "x")
    finally:
        resp.close()
    with pytest.raises(redis.exceptions.AuthenticationError):
        instance.client().get("nothing")


# ---- shared memory: the memfd passed with SCM_RIGHTS ----------------------------------

def test_shared_memory_round_trips_bytes_exactly(server):
    size = 3 << 20
    with strata.Client(unix_socket=server.socket_path, connections=2) as client:
        region = client.shm_create(2 * size)
        value = os.urandom(size)
        region[:size] = value
        assert client.put_batch([("shm/exact", region[:size])]) == [0]
        assert client.get_batch([("shm/exact", region[size:])]) == [(0, size)]
        assert bytes(region[size:]) == value
    # The value is a value like any other: read back over TCP.
    with strata.Client(port=server.native_port) as tcp:
        buffer = bytearray(size)
        assert tcp.get("shm/exact", buffer) == size and bytes(buffer) == value
    result = subprocess.run([C_TESTS, "unix", server.socket_path], capture_output=True,
                            text=True, timeout=300 * SLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unix: 0 failures" in result.stdout


def server_descriptors(server):
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def test_descriptors_that_are_not_a_sealed_memfd_are_refused(server, tmp_path):
    regular = open(tmp_path / "regular", "w+b")
    regular.truncate(1 << 20)
    pipe_read, pipe_write = os.pipe()
    unsealed = memfd(1 << 20, seals=0)
    small = memfd(1 << 20)
    write_sealed = memfd(1 << 20, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_WRITE)
    good = memfd(1 << 20)
    cases = [
        (regular.fileno(), shm_frame(1 << 20), b"not a memfd"),
        (pipe_read, shm_frame(1 << 20), b"not a memfd"),
        (unsealed, shm_frame(1 << 20), b"not sealed against shrinking (F_SEAL_SHRINK)"),
        (small, shm_frame(2 << 20), b"is not the size the frame gives"),
        (write_sealed, shm_frame(1 << 20), b"sealed against writing"),
        (good, shm_frame(1 << 20, reserved=os.getpid()), b"reserved"),
        (None, shm_frame(1 << 20), b"no descriptor came with SHM_REGISTER"),
    ]
    before = server_descriptors(server)
    other = redis.Redis(unix_socket_path=server.socket_path, socket_timeout=30 * SLOW)
    try:
        with unix_connection(server.socket_path) as sock:
            for descriptor, request, message in cases:
                if descriptor is None:
                    sock.sendall(request)
                else:
                    socket.send_fds(sock, [request], [descriptor])
                _opcode, _request, count, status, body = read_frame(sock)
                assert (status, count) == (strata.ERR_SHM, 0), body
                assert message in body, body
                assert other.ping()  # other clients carry on
            # Nothing was mapped: a shared-memory PUT on this connection has no region.
            value = b"through the region"
            put = (struct.pack("<IIQQII", 9, 16, len(value), 0, strata.checksum(value), 0) +
                   b"\0" * 16 + struct.pack("<Q", 0) + b"shm/never")
            sock.sendall(frame(1, name(b"default") + put, 1))
            assert read_frame(sock)[4] == struct.pack("<i", strata.ERR_SHM)
            assert server_descriptors(server) == before + 2  # the two connections, no more
            # The same connection then registers a good region and moves a value through it.
            with os.fdopen(os.dup(good), "r+b") as view:
                view.write(value)
            socket.send_fds(sock, [shm_frame(1 << 20)], [good])
            assert read_frame(sock)[3] == 0
            sock.sendall(frame(1, name(b"default") + put, 1))
            assert read_frame(sock)[4] == struct.pack("<i", 0)
            get = get_entry(b"shm/never", capacity=1 << 19, flags=16, offset=4096)
            sock.sendall(frame(2, name(b"default") + get, 1))
            _opcode, _request, _count, status, body = read_frame(sock)
            assert status == 0 and struct.unpack("<iIQ", body) == (
                0, strata.checksum(value), len(value))
            assert os.pread(good, len(value), 4096) == value
            assert server_descriptors(server) == before + 2  # the mapping holds no descriptor
    finally:
        other.close()
        regular.close()
        for fd in (pipe_read, pipe_write, unsealed, small, write_sealed, good):
            os.close(fd)


def test_too_many_descriptors_in_one_message_close_the_connection(server):
    fds = [memfd(4096) for _ in range(8)]
    try:
        with unix_connection(server.socket_path) as sock:
            socket.send_fds(sock, [shm_frame(4096)], fds)
            sock.settimeout(10 * SLOW)
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass  # closed with the frame unread
    finally:
        for fd in fds:
            os.close(fd)
    assert "event=descriptors_refused" in server.read_log()
    with strata.Client(unix_socket=server.socket_path) as client:
        client.ping()


def test_a_client_that_registers_shared_memory_and_exits(server):
    script = f"""
import os, sys
sys.path.insert(0, {os.path.join(ROOT, 'client', 'python')!r})
import strata
client = strata.Client(unix_socket={server.socket_path!r})
region = client.shm_create(4 << 20)
region[:1 << 20] = os.urandom(1 << 20)
assert client.put_batch([("shm/vanished", region[:1 << 20])]) == [0]
os._exit(0)  # no close: the server finds the connection gone
"""
    subprocess.run(["/usr/bin/python3", "-c", script], check=True, timeout=60 * SLOW)
    with strata.Client(unix_socket=server.socket_path) as client:
        assert client.exists("shm/vanished")
        region = client.shm_create(2 << 20)
        assert client.get("shm/vanished", region[:1 << 20]) == 1 << 20
