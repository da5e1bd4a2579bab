"""Fault injection against a real server: the fault-injection build (build/fault/
strata-server, AddressSanitizer and UndefinedBehaviorSanitizer on) takes rules from
DEBUG FAULT and from STRATA_FAULTS at start. Each test checks what the client sees (a
clear error, never a wrong value), what INFO counts, what the log says, and that the
server carries on. `make integration-fault` runs this module."""
import os
import subprocess
import sys
import threading
import time

import pytest
import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
from conftest import ROOT, Server  # noqa: E402

FAULT_BINARY = os.path.join(ROOT, os.environ.get("STRATA_FAULT_SERVER",
                                                 "build/fault/strata-server"))

def start(directory, *arguments, environment=None):
    return Server(directory, "--segment-size", "4mb", *arguments, binary=FAULT_BINARY,
                  environment=environment)


def value_for(key, size=20000):
    seed = key.encode() * (size // len(key) + 1)
    return seed[:size]


def fault_info(server):
    return server.info("faults")


def test_a_failed_sync_is_an_error_to_the_writer_and_counted(tmp_path):
    """With write-through and fsync always, a failed fdatasync fails the write it covered
    (an I/O error, not OK), is counted and logged, and the next writes succeed; after
    kill -9 every acknowledged write is there."""
    server = start(tmp_path / "server", "--write-policy", "through", "--fsync", "always",
                   "--memory", "64mb", "--ssd-size", "256mb")
    client = server.client()
    client.set("before", value_for("before"))
    client.execute_command("DEBUG", "FAULT", "sync:nth=1")
    with pytest.raises(redis.ResponseError, match="IOERR flash I/O error"):
        client.set("during", value_for("during"))
    acknowledged = []
    for index in range(20):
        key = f"after:{index}"
        client.set(key, value_for(key))
        acknowledged.append(key)
    flash = server.info("flash")
    assert flash["flash_sync_errors"] == 1 and flash["flash_write_errors"] >= 1
    assert fault_info(server)["fault_sync"]["injected"] == 1
    assert "event=flash_sync_failed" in server.read_log()
    client.close()
    server.kill()
    again = start(tmp_path / "server", "--write-policy", "through", "--fsync", "always",
                  "--memory", "64mb", "--ssd-size", "256mb")
    client = again.client()
    for key in ["before"] + acknowledged:
        assert client.get(key) == value_for(key), key
    during = client.get("during")
    assert during is None or during == value_for("during")  # its outcome was unknown
    client.close()
    again.stop()


def test_a_failed_flash_read_is_an_error_never_a_value(tmp_path):
    server = start(tmp_path / "server", "--memory", "4mb", "--ssd-size", "256mb",
                   "--pace-timeout", "60000")
    client = server.client()
    keys = [f"flashed:{index}" for index in range(400)]
    for key in keys:
        client.set(key, value_for(key))
    assert server.info("flash")["flash_items"] > 100  # most of them live on flash now
    client.execute_command("DEBUG", "FAULT", "read:nth=1:persistent")
    errors = 0
    for key in keys[:50]:
        try:
            value = client.get(key)
            assert value is None or value == value_for(key)
        except redis.ResponseError as error:
            assert "IOERR" in str(error)
            errors += 1
    assert errors > 0
    client.execute_command("DEBUG", "FAULT", "reset")
    for key in keys:
        value = client.get(key)
        assert value is None or value == value_for(key), key
    assert server.info("flash")["flash_read_errors"] == errors
    assert "event=flash_read_failed" in server.read_log()
    client.close()
    server.stop()


def test_allocations_failing_at_random_never_crash_or_corrupt(tmp_path):
    """One allocation in a hundred fails while clients write and read: requests fail
    with an error or the connection closes, nothing crashes and no value is wrong."""
    server = start(tmp_path / "server", "--memory", "8mb", "--ssd-size", "64mb",
                   "--pace-timeout", "60000")
    control = server.client()
    control.execute_command("DEBUG", "FAULT", "alloc:probability=0.01")
    wrong = []

    def work(number):
        for attempt in range(300):
            key = f"k:{number}:{attempt % 60}"
            try:
                client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=60)
                client.set(key, value_for(key, 3000 + attempt))
                value = client.get(key)
                if value is not None and not value_for(key, len(value)) == value:
                    wrong.append(key)
                client.close()
            except (redis.ResponseError, redis.ConnectionError):
                pass  # a refused request or a closed connection: allowed

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    injected = None
    for _ in range(50):  # the control requests themselves may fail meanwhile
        try:
            control = server.client()
            if injected is None:
                injected = fault_info(server)["fault_alloc"]["injected"]
            control.execute_command("DEBUG", "FAULT", "reset")
            break
        except (redis.ResponseError, redis.ConnectionError):
            continue
    assert injected > 0
    assert not wrong, wrong[:5]
    assert server.info("strata")["strata_allocation_failures"] > 0
    assert control.ping()
    control.close()
    server.stop()  # checks for sanitizer reports and a clean exit


