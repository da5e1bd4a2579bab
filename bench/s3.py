#!/usr/bin/python3
"""The S3 benchmark of `make bench`: strata's S3 API against the ceilings that bound it,
measured in the same run. Writes docs/benchmarks/s3.json and the "S3 API" section of
docs/benchmarks.md (between its s3 markers; bench/suite.py keeps the section when it
rewrites the page).

    /usr/bin/python3 bench/s3.py [--size 4g] [--runs 3] [--placements pinned,unpinned]
                                 [--profile] [--output DIR] [--scratch DIR] [--note TEXT]

Four measurements, each in two placements (pinned: the server on every CPU but the last,
the clients on the last; unpinned: everything on every CPU, placed by the scheduler):

1. GET of one SIZE object, page cache warm ("DRAM"), one connection: the S3 path
   (GET /bench/big) against /keys/ holding a value of the same size in DRAM (the
   engine's path, sent by reference) and against iperf3, one TCP stream over loopback.
2. The same GET with the object's blob file out of the page cache ("flash"), against
   fio reading the same blob file's data the same way (buffered, 1 MiB reads, io_uring)
   after it too is dropped from the cache; after one unrecorded fio read, the two
   alternate, twice each, and the best of each counts (see run_placement for why).
3. The loader pattern: 32 connections GETting consecutive 8 MiB ranges of the object
   (one pass), against /keys/ serving the same ranges of the same-sized value to the same
   client, and against iperf3.
4. A multipart PUT of SIZE in 8 MiB parts, 8 parts at once, timed from
   CreateMultipartUpload to the answer of CompleteMultipartUpload, against fio writing
   SIZE sequentially in 8 MiB blocks to the same disk with an fsync at the end.

The client is build/bench/s3load (bench/s3load.c): plain HTTP/1.1 with keep-alive, one
thread per connection, bodies received into a 1 MiB buffer and checked (a wrong byte
stops the run). strata runs without S3 credentials, so loopback requests are served
unsigned and no signature is computed on either side (docs/s3.md). Warm figures are the
median of --runs runs; the PUTs run once per placement. Beside MB/s, the server's CPU
time per GiB moved is recorded for every transfer (from /proc/PID/stat), a figure the
machine's other load moves much less.

--size makes a quick run (e.g. --size 1g); its figures are not the ones to publish.
--profile records the server with `perf record -g` during one more warm S3 GET (pinned
placement) and adds its top symbols to the JSON and the page. Nothing outside a scratch
directory under --scratch (default $TMPDIR or /tmp) is touched but the output files."""
import argparse
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

from bench_common import S3_MARKERS, free_port, splice, wait_for_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "build", "strata-server")
S3LOAD = os.path.join(ROOT, "build", "bench", "s3load")

KIB, MIB, GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024
RANGE_SIZE = 8 * MIB
RANGE_CONNECTIONS = 32
PART_SIZE = 8 * MIB
PART_CONNECTIONS = 8
COLD_READS = 2        # cold GETs and cold fio reads, alternated
TARGET_CEILING = 0.9  # of each ceiling
TARGET_KEYS = 1.0     # the S3 GET path must not be slower than /keys/
BUCKET = "bench"
ALL_CPUS = sorted(os.sched_getaffinity(0))


def parse_size(text):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)b?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text}")
    return int(float(match.group(1)) * {"": 1, "k": KIB, "m": MIB, "g": GIB}[match.group(2)])


def size_name(size):
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def figure(value):
    return f"{value:,.0f}"


class Placement:
    """Where servers and clients run. Pinned (two CPUs or more): servers on all CPUs but
    the last, clients (this script and what it starts) on the last, as bench/suite.py.
    Unpinned: everything on every CPU."""

    def __init__(self, name):
        self.name = name
        pinned = name == "pinned" and len(ALL_CPUS) >= 2
        self.server_cpus = ALL_CPUS[:-1] if pinned else ALL_CPUS
        self.client_cpus = ALL_CPUS[-1:] if pinned else ALL_CPUS

    def enter(self):
        os.sched_setaffinity(0, self.client_cpus)

    def server_preexec(self):
        cpus = self.server_cpus
        return lambda: os.sched_setaffinity(0, cpus)

    def describe(self):
        if self.server_cpus == self.client_cpus:
            return f"every process on CPUs {self.server_cpus}"
        return f"servers on CPUs {self.server_cpus}, clients on CPUs {self.client_cpus}"


