#!/usr/bin/python3
"""The side-by-side benchmark suite of `make bench`: strata, Redis and memcached driven by
one load generator (build/bench/loadgen, bench/loadgen.c), with the machine's ceilings
(iperf3 over loopback, a memcpy probe, fio) measured in the same run. Writes
docs/benchmarks.md, the plots under docs/benchmarks/, and the headline table between the
markers in README.md.

    /usr/bin/python3 bench/suite.py [--quick] [--output DIR] [--no-readme]
                                    [--skip-growth] [--skip-sweep]

The parts: the machine's ceilings, the headline workloads, the native protocol and shared
memory, the flash-resident runs, the growth to 10^7 small keys (--skip-growth leaves it
out), the DRAM-resident matrix, and the sweep (--skip-sweep leaves it out): every value
size from 4 KiB to 2 MiB through a fresh server's first pass over freshly loaded values,
warm cells of GET share x connections, and churn under a small memory budget, each with
the servers pinned apart from the load generator and unpinned, drawn as heat maps of
strata's MB/s over the better peer's so that no slow cell hides between the headline
workloads.

--quick runs a small subset with short durations (to check the suite itself; its
figures are not the ones to publish). Every server runs on loopback with its data in a
scratch directory under $TMPDIR (or /tmp); nothing outside it is touched except the
output files."""
import argparse
import datetime
import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from bench_common import (REDIS_TYPES_MARKERS, S3_MARKERS, TLS_MARKERS, free_port, marked,
                          wait_for_port)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "build", "strata-server")
LOADGEN = os.path.join(ROOT, "build", "bench", "loadgen")
MEMCPY_PROBE = os.path.join(ROOT, "build", "bench", "memcpy_probe")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

KIB, MIB, GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024
SIZES = [100, 4 * KIB, 64 * KIB, 256 * KIB, 2 * MIB, 8 * MIB]
MIXES = [0.9, 0.5]
CONNECTIONS = [1, 4, 16, 64]
PIPELINES = [1, 16]
PIPELINE_MAX_SIZE = 64 * KIB  # depth 16 is run for values up to this size (see docs)
WORKING_SET = 256 * MIB       # DRAM-resident data set per value size
SERVER_MEMORY = 4 * GIB
FLASH_CONNECTIONS = 8         # flash-resident readers, and fio's iodepth


def size_name(size):
    if size >= MIB:
        return f"{size // MIB} MiB"
    if size >= KIB:
        return f"{size // KIB} KiB"
    return f"{size} B"


def command_output(command, timeout=600):
    return subprocess.run(command, check=True, capture_output=True, text=True,
                          timeout=timeout).stdout


def resp_command(port, *words):
    """Sends one RESP command and returns the reply's text (enough for INFO and DBSIZE)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        sock.sendall(request.encode())
        data = b""
        while True:
            data += sock.recv(1 << 20)
            if data.startswith(b":") or data.startswith(b"+") or data.startswith(b"-"):
                if data.endswith(b"\r\n"):
                    return data[1:-2].decode()
            elif data.startswith(b"$"):
                header, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(header[1:]) + 2:
                    return rest[:int(header[1:])].decode()


def resp_info(port):
    fields = {}
    for line in resp_command(port, "INFO").splitlines():
        key, separator, value = line.partition(":")
        if separator:
            fields[key] = value
    return fields


def memcached_stats(port):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += sock.recv(1 << 16)
    stats = {}
    for line in data.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "STAT":
            stats[parts[1]] = parts[2]
    return stats


# With two or more CPUs, servers run on all CPUs but the last and the load generator
# (this script and everything it starts other than servers) on the last, so a server's
# threads never compete with the client for a core (docs/performance.md). The sweep also
# runs unpinned: server and load generator on every CPU, placed by the scheduler.
SERVER_CPUS = []
ALL_CPUS = sorted(os.sched_getaffinity(0))  # taken before pin_cpus() narrows this process


def pin_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[-1]})
        SERVER_CPUS[:] = ["taskset", "-c", ",".join(str(c) for c in cpus[:-1])]
    return cpus


def on_all_cpus():
    """Run in an unpinned child between fork and exec: widens its affinity to every CPU
    this script started with, so it does not inherit the script's own pin to the last
    CPU. Returns nothing."""
    os.sched_setaffinity(0, ALL_CPUS)


class Server:
    """One server process on loopback; NAME is how tables call it, PROTOCOL what loadgen
    speaks to PORT. PINNED: on SERVER_CPUS (taskset); otherwise on every CPU."""

    def __init__(self, name, protocol, command, port, directory, extra_ports=(), pinned=True):
        self.name, self.protocol, self.port, self.pinned = name, protocol, port, pinned
        self.log = open(os.path.join(directory, f"{name.replace(' ', '_')}.log"), "ab")
        if pinned:
            self.process = subprocess.Popen(SERVER_CPUS + command, stdout=self.log,
                                            stderr=subprocess.STDOUT)
        else:
            self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                            preexec_fn=on_all_cpus)
        wait_for_port(port, self.process)
        for extra in extra_ports:
            wait_for_port(extra, self.process)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def start_strata(directory, memory=SERVER_MEMORY, ssd_size=0, pinned=True):
    """Returns a started strata Server (RESP on .port, native on .native_port, both on
    the Unix socket .unix_socket too, which shared memory needs); writes past MEMORY
    evict, to flash when SSD_SIZE is above 0, else dropped."""
    port, native_port = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="strata-", dir=directory)
    unix_socket = os.path.join(data, "strata.sock")
    server = Server("strata", "resp",
                    [SERVER, "--port", str(port), "--native-port", str(native_port),
                     "--http-port", "0", "--dir", data, "--memory", str(memory),
                     "--ssd-size", str(ssd_size), "--log-level", "warning",
                     "--unix-socket", unix_socket],
                    port, directory, extra_ports=[native_port], pinned=pinned)
    server.native_port = native_port
    server.unix_socket = unix_socket
    return server


def start_redis(directory, memory=SERVER_MEMORY, pinned=True, policy=None):
    """Returns a started Redis Server without persistence. POLICY is its maxmemory-policy;
    None keeps Redis's default, noeviction, which refuses writes past MEMORY (the sweep's
    churn passes allkeys-lru)."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--maxmemory", str(memory), "--dir", directory,
               "--client-output-buffer-limit", "normal 0 0 0"]
    if policy is not None:
        command += ["--maxmemory-policy", policy]
    return Server("Redis", "resp", command, port, directory, pinned=pinned)


