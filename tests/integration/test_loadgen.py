"""The benchmark load generator (bench/loadgen.c) against real servers: it must move
traffic over each protocol it speaks, report sane figures, and catch a wrong value,
since every benchmark figure rests on its verification."""
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import ROOT

LOADGEN = os.path.join(ROOT, "build", "bench", "loadgen")


def run_loadgen(port, *arguments, check=True):
    """Runs loadgen against PORT; returns (report, completed process)."""
    result = subprocess.run([LOADGEN, "--port", str(port), *map(str, arguments)],
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return report, result


def check_clean(report):
    assert report["ops"] > 0
    assert report["errors"] == 0, report["first_error"]
    assert report["mismatches"] == 0
    assert 0 < report["p50_us"] <= report["p99_us"] <= report["p999_us"]
    assert report["ops_per_s"] == pytest.approx(report["ops"] / report["seconds"], rel=0.01)


def test_resp_prefill_then_mixed_load(server):
    report, _ = run_loadgen(server.port, "--size", "4k", "--keys", 300, "--prefill",
                            "--connections", 3, "--pipeline", 4)
    assert report["sets"] == 300 and report["gets"] == 0
    assert server.client().dbsize() == 300
    report, _ = run_loadgen(server.port, "--size", "4k", "--keys", 300, "--get-ratio", 0.5,
                            "--connections", 4, "--pipeline", 4, "--duration", 0.5)
    check_clean(report)
    assert report["gets"] > 0 and report["sets"] > 0 and report["misses"] == 0
    # MB/s counts each completed operation's value once
    assert report["mb_per_s"] == pytest.approx(report["ops_per_s"] * 4096 / 1e6, rel=0.02)


def test_native_batches(server):
    run_loadgen(server.native_port, "--protocol", "native", "--size", "64k", "--keys", 1100,
                "--key-start", 1000, "--prefill", "--batch", 8)
    report, _ = run_loadgen(server.native_port, "--protocol", "native", "--size", "64k",
                            "--keys", 1100, "--key-start", 1000, "--batch", 8,
                            "--get-ratio", 0.8, "--connections", 2, "--duration", 0.5)
    check_clean(report)
    assert report["misses"] == 0
    # a frame of 8 entries counts as 8 operations
    # (gets and sets also count entries answered just after the measured window)
    assert 0 <= report["gets"] + report["sets"] - report["ops"] <= 2 * 8


def test_misses_are_counted_not_mismatched(server):
    report, _ = run_loadgen(server.port, "--size", 100, "--keys", 9000, "--key-start", 8000,
                            "--get-ratio", 1, "--duration", 0.3)
    assert report["misses"] == report["gets"] > 0
    assert report["mismatches"] == 0


@pytest.mark.parametrize("damage", ["one byte", "shorter", "other key's value"])
def test_a_wrong_value_fails_the_run(server, damage):
    client = server.client()
    run_loadgen(server.port, "--size", 1000, "--keys", 2050, "--key-start", 2000, "--prefill")
    victim = b"bench:0000002007"
    value = client.get(victim)
    assert len(value) == 1000
    if damage == "one byte":
        value = value[:500] + bytes([value[500] ^ 1]) + value[501:]
    elif damage == "shorter":
        value = value[:999]
    else:
        value = client.get(b"bench:0000002008")
    client.set(victim, value)
    report, result = run_loadgen(server.port, "--size", 1000, "--keys", 2050, "--key-start",
                                 2000, "--get-ratio", 1, "--duration", 0.5, check=False)
    assert result.returncode == 1
    assert "WRONG VALUE for key 2007" in result.stderr
    assert report["mismatches"] > 0


def test_bad_arguments_and_no_server():
    result = subprocess.run([LOADGEN, "--connections", "0"], capture_output=True, text=True)
    assert result.returncode == 2 and "bad arguments" in result.stderr
    result = subprocess.run([LOADGEN, "--protocol", "smtp"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown protocol" in result.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    result = subprocess.run([LOADGEN, "--port", str(port), "--duration", "0.2"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 or json.loads(result.stdout)["errors"] > 0


def test_memcached_text_protocol(tmp_path):
    port = None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = ["memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-m", "64"]
    if os.geteuid() == 0:
        command += ["-u", "root"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        run_loadgen(port, "--protocol", "memcache", "--size", "3000", "--keys", 200,
                    "--prefill")
        report, _ = run_loadgen(port, "--protocol", "memcache", "--size", "3000", "--keys",
                                200, "--get-ratio", 0.7, "--pipeline", 4, "--duration", 0.5)
        check_clean(report)
        assert report["misses"] == 0 and report["sets"] > 0
        # a value changed behind loadgen's back is caught over this protocol too
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"set bench:0000000005 0 0 3000\r\n" + b"x" * 3000 + b"\r\n")
            assert sock.recv(100) == b"STORED\r\n"
        _, result = run_loadgen(port, "--protocol", "memcache", "--size", "3000", "--keys",
                                200, "--get-ratio", 1, "--duration", 0.5, check=False)
        assert result.returncode == 1 and "WRONG VALUE for key 5" in result.stderr
    finally:
        process.terminate()
        process.wait()