class Strata:
    def __init__(self, directory, size, placement):
        self.port, self.http_port, self.native_port = free_port(), free_port(), free_port()
        self.data = os.path.join(directory, "strata")
        limit = str(size + GIB)  # room for the /keys/ value and the request around it
        self.command = [SERVER, "--port", str(self.port), "--http-port", str(self.http_port),
                        "--native-port", str(self.native_port), "--dir", self.data,
                        "--memory", str(size + 2 * GIB), "--max-value", limit,
                        "--max-request", limit, "--ssd-size", "0"]
        self.log = open(os.path.join(directory, "strata.log"), "ab")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        preexec_fn=placement.server_preexec())
        wait_for_port(self.http_port, self.process)

    def request(self, method, path, body=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=600)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def cpu_seconds(self):
        """User and system CPU time of the server process (all its threads) so far."""
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


COMMANDS = {}  # what each measurement ran, for the page


def remember(label, words, replacements=()):
    """Keeps the first command run under LABEL for the page, with the run's own paths and
    ids replaced by names (REPLACEMENTS: (text, name) pairs)."""
    text = " ".join(str(w) for w in words)
    for old, name in replacements:
        text = text.replace(old, name)
    COMMANDS.setdefault(label, text)


def s3load(strata, label, *arguments, replacements=()):
    """Runs the client and returns its JSON report; any error or wrong byte stops the
    benchmark (a transfer that is wrong has no figure)."""
    command = [S3LOAD, "--port", str(strata.http_port), *[str(a) for a in arguments]]
    remember(label, ["build/bench/s3load", "--port", "PORT", *arguments], replacements)
    cpu_before = strata.cpu_seconds()
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    cpu_after = strata.cpu_seconds()
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}: "
                           f"{result.stdout.strip()[-1000:]} {result.stderr.strip()[-1000:]}")
    report = json.loads(result.stdout)
    # The server's CPU time (every thread, user and system) per GiB moved: what the
    # transfer cost the server, which other load on the machine changes far less than
    # it changes MB/s.
    report["server_cpu_s"] = cpu_after - cpu_before
    report["server_cpu_s_per_gib"] = (cpu_after - cpu_before) / (report["bytes"] / GIB) \
        if report["bytes"] else None
    return report


def iperf3(placement, seconds):
    """One TCP stream over loopback, iperf3's server placed as strata: MB/s."""
    port = free_port()
    remember("iperf3 server (placed as strata)", ["iperf3", "-s", "-p", "PORT", "-B", "127.0.0.1"])
    remember("iperf3 client", ["iperf3", "-c", "127.0.0.1", "-p", "PORT", "-t", seconds, "-J"])
    server = subprocess.Popen(["iperf3", "-s", "-p", str(port), "-B", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=placement.server_preexec())
    try:
        wait_for_port(port, server)
        for _ in range(50):
            result = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t",
                                     str(seconds), "-J"], capture_output=True, text=True,
                                    timeout=seconds + 60)
            report = json.loads(result.stdout or "{}")
            if "error" not in report and "end" in report:
                return report["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
            time.sleep(0.2)  # the server still busy with the port probe's connection
        raise RuntimeError(f"iperf3 failed: {result.stdout[-500:]} {result.stderr[-500:]}")
    finally:
        server.kill()
        server.wait()


def fio(label, *arguments, replacements=()):
    """Runs fio and returns (MB/s, the JSON job)."""
    command = ["fio", *arguments, "--output-format=json"]
    remember(label, ["fio", *arguments], replacements)
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            timeout=1800).stdout
    job = json.loads(output[output.index("{"):])["jobs"][0]
    side = job["write"] if job["write"]["io_bytes"] else job["read"]
    return side["io_bytes"] / (side["runtime"] / 1e3) / 1e6, job