def start_memcached(directory, memory=SERVER_MEMORY, extstore=None, pinned=True):
    """Returns a started memcached Server with 4 threads; writes past MEMORY evict (its
    LRU), to EXTSTORE (a file) when given."""
    port = free_port()
    command = ["memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-t", "4",
               "-c", "4096", "-m", str(memory // MIB)]
    if os.geteuid() == 0:
        command += ["-u", "root"]
    if extstore is None:
        command += ["-I", "16m"]
    else:
        # extstore needs items no larger than its 4 MiB write buffer
        command += ["-I", "4m", "-o", f"ext_path={extstore}:{4 * GIB // MIB}M,ext_wbuf_size=4"]
    return Server("memcached", "memcache", command, port, directory, pinned=pinned)


def loadgen(protocol, port, size, keys, get_ratio=0.9, connections=4, pipeline=1,
            duration=1.0, batch=1, prefill=False, key_start=0, pinned=True):
    """Runs the load generator once and returns its JSON report. A wrong value (exit 1)
    stops the suite: a benchmark that returns wrong bytes has no figure to report.
    PINNED: on this script's CPU (the last one, after pin_cpus()); otherwise on every
    CPU."""
    command = [LOADGEN, "--protocol", protocol, "--port", str(port), "--size", str(size),
               "--keys", str(keys), "--get-ratio", str(get_ratio), "--connections",
               str(connections), "--pipeline", str(pipeline), "--batch", str(batch),
               "--duration", str(duration), "--key-start", str(key_start)]
    if prefill:
        command += ["--prefill"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900,
                            preexec_fn=None if pinned else on_all_cpus)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}: "
                           f"{result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)


def prefill(server, size, keys, connections=4, key_start=0):
    """Writes every key once (the load generator placed as SERVER is) and returns the
    report."""
    pipeline = 16 if size <= 64 * KIB else 2
    report = loadgen(server.protocol, server.port, size, keys, connections=connections,
                     pipeline=pipeline, prefill=True, key_start=key_start,
                     pinned=server.pinned)
    if report["errors"]:
        print(f"  prefill of {server.name}: {report['errors']} errors "
              f"({report['first_error']})", flush=True)
    return report


def keys_for(size):
    return max(32, min(100_000, WORKING_SET // size))


# ---- ceilings ----

def measure_iperf3(directory, seconds):
    """One TCP stream over loopback, iperf3's server on the servers' CPUs: MB/s."""
    port = free_port()
    server = subprocess.Popen(SERVER_CPUS + ["iperf3", "-s", "-p", str(port), "-B",
                                             "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        for _ in range(100):
            result = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t",
                                     str(seconds), "-J"], capture_output=True, text=True,
                                    timeout=seconds + 60)
            report = json.loads(result.stdout or "{}")
            if "error" not in report and "end" in report:
                return report["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
            time.sleep(0.1)
        raise RuntimeError(f"iperf3 failed: {result.stdout[-500:]} {result.stderr[-500:]}")
    finally:
        server.kill()
        server.wait()


def measure_memcpy(seconds):
    return json.loads(command_output([MEMCPY_PROBE, str(2 * MIB), str(seconds)]))["mb_per_s"]


def measure_fio(directory, block, seconds):
    report = json.loads(command_output(
        ["fio", "--name=ceiling", f"--directory={directory}", "--rw=randread", f"--bs={block}",
         "--size=1g", "--direct=1", "--ioengine=io_uring", f"--iodepth={FLASH_CONNECTIONS}", "--numjobs=1",
         f"--runtime={seconds}", "--time_based", "--output-format=json"]))
    for name in os.listdir(directory):
        if name.startswith("ceiling"):
            os.unlink(os.path.join(directory, name))
    return report["jobs"][0]["read"]["bw_bytes"] / 1e6


# ---- the parts of the suite ----

def dram_matrix(directory, quick, duration):
    """Every value size x mix x connections x pipeline depth, for each server, with the
    data set in DRAM. Returns {(server, size, mix, connections, pipeline): report}."""
    results = {}
    sizes = [100, 256 * KIB, 2 * MIB] if quick else SIZES
    connections_list = [4, 16] if quick else CONNECTIONS
    for size in sizes:
        keys = keys_for(size)
        for start in (start_strata, start_redis, start_memcached):
            server = start(directory)
            try:
                prefill(server, size, keys)
                protocols = [(server.name, server.protocol, server.port)]
                if server.name == "strata" and size >= 64 * KIB:
                    protocols.append(("strata native", "native", server.native_port))
                for name, protocol, port in protocols:
                    if protocol == "native":
                        # native values carry a header, so the keys are written again
                        # through the native protocol (after the RESP runs are done)
                        report = loadgen("native", port, size, keys, pipeline=2, prefill=True)
                        assert report["errors"] == 0, report
                    for mix in MIXES:
                        for connections in connections_list:
                            for pipeline in PIPELINES:
                                if pipeline > 1 and (size > PIPELINE_MAX_SIZE or
                                                     protocol == "native"):
                                    continue
                                report = loadgen(protocol, port, size, keys, mix, connections,
                                                 pipeline, duration)
                                results[(name, size, mix, connections, pipeline)] = report
                    print(f"  {name} {size_name(size)}: done", flush=True)
            finally:
                server.stop()
    return results


# The headline workloads' keys: each value size has its own range, so one server of each
# kind holds them all at once.
HEADLINE_KEY_BASE = {100: 0, 4 * KIB: 200_000, 256 * KIB: 400_000, 2 * MIB: 500_000}


def headline(directory, duration, repeats):
    """The target workloads, all three servers up at once and runs interleaved, REPEATS
    times each; the median run (by ops/s) is reported."""
    cases = [(256 * KIB, 0.9, 4, 1), (256 * KIB, 0.5, 4, 1), (2 * MIB, 0.9, 4, 1),
             (2 * MIB, 0.5, 4, 1), (100, 0.9, 16, 1), (100, 0.9, 16, 16),
             (4 * KIB, 0.9, 16, 1), (4 * KIB, 0.9, 16, 16)]
    results = {}
    servers = [start_strata(directory), start_redis(directory), start_memcached(directory)]
    try:
        for size in sorted({case[0] for case in cases}):
            base = HEADLINE_KEY_BASE[size]
            keys = keys_for(size)
            for server in servers:
                prefill(server, size, base + keys, key_start=base)
        for size, mix, connections, pipeline in cases:
            base = HEADLINE_KEY_BASE[size]
            runs = {server.name: [] for server in servers}
            for _ in range(repeats):
                for server in servers:
                    report = loadgen(server.protocol, server.port, size, base + keys_for(size),
                                     mix, connections, pipeline, duration, key_start=base)
                    runs[server.name].append(report)
            for name, reports in runs.items():
                reports.sort(key=lambda r: r["ops_per_s"])
                results[(name, size, mix, connections, pipeline)] = reports[len(reports) // 2]
            print(f"  headline {size_name(size)} {mix} c{connections} p{pipeline}: done",
                  flush=True)
    finally:
        for server in servers:
            server.stop()
    return results


def native_and_shm(directory, duration, repeats):
    """Native batch GET of 2 MiB values over TCP (1 and 4 connections, batches of 8) and
    shared-memory GET through libstrata's Python binding."""
    import numpy
    import strata

    results = {}
    server = start_strata(directory)
    try:
        keys = 128
        prefill_report = loadgen("native", server.native_port, 2 * MIB, keys, pipeline=2,
                                 prefill=True)
        assert prefill_report["errors"] == 0, prefill_report
        for connections in (1, 4):
            reports = sorted((loadgen("native", server.native_port, 2 * MIB, keys, 1.0,
                                      connections, 1, duration, batch=8)
                              for _ in range(repeats)), key=lambda r: r["mb_per_s"])
            results[f"native GET, {connections} connection{'s' if connections > 1 else ''}"] = \
                reports[len(reports) // 2]
        client = strata.Client(unix_socket=server.unix_socket, connections=1)
        batch, size = 16, 2 * MIB
        region = client.shm_create(2 * batch * size)
        source = numpy.frombuffer(region, dtype=numpy.uint8)
        source[:batch * size] = numpy.random.default_rng(7).integers(0, 256, batch * size,
                                                                      dtype=numpy.uint8)
        shm_keys = [f"shm:{i:011d}".encode() for i in range(batch)]
        puts = [(shm_keys[i], region[i * size:(i + 1) * size]) for i in range(batch)]
        gets = [(shm_keys[i], region[(batch + i) * size:(batch + i + 1) * size])
                for i in range(batch)]
        assert client.put_batch(puts) == [0] * batch
        rates = []
        for _ in range(repeats):
            rounds, began = 0, time.perf_counter()
            while time.perf_counter() - began < duration or rounds < 3:
                outcome = client.get_batch(gets)
                assert all(status == 0 for status, _ in outcome), outcome
                rounds += 1
            rates.append(rounds * batch * size / (time.perf_counter() - began) / 1e6)
        # every value read back is compared with what was written (libstrata has already
        # checked each value's CRC32C)
        assert bytes(source[batch * size:2 * batch * size]) == bytes(source[:batch * size])
        rates.sort()
        results["shm GET"] = {"mb_per_s": rates[len(rates) // 2]}
        client.close()
    finally:
        server.stop()
    return results


def flash_resident(directory, quick, duration):
    """Working set four times DRAM: strata with its flash tier against memcached with
    extstore, 256 KiB and 2 MiB values, GET-only and 90/10, FLASH_CONNECTIONS
    connections (as many reads in flight as fio's iodepth)."""
    results = {}
    memory = 128 * MIB if quick else 256 * MIB
    data_set = 4 * memory
    for size in (256 * KIB, 2 * MIB):
        keys = data_set // size
        for which in ("strata", "memcached"):
            flash_directory = tempfile.mkdtemp(prefix="flash-", dir=directory)
            if which == "strata":
                server = start_strata(flash_directory, memory=memory, ssd_size=4 * GIB)
            else:
                server = start_memcached(flash_directory, memory=memory,
                                         extstore=os.path.join(flash_directory, "extstore"))
            try:
                prefill(server, size, keys, connections=1)
                time.sleep(1)  # let the flash writers settle
                for mix in (1.0, 0.9):
                    report = loadgen(server.protocol, server.port, size, keys, mix,
                                     FLASH_CONNECTIONS, 1, duration)
                    if which == "strata":
                        report["flash_reads"] = int(resp_info(server.port)["flash_reads"])
                    else:
                        report["flash_reads"] = int(
                            memcached_stats(server.port).get("get_extstore", 0))
                    results[(which, size, mix)] = report
            finally:
                server.stop()
                shutil.rmtree(flash_directory, ignore_errors=True)
        print(f"  flash {size_name(size)}: done", flush=True)
    return results


# The largest data set the growth part loads into strata alone: 5 * 10^7 small keys need
# about 10.5 GB of DRAM. 10^8 would need about 21 GB of this machine's 24 GiB with nothing
# else running, too close to the edge for a benchmark (docs/performance.md).
GROWTH_STRATA_ONLY = 50_000_000


def growth(directory, quick, duration):
    """10^4 .. 10^7 keys of 16 bytes with 100-byte values (strata also GROWTH_STRATA_ONLY):
    DRAM per key (used_memory / keys on both) and 90/10 throughput at 16 connections,
    pipeline 16. Returns {(server, keys): report with bytes_per_key}."""
    steps = [10_000, 100_000, 1_000_000] if quick else [10_000, 100_000, 1_000_000, 10_000_000]
    results = {}
    for start in (start_strata, start_redis):
        further = start is start_strata and not quick
        server_steps = steps + ([GROWTH_STRATA_ONLY] if further else [])
        server = start(directory, memory=16 * GIB if further else 8 * GIB)
        try:
            baseline = int(resp_info(server.port)["used_memory"])
            filled = 0
            for keys in server_steps:
                prefill(server, 100, keys, connections=4, key_start=filled)
                filled = keys
                info = resp_info(server.port)
                stored = int(resp_command(server.port, "DBSIZE"))
                used = int(info["used_memory"]) - baseline
                report = loadgen("resp", server.port, 100, keys, 0.9, 16, 16, duration)
                report["bytes_per_key"] = used / stored
                results[(server.name, keys)] = report
                print(f"  growth {server.name} {keys}: {report['ops_per_s']:.0f} ops/s, "
                      f"{used / stored:.1f} B/key", flush=True)
        finally:
            server.stop()
    return results


# The sweep: a grid with no gaps for a slow cell to hide in. Each (placement, size, server)
# starts a fresh server, loads keys_for(size) keys, and runs the first pass over the
# freshly loaded values straight away (where a fresh mmap per loaded value once held
# strata to two thirds of its peers, docs/performance.md) before the warm cells; churn runs
# each server with a small memory budget and four times as many bytes of keys.
SWEEP_PLACEMENTS = ["pinned", "unpinned"]
SWEEP_SIZES = [4 * KIB, 64 * KIB, 256 * KIB, 2 * MIB]
SWEEP_GET_SHARES = [1.0, 0.95, 0.9, 0.75, 0.5, 0.0]
SWEEP_CONNECTIONS = [1, 4, 16]
SWEEP_FIRST = (0.9, 4)        # the first pass: GET share, connections (pipeline 1)
CHURN_GET_SHARES = [0.9, 0.5]
CHURN_CONNECTIONS = 4
CHURN_MEMORY = 256 * MIB      # per server, no flash; the key space holds 4x as many bytes
# Full sweep on the 2-core machine, duration 1 s: per (placement, size, server) a start,
# a 256 MiB prefill and a stop (~3 s measured), the 3 s first pass and 6 x 3 warm cells of
# 1 s plus ~0.05 s of loadgen start each: ~25 s, x 4 sizes x 3 servers x 2 placements =
# ~10 min. Churn per (placement, size, server): a start, a 1 GiB prefill that evicts
# (~3-6 s) and 2 runs of 2 s: ~9 s, x 24 = ~3.5 min. About 14 minutes in all, which takes
# make bench from ~11 to ~25 minutes. --quick: ~3 minutes.
context_sweep = {}  # what sweep() ran, for the page's method text


def sweep_cell_ratio(results, cell):
    """CELL is (placement, phase, size, get_share, connections). Returns (strata report,
    name of the better peer by MB/s, its report, strata MB/s / its MB/s), or None where a
    report is missing."""
    placement, phase, size, share, connections = cell
    strata = results.get((placement, phase, "strata", size, share, connections))
    peers = [(name, results.get((placement, phase, name, size, share, connections)))
             for name in ("Redis", "memcached")]
    peers = [(name, report) for name, report in peers if report is not None]
    if strata is None or not peers:
        return None
    name, peer = max(peers, key=lambda item: item[1]["mb_per_s"])
    return strata, name, peer, ratio(strata["mb_per_s"], peer["mb_per_s"])


def sweep_cells(results, placement=None, phase=None):
    """Returns the sweep's cells (placement, phase, size, get_share, connections) that
    strata ran, of PLACEMENT and PHASE where given, in the page's order: placement, phase
    (first pass, warm, churn), size, GET share falling, connections rising."""
    phases = ["first pass", "warm", "churn"]
    cells = {(k[0], k[1], k[3], k[4], k[5]) for k in results if k[2] == "strata"
             and (placement is None or k[0] == placement) and (phase is None or k[1] == phase)}
    return sorted(cells, key=lambda c: (SWEEP_PLACEMENTS.index(c[0]), phases.index(c[1]),
                                        c[2], -c[3], c[4]))


def sweep(directory, quick, duration):
    """Pinned and unpinned, every size in SWEEP_SIZES, each server fresh: prefill, the
    first pass (90% GET, 4 connections) at once, then the warm cells of GET share x
    connections, DURATION each; then churn with CHURN_MEMORY (90% and 50% GET for twice
    DURATION). Returns {(placement, phase, server, size, get_share, connections): report},
    phase "first pass", "warm" or "churn"; churn reports carry hit_rate."""
    first_duration = 1.0 if quick else 3.0
    shares = [1.0, 0.9, 0.5] if quick else SWEEP_GET_SHARES
    connections_list = [4] if quick else SWEEP_CONNECTIONS
    churn_memory = 64 * MIB if quick else CHURN_MEMORY
    context_sweep.update(first_duration=first_duration, duration=duration, shares=shares,
                         connections=connections_list, churn_memory=churn_memory,
                         churn_duration=2 * duration)
    churn_starts = (functools.partial(start_strata, ssd_size=0),
                    functools.partial(start_redis, policy="allkeys-lru"), start_memcached)
    results = {}
    for placement in SWEEP_PLACEMENTS:
        pinned = placement == "pinned"
        for size in SWEEP_SIZES:
            keys = keys_for(size)
            for start in (start_strata, start_redis, start_memcached):
                began = time.monotonic()
                server = start(directory, pinned=pinned)
                try:
                    prefill(server, size, keys)
                    share, connections = SWEEP_FIRST
                    first = loadgen(server.protocol, server.port, size, keys, share,
                                    connections, 1, first_duration, pinned=pinned)
                    results[(placement, "first pass", server.name, size, share,
                             connections)] = first
                    for share in shares:
                        for connections in connections_list:
                            results[(placement, "warm", server.name, size, share,
                                     connections)] = loadgen(
                                server.protocol, server.port, size, keys, share,
                                connections, 1, duration, pinned=pinned)
                finally:
                    server.stop()
                print(f"  sweep {placement} {size_name(size)} {server.name}: first pass "
                      f"{figure(first['mb_per_s'])} MB/s, {time.monotonic() - began:.0f} s",
                      flush=True)
            churn_keys = 4 * churn_memory // size
            for start in churn_starts:
                began = time.monotonic()
                server = start(directory, memory=churn_memory, pinned=pinned)
                try:
                    prefill(server, size, churn_keys)
                    for share in CHURN_GET_SHARES:
                        report = loadgen(server.protocol, server.port, size, churn_keys,
                                         share, CHURN_CONNECTIONS, 1, 2 * duration,
                                         pinned=pinned)
                        report["hit_rate"] = (1 - report["misses"] / report["gets"]
                                              if report["gets"] else None)
                        results[(placement, "churn", server.name, size, share,
                                 CHURN_CONNECTIONS)] = report
                finally:
                    server.stop()
                print(f"  sweep {placement} {size_name(size)} {server.name} churn: "
                      f"{figure(report['mb_per_s'])} MB/s at {CHURN_GET_SHARES[-1]:.0%} GET, "
                      f"hit rate {hit_rate_text(report)}, {time.monotonic() - began:.0f} s",
                      flush=True)
    return results


# ---- output ----

def figure(value, digits=0):
    return f"{value:,.{digits}f}"


def make_plots(output, matrix, growth_results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_directory = os.path.join(output, "benchmarks")
    os.makedirs(plot_directory, exist_ok=True)
    names = ["strata", "strata native", "Redis", "memcached"]
    sizes = sorted({key[1] for key in matrix})
    written = []

    figure_handle, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        points = [(size, matrix[(name, size, 0.9, 4, 1)]) for size in sizes
                  if (name, size, 0.9, 4, 1) in matrix]
        if not points:
            continue
        axes[0].plot([p[0] for p in points], [p[1]["mb_per_s"] for p in points], marker="o",
                     label=name)
        axes[1].plot([p[0] for p in points], [p[1]["p99_us"] for p in points], marker="o",
                     label=name)
    for axis, label in ((axes[0], "MB/s (values moved)"), (axes[1], "p99 latency (µs)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("value size (bytes)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure_handle.suptitle("90% GET / 10% SET, 4 connections, pipeline 1, DRAM-resident")
    figure_handle.tight_layout()
    path = os.path.join(plot_directory, "throughput-by-size.png")
    figure_handle.savefig(path, dpi=90)
    written.append(path)
    plt.close(figure_handle)

    figure_handle, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, size in zip(axes, (256 * KIB, 100)):
        for name in names:
            connections = sorted(key[3] for key in matrix
                                 if key[0] == name and key[1] == size and key[2] == 0.9
                                 and key[4] == 1)
            if connections:
                axis.plot(connections, [matrix[(name, size, 0.9, c, 1)]["ops_per_s"]
                                        for c in connections], marker="o", label=name)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("connections")
        axis.set_ylabel("ops/s")
        axis.set_title(f"{size_name(size)} values, 90/10, pipeline 1")
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure_handle.tight_layout()
    path = os.path.join(plot_directory, "throughput-by-connections.png")
    figure_handle.savefig(path, dpi=90)
    written.append(path)
    plt.close(figure_handle)

    if growth_results:
        figure_handle, axes = plt.subplots(1, 2, figsize=(11, 4))
        for name in ("strata", "Redis"):
            steps = sorted(key[1] for key in growth_results if key[0] == name)
            axes[0].plot(steps, [growth_results[(name, k)]["ops_per_s"] for k in steps],
                         marker="o", label=name)
            axes[1].plot(steps, [growth_results[(name, k)]["bytes_per_key"] for k in steps],
                         marker="o", label=name)
        for axis, label in ((axes[0], "ops/s (90/10, 16 conns, pipeline 16)"),
                            (axes[1], "DRAM bytes per key (used_memory / keys)")):
            axis.set_xscale("log")
            axis.set_xlabel("keys (16-byte keys, 100-byte values)")
            axis.set_ylabel(label)
            axis.set_ylim(bottom=0)
            axis.grid(True, alpha=0.3)
            axis.legend()
        figure_handle.tight_layout()
        path = os.path.join(plot_directory, "growth.png")
        figure_handle.savefig(path, dpi=90)
        written.append(path)
        plt.close(figure_handle)
    return written


def make_sweep_plots(output, results):
    """One heat map per placement: strata MB/s / the better peer's in every cell (warm:
    rows size x connections, columns GET share; beside it first pass and churn, rows size),
    green above 1.0, red below. Returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    plot_directory = os.path.join(output, "benchmarks")
    os.makedirs(plot_directory, exist_ok=True)
    finite = [r[3] for r in (sweep_cell_ratio(results, c) for c in sweep_cells(results))
              if r is not None and r[3] != float("inf")]
    if not finite:
        return []
    # one scale for both placements, always spanning 0.5x to 2x
    norm = TwoSlopeNorm(vcenter=1.0, vmin=min(0.5, min(finite) * 0.95),
                        vmax=max(2.0, max(finite) * 1.05))
    colours = plt.get_cmap("RdYlGn")
    written = []
    for placement in SWEEP_PLACEMENTS:
        warm = sweep_cells(results, placement, "warm")
        if not warm:
            continue
        sizes = sorted({c[2] for c in warm})
        shares = sorted({c[3] for c in warm}, reverse=True)
        connections_list = sorted({c[4] for c in warm})
        warm_rows = [(size, connections) for size in sizes for connections in connections_list]
        warm_grid = [[(placement, "warm", size, share, connections) for share in shares]
                     for size, connections in warm_rows]
        side_columns = [("first pass",) + SWEEP_FIRST] + [
            ("churn", share, CHURN_CONNECTIONS) for share in CHURN_GET_SHARES]
        side_grid = [[(placement, phase, size, share, connections)
                      for phase, share, connections in side_columns] for size in sizes]
        figure_handle, (warm_axis, side_axis) = plt.subplots(
            1, 2, figsize=(4 + 1.1 * (len(shares) + len(side_columns)),
                           2.2 + 0.42 * len(warm_rows)),
            gridspec_kw={"width_ratios": [len(shares), len(side_columns)]},
            constrained_layout=True)
        for axis, grid in ((warm_axis, warm_grid), (side_axis, side_grid)):
            values = []
            for row in grid:
                values.append([])
                for cell in row:
                    found = sweep_cell_ratio(results, cell)
                    values[-1].append(float("nan") if found is None else
                                      min(found[3], norm.vmax))
                    if found is not None:
                        shade = norm(min(found[3], norm.vmax))
                        axis.text(len(values[-1]) - 1, len(values) - 1,
                                  "inf" if found[3] == float("inf") else f"{found[3]:.2f}",
                                  ha="center", va="center", fontsize=9,
                                  color="white" if shade < 0.15 or shade > 0.85 else "black")
            image = axis.imshow(values, cmap=colours, norm=norm, aspect="auto")
        warm_axis.set_xticks(range(len(shares)), [f"{share:.0%}" for share in shares])
        warm_axis.set_yticks(range(len(warm_rows)),
                             [f"{size_name(size)}, {c} conn{'s' if c > 1 else ''}"
                              for size, c in warm_rows])
        warm_axis.set_xlabel("GET share (pipeline 1)")
        warm_axis.set_title("warm")
        for boundary in range(1, len(sizes)):
            warm_axis.axhline(boundary * len(connections_list) - 0.5, color="black",
                              linewidth=1.5)
        side_axis.set_xticks(range(len(side_columns)),
                             [f"{phase}\n{share:.0%} GET" for phase, share, _ in side_columns])
        side_axis.set_yticks(range(len(sizes)), [size_name(size) for size in sizes])
        side_axis.set_title(f"first pass and churn, {CHURN_CONNECTIONS} conns")
        figure_handle.colorbar(image, ax=[warm_axis, side_axis], shrink=0.8,
                               label="strata MB/s ÷ better of Redis, memcached",
                               ticks=[t for t in (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0,
                                                  3.0, 4.0, 6.0, 8.0)
                                      if norm.vmin <= t <= norm.vmax])
        figure_handle.suptitle(f"Sweep, {placement}: strata against the better peer, per cell")
        path = os.path.join(plot_directory, f"sweep-{placement}.png")
        figure_handle.savefig(path, dpi=90, bbox_inches="tight")
        written.append(path)
        plt.close(figure_handle)
    return written


def verdict(met):
    return "**met**" if met else "**missed**"


def write_report(output, readme, context, matrix, head, native, flash, growth_results,
                 ceilings, plots, quick, started, elapsed, sweep_results=None, sweep_plots=()):
    """Writes OUTPUT/benchmarks.md and, when README is given, its headline block. Returns
    nothing."""
    lines = []
    add = lines.append
    command = "make bench" + (" (quick: /usr/bin/python3 bench/suite.py --quick)" if quick
                              else "")
    add("# Benchmarks")
    add("")
    add("<!-- Generated by bench/suite.py (`make bench`); edit the script, not this file. -->")
    add("")
    add(f"Every figure on this page comes from one run of `{command}` on {context}, "
        f"started {started} and taking {elapsed / 60:.1f} minutes. All servers run on "
        "loopback on the same machine as the load generator, `build/bench/loadgen` "
        "(bench/loadgen.c): a closed-loop C client that speaks RESP, the memcached text "
        "protocol and strata's native protocol, picks keys uniformly at random, and "
        "compares every value it reads with the bytes written (a single wrong byte stops "
        "the suite). MB/s counts value bytes moved (read and verified, or written and "
        "acknowledged), 10^6 bytes per MB; latencies are per request, in microseconds.")
    add("")
    add("Servers run on all CPUs but the last, the load generator (and iperf3's client, "
        "fio, the shared-memory client) on the last: on this machine one core each, so "
        "strata's automatic thread count is 1 and memcached runs its default 4 threads on "
        "one core. Without pinning, a server's threads and the client preempt each other "
        "and tail latencies measure the scheduler ([performance.md](performance.md)). "
        "The one exception is the sweep's unpinned half, which runs the same cells with "
        "servers and load generator on every CPU, placed by the scheduler, so that a "
        "result that holds only when pinned shows.")
    add("")
    add("Peers: Redis " + context_versions["redis"] + " (no persistence, "
        "`--maxmemory 4gb`), memcached " + context_versions["memcached"] + " (4 threads, "
        "`-m 4096 -I 16m`), strata (`--memory 4gb`, automatic thread count, flash tier off "
        "except where stated).")
    add("")
    add("## Targets")
    add("")
    add(headline_table(head, native, flash, growth_results, ceilings, sweep_results))
    add("")
    add("Headline workloads run with all three servers up at once, interleaved, "
        f"{context_repeats} times each for {context_head_duration:g} s; the median run is "
        "shown. The rest of the page runs each point once.")
    add("")
    add("## Ceilings (same run)")
    add("")
    add("| probe | figure |")
    add("|---|---|")
    add(f"| iperf3, loopback, one stream | {figure(ceilings['iperf3'])} MB/s |")
    add(f"| memcpy, 2 MiB pieces from a 1 GiB buffer (build/bench/memcpy_probe) | "
        f"{figure(ceilings['memcpy'])} MB/s |")
    for block, value in sorted(ceilings["fio"].items()):
        add(f"| fio randread, {size_name(block)} blocks, O_DIRECT, io_uring, iodepth {FLASH_CONNECTIONS}, "
            f"scratch directory's disk | {figure(value)} MB/s |")
    add("")
    add("## Native protocol and shared memory")
    add("")
    add("| workload | MB/s | p50 µs | p99 µs | p999 µs |")
    add("|---|---|---|---|---|")
    for name, report in native.items():
        if "p50_us" in report:
            add(f"| {name}, 2 MiB values, batches of 8 | {figure(report['mb_per_s'])} | "
                f"{figure(report['p50_us'])} | {figure(report['p99_us'])} | "
                f"{figure(report['p999_us'])} |")
        else:
            add(f"| shared-memory GET, 2 MiB values, batches of 16 (Python binding) | "
                f"{figure(report['mb_per_s'])} | | | |")
    add("")
    add("## DRAM-resident matrix")
    add("")
    add(f"Each value size has its own data set of about {WORKING_SET // MIB} MiB "
        "(at most 100,000 keys) written before the runs; each point runs "
        f"{context_matrix_duration:g} s. Pipeline depth 16 runs for values up to "
        f"{size_name(PIPELINE_MAX_SIZE)}: above that, 16 requests in flight on 64 "
        "connections would hold gigabytes in socket buffers and measure the kernel, not "
        "the servers. \"strata native\" is the same server through its native protocol "
        "(batch 1) for values of 64 KiB and up.")
    add("")
    for path in plots:
        add(f"![{os.path.basename(path)}](benchmarks/{os.path.basename(path)})")
        add("")
    names = ["strata", "strata native", "Redis", "memcached"]
    for size in sorted({key[1] for key in matrix}):
        add(f"### {size_name(size)} values")
        add("")
        present = [n for n in names if any(k[0] == n and k[1] == size for k in matrix)]
        add("| GET share | conns | pipeline | " +
            " | ".join(f"{n} ops/s | {n} MB/s | {n} p99 µs" for n in present) + " |")
        add("|---|---|---|" + "---|" * (3 * len(present)))
        points = sorted({(k[2], k[3], k[4]) for k in matrix if k[1] == size},
                        key=lambda p: (-p[0], p[2], p[1]))
        for mix, connections, pipeline in points:
            cells = []
            for name in present:
                report = matrix.get((name, size, mix, connections, pipeline))
                if report is None:
                    cells += ["", "", ""]
                else:
                    cells += [figure(report["ops_per_s"]), figure(report["mb_per_s"]),
                              figure(report["p99_us"])]
            add(f"| {mix:.0%} | {connections} | {pipeline} | " + " | ".join(cells) + " |")
        add("")
    if sweep_results:
        lines += sweep_section(sweep_results, sweep_plots)
    add("## Flash-resident: working set four times DRAM")
    add("")
    add("strata `--memory 256mb --ssd-size 4gb` against memcached `-m 256` with extstore "
        "(`-o ext_path=...:4096M,ext_wbuf_size=4 -I 4m`), each loaded by one client with "
        f"1 GiB of values, then read by {FLASH_CONNECTIONS} connections at random. Misses count the keys a "
        "server did not keep.")
    add("")
    add("| value | server | GET share | ops/s | MB/s | p50 µs | p99 µs | misses | reads from flash |")
    add("|---|---|---|---|---|---|---|---|---|")
    for (which, size, mix), report in sorted(flash.items(), key=lambda i: (i[0][1], i[0][0], -i[0][2])):
        gets = max(report["gets"], 1)
        add(f"| {size_name(size)} | {which} | {mix:.0%} | {figure(report['ops_per_s'])} | "
            f"{figure(report['mb_per_s'])} | {figure(report['p50_us'])} | "
            f"{figure(report['p99_us'])} | {report['misses'] / gets:.0%} | "
            f"{report['flash_reads']:,} |")
    add("")
    if growth_results:
        largest = max(k[1] for k in growth_results)
        redis_largest = max(k[1] for k in growth_results if k[0] == "Redis")
        add(f"## Growth: 10^4 to {largest:,} small keys")
        add("")
        add("16-byte keys, 100-byte values, written in steps; at each step DRAM per key "
            "(INFO used_memory less the empty server's, divided by DBSIZE; the same field "
            "on both servers) and 90/10 throughput at 16 connections, pipeline 16, over "
            f"all keys. Redis stops at {redis_largest:,} keys; strata goes on to {largest:,} "
            f"(`--memory 16gb`), the largest data set that fits this machine with room to "
            "spare: 10^8 keys would need about 21 GB ([performance.md](performance.md)).")
        add("")
        add("| keys | strata ops/s | strata B/key | Redis ops/s | Redis B/key |")
        add("|---|---|---|---|---|")
        for keys in sorted({k[1] for k in growth_results}):
            s, r = growth_results.get(("strata", keys)), growth_results.get(("Redis", keys))
            cells = [f"{keys:,}", figure(s["ops_per_s"]), f"{s['bytes_per_key']:.1f}"]
            cells += ([figure(r["ops_per_s"]), f"{r['bytes_per_key']:.1f}"] if r is not None
                      else ["", ""])
            add("| " + " | ".join(cells) + " |")
        add("")
    # The S3, TLS and Redis types sections are bench/s3.py's, bench/tls.py's and
    # bench/redis_types.py's (run after this script
    # by `make bench`): their last text is kept, between the markers they look for, when
    # this page is rewritten.
    for name, markers in (("s3.md", S3_MARKERS), ("tls.md", TLS_MARKERS),
                          ("redis-types.md", REDIS_TYPES_MARKERS)):
        kept = os.path.join(output, "benchmarks", name)
        if os.path.exists(kept):
            with open(kept) as handle:
                add(marked(handle.read().rstrip("\n"), markers))
            add("")
    add("Earlier, narrower benchmarks (index sharding, redis-benchmark, the HTTP server "
        "choice, flash start-up and retention, native batches against MSET/MGET) are in "
        "[benchmarks-earlier.md](benchmarks-earlier.md). Where the time goes, and what "
        "each optimisation changed: [performance.md](performance.md).")
    add("")
    with open(os.path.join(output, "benchmarks.md"), "w") as handle:
        handle.write("\n".join(lines))
    if readme:
        replace_readme_block(readme, headline_table(head, native, flash, growth_results,
                                                    ceilings, sweep_results) +
                             f"\n\nFrom `{command}`, {started}; full tables in "
                             "[docs/benchmarks.md](docs/benchmarks.md).")


def hit_rate_text(report):
    """Returns a churn report's hit rate as a percentage, or "-" without GETs."""
    return "-" if report.get("hit_rate") is None else f"{report['hit_rate']:.1%}"


def sweep_cell_name(cell):
    """Returns a cell's short description: placement, phase, size, GET share, conns."""
    placement, phase, size, share, connections = cell
    return (f"{placement}, {phase}, {size_name(size)}, {share:.0%} GET, "
            f"{connections} conn{'s' if connections > 1 else ''}")


def sweep_section(results, plots):
    """Returns the page's sweep section as a list of lines: method, heat maps, a table per
    placement and phase, and every cell below 1.0x."""
    lines = []
    add = lines.append
    run = context_sweep
    add("## Sweep: first pass, warm and churn")
    add("")
    add(f"Every value size from {size_name(SWEEP_SIZES[0])} to {size_name(SWEEP_SIZES[-1])}, "
        "each server started fresh for each size and placement. Its keys (as in the matrix: "
        f"about {WORKING_SET // MIB} MiB, at most 100,000) are written once, and straight "
        f"away the **first pass** runs: {SWEEP_FIRST[0]:.0%} GET, {SWEEP_FIRST[1]} "
        f"connections, pipeline 1, for {run['first_duration']:g} s. It is the first run "
        "that overwrites freshly loaded values, where strata once ran at two thirds of its "
        "peers (a fresh mmap per loaded value) and, found by this sweep, at a third at 64 "
        "and 256 KiB (the kernel's first touch of each value's pages, "
        "[performance.md](performance.md)), and no "
        "warm-up hides it here. The **warm** cells follow on the same server: GET share "
        + ", ".join(f"{share:.0%}" for share in run["shares"]) + " × "
        + ", ".join(str(c) for c in run["connections"]) + " connections, pipeline 1, "
        f"{run['duration']:g} s each (0% GET is SETs only; its MB/s counts bytes written).")
    add("")
    memory = run["churn_memory"] // MIB
    add(f"**Churn** starts each server again with a {memory} MiB budget and no flash: "
        f"strata `--memory {memory}mb --ssd-size 0`, Redis `--maxmemory {memory}mb "
        "--maxmemory-policy allkeys-lru` (the policy is set for churn only: Redis's default, "
        "noeviction, would refuse the SETs; no other run on this page fills Redis's "
        f"budget), memcached `-m {memory}`. A key space of four times the budget is written "
        "once (which already evicts), then "
        + " and ".join(f"{share:.0%}" for share in CHURN_GET_SHARES)
        + f" GET run at {CHURN_CONNECTIONS} connections for {run['churn_duration']:g} s "
        "each: a KV cache that keeps loading new values and evicting old ones. A GET of an "
        "evicted key misses; the hit rate is 1 − misses / GETs, and MB/s counts only values "
        "moved, so a server that keeps fewer of the keys moves fewer bytes.")
    add("")
    add("Every cell runs in two placements: **pinned**, the placement of the rest of the page "
        "(servers on all CPUs but the last, the load generator on the last), and "
        "**unpinned**, servers and load generator started with every CPU in their affinity "
        "and placed by the scheduler, so they share cores (and strata's automatic thread "
        "count counts every CPU). Each cell runs once per placement; on this machine the same "
        "cell moves by up to about 20% from one run to the next, so a single cell between "
        "0.8x and 1.0x is a lead to check by hand, not by itself a loss. The ratio is strata's "
        "MB/s over the better, by MB/s, of Redis and memcached in the same cell: green "
        "above 1.0, red below.")
    add("")
    for path in plots:
        add(f"![{os.path.basename(path)}](benchmarks/{os.path.basename(path)})")
        add("")
    below = []
    errors = []
    for placement in SWEEP_PLACEMENTS:
        for phase in ("first pass", "warm", "churn"):
            cells = sweep_cells(results, placement, phase)
            if not cells:
                continue
            add(f"### {placement.capitalize()}, {phase}")
            add("")
            if phase == "churn":
                add("| value | GET share | strata MB/s | p99 µs | hits | Redis MB/s | p99 µs "
                    "| hits | memcached MB/s | p99 µs | hits | ratio |")
                add("|---|---|---|---|---|---|---|---|---|---|---|---|")
            else:
                add("| value | GET share | conns | strata MB/s | p99 µs | better peer | "
                    "its MB/s | its p99 µs | ratio |")
                add("|---|---|---|---|---|---|---|---|---|")
            for cell in cells:
                found = sweep_cell_ratio(results, cell)
                _, _, size, share, connections = cell
                for name in ("strata", "Redis", "memcached"):
                    report = results.get((placement, phase, name, size, share, connections))
                    if report is not None and report["errors"]:
                        errors.append(f"{sweep_cell_name(cell)}, {name}: {report['errors']:,} "
                                      f"errors (first: `{report['first_error']}`)")
                if found is None:
                    continue
                strata, peer_name, peer, value = found
                if value < 1.0:
                    below.append((cell, found))
                if phase == "churn":
                    cells_text = []
                    for name in ("strata", "Redis", "memcached"):
                        report = results.get((placement, phase, name, size, share,
                                              connections))
                        cells_text += (["", "", ""] if report is None else
                                       [figure(report["mb_per_s"]), figure(report["p99_us"]),
                                        hit_rate_text(report)])
                    add(f"| {size_name(size)} | {share:.0%} | " + " | ".join(cells_text)
                        + f" | {value:.2f}x |")
                else:
                    add(f"| {size_name(size)} | {share:.0%} | {connections} | "
                        f"{figure(strata['mb_per_s'])} | {figure(strata['p99_us'])} | "
                        f"{peer_name} | {figure(peer['mb_per_s'])} | "
                        f"{figure(peer['p99_us'])} | {value:.2f}x |")
            add("")
    add("### Cells below 1.0x")
    add("")
    if below:
        add(f"{len(below)} of {len(sweep_cells(results))} cells:")
        add("")
        for cell, (strata, peer_name, peer, value) in below:
            add(f"- {sweep_cell_name(cell)}: strata {figure(strata['mb_per_s'])} MB/s, p99 "
                f"{figure(strata['p99_us'])} µs; {peer_name} {figure(peer['mb_per_s'])} MB/s, "
                f"p99 {figure(peer['p99_us'])} µs: **{value:.2f}x**")
    else:
        add("none")
    add("")
    if errors:
        add("Runs with errors (a failed request moves no bytes, so it counts in no MB/s):")
        add("")
        for line in errors:
            add(f"- {line}")
        add("")
    return lines


def sweep_target_rows(results):
    """Returns the targets table's sweep rows: per placement, how many cells reach 1.0x
    the better peer and the worst; then 256 KiB and 2 MiB, first pass and warm at 90% GET
    and 4 connections, against 1.2x the better peer with p99 no worse."""
    rows = []
    for placement in SWEEP_PLACEMENTS:
        found = [(cell, sweep_cell_ratio(results, cell))
                 for cell in sweep_cells(results, placement)]
        found = [(cell, f) for cell, f in found if f is not None]
        if not found:
            continue
        met = sum(1 for _, f in found if f[3] >= 1.0)
        worst_cell, worst = min(found, key=lambda item: item[1][3])
        rows.append(f"| sweep, every cell ≥1.0x the better peer ({placement}; first pass, "
                    f"warm, churn) | {met} of {len(found)} cells; worst: "
                    f"{sweep_cell_name(worst_cell).partition(', ')[2]}, "
                    f"{figure(worst[0]['mb_per_s'])} MB/s | {worst[1]} "
                    f"{figure(worst[2]['mb_per_s'])} MB/s | worst {worst[3]:.2f}x | "
                    f"{verdict(met == len(found))} |")
    for placement in SWEEP_PLACEMENTS:
        for size in (256 * KIB, 2 * MIB):
            for phase in ("first pass", "warm"):
                found = sweep_cell_ratio(results, (placement, phase, size, 0.9, 4))
                if found is None:
                    continue
                strata, peer_name, peer, value = found
                met = value >= 1.2 and strata["p99_us"] <= peer["p99_us"]
                rows.append(
                    f"| sweep {size_name(size)}, 90% GET, 4 conns, {phase}, {placement}: ≥1.2x "
                    f"the better peer, p99 no worse | {figure(strata['mb_per_s'])} MB/s, p99 "
                    f"{figure(strata['p99_us'])} µs | {peer_name} {figure(peer['mb_per_s'])} "
                    f"MB/s, p99 {figure(peer['p99_us'])} µs | {value:.2f}x | {verdict(met)} |")
    return rows


def ratio(a, b):
    return a / b if b else float("inf")


def headline_table(head, native, flash, growth_results, ceilings, sweep_results=None):
    """Returns the targets table (markdown) of the page and of README.md; the sweep's rows
    where SWEEP_RESULTS are given."""
    rows = ["| target | strata | peer | ratio | |", "|---|---|---|---|---|"]
    for size in (256 * KIB, 2 * MIB):
        for mix in (0.9, 0.5):
            s = head[("strata", size, mix, 4, 1)]
            for peer, wanted in (("Redis", 1.5), ("memcached", 1.2)):
                p = head[(peer, size, mix, 4, 1)]
                met = ratio(s["mb_per_s"], p["mb_per_s"]) >= wanted and s["p99_us"] <= p["p99_us"]
                rows.append(
                    f"| RESP {size_name(size)}, {mix:.0%} GET, 4 conns: ≥{wanted}x {peer}, "
                    f"p99 no worse | {figure(s['mb_per_s'])} MB/s, p99 {figure(s['p99_us'])} µs "
                    f"| {figure(p['mb_per_s'])} MB/s, p99 {figure(p['p99_us'])} µs | "
                    f"{ratio(s['mb_per_s'], p['mb_per_s']):.2f}x | {verdict(met)} |")
    for size in (100, 4 * KIB):
        for pipeline in (1, 16):
            s = head[("strata", size, 0.9, 16, pipeline)]
            p = head[("Redis", size, 0.9, 16, pipeline)]
            rows.append(
                f"| RESP {size_name(size)}, 90% GET, 16 conns, pipeline {pipeline}: ≥ Redis "
                f"ops/s | {figure(s['ops_per_s'])} ops/s | {figure(p['ops_per_s'])} ops/s | "
                f"{ratio(s['ops_per_s'], p['ops_per_s']):.2f}x | "
                f"{verdict(s['ops_per_s'] >= p['ops_per_s'])} |")
    best_native = max(r["mb_per_s"] for n, r in native.items() if n.startswith("native"))
    rows.append(f"| native batch GET 2 MiB over TCP: ≥80% of iperf3 | {figure(best_native)} "
                f"MB/s | iperf3 {figure(ceilings['iperf3'])} MB/s | "
                f"{ratio(best_native, ceilings['iperf3']):.0%} | "
                f"{verdict(best_native >= 0.8 * ceilings['iperf3'])} |")
    shm = native["shm GET"]["mb_per_s"]
    rows.append(f"| shared-memory GET 2 MiB: ≥40% of memcpy | {figure(shm)} MB/s | memcpy "
                f"{figure(ceilings['memcpy'])} MB/s | {ratio(shm, ceilings['memcpy']):.0%} | "
                f"{verdict(shm >= 0.4 * ceilings['memcpy'])} |")
    flash_get = flash[("strata", 2 * MIB, 1.0)]["mb_per_s"]
    fio = ceilings["fio"][2 * MIB]
    rows.append(f"| flash-resident GET 2 MiB: ≥70% of fio | {figure(flash_get)} MB/s | fio "
                f"{figure(fio)} MB/s | {ratio(flash_get, fio):.0%} | "
                f"{verdict(flash_get >= 0.7 * fio)} |")
    if growth_results:
        # Compared with Redis at the largest step both ran; strata alone goes further.
        common = max(k[1] for k in growth_results if ("Redis", k[1]) in growth_results)
        s, r = growth_results[("strata", common)], growth_results[("Redis", common)]
        rows.append(f"| DRAM per small key ({common:,} keys): ≤160 B (Redis for scale) | "
                    f"{s['bytes_per_key']:.1f} B | Redis {r['bytes_per_key']:.1f} B | "
                    f"{ratio(s['bytes_per_key'], r['bytes_per_key']):.2f}x Redis | "
                    f"{verdict(s['bytes_per_key'] <= 160)} |")
        smallest = min(k[1] for k in growth_results)
        small = growth_results[("strata", smallest)]
        for keys in sorted(k[1] for k in growth_results if k[0] == "strata" and k[1] >= common):
            large = growth_results[("strata", keys)]
            rows.append(f"| throughput at {keys:,} keys ≥0.8x of {smallest:,} | "
                        f"{figure(large['ops_per_s'])} ops/s | {figure(small['ops_per_s'])} "
                        f"ops/s | {ratio(large['ops_per_s'], small['ops_per_s']):.2f}x | "
                        f"{verdict(large['ops_per_s'] >= 0.8 * small['ops_per_s'])} |")
    if sweep_results:
        rows += sweep_target_rows(sweep_results)
    return "\n".join(rows)


def replace_readme_block(readme, text):
    begin, end = "<!-- benchmark-headline:begin -->", "<!-- benchmark-headline:end -->"
    with open(readme) as handle:
        content = handle.read()
    if begin not in content or end not in content:
        print(f"{readme} has no {begin} block; not updated", file=sys.stderr)
        return
    before, _, rest = content.partition(begin)
    _, _, after = rest.partition(end)
    with open(readme, "w") as handle:
        handle.write(before + begin + "\n" + text + "\n" + end + after)


def version_of(command):
    try:
        return command_output(command).split()[2 if command[0] == "redis-server" else 1] \
            .removeprefix("v=")
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "?"


context_versions = {}
context_repeats = 3
context_head_duration = 3.0
context_matrix_duration = 1.0


def main():
    global context_repeats, context_head_duration, context_matrix_duration
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=os.path.join(ROOT, "docs"))
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    arguments = parser.parse_args()
    for path in (SERVER, LOADGEN, MEMCPY_PROBE):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: run `make bench` (or make all and "
                     "make build/bench/loadgen build/bench/memcpy_probe)")
    quick = arguments.quick
    context_matrix_duration = 0.5 if quick else 1.0
    context_head_duration = 1.0 if quick else 3.0
    context_repeats = 1 if quick else 3
    context_versions["redis"] = version_of(["redis-server", "--version"])
    context_versions["memcached"] = version_of(["memcached", "--version"])
    cpus = len(pin_cpus())
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    context = (f"this {cpus}-core, {memory_gib:.0f} GiB {platform.system()} machine "
               f"(kernel {platform.release()})")
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    began = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="strata-bench-")
    try:
        print("ceilings", flush=True)
        ceilings = {"iperf3": measure_iperf3(scratch, 2 if quick else 5),
                    "memcpy": measure_memcpy(1 if quick else 3),
                    "fio": {block: measure_fio(scratch, block, 2 if quick else 5)
                            for block in (256 * KIB, 2 * MIB)}}
        print(f"  {ceilings}", flush=True)
        print("headline workloads", flush=True)
        head = headline(scratch, context_head_duration, context_repeats)
        print("native protocol and shared memory", flush=True)
        native = native_and_shm(scratch, context_head_duration, context_repeats)
        print("flash-resident", flush=True)
        flash = flash_resident(scratch, quick, 1.0 if quick else 3.0)
        growth_results = {}
        if not arguments.skip_growth:
            print("growth", flush=True)
            growth_results = growth(scratch, quick, 1.0 if quick else 2.0)
        print("DRAM-resident matrix", flush=True)
        matrix = dram_matrix(scratch, quick, context_matrix_duration)
        sweep_results = {}
        if not arguments.skip_sweep:
            print("sweep", flush=True)
            sweep_results = sweep(scratch, quick, 0.3 if quick else 1.0)
        plots = make_plots(arguments.output, matrix, growth_results)
        sweep_plots = make_sweep_plots(arguments.output, sweep_results)
        elapsed = time.monotonic() - began
        write_report(arguments.output,
                     None if arguments.no_readme else os.path.join(ROOT, "README.md"),
                     context, matrix, head, native, flash, growth_results, ceilings, plots,
                     quick, started, elapsed, sweep_results, sweep_plots)
        print(headline_table(head, native, flash, growth_results, ceilings, sweep_results))
        print(f"wrote {os.path.join(arguments.output, 'benchmarks.md')} and "
              f"{len(plots) + len(sweep_plots)} plots "
              f"in {elapsed / 60:.1f} minutes")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
