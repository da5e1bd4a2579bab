"""`make test` beside `make run`: the suite shares the machine with a server that holds the
default ports (127.0.0.1:6379, 6380, 6381) and ./strata-data. Every server the fixtures
start asks for port 0 and a temporary directory, so it works beside that one."""
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import BINARY, ROOT, SANITIZED, Server, check_clean_exit

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402

DEFAULT_PORTS = (6379, 6380, 6381)


def listening(port):
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(SANITIZED, reason="run once, by the release build's suite")
def test_a_server_beside_one_on_the_default_ports(tmp_path):
    """While a server holds the default ports (one started here with no arguments, as
    `make run` starts it, unless they are held already: then that is the case under
    test), a server started by the fixtures comes up on other ports and works."""
    default = None
    if not all(listening(port) for port in DEFAULT_PORTS):
        (tmp_path / "run").mkdir()
        default = subprocess.Popen([BINARY], cwd=tmp_path / "run", stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while not all(listening(port) for port in DEFAULT_PORTS) and time.time() < deadline:
            if default.poll() is not None:  # another program holds one of them: the case
                output = default.stdout.read().decode(errors="replace")  # under test too
                assert "cannot listen" in output, output
                default = None
                break
            time.sleep(0.05)
    try:
        assert any(listening(port) for port in DEFAULT_PORTS)
        server = Server(tmp_path / "beside", "--memory", "64mb")
        try:
            assert not {server.port, server.native_port, server.http_port} & set(DEFAULT_PORTS)
            client = server.client()
            assert client.set("beside", "works") and client.get("beside") == b"works"
            client.close()
            status, _, body = server.http("/keys/beside")
            assert status == 200 and body == b"works"
            with strata.Client(port=server.native_port) as native:
                native.put("native-beside", b"also")
                buffer = bytearray(16)
                assert native.get("native-beside", buffer) == 4 and buffer[:4] == b"also"
        finally:
            server.stop()
        if default is not None:  # the one on the defaults is still there, untouched
            assert subprocess.run(["redis-cli", "-p", "6379", "PING"], capture_output=True,
                                  text=True, timeout=10).stdout.strip() == "PONG"
    finally:
        if default is not None:
            default.terminate()
            output, _ = default.communicate(timeout=30)
            check_clean_exit(default.returncode, output.decode(errors="replace"))