def drop_from_cache(path):
    """Writes PATH's dirty pages and drops its pages from the page cache (only this file:
    the machine's other users keep theirs). Returns how many of its pages stay resident
    (fincore), which should be 0."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)
    output = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                            capture_output=True, text=True).stdout.strip()
    return int(output or 0)


def blob_of(strata, size):
    """The blob file holding the single-PUT object: the one file under the objects
    directory at least SIZE bytes long (data, then 4 bytes of sum per chunk and a 32-byte
    footer: engine/blob.c)."""
    found = []
    for directory, _, names in os.walk(os.path.join(strata.data, "objects")):
        for name in names:
            path = os.path.join(directory, name)
            if os.path.getsize(path) >= size:
                found.append(path)
    if len(found) != 1:
        raise RuntimeError(f"expected one blob of {size} bytes or more, found {found}")
    return found[0]


def median_run(runs):
    ordered = sorted(runs, key=lambda r: r["mb_per_s"])
    return ordered[len(ordered) // 2]


def multipart_put(strata, key, size):
    """CreateMultipartUpload, the parts through s3load, CompleteMultipartUpload. Returns
    (MB/s from create to complete, the parts' s3load report)."""
    started = time.monotonic()
    status, body = strata.request("POST", f"/{BUCKET}/{key}?uploads")
    if status != 200:
        raise RuntimeError(f"CreateMultipartUpload: {status} {body[:300]!r}")
    upload = re.search(rb"<UploadId>([^<]+)</UploadId>", body).group(1).decode()
    parts = s3load(strata, "multipart", "--put", "--path", f"/{BUCKET}/{key}", "--size", size,
                   "--part-size", PART_SIZE, "--connections", PART_CONNECTIONS,
                   "--query", f"uploadId={upload}", replacements=[(upload, "UPLOAD_ID")])
    document = "<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>\"{etag}\"</ETag></Part>"
        for n, etag in enumerate(parts["etags"], 1)) + "</CompleteMultipartUpload>"
    status, body = strata.request("POST", f"/{BUCKET}/{key}?uploadId={upload}",
                                  document.encode())
    if status != 200 or b"<Error>" in body:
        raise RuntimeError(f"CompleteMultipartUpload: {status} {body[:300]!r}")
    seconds = time.monotonic() - started
    return size / seconds / 1e6, parts


def profile_get(strata, size):
    """perf record -g on the server during one warm S3 GET of the object; returns the top
    symbols by self time (perf report --no-children)."""
    data = os.path.join(os.path.dirname(strata.data), "perf.data")
    recorder = subprocess.Popen(["perf", "record", "-g", "-o", data, "-p",
                                 str(strata.process.pid)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    s3load(strata, "profile", "--path", f"/{BUCKET}/big", "--size", size)
    recorder.send_signal(2)
    recorder.wait(timeout=120)
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                             "--sort", "symbol", "-g", "none", "--percent-limit", "1"],
                            capture_output=True, text=True, timeout=600).stdout
    rows = []
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+\[([.k])\]\s+(\S+)", line)
        if match:
            rows.append({"percent": float(match.group(1)),
                         "space": "kernel" if match.group(2) == "k" else "user",
                         "symbol": match.group(3)})
    return rows[:20]


