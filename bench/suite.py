#!/usr/bin/python3
"""The side-by-side benchmark suite of `make bench`: strata, Redis and memcached driven by
one load generator (build/bench/loadgen, bench/loadgen.c), with the machine's ceilings
(iperf3 over loopback, a memcpy probe, fio) measured in the same run. Writes
docs/benchmarks.md, the plots under docs/benchmarks/, and the headline table between the
markers in README.md.

    /usr/bin/python3 bench/suite.py [--quick] [--output DIR] [--no-readme]

--quick runs a small subset with short durations (to check the suite itself; its
figures are not the ones to publish). Every server runs on loopback with its data in a
scratch directory under $TMPDIR (or /tmp); nothing outside it is touched except the
output files."""
import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

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


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process):
    for _ in range(1000):
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


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
# threads never compete with the client for a core (docs/performance.md).
SERVER_CPUS = []


def pin_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[-1]})
        SERVER_CPUS[:] = ["taskset", "-c", ",".join(str(c) for c in cpus[:-1])]
    return cpus


class Server:
    """One server process on loopback; NAME is how tables call it, PROTOCOL what loadgen
    speaks to PORT."""

    def __init__(self, name, protocol, command, port, directory, extra_ports=()):
        self.name, self.protocol, self.port = name, protocol, port
        self.log = open(os.path.join(directory, f"{name.replace(' ', '_')}.log"), "ab")
        self.process = subprocess.Popen(SERVER_CPUS + command, stdout=self.log, stderr=subprocess.STDOUT)
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


def start_strata(directory, memory=SERVER_MEMORY, ssd_size=0):
    port, native_port = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="strata-", dir=directory)
    server = Server("strata", "resp",
                    [SERVER, "--port", str(port), "--native-port", str(native_port),
                     "--http-port", "0", "--dir", data, "--memory", str(memory),
                     "--ssd-size", str(ssd_size), "--log-level", "warning"],
                    port, directory, extra_ports=[native_port])
    server.native_port = native_port
    return server


def start_redis(directory, memory=SERVER_MEMORY):
    port = free_port()
    return Server("Redis", "resp",
                  ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--maxmemory", str(memory), "--dir", directory,
                   "--client-output-buffer-limit", "normal 0 0 0"], port, directory)


def start_memcached(directory, memory=SERVER_MEMORY, extstore=None):
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
    return Server("memcached", "memcache", command, port, directory)


def loadgen(protocol, port, size, keys, get_ratio=0.9, connections=4, pipeline=1,
            duration=1.0, batch=1, prefill=False, key_start=0):
    """Runs the load generator once and returns its JSON report. A wrong value (exit 1)
    stops the suite: a benchmark that returns wrong bytes has no figure to report."""
    command = [LOADGEN, "--protocol", protocol, "--port", str(port), "--size", str(size),
               "--keys", str(keys), "--get-ratio", str(get_ratio), "--connections",
               str(connections), "--pipeline", str(pipeline), "--batch", str(batch),
               "--duration", str(duration), "--key-start", str(key_start)]
    if prefill:
        command += ["--prefill"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}: "
                           f"{result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)


def prefill(server, size, keys, connections=4, key_start=0):
    pipeline = 16 if size <= 64 * KIB else 2
    report = loadgen(server.protocol, server.port, size, keys, connections=connections,
                     pipeline=pipeline, prefill=True, key_start=key_start)
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
        client = strata.Client(port=server.native_port, connections=1)
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


def growth(directory, quick, duration):
    """10^4 .. 10^7 keys of 16 bytes with 100-byte values: DRAM per key (used_memory /
    keys on both) and 90/10 throughput at 16 connections, pipeline 16."""
    steps = [10_000, 100_000, 1_000_000] if quick else [10_000, 100_000, 1_000_000, 10_000_000]
    results = {}
    for start in (start_strata, start_redis):
        server = start(directory, memory=8 * GIB)
        try:
            baseline = int(resp_info(server.port)["used_memory"])
            filled = 0
            for keys in steps:
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


def verdict(met):
    return "**met**" if met else "**missed**"


def write_report(output, readme, context, matrix, head, native, flash, growth_results,
                 ceilings, plots, quick, started, elapsed):
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
        "and tail latencies measure the scheduler ([performance.md](performance.md)).")
    add("")
    add("Peers: Redis " + context_versions["redis"] + " (no persistence, "
        "`--maxmemory 4gb`), memcached " + context_versions["memcached"] + " (4 threads, "
        "`-m 4096 -I 16m`), strata (`--memory 4gb`, automatic thread count, flash tier off "
        "except where stated).")
    add("")
    add("## Targets")
    add("")
    add(headline_table(head, native, flash, growth_results, ceilings))
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
        add("## Growth: 10^4 to 10^7 small keys")
        add("")
        add("16-byte keys, 100-byte values, written in steps; at each step DRAM per key "
            "(INFO used_memory less the empty server's, divided by DBSIZE; the same field "
            "on both servers) and 90/10 throughput at 16 connections, pipeline 16, over "
            "all keys.")
        add("")
        add("| keys | strata ops/s | strata B/key | Redis ops/s | Redis B/key |")
        add("|---|---|---|---|---|")
        for keys in sorted({k[1] for k in growth_results}):
            s, r = growth_results.get(("strata", keys)), growth_results.get(("Redis", keys))
            add(f"| {keys:,} | {figure(s['ops_per_s'])} | {s['bytes_per_key']:.1f} | "
                f"{figure(r['ops_per_s'])} | {r['bytes_per_key']:.1f} |")
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
                                                    ceilings) +
                             f"\n\nFrom `{command}`, {started}; full tables in "
                             "[docs/benchmarks.md](docs/benchmarks.md).")


def ratio(a, b):
    return a / b if b else float("inf")


def headline_table(head, native, flash, growth_results, ceilings):
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
        largest = max(k[1] for k in growth_results)
        s, r = growth_results[("strata", largest)], growth_results[("Redis", largest)]
        rows.append(f"| DRAM per small key ({largest:,} keys): ≤ Redis | "
                    f"{s['bytes_per_key']:.1f} B | {r['bytes_per_key']:.1f} B | "
                    f"{ratio(s['bytes_per_key'], r['bytes_per_key']):.2f}x | "
                    f"{verdict(s['bytes_per_key'] <= r['bytes_per_key'])} |")
        smallest = min(k[1] for k in growth_results)
        small, large = growth_results[("strata", smallest)], growth_results[("strata", largest)]
        rows.append(f"| throughput at {largest:,} keys within 20% of {smallest:,} | "
                    f"{figure(large['ops_per_s'])} ops/s | {figure(small['ops_per_s'])} ops/s | "
                    f"{ratio(large['ops_per_s'], small['ops_per_s']):.2f}x | "
                    f"{verdict(large['ops_per_s'] >= 0.8 * small['ops_per_s'])} |")
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
        plots = make_plots(arguments.output, matrix, growth_results)
        elapsed = time.monotonic() - began
        write_report(arguments.output,
                     None if arguments.no_readme else os.path.join(ROOT, "README.md"),
                     context, matrix, head, native, flash, growth_results, ceilings, plots,
                     quick, started, elapsed)
        print(headline_table(head, native, flash, growth_results, ceilings))
        print(f"wrote {os.path.join(arguments.output, 'benchmarks.md')} and {len(plots)} plots "
              f"in {elapsed / 60:.1f} minutes")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