def test_a_segment_that_cannot_be_opened_stops_the_start_and_loses_nothing(tmp_path):
    first = start(tmp_path / "server", "--memory", "4mb", "--ssd-size", "256mb")
    client = first.client()
    keys = [f"kept:{index}" for index in range(200)]
    for key in keys:
        client.set(key, value_for(key))
    client.close()
    first.stop()
    with pytest.raises(RuntimeError, match="cannot open segment"):
        start(tmp_path / "server", "--memory", "4mb", "--ssd-size", "256mb",
              environment={"STRATA_FAULTS": "open:nth=1"})
    again = start(tmp_path / "server", "--memory", "4mb", "--ssd-size", "256mb")
    client = again.client()
    for key in keys:
        assert client.get(key) == value_for(key), key
    client.close()
    again.stop()


def test_debug_fault_is_refused_without_the_fault_build(tmp_path):
    server = Server(tmp_path / "plain", binary=os.path.join(ROOT, "build/strata-server"))
    client = server.client()
    with pytest.raises(redis.ResponseError, match="needs the fault-injection build"):
        client.execute_command("DEBUG", "FAULT", "sync:nth=1")
    with pytest.raises(redis.ResponseError, match="unknown subcommand"):
        client.execute_command("DEBUG", "NOTHING")
    assert "fault_sync" not in server.info("all")
    client.close()
    server.stop()


def test_bad_fault_rules_are_refused(tmp_path):
    server = start(tmp_path / "server")
    client = server.client()
    for rules, message in (("nowhere:nth=1", "unknown fault site"),
                           ("sync:nth=0", "bad fault rule field"),
                           ("sync:probability=2", "bad fault rule field"),
                           ("sync:error=ENOTHING", "bad fault rule field")):
        with pytest.raises(redis.ResponseError, match=message):
            client.execute_command("DEBUG", "FAULT", rules)
    client.close()
    server.stop()
    result = subprocess.run([FAULT_BINARY, "--port", "0", "--http-port", "0", "--native-port",
                             "0"], env={**os.environ, "STRATA_FAULTS": "sync:nth=x"},
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "bad fault rule field" in result.stderr


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "strata: broken rule")


def test_an_allocation_failing_during_the_start_stops_it_cleanly_or_is_survived(tmp_path):
    """The Nth allocation after the options are read fails (stores, statistics, each front
    end's setup, the network layer, its workers): the server either says why and exits
    with status 1, having stopped what it started (no leak, no sanitizer report), or it
    starts and then stops cleanly. Never a crash."""
    outcomes = {"refused": 0, "started": 0}
    # The first allocations (the stores) and every one around the end of the start (about
    # the 500th to the 540th here: the statistics, the front ends, the network layer).
    for nth in list(range(1, 41)) + list(range(440, 640)) + [1000, 3000]:
        directory = tmp_path / f"start-{nth}"
        process = subprocess.Popen(
            [FAULT_BINARY, "--port", "0", "--http-port", "0", "--native-port", "0",
             "--dir", str(directory), "--memory", "16mb", "--ssd-size", "16mb",
             "--segment-size", "4mb", "--threads", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "STRATA_FAULTS": f"alloc:nth={nth}"})
        ready = False
        lines = []
        for line in process.stderr:  # until the last front end listens, or the exit
            lines.append(line)
            if "event=listening protocol=native" in line:
                ready = True
                break
        if ready:
            process.terminate()
            _, rest = process.communicate(timeout=60)
            lines.append(rest)
            assert process.returncode == 0, "".join(lines)
            outcomes["started"] += 1
        else:
            process.wait(timeout=60)
            assert process.returncode == 1, "".join(lines)
            assert any(line.startswith("strata-server: ") for line in lines), "".join(lines)
            outcomes["refused"] += 1
        text = "".join(lines)
        assert not any(marker in text for marker in SANITIZER_MARKERS), text
    assert outcomes["refused"] > 40 and outcomes["started"] > 0, outcomes


def test_a_push_in_the_window_before_blocking_is_not_missed(tmp_path):
    """BLPOP finds its list empty, then (block-delay) waits 200 ms before joining the line
    of blocked clients; a push lands in that window. The command still sees it at once
    (its second look, in line), instead of waiting out its 10 s timeout."""
    server = start(tmp_path / "server")
    client = server.client()
    client.execute_command("DEBUG", "FAULT", "block-delay:nth=1")
    results = []
    waiter = threading.Thread(target=lambda: results.append(server.client().blpop(["q"], 10)))
    started = time.time()
    waiter.start()
    time.sleep(0.05)  # inside the 200 ms window
    client.rpush("q", "v")
    waiter.join(15)
    assert results == [(b"q", b"v")]
    assert time.time() - started < 5
    assert fault_info(server)["fault_block-delay"]["injected"] == 1
    server.stop()
