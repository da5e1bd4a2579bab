"""sd_notify (src/server/notify.c): with $NOTIFY_SOCKET set, strata-server tells the
service manager READY=1 when it serves, RELOADING=1 then READY=1 around SIGHUP, and
STOPPING=1 on SIGTERM, as datagrams to a path or an abstract ('@') address."""
import os
import signal
import socket
import time

import pytest

from conftest import SLOW, Server


def receive(sock, wanted, seconds=30):
    """The datagrams up to and including the first that carries the line WANTED."""
    seen = []
    deadline = time.time() + seconds * SLOW
    while time.time() < deadline:
        sock.settimeout(max(0.01, deadline - time.time()))
        try:
            message = sock.recv(4096).decode()
        except socket.timeout:
            break
        seen.append(message)
        if wanted in message.split("\n"):
            return seen
    raise AssertionError(f"no {wanted!r} from strata-server; got {seen!r}")


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_reloading_stopping(tmp_path, abstract):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"@strata-notify-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name[1:])
    else:
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    try:
        server = Server(tmp_path / "server", environment={"NOTIFY_SOCKET": name})
        try:
            ready = receive(sock, "READY=1")
            assert "STATUS=serving" in ready[-1].split("\n")
            # Ready means serving: a command is answered now.
            assert server.client().ping()
            server.process.send_signal(signal.SIGHUP)
            assert receive(sock, "RELOADING=1")
            assert receive(sock, "READY=1")
            server.process.send_signal(signal.SIGTERM)
            assert receive(sock, "STOPPING=1")
        finally:
            server.stop()
    finally:
        sock.close()


def test_without_notify_socket_nothing_changes(tmp_path):
    """A server with no $NOTIFY_SOCKET (and one with a malformed one) starts and stops
    cleanly."""
    environment = {"NOTIFY_SOCKET": "not-a-path"}
    server = Server(tmp_path / "server", environment=environment)
    assert server.client().ping()
    server.stop()
