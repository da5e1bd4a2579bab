"""Starting and stopping: signals, SHUTDOWN, and the README's `make run`."""
import os
import re
import signal
import subprocess
import time

from conftest import ROOT, SLOW, check_clean_exit
from resp import Connection


def test_sigterm_and_sigint_stop_cleanly(start_server):
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        server = start_server()
        held = [server.client() for _ in range(5)]
        for client in held:
            client.set("k", "v")
        server.process.send_signal(stop_signal)
        status = server.process.wait(timeout=30 * SLOW)
        server.stopped = True
        server.log.close()
        check_clean_exit(status, server.read_log())
        assert "event=stop" in server.read_log()


def test_shutdown_while_a_large_value_is_in_flight(start_server):
    server = start_server()
    with Connection(server.port) as slow:
        slow.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$50000000\r\n" + b"x" * 1000000)
        with Connection(server.port) as admin:
            admin.send("SHUTDOWN", "NOSAVE")
            assert admin.read_all_raw(timeout=30 * SLOW) == b""
        status = server.process.wait(timeout=30 * SLOW)
    server.stopped = True
    server.log.close()
    check_clean_exit(status, server.read_log())


def test_shutdown_abort_is_an_error(server):
    with Connection(server.port) as connection:
        assert connection.call("SHUTDOWN", "ABORT") == "ERR No shutdown in progress."
        assert connection.call("SHUTDOWN", "BOGUS") == "ERR syntax error"
        assert connection.call("PING") == "PONG"


def test_make_run_starts_a_server(tmp_path):
    """The README's first command: `make run` builds and starts a server that
    redis-cli PING answers. Every port is 0 (the kernel picks free ones, read back from
    the log), so this passes while another server, `make run`'s own, holds the defaults."""
    log_path = tmp_path / "make-run.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run",
             f"ARGS=--port 0 --http-port 0 --native-port 0 --dir {tmp_path}/data"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        port = None
        deadline = time.time() + 60 * SLOW
        while port is None and time.time() < deadline:
            match = re.search(r"event=listening protocol=resp .*port=(\d+)", log_path.read_text())
            if match:
                port = int(match.group(1))
            else:
                assert process.poll() is None, log_path.read_text()
                time.sleep(0.1)
        assert port is not None, log_path.read_text()
        reply = ""
        while time.time() < deadline:
            reply = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True,
                                   text=True).stdout.strip()
            if reply == "PONG":
                break
            time.sleep(0.1)
        assert reply == "PONG", log_path.read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
