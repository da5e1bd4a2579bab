#!/usr/bin/python3
"""The TLS benchmark of `make bench`: the same workload plain and over TLS in one run,
strata beside Redis 7 (`redis-server --tls-port`). Writes docs/benchmarks/tls.json,
docs/benchmarks/tls.md and the "TLS" section of docs/benchmarks.md (between its tls
markers; bench/suite.py keeps the section when it rewrites the page).

    /usr/bin/python3 bench/tls.py [--seconds 4] [--output DIR] [--note TEXT]

1. RESP GET of one 256 KiB and one 2 MiB value, 4 connections, with redis-benchmark
   (`--tls --cacert` for TLS), against strata and against Redis, plain and TLS.
2. Native batch GET of 2 MiB values (8 per batch), 4 threads of libstrata through the
   Python binding (ctypes releases the GIL while a call runs), plain and TLS.

Each server runs alone, on the same CPUs as the clients. The ratio TLS/plain is the
figure to read: it is what TLS costs on this machine (its kernel has no kTLS; see
docs/tls.md). The certificates are made in a scratch directory with `openssl`."""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from bench_common import TLS_MARKERS, free_port, splice, wait_for_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "build", "strata-server")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402

KIB, MIB = 1024, 1024 * 1024
SIZES = (256 * KIB, 2 * MIB)
CONNECTIONS = 4


def make_certs(directory):
    def run(*arguments):
        subprocess.run(["openssl", *arguments], cwd=directory, check=True,
                       capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=bench CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    with open(os.path.join(directory, "san.ext"), "w") as ext:
        ext.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return {name: os.path.join(directory, name) for name in ("ca.pem", "server.pem",
                                                             "server.key")}


def start_strata(scratch, certs, tls):
    ports = [free_port() for _ in range(3)]
    arguments = [SERVER, "--port", str(ports[0]), "--http-port", str(ports[1]),
                 "--native-port", str(ports[2]), "--dir", os.path.join(scratch, "data"),
                 "--memory", "1gb", "--ssd-size", "0"]
    if tls:
        arguments += ["--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"]]
    shutil.rmtree(os.path.join(scratch, "data"), ignore_errors=True)
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(scratch, "strata.log"), "ab"))
    wait_for_port(ports[0])
    wait_for_port(ports[2])
    time.sleep(0.3)
    return process, ports[0], ports[2]


def start_redis(scratch, certs, tls):
    port = free_port()
    arguments = ["redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
                 "--dir", scratch, "--logfile", os.path.join(scratch, "redis.log")]
    if tls:
        arguments += ["--port", "0", "--tls-port", str(port), "--tls-cert-file",
                      certs["server.pem"], "--tls-key-file", certs["server.key"],
                      "--tls-ca-cert-file", certs["ca.pem"], "--tls-auth-clients", "no"]
    else:
        arguments += ["--port", str(port)]
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process, port


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_benchmark(port, size, tls, certs, seconds):
    """MB/s of GETs of one SIZE value, CONNECTIONS connections, for about SECONDS."""
    base = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CONNECTIONS),
            "-d", str(size), "--csv"]
    if tls:
        base += ["--tls", "--cacert", certs["ca.pem"]]
    subprocess.run(base + ["-t", "set", "-n", "8"], check=True, capture_output=True)
    # A first short run sizes the measured one to about SECONDS.
    requests = 200
    for _ in range(2):
        started = time.monotonic()
        result = subprocess.run(base + ["-t", "get", "-n", str(requests)], check=True,
                                capture_output=True, text=True)
        elapsed = time.monotonic() - started
        if elapsed >= seconds * 0.6:
            break
        requests = max(200, int(requests * seconds / max(elapsed, 0.05)))
    line = [row for row in result.stdout.splitlines() if row.startswith('"GET"')][0]
    per_second = float(line.split(",")[1].strip('"'))
    return per_second * size / 1e6