def run_placement(placement, size, runs, scratch, profile):
    """Every measurement in one placement; returns a dict of results."""
    placement.enter()
    directory = tempfile.mkdtemp(prefix=f"{placement.name}-", dir=scratch)
    strata = Strata(directory, size, placement)
    result = {"placement": placement.describe()}
    try:
        status, body = strata.request("PUT", f"/{BUCKET}")
        if status != 200:
            raise RuntimeError(f"CreateBucket: {status} {body[:300]!r}")
        result["put_single"] = s3load(strata, "put S3", "--put", "--path", f"/{BUCKET}/big",
                                      "--size", size)
        result["put_keys"] = s3load(strata, "put /keys/", "--put", "--path", "/keys/big",
                                    "--size", size)
        blob = blob_of(strata, size)
        s3load(strata, "GET S3", "--path", f"/{BUCKET}/big", "--size", size)  # warm-up
        print(f"  [{placement.name}] warm GETs", flush=True)
        s3_runs, keys_runs = [], []
        for _ in range(runs):
            s3_runs.append(s3load(strata, "GET S3", "--path", f"/{BUCKET}/big", "--size", size))
            keys_runs.append(s3load(strata, "GET /keys/", "--path", "/keys/big", "--size", size))
        result["get_s3"], result["get_keys"] = median_run(s3_runs), median_run(keys_runs)
        result["get_s3_runs"] = [r["mb_per_s"] for r in s3_runs]
        result["get_keys_runs"] = [r["mb_per_s"] for r in keys_runs]
        print(f"  [{placement.name}] ranged GETs", flush=True)
        ranged_s3, ranged_keys = [], []
        for _ in range(runs):
            ranged_s3.append(s3load(strata, "ranged S3", "--path", f"/{BUCKET}/big", "--size",
                                    size, "--range-size", RANGE_SIZE, "--connections",
                                    RANGE_CONNECTIONS))
            ranged_keys.append(s3load(strata, "ranged /keys/", "--path", "/keys/big", "--size",
                                      size, "--range-size", RANGE_SIZE, "--connections",
                                      RANGE_CONNECTIONS))
        result["ranged_s3"], result["ranged_keys"] = median_run(ranged_s3), median_run(ranged_keys)
        result["ranged_s3_runs"] = [r["mb_per_s"] for r in ranged_s3]
        result["ranged_keys_runs"] = [r["mb_per_s"] for r in ranged_keys]
        print(f"  [{placement.name}] iperf3", flush=True)
        result["iperf3"] = iperf3(placement, 5)
        print(f"  [{placement.name}] cold GET and fio read", flush=True)
        # On a virtual machine that hands freed pages back to its host (free page
        # reporting), the first read into pages freed a while ago pays the host's page
        # faults, seconds of CPU per GiB: whichever of strata and fio read first would
        # pay it. So fio reads once unrecorded first, then strata and fio alternate,
        # COLD_READS times each, each read after its own drop; the best of each counts.
        def fio_cold():
            resident = drop_from_cache(blob)
            mb_per_s, job = fio("fio read", "--name=read", f"--filename={blob}", "--rw=read",
                                "--bs=1m", "--direct=0", "--ioengine=io_uring",
                                f"--size={size}", "--readonly",
                                replacements=[(blob, "BLOB_FILE")])
            seconds = job["read"]["runtime"] / 1e3
            cpu = (job["usr_cpu"] + job["sys_cpu"]) / 100 * seconds / (size / GIB)
            return {"mb_per_s": mb_per_s, "resident_before": resident,
                    "client_cpu_s_per_gib": cpu}

        fio_cold()
        cold_s3, cold_fio = [], []
        for _ in range(COLD_READS):
            resident = drop_from_cache(blob)
            cold_s3.append(s3load(strata, "GET S3", "--path", f"/{BUCKET}/big", "--size", size))
            cold_s3[-1]["resident_before"] = resident
            cold_fio.append(fio_cold())
        result["get_cold"] = max(cold_s3, key=lambda r: r["mb_per_s"])
        result["get_cold_runs"] = [r["mb_per_s"] for r in cold_s3]
        result["get_cold_cpu_runs"] = [r["server_cpu_s_per_gib"] for r in cold_s3]
        best_fio = max(cold_fio, key=lambda r: r["mb_per_s"])
        result["fio_read"] = best_fio["mb_per_s"]
        result["fio_read_runs"] = [r["mb_per_s"] for r in cold_fio]
        result["fio_read_cpu_runs"] = [r["client_cpu_s_per_gib"] for r in cold_fio]
        result["cold_resident_before"] = [r["resident_before"] for r in cold_s3 + cold_fio]
        if profile:
            print(f"  [{placement.name}] profile", flush=True)
            s3load(strata, "GET S3", "--path", f"/{BUCKET}/big", "--size", size)  # warm again
            result["profile"] = profile_get(strata, size)
        # The /keys/ value is not needed any more: give its DRAM back before the writes.
        strata.request("DELETE", "/keys/big")
        print(f"  [{placement.name}] multipart PUT and fio write", flush=True)
        result["multipart"], result["multipart_parts"] = multipart_put(strata, "parts", size)
        target = os.path.join(directory, "fio-write")
        result["fio_write"], _ = fio("fio write", "--name=write", f"--filename={target}",
                                     "--rw=write", "--bs=8m", f"--size={size}",
                                     "--ioengine=io_uring", "--end_fsync=1",
                                     replacements=[(directory, "SCRATCH")])
        os.unlink(target)
    finally:
        strata.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return result


