"""The native protocol's users and rights (docs/security.md, "The native protocol"): AUTH
from libstrata, the Python binding and raw frames, NOAUTH before AUTH, NOPERM per
namespace, failed attempts slowed down."""
import os
import struct
import subprocess
import sys

import pytest

from conftest import ROOT, SLOW, Server, hash_passwords, metric, write_users_file
from native_wire import (C_TESTS, closed_by_server, frame, get_entry, name, put_entry, raw,
                         read_frame)

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402

PASSWORDS = {"admin": "admin-secret", "alice": "alice-secret", "reader": "reader-secret"}


def write_users(path):
    hashes = dict(zip(PASSWORDS, hash_passwords(*PASSWORDS.values())))
    write_users_file(path, "user default off\n"
                           f"user admin on {hashes['admin']} namespace:*=all\n"
                           f"user alice on {hashes['alice']} namespace:a=read,write\n"
                           f"user reader on {hashes['reader']} namespace:a=read\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("native-auth")
    write_users(directory / "users")
    instance = Server(directory, "--memory", "256mb", "--ssd-size", "0",
                      "--namespaces", "a=8mb,b=8mb", "--users", directory / "users")
    yield instance
    instance.stop()


def connect(server, user, namespace="a", **options):
    return strata.Client(port=server.native_port, namespace=namespace, user=user,
                         password=PASSWORDS.get(user, "nope"), **options)


# ---- raw frames ----------------------------------------------------------------------

def auth_frame(user, password, request_id=1):
    user, password = user.encode(), password.encode()
    body = name(b"") + struct.pack("<II", len(user), len(password)) + user + password
    return frame(10, body, 1, request_id=request_id)


def put_frame(namespace, key, value, request_id):
    return frame(1, name(namespace) + put_entry(key, value), 1, request_id=request_id)


def get_frame(namespace, key, request_id):
    return frame(2, name(namespace) + get_entry(key), 1, request_id=request_id)


# ---- AUTH ------------------------------------------------------------------------------

def test_the_right_password_works_and_wrong_ones_do_not(server):
    with connect(server, "alice") as client:
        client.put(b"greeting", b"hello a")
        buffer = bytearray(16)
        assert buffer[:client.get(b"greeting", buffer)] == b"hello a"
    for user, password in (("alice", "wrong"), ("mallory", "alice-secret")):
        with pytest.raises(strata.Error) as refused:
            strata.Client(port=server.native_port, namespace="a", user=user, password=password)
        assert refused.value.code == strata.ERR_WRONGPASS
    # No credentials at all: the server asks for them.
    with pytest.raises(strata.Error) as refused:
        strata.Client(port=server.native_port, namespace="a")
    assert refused.value.code == strata.ERR_NOAUTH


def test_c_library_authenticates(server):
    result = subprocess.run([C_TESTS, "auth", str(server.native_port), "alice", "alice-secret"],
                            capture_output=True, text=True, timeout=60 * SLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "auth: 0 failures" in result.stdout


def test_a_frame_before_auth_is_refused_and_the_connection_closed(server):
    for first in (get_frame(b"a", b"greeting", 2), frame(0, name(b""), 0, request_id=2)):
        with raw(server) as sock:
            sock.sendall(first + get_frame(b"a", b"greeting", 3))
            _opcode, request_id, count, status, message = read_frame(sock)
            assert (request_id, count, status) == (2, 0, strata.ERR_NOAUTH)
            assert message.startswith(b"NOAUTH")
            assert closed_by_server(sock)  # and the pipelined GET is never answered
    # A wrong AUTH leaves the connection open but unauthenticated.
    with raw(server) as sock:
        sock.sendall(auth_frame("alice", "wrong"))
        _opcode, _request, _count, status, message = read_frame(sock)
        assert status == strata.ERR_WRONGPASS and message.startswith(b"WRONGPASS")
        sock.sendall(put_frame(b"a", b"sneaky", b"x", 3))
        assert read_frame(sock)[3] == strata.ERR_NOAUTH
        assert closed_by_server(sock)
    with connect(server, "admin") as admin:
        assert not admin.exists(b"sneaky")


def test_rights_per_namespace_in_one_pipelined_batch(server):
    with connect(server, "admin", namespace="b") as admin:
        admin.put(b"secret", b"b's value")
    denied_before = metric(server, "strata_access_denied_total")
    with raw(server) as sock:
        sock.sendall(auth_frame("alice", "alice-secret") +
                     put_frame(b"a", b"mine", b"alice's", 2) +
                     put_frame(b"b", b"secret", b"overwritten", 3) +
                     get_frame(b"b", b"secret", 4) +
                     get_frame(b"nowhere", b"secret", 5) +
                     get_frame(b"a", b"mine", 6))
        assert read_frame(sock)[3] == 0  # AUTH
        _opcode, request_id, _count, status, body = read_frame(sock)
        assert (request_id, status, body) == (2, 0, struct.pack("<i", 0))
        for expected_id in (3, 4, 5):  # no right on b, nor on a namespace that does not exist
            _opcode, request_id, count, status, message = read_frame(sock)
            assert (request_id, count, status) == (expected_id, 0, strata.ERR_NOPERM)
            assert message.startswith(b"NOPERM user 'alice'")
        _opcode, request_id, _count, status, body = read_frame(sock)
        assert (request_id, status) == (6, 0) and body[16:] == b"alice's"
    assert metric(server, "strata_access_denied_total") >= denied_before + 3
    with connect(server, "alice", namespace="b") as alice_on_b:
        with pytest.raises(strata.Error) as refused:
            alice_on_b.get(b"secret", bytearray(64))
        assert refused.value.code == strata.ERR_NOPERM
        with pytest.raises(strata.Error) as refused:
            alice_on_b.put(b"secret", b"again")
        assert refused.value.code == strata.ERR_NOPERM
        alice_on_b.ping()  # the connection carries on
    with connect(server, "admin", namespace="b") as admin:
        buffer = bytearray(64)
        assert buffer[:admin.get(b"secret", buffer)] == b"b's value"


def test_read_only_users_read_but_do_not_write(server):
    with connect(server, "alice") as alice:
        alice.put(b"shared", b"from alice")
    with connect(server, "reader") as reader:
        buffer = bytearray(64)
        assert buffer[:reader.get(b"shared", buffer)] == b"from alice"
        assert reader.exists(b"shared")
        assert reader.match_prefix([b"shared"]) == 1
        for call in (lambda: reader.put(b"shared", b"from reader"),
                     lambda: reader.delete(b"shared"),
                     lambda: reader.pin_batch([b"shared"], 1000),
                     lambda: reader.match_prefix([b"shared"], lease_ms=1000)):
            with pytest.raises(strata.Error) as refused:
                call()
            assert refused.value.code == strata.ERR_NOPERM
        assert buffer[:reader.get(b"shared", buffer)] == b"from alice"


def test_repeated_failures_are_throttled(start_server, tmp_path):
    write_users(tmp_path / "users")
    throttled = start_server("--memory", "64mb", "--ssd-size", "0", "--namespaces", "a=8mb",
                             "--users", tmp_path / "users")
    codes = []
    for _ in range(7):
        with pytest.raises(strata.Error) as refused:
            strata.Client(port=throttled.native_port, namespace="a", user="alice",
                          password="wrong")
        codes.append(refused.value.code)
    assert codes[:5] == [strata.ERR_WRONGPASS] * 5
    assert codes[-1] == strata.ERR_THROTTLED
    with raw(throttled) as sock:
        sock.sendall(auth_frame("alice", "alice-secret"))
        _opcode, _request, _count, status, message = read_frame(sock)
        assert status == strata.ERR_THROTTLED and b"try again in" in message
    assert "event=auth_throttled" in throttled.read_log()