def native_get(port, tls, certs, seconds):
    """MB/s of 8 x 2 MiB batch GETs from CONNECTIONS threads for SECONDS."""
    options = {"tls_ca": certs["ca.pem"], "tls_server_name": "127.0.0.1"} if tls else {}
    client = strata.Client(port=port, connections=CONNECTIONS, timeout_ms=60000, **options)
    value = os.urandom(2 * MIB)
    keys = [f"tls-bench-{i}".encode() for i in range(8)]
    assert all(status == 0 for status in client.put_batch([(key, value) for key in keys]))

    def loop(_index):
        buffers = [bytearray(2 * MIB) for _ in keys]
        moved = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            results = client.get_batch(list(zip(keys, buffers)))
            assert all(status == 0 for status, _length in results)
            moved += sum(length for _status, length in results)
        assert buffers[0] == value
        return moved

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CONNECTIONS) as pool:
        moved = sum(pool.map(loop, range(CONNECTIONS)))
    elapsed = time.monotonic() - started
    client.close()
    return moved / elapsed / 1e6


def measure(scratch, certs, seconds):
    results = {}
    for tls in (False, True):
        mode = "tls" if tls else "plain"
        process, resp_port, native_port = start_strata(scratch, certs, tls)
        try:
            for size in SIZES:
                results[f"strata resp get {size // KIB} KiB {mode}"] = redis_benchmark(
                    resp_port, size, tls, certs, seconds)
            results[f"strata native batch get 2048 KiB {mode}"] = native_get(
                native_port, tls, certs, seconds)
        finally:
            stop(process)
        process, port = start_redis(scratch, certs, tls)
        try:
            for size in SIZES:
                results[f"redis resp get {size // KIB} KiB {mode}"] = redis_benchmark(
                    port, size, tls, certs, seconds)
        finally:
            stop(process)
    return results


def section(results, command, note):
    lines = ["## TLS", ""]
    if note:
        lines += [f"**{note}**", ""]
    lines += [
        "The same workload plain and over TLS in one run (`bench/tls.py`, run by `make "
        "bench`; [tls.md](tls.md)). RESP GETs of one value with redis-benchmark, 4 "
        "connections (`--tls --cacert` for TLS), strata beside Redis 7 (`redis-server "
        "--tls-port`); native batch GETs of 8 × 2 MiB from 4 threads of libstrata. "
        "This machine's kernel has no kTLS (`tls` is not in "
        "`/proc/sys/net/ipv4/tcp_available_ulp`), so TLS is OpenSSL in user space on "
        "both sides; the server and the clients share its cores with other work, so "
        "single figures move by 10-20 % from run to run: read the ratios.",
        "",
        f"Command: `{command}`",
        "",
        "| workload | server | plain MB/s | TLS MB/s | TLS / plain |",
        "|---|---|---:|---:|---:|",
    ]
    rows = [("RESP GET 256 KiB", "strata", "strata resp get 256 KiB"),
            ("RESP GET 256 KiB", "Redis 7", "redis resp get 256 KiB"),
            ("RESP GET 2 MiB", "strata", "strata resp get 2048 KiB"),
            ("RESP GET 2 MiB", "Redis 7", "redis resp get 2048 KiB"),
            ("native batch GET 2 MiB", "strata", "strata native batch get 2048 KiB")]
    for workload, server, key in rows:
        plain, tls = results[f"{key} plain"], results[f"{key} tls"]
        lines.append(f"| {workload} | {server} | {plain:,.0f} | {tls:,.0f} | "
                     f"{tls / plain:.0%} |")
    lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--output", default=os.path.join(ROOT, "docs"))
    parser.add_argument("--note", default="")
    arguments = parser.parse_args()
    if not os.access(SERVER, os.X_OK):
        sys.exit(f"{SERVER} is missing: run `make` first")
    scratch = tempfile.mkdtemp(prefix="strata-tls-bench-")
    try:
        certs = make_certs(scratch)
        results = measure(scratch, certs, arguments.seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = "/usr/bin/python3 bench/tls.py" + (
        f" --seconds {arguments.seconds:g}" if arguments.seconds != 4 else "")
    text = section(results, command, arguments.note)
    print(text)
    os.makedirs(os.path.join(arguments.output, "benchmarks"), exist_ok=True)
    with open(os.path.join(arguments.output, "benchmarks", "tls.json"), "w") as handle:
        json.dump({"date": datetime.date.today().isoformat(), "machine": platform.node(),
                   "cpus": os.cpu_count(), "mb_per_s": results}, handle, indent=2)
        handle.write("\n")
    with open(os.path.join(arguments.output, "benchmarks", "tls.md"), "w") as handle:
        handle.write(text)
    splice(os.path.join(arguments.output, "benchmarks.md"), text, TLS_MARKERS)


if __name__ == "__main__":
    main()