def ratio_row(what, strata_text, strata_value, peer_text, peer_value, target):
    value = strata_value / peer_value if peer_value else float("inf")
    verdict = "**met**" if value >= target else "**missed**"
    return (f"| {what} | {strata_text} | {peer_text} | {value:.0%} | ≥{target:.0%} | "
            f"{verdict} |")


def section(results, size, runs, context, note):
    """The markdown section of docs/benchmarks.md (without its markers)."""
    lines = []
    add = lines.append
    add("## S3 API: large objects against the machine's ceilings")
    add("")
    if note:
        add(f"**{note}**")
        add("")
    add(f"From `{context['command']}` on {context['machine']}, started {context['started']} "
        f"and taking {context['minutes']:.1f} minutes. strata runs without S3 credentials "
        "(loopback requests are served unsigned, so neither side computes a signature), "
        f"with `--memory {size_name(size + 2 * GIB)} --max-value {size_name(size + GIB)} "
        "--ssd-size 0` and its object store on the scratch directory's disk. The client "
        "is `build/bench/s3load` (bench/s3load.c): HTTP/1.1 with keep-alive, one thread "
        "per connection, each body received into a 1 MiB buffer and checked (16 bytes of "
        "every 4 KiB). MB/s is 10^6 bytes of body per second. Warm figures are the median "
        f"of {runs} runs, the cold reads the best of {COLD_READS}; the PUTs run once per "
        "placement. Pinned: "
        "servers (strata, iperf3's server) on all CPUs but the last, clients (s3load, "
        "iperf3's client, fio) on the last; unpinned: every process on every CPU.")
    add("")
    add("| placement | measurement | strata | peer | ratio | target | |")
    add("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        rows = [
            ratio_row(f"GET {size_name(size)}, warm, 1 conn: S3 vs /keys/",
                      f"{figure(r['get_s3']['mb_per_s'])} MB/s",
                      r["get_s3"]["mb_per_s"], f"/keys/ {figure(r['get_keys']['mb_per_s'])} MB/s",
                      r["get_keys"]["mb_per_s"], TARGET_KEYS),
            ratio_row(f"GET {size_name(size)}, warm, 1 conn: S3 vs iperf3",
                      f"{figure(r['get_s3']['mb_per_s'])} MB/s", r["get_s3"]["mb_per_s"],
                      f"iperf3 {figure(r['iperf3'])} MB/s", r["iperf3"], TARGET_CEILING),
            ratio_row(f"GET {size_name(size)}, warm, 1 conn: /keys/ vs iperf3 (for scale)",
                      f"{figure(r['get_keys']['mb_per_s'])} MB/s", r["get_keys"]["mb_per_s"],
                      f"iperf3 {figure(r['iperf3'])} MB/s", r["iperf3"], TARGET_CEILING),
            ratio_row(f"GET {size_name(size)}, cold (blob out of the page cache), 1 conn: "
                      "S3 vs fio reading the blob file",
                      f"{figure(r['get_cold']['mb_per_s'])} MB/s", r["get_cold"]["mb_per_s"],
                      f"fio {figure(r['fio_read'])} MB/s", r["fio_read"], TARGET_CEILING),
            ratio_row(f"{RANGE_CONNECTIONS} conns × {size_name(RANGE_SIZE)} ranged GETs, "
                      "warm: S3 vs /keys/, same ranges",
                      f"{figure(r['ranged_s3']['mb_per_s'])} MB/s",
                      r["ranged_s3"]["mb_per_s"],
                      f"/keys/ {figure(r['ranged_keys']['mb_per_s'])} MB/s",
                      r["ranged_keys"]["mb_per_s"], TARGET_KEYS),
            ratio_row(f"{RANGE_CONNECTIONS} conns × {size_name(RANGE_SIZE)} ranged GETs, "
                      "warm: S3 vs iperf3",
                      f"{figure(r['ranged_s3']['mb_per_s'])} MB/s",
                      r["ranged_s3"]["mb_per_s"], f"iperf3 {figure(r['iperf3'])} MB/s",
                      r["iperf3"], TARGET_CEILING),
            ratio_row(f"multipart PUT {size_name(size)}, {size_name(PART_SIZE)} parts, "
                      f"{PART_CONNECTIONS} at once: S3 vs fio sequential write",
                      f"{figure(r['multipart'])} MB/s", r["multipart"],
                      f"fio {figure(r['fio_write'])} MB/s", r["fio_write"], TARGET_CEILING),
        ]
        for row in rows:
            add(f"| {name} " + row)
    add("")
    add("Other figures of the same run (MB/s):")
    add("")
    add("| placement | S3 GET runs | /keys/ GET runs | S3 cold GET runs | fio cold read runs "
        "| S3 ranged runs | /keys/ ranged runs | S3 ranged p50 / p99 ms | single PUT S3 | "
        "single PUT /keys/ | multipart, parts only |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        runs_text = lambda values: ", ".join(figure(v) for v in values)  # noqa: E731
        add(f"| {name} | {runs_text(r['get_s3_runs'])} | {runs_text(r['get_keys_runs'])} | "
            f"{runs_text(r['get_cold_runs'])} | {runs_text(r['fio_read_runs'])} | "
            f"{runs_text(r['ranged_s3_runs'])} | {runs_text(r['ranged_keys_runs'])} | "
            f"{r['ranged_s3']['p50_ms']:,.0f} / {r['ranged_s3']['p99_ms']:,.0f} | "
            f"{figure(r['put_single']['mb_per_s'])} | {figure(r['put_keys']['mb_per_s'])} | "
            f"{figure(r['multipart_parts']['mb_per_s'])} |")
    add("")
    add("The server's CPU time per GiB moved (user and system, every thread, from "
        "`/proc/PID/stat` around each transfer; the median MB/s run's): what each path "
        "costs the server, which the machine's other load moves much less than MB/s.")
    add("")
    add("| placement | S3 GET warm | /keys/ GET | S3 GET cold | S3 ranged | /keys/ ranged | "
        "single PUT S3 | single PUT /keys/ | multipart parts |")
    add("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = [r[k].get("server_cpu_s_per_gib") for k in
                 ("get_s3", "get_keys", "get_cold", "ranged_s3", "ranged_keys", "put_single",
                  "put_keys", "multipart_parts")]
        add(f"| {name} | " + " | ".join("" if c is None else f"{c:.2f} s" for c in cells)
            + " |")
    add("")
    add("Cold reads, CPU time per GiB of each run in order (strata: the server's; fio: its "
        "own, usr + sys): a run of several seconds per GiB is one that paid the host's page "
        "faults (see fio read below).")
    add("")
    add("| placement | S3 cold GET | fio cold read |")
    add("|---|---|---|")
    for name, r in results.items():
        add(f"| {name} | " + ", ".join(f"{c:.2f} s" for c in r["get_cold_cpu_runs"]) + " | "
            + ", ".join(f"{c:.2f} s" for c in r["fio_read_cpu_runs"]) + " |")
    add("")
    add("What each peer is, and why:")
    add("")
    add("- **/keys/** holds a value of the same size in DRAM; its GET sends the value by "
        "reference (`writev` from the stored block), the fastest path strata has, so the S3 "
        "path (object store: chunks read from the blob file, CRC32C-checked, then sent) "
        "should match it when the blob is in the page cache. The ranged rows give /keys/ "
        "the same 32 connections and the same ranges: the peer isolates what the S3 path "
        "costs from what 32 streams cost on this machine.")
    add("- **iperf3**, one TCP stream over loopback, is the most one connection moves on "
        "this machine. For 32 connections it is kept as the ceiling too: Debian 12's iperf3 "
        "(3.12) runs all its streams on one thread, so `-P 32` measures the same single "
        "core as `-P 1`, and strata's server side has the same cores either way.")
    add("- **fio read** reads the object's own blob file (its data bytes, `--size` of the "
        "object) after it is dropped from the page cache the same way as before strata's "
        "cold GET (`fsync`, then `posix_fadvise(POSIX_FADV_DONTNEED)` on that file, and "
        "`fincore` shows 0 bytes resident; `/proc/sys/vm/drop_caches` would also empty the "
        "cache of every other process on the machine): the same bytes, from the same "
        "place on the disk, buffered with the kernel's readahead as strata reads them. "
        "This machine is a virtual machine whose freed pages go back to the host (free "
        "page reporting): the first read into such pages pays the host's page faults, "
        "seconds of CPU per GiB, and so would whichever of strata and fio read first. So "
        "fio reads the file once unrecorded, then strata and fio alternate, "
        f"{COLD_READS} reads each, each after its own drop; the table has the best of "
        "each, and the CPU times of every run are below.")
    add("- **fio write** writes the same number of bytes to a new file on the same disk in "
        "8 MiB blocks and fsyncs it at the end; its time includes the fsync. strata runs "
        "with its default `--fsync everysec`, so its parts are synced once a second, not "
        "before each answer: the comparison is with the disk's sequential write rate, "
        "not with an equally durable write. The multipart time runs from "
        "CreateMultipartUpload to the answer of CompleteMultipartUpload; the client sends "
        "each part from a 1 MiB buffer (no disk, no hashing), so the figure is the "
        "server's. aws-cli would hash each part (MD5, and SHA-256 over plain HTTP) in "
        "Python and is slower than the server; it is not used here.")
    add("")
    add("Commands (PORT: strata's HTTP port; BLOB_FILE: the object's blob file under "
        "strata's `objects/blobs/`; SCRATCH: the run's scratch directory; UPLOAD_ID: the "
        "id CreateMultipartUpload returned):")
    add("")
    for label, command in COMMANDS.items():
        add(f"- {label}: `{command}`")
    add("")
    profiled = [r for r in results.values() if r.get("profile")]
    if profiled:
        add("Profile of the server during one warm S3 GET of the object (pinned; "
            "`perf record -g -p PID`, `perf report --no-children --sort symbol`), "
            "symbols with 1% or more of the samples:")
        add("")
        add("| self | space | symbol |")
        add("|---|---|---|")
        for row in profiled[0]["profile"]:
            add(f"| {row['percent']:.1f}% | {row['space']} | `{row['symbol']}` |")
        add("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=4 * GIB,
                        help="object size (default 4g); a smaller one for a quick run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--placements", default="pinned,unpinned")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--output", default=os.path.join(ROOT, "docs"))
    parser.add_argument("--scratch", default=None)
    parser.add_argument("--note", default="",
                        help="a line printed in bold at the top of the section")
    arguments = parser.parse_args()
    for path in (SERVER, S3LOAD):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: run `make bench` (or make all build/bench/s3load)")
    for tool in ("iperf3", "fio", "fincore") + (("perf",) if arguments.profile else ()):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: scripts/install-deps.sh bench installs it")
    size = arguments.size
    if size < PART_SIZE or size % PART_SIZE:
        sys.exit(f"--size must be a multiple of {size_name(PART_SIZE)}")
    placements = [Placement(name) for name in arguments.placements.split(",")]
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    began = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="strata-s3bench-", dir=arguments.scratch)
    results = {}
    try:
        for placement in placements:
            print(f"{placement.name}: {placement.describe()}", flush=True)
            results[placement.name] = run_placement(
                placement, size, arguments.runs, scratch,
                arguments.profile and placement is placements[0])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    os.sched_setaffinity(0, ALL_CPUS)
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    command = "make bench"
    if sys.argv[1:]:
        command = "/usr/bin/python3 bench/s3.py " + " ".join(
            a for a in sys.argv[1:] if not a.startswith("--note") and a != arguments.note)
    context = {"command": command, "started": started,
               "minutes": (time.monotonic() - began) / 60,
               "machine": f"this {len(ALL_CPUS)}-core, {memory_gib:.0f} GiB "
                          f"{platform.system()} machine (kernel {platform.release()})"}
    text = section(results, size, arguments.runs, context, arguments.note)
    os.makedirs(os.path.join(arguments.output, "benchmarks"), exist_ok=True)
    with open(os.path.join(arguments.output, "benchmarks", "s3.json"), "w") as handle:
        json.dump({"context": context, "size": size, "runs": arguments.runs,
                   "note": arguments.note, "commands": COMMANDS, "results": results},
                  handle, indent=1)
        handle.write("\n")
    with open(os.path.join(arguments.output, "benchmarks", "s3.md"), "w") as handle:
        handle.write(text + "\n")
    page = os.path.join(arguments.output, "benchmarks.md")
    if os.path.exists(page):
        splice(page, text, S3_MARKERS)
    print(text)
    print(f"wrote {page} and {os.path.join(arguments.output, 'benchmarks', 's3.json')} in "
          f"{context['minutes']:.1f} minutes")


if __name__ == "__main__":
    main()
