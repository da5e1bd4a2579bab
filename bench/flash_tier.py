#!/usr/bin/python3
"""Flash-tier benchmarks, each against a peer in the same run (docs/benchmarks-earlier.md):

1. GET throughput of flash-resident 256 KiB and 2 MiB values (redis-benchmark, 8
   clients) against fio reading the same block size from the same directory with
   O_DIRECT and io_uring (iodepth 8).
2. Start-up with 4 GiB of segments: from the saved index, and from a scan.
3. The retention workload side by side with memcached 1.6 + extstore: 128 MiB of RAM,
   4 GiB of flash, 4,000 values of 256 KiB written in a burst; keys retained, and the
   time to read every key back (verified).

Usage: bench/flash_tier.py [--quick]. Needs build/strata-server, redis-benchmark, fio,
memcached (scripts/install-deps.sh bench installs them). Works in a scratch directory
under $TMPDIR (or /tmp) on the same filesystem for every peer.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis

from bench_common import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "build", "strata-server")
QUICK = "--quick" in sys.argv
KIB, MIB, GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024


def value_for(key, size):
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


class Strata:
    def __init__(self, directory, *arguments):
        self.port = free_port()
        self.log = open(os.path.join(directory, "strata.log"), "ab")
        self.process = subprocess.Popen(
            [SERVER, "--port", str(self.port), "--http-port", "0", "--dir", directory,
             *arguments], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("strata-server did not start")

    def client(self):
        return redis.Redis(port=self.port, socket_timeout=600)

    def flash(self):
        return self.client().info("flash")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=600)

    def kill(self):
        self.process.kill()
        self.process.wait()


def load(client, prefix, count, size, width=12):
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        key = f"{prefix}{i:0{width}d}"
        pipe.set(key, value_for(key, size))
        if i % 8 == 7:
            pipe.execute()
    pipe.execute()


def redis_benchmark_get(port, keys, size, requests):
    """GET throughput of keys key:000000000000 .. from redis-benchmark, in MB/s."""
    output = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "get", "-r", str(keys), "-n", str(requests),
         "-c", "8", "-d", str(size), "-q"], capture_output=True, text=True, check=True).stdout
    rate = float(re.findall(r"GET: ([\d.]+) requests per second", output)[-1])
    return rate * size / 1e6


def fio_read(directory, block, size_bytes):
    output = subprocess.run(
        ["fio", "--name=flash", f"--directory={directory}", "--rw=randread", f"--bs={block}",
         "--direct=1", "--ioengine=io_uring", "--iodepth=8", "--numjobs=1",
         f"--size={size_bytes}", "--runtime=8", "--time_based", "--output-format=json"],
        capture_output=True, text=True, check=True).stdout
    job = json.loads(output)["jobs"][0]
    return job["read"]["bw_bytes"] / 1e6


def bench_get_against_fio(scratch):
    rows = []
    total = (512 if QUICK else 2048) * MIB
    for size in (256 * KIB, 2 * MIB):
        directory = tempfile.mkdtemp(dir=scratch)
        strata = Strata(directory, "--memory", "64mb", "--ssd-size", "8gb")
        count = total // size
        load(strata.client(), "key:", count, size)
        requests = max(2000, count * 2)
        before = strata.flash()
        strata_mbs = redis_benchmark_get(strata.port, count, size, requests)
        after = strata.flash()
        flash_share = (after["flash_reads"] - before["flash_reads"]) / requests
        strata.stop()
        fio_dir = os.path.join(directory, "fio")
        os.makedirs(fio_dir)
        fio_mbs = fio_read(fio_dir, size, total)
        rows.append((size, strata_mbs, fio_mbs, flash_share))
        shutil.rmtree(directory)
    return rows


def bench_startup(scratch):
    size = 256 * KIB
    total = (1 if QUICK else 4) * GIB
    count = total // size
    directory = tempfile.mkdtemp(dir=scratch)
    options = ("--memory", "256mb", "--ssd-size", "6gb")
    strata = Strata(directory, *options)
    load(strata.client(), "start:", count, size)
    strata.stop()
    started = time.time()
    strata = Strata(directory, *options)
    index_wall = time.time() - started
    index_ms = strata.flash()["flash_recovery_ms"]
    strata.kill()
    started = time.time()
    strata = Strata(directory, *options)
    scan_wall = time.time() - started
    info = strata.flash()
    scan_ms = info["flash_recovery_ms"]
    assert info["flash_recovered_items"] == count, info
    strata.stop()
    shutil.rmtree(directory)
    return total, index_ms, index_wall, scan_ms, scan_wall


def memcached_command(sock, data):
    sock.sendall(data)


def bench_against_memcached(scratch):
    size, count = 256 * KIB, 4000
    results = {}
    # memcached with extstore.
    directory = tempfile.mkdtemp(dir=scratch)
    port = free_port()
    memcached = subprocess.Popen(
        ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "128", "-u", "root",
         "-o", f"ext_path={directory}/extstore:4G"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    sock = socket.create_connection(("127.0.0.1", port))
    reader = sock.makefile("rb")
    for i in range(count):
        key = f"ret:{i}"
        value = value_for(key, size)
        sock.sendall(b"set %s 0 0 %d\r\n" % (key.encode(), len(value)) + value + b"\r\n")
        reader.readline()
    started = time.time()
    present = 0
    for i in range(count):
        key = f"ret:{i}"
        sock.sendall(b"get %s\r\n" % key.encode())
        line = reader.readline()
        if line.startswith(b"VALUE"):
            length = int(line.split()[3])
            value = reader.read(length + 2)[:-2]
            reader.readline()  # END
            assert value == value_for(key, size)
            present += 1
    results["memcached"] = (present, present * size / (time.time() - started) / 1e6)
    sock.close()
    memcached.terminate()
    memcached.wait()
    shutil.rmtree(directory)
    # strata with the same RAM and flash.
    directory = tempfile.mkdtemp(dir=scratch)
    strata = Strata(directory, "--memory", "128mb", "--ssd-size", "4gb")
    client = strata.client()
    for i in range(count):
        key = f"ret:{i}"
        client.set(key, value_for(key, size))
    started = time.time()
    present = 0
    for i in range(count):
        key = f"ret:{i}"
        value = client.get(key)
        if value is not None:
            assert value == value_for(key, size)
            present += 1
    results["strata"] = (present, present * size / (time.time() - started) / 1e6)
    strata.stop()
    shutil.rmtree(directory)
    return count, results


def main():
    scratch = tempfile.mkdtemp(prefix="strata-flash-bench-", dir=os.environ.get("TMPDIR", "/tmp"))
    try:
        print("## Flash-resident GET against fio (same directory, same block size)\n")
        print("| value | strata GET MB/s | fio randread MB/s | strata / fio | GETs served from flash |")
        print("|---|---|---|---|---|")
        for size, strata_mbs, fio_mbs, share in bench_get_against_fio(scratch):
            label = f"{size // KIB} KiB" if size < MIB else f"{size // MIB} MiB"
            print(f"| {label} | {strata_mbs:,.0f} | {fio_mbs:,.0f} | {strata_mbs / fio_mbs:.2f}x "
                  f"| {share:.0%} |")
        total, index_ms, index_wall, scan_ms, scan_wall = bench_startup(scratch)
        print(f"\n## Start-up with {total // GIB} GiB of segments\n")
        print("| from | recovery (INFO flash_recovery_ms) | process start to first PING |")
        print("|---|---|---|")
        print(f"| saved index | {index_ms} ms | {index_wall:.2f} s |")
        print(f"| scan (after kill -9) | {scan_ms} ms | {scan_wall:.2f} s |")
        count, results = bench_against_memcached(scratch)
        print(f"\n## Retention burst: {count} x 256 KiB into 128 MiB RAM + 4 GiB flash\n")
        print("| server | keys retained | read-back MB/s of the keys found (one client, verified) |")
        print("|---|---|---|")
        for name in ("memcached", "strata"):
            present, mbs = results[name]
            label = "memcached 1.6 + extstore" if name == "memcached" else "strata"
            print(f"| {label} | {present:,} of {count:,} | {mbs:,.0f} |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
