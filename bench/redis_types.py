#!/usr/bin/python3
"""The Redis types benchmark of `make bench`: strata's hashes, lists, sets, sorted sets and
streams beside Redis 7 (redis-server) in one run, on loopback. Writes
docs/benchmarks/redis-types.json, docs/benchmarks/redis-types.md and the "Redis types"
section of docs/benchmarks.md (between its redis-types markers; bench/suite.py keeps the
section when it rewrites the page).

    /usr/bin/python3 bench/redis_types.py [--requests 200000] [--timeout 5]
        [--placements pinned,unpinned] [--output DIR] [--note TEXT]

1. redis-benchmark, one test at a time (hset, lpush, rpush, lpop, rpop, lrange_100, sadd,
   spop, zadd, zpopmin, xadd), 50 connections, pipeline 16 with --requests requests and
   without a pipeline with a twentieth of them, on each server. Each test starts from the
   state redis-benchmark's own sequence would leave its key in (lpop pops a list of 2n
   elements, lrange_100 reads a list of n), set up in bulk on both servers, so that a test
   that runs out of time on one server does not change what the next one measures. A run
   still going after --timeout seconds is stopped and its rate so far reported (marked). A
   command the server does not know is reported n/a.
2. A feature store: 1,000 entities x 20 features in hashes, then HMGET of one entity's 20
   features, pipelined 100 to a batch (redis-benchmark -r 1000 -P 100, 16 connections).
3. DRAM per hash field and per list element: hashes and lists filled in bulk, the growth
   of INFO used_memory (strata: the DRAM tier's bytes, overhead included, the same figure
   as strata_tier_used_bytes{tier="dram"}) and of the resident set divided by the fields
   or elements added.
4. Writes beside idle blocked clients: IDLE_BLOCKED connections blocked in BLPOP, each on
   a key of its own that nothing writes, while redis-benchmark runs LPUSH and HSET
   (pipeline 16); the same runs with no client blocked, for the cost of the blocked ones.

Pinned (the default placement of docs/benchmarks.md): the server on every CPU but the
last, redis-benchmark and this script on the last (taskset). Unpinned: everything on
every CPU. Redis is `redis-server` on PATH, or the REDIS_SERVER environment variable."""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import redis
import resource
import socket

from bench_common import REDIS_TYPES_MARKERS, free_port, splice, wait_for_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "build", "strata-server")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
CONNECTIONS = 50
DATA = b"xxx"  # redis-benchmark's default 3-byte value

# Taken before pin() narrows this process to the last CPU.
ALL_CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPUS = ",".join(str(cpu) for cpu in ALL_CPUS[:-1]) if len(ALL_CPUS) > 1 else None


def pin(pinned):
    """Puts this process (and so every redis-benchmark it starts) on the last CPU when
    PINNED and there are two or more, else on every CPU. Returns nothing."""
    os.sched_setaffinity(0, {ALL_CPUS[-1]} if pinned and SERVER_CPUS else ALL_CPUS)


class Server:
    """A strata-server or redis-server on a free loopback port, in its own scratch
    directory under SCRATCH; on every CPU but the last when PINNED (taskset). .client is a
    redis-py connection to it. stop() ends the process."""

    def __init__(self, name, scratch, pinned):
        self.name, self.port = name, free_port()
        directory = tempfile.mkdtemp(prefix=f"{name}-", dir=scratch)
        if name == "strata":
            command = [SERVER, "--port", str(self.port), "--http-port", "0",
                       "--native-port", "0", "--dir", directory, "--memory", "4gb",
                       "--ssd-size", "0", "--log-level", "warning"]
        else:
            command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--dir", directory,
                       "--client-output-buffer-limit", "normal 0 0 0"]
        if pinned and SERVER_CPUS:
            command = ["taskset", "-c", SERVER_CPUS] + command
        self.log = open(os.path.join(scratch, f"{name}.log"), "ab")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        preexec_fn=lambda: os.sched_setaffinity(0, ALL_CPUS))
        wait_for_port(self.port, self.process)
        self.client = redis.Redis(port=self.port, socket_timeout=120)
        self.client.ping()

    def memory(self):
        """(used_memory, used_memory_rss) from INFO memory, in bytes."""
        info = self.client.info("memory")
        return int(info["used_memory"]), int(info["used_memory_rss"])

    def stop(self):
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def knows(client, *command):
    """False when the server answers COMMAND with "unknown command"; True otherwise (other
    errors included: the command exists)."""
    try:
        client.execute_command(*command)
    except redis.ResponseError as error:
        return "unknown command" not in str(error)
    return True


def fill_list(client, key, elements):
    """Makes KEY a list of ELEMENTS copies of DATA, pushed 10,000 to a command."""
    client.delete(key)
    while elements > 0:
        chunk = min(elements, 10_000)
        client.rpush(key, *([DATA] * chunk))
        elements -= chunk


# The tests of part 1, in redis-benchmark's order: (name, redis-benchmark arguments, the
# command that tells whether the server knows the type, setup(client, n), (length command,
# key, expected length after n requests) to check the run did what it should).
def _clear(key):
    return lambda client, n: client.delete(key)


TESTS = [
    ("HSET", ["-t", "hset"], ("HSET", "probe:hash", "f", "v"), _clear("myhash"),
     ("HLEN", "myhash", lambda n: 1)),
    ("LPUSH", ["-t", "lpush"], ("LPUSH", "probe:list", "v"), _clear("mylist"),
     ("LLEN", "mylist", lambda n: n)),
    ("RPUSH", ["-t", "rpush"], ("RPUSH", "probe:list", "v"),
     lambda client, n: fill_list(client, "mylist", n), ("LLEN", "mylist", lambda n: 2 * n)),
    ("LPOP", ["-t", "lpop"], ("LPOP", "probe:list"),
     lambda client, n: fill_list(client, "mylist", 2 * n), ("LLEN", "mylist", lambda n: n)),
    ("RPOP", ["-t", "rpop"], ("RPOP", "probe:list"),
     lambda client, n: fill_list(client, "mylist", n), ("LLEN", "mylist", lambda n: 0)),
    # redis-benchmark's lrange_100 first LPUSHes n elements one by one; the same list is
    # built here in bulk, then LRANGE is the only thing timed.
    ("LRANGE_100", ["LRANGE", "mylist", "0", "99"], ("LRANGE", "probe:list", "0", "1"),
     lambda client, n: fill_list(client, "mylist", n), ("LLEN", "mylist", lambda n: n)),
    ("SADD", ["-t", "sadd"], ("SADD", "probe:set", "v"), _clear("myset"),
     ("SCARD", "myset", lambda n: 1)),
    ("SPOP", ["-t", "spop"], ("SPOP", "probe:set"),
     lambda client, n: client.execute_command("SADD", "myset", "element:__rand_int__"),
     ("SCARD", "myset", lambda n: 0)),
    ("ZADD", ["-t", "zadd"], ("ZADD", "probe:zset", "1", "v"), _clear("myzset"),
     ("ZCARD", "myzset", lambda n: 1)),
    ("ZPOPMIN", ["-t", "zpopmin"], ("ZPOPMIN", "probe:zset"),
     lambda client, n: client.execute_command("ZADD", "myzset", "0", "element:__rand_int__"),
     ("ZCARD", "myzset", lambda n: 0)),
    # redis-benchmark 7.0 has no xadd test (7.2 added it): its command, given by hand.
    ("XADD", ["XADD", "mystream", "*", "myfield", DATA.decode()],
     ("XADD", "probe:stream", "*", "f", "v"), _clear("mystream"),
     ("XLEN", "mystream", lambda n: n)),
]

RATE_DONE = re.compile(r": ([0-9.]+) requests per second")
RATE_SO_FAR = re.compile(r"\(overall: ([0-9.]+)\) avg_msec")


def redis_benchmark(port, arguments, timeout):
    """Runs redis-benchmark ARGUMENTS against PORT for at most TIMEOUT seconds. Returns
    {"ops_per_s", "timed_out", "done"}: the final rate, or when stopped the rate so far and
    about how many requests were done by then."""
    command = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q"] + arguments
    started = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        output, timed_out = result.stdout, False
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout or ""
        output = output.decode() if isinstance(output, bytes) else output
        timed_out = True
    elapsed = time.monotonic() - started
    output = output.replace("\r", "\n")
    if not timed_out:
        match = RATE_DONE.findall(output)
        if not match:
            raise RuntimeError(f"no rate in redis-benchmark's output: {output[-500:]}")
        return {"ops_per_s": float(match[-1]), "timed_out": False, "done": None}
    so_far = RATE_SO_FAR.findall(output)
    rate = float(so_far[-1]) if so_far else 0.0
    return {"ops_per_s": rate, "timed_out": True, "done": int(rate * elapsed)}


def type_tests(server, requests, timeout):
    """Part 1 on SERVER: {"<TEST> P<pipeline>": result or None (n/a)} for pipeline 16 with
    REQUESTS requests and pipeline 1 with a twentieth of them."""
    results = {}
    for pipeline, n in ((16, requests), (1, max(requests // 20, 1000))):
        for name, arguments, probe, setup, (length, key, expected) in TESTS:
            label = f"{name} P{pipeline}"
            if not knows(server.client, *probe):
                results[label] = None
                print(f"  {server.name} {label}: n/a (unknown command)", flush=True)
                continue
            setup(server.client, n)
            result = redis_benchmark(server.port, ["-n", str(n), "-c", str(CONNECTIONS),
                                                   "-P", str(pipeline)] + arguments, timeout)
            result["requests"] = n
            if not result["timed_out"]:
                found = server.client.execute_command(length, key)
                if found != expected(n):
                    result["wrong_state"] = f"{length} {key} = {found}, not {expected(n)}"
            results[label] = result
            state = (f" (stopped after {timeout} s, about {result['done']:,} of {n:,})"
                     if result["timed_out"] else "")
            state += f" WRONG STATE: {result['wrong_state']}" if "wrong_state" in result else ""
            print(f"  {server.name} {label}: {result['ops_per_s']:,.0f} ops/s{state}",
                  flush=True)
            server.client.delete(key)
    return results


FEATURE_ENTITIES, FEATURES, FEATURE_BATCH = 1_000, 20, 100
FEATURE_NAMES = [f"feature_{i:02d}" for i in range(FEATURES)]


def feature_store(server, requests, timeout):
    """Part 2 on SERVER: loads FEATURE_ENTITIES hashes of FEATURES features (keys named as
    redis-benchmark's -r writes __rand_int__), checks one HMGET, then times HMGETs of whole
    entities pipelined FEATURE_BATCH deep. Returns redis_benchmark()'s result."""
    pipe = server.client.pipeline(transaction=False)
    for entity in range(FEATURE_ENTITIES):
        pipe.hset(f"entity:{entity:012d}",
                  mapping={name: f"{(entity * 31 + i) % 997 / 997:.6f}"
                           for i, name in enumerate(FEATURE_NAMES)})
    pipe.execute()
    got = server.client.hmget("entity:000000000042", FEATURE_NAMES)
    assert got[3] == f"{(42 * 31 + 3) % 997 / 997:.6f}".encode(), got
    result = redis_benchmark(server.port, ["-n", str(requests), "-c", "16",
                                           "-P", str(FEATURE_BATCH), "-r",
                                           str(FEATURE_ENTITIES), "HMGET",
                                           "entity:__rand_int__"] + FEATURE_NAMES, timeout)
    result["requests"] = requests
    print(f"  {server.name} feature store HMGET: {result['ops_per_s']:,.0f} ops/s", flush=True)
    return result


# Part 3's shapes: (type, keys, items per key). Field names are 9 bytes, values and list
# elements 8; 20 items stay within Redis's listpack limits (128 entries, 64 bytes), 200 go
# past them (a hashtable for hashes; a quicklist of several listpacks for lists).
MEMORY_SHAPES = [("hash", 10_000, 20), ("hash", 1_000, 200),
                 ("list", 10_000, 20), ("list", 1_000, 200)]


def memory_per_item(server):
    """Part 3 on SERVER: for each MEMORY_SHAPES entry, fills its keys (one HSET or RPUSH
    per key, 500 keys to a pipeline) and returns {"<type> <keys>x<items>": {"used_per_item",
    "rss_per_item"}}, the growth of used_memory and of the RSS per field or element."""
    results = {}
    for kind, keys, items in MEMORY_SHAPES:
        time.sleep(0.2)
        used_before, rss_before = server.memory()
        pipe = server.client.pipeline(transaction=False)
        for k in range(keys):
            key = f"mem:{kind}:{items}:{k}"
            if kind == "hash":
                pipe.hset(key, mapping={f"field_{i:03d}": f"{k:04d}{i:04d}"[-8:]
                                        for i in range(items)})
            else:
                pipe.rpush(key, *[f"{k:04d}{i:04d}"[-8:] for i in range(items)])
            if k % 500 == 499:
                pipe.execute()
        pipe.execute()
        time.sleep(0.2)
        used_after, rss_after = server.memory()
        count = keys * items
        label = f"{kind} {keys}x{items}"
        results[label] = {"used_per_item": (used_after - used_before) / count,
                          "rss_per_item": (rss_after - rss_before) / count}
        print(f"  {server.name} {label}: {results[label]['used_per_item']:.1f} B used, "
              f"{results[label]['rss_per_item']:.1f} B RSS per item", flush=True)
    return results


IDLE_BLOCKED = 2_000


def beside_blocked_clients(server, requests, timeout):
    """Part 4 on SERVER: {"<TEST> <blocked> blocked": result} for LPUSH and HSET
    (pipeline 16, REQUESTS requests) with no client blocked and with IDLE_BLOCKED clients
    blocked in BLPOP on keys of their own."""
    results = {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_BLOCKED + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    for blocked in (0, IDLE_BLOCKED):
        sockets = []
        try:
            for i in range(blocked):
                connection = socket.create_connection(("127.0.0.1", server.port))
                key = f"idle:{i}".encode()
                connection.sendall(b"*3\r\n$5\r\nBLPOP\r\n$%d\r\n%s\r\n$1\r\n0\r\n"
                                   % (len(key), key))
                sockets.append(connection)
            deadline = time.monotonic() + 30
            while server.client.info("clients")["blocked_clients"] != blocked:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server.name}: {blocked} clients never blocked")
                time.sleep(0.05)
            for name, test in (("LPUSH", "lpush"), ("HSET", "hset")):
                result = redis_benchmark(server.port, ["-n", str(requests), "-c",
                                                       str(CONNECTIONS), "-P", "16", "-t",
                                                       test], timeout)
                results[f"{name} {blocked} blocked"] = result
                print(f"  {server.name} {name} beside {blocked} blocked clients: "
                      f"{result['ops_per_s']:,.0f} ops/s", flush=True)
                server.client.delete("mylist", "myhash")
        finally:
            for connection in sockets:
                connection.close()
    return results


def measure(scratch, requests, timeout, placements):
    results = {"types": {}, "feature_store": {}, "memory": {}, "blocked": {}}
    for placement in placements:
        pin(placement == "pinned")
        for name in ("strata", "redis"):
            server = Server(name, scratch, placement == "pinned")
            try:
                results["types"][f"{placement} {name}"] = type_tests(server, requests,
                                                                     timeout)
                results["feature_store"][f"{placement} {name}"] = feature_store(
                    server, requests, timeout)
            finally:
                server.stop()
    # On fresh servers, so that memory freed by the tests above does not hide growth.
    pin(placements[0] == "pinned")
    for name in ("strata", "redis"):
        server = Server(name, scratch, placements[0] == "pinned")
        try:
            results["memory"][name] = memory_per_item(server)
            results["blocked"][name] = beside_blocked_clients(server, requests, timeout)
        finally:
            server.stop()
    return results


def rate_cell(result):
    """A table cell for one redis_benchmark() result: n/a, the rate, or the rate so far
    with a mark when it was stopped; a mark too when the key was left wrong."""
    if result is None:
        return "n/a"
    cell = f"{result['ops_per_s']:,.0f}"
    if result["timed_out"]:
        cell += f" (stopped at ~{result['done']:,})"
    if "wrong_state" in result:
        cell += " (wrong state!)"
    return cell


def ratio_cell(strata, redis_result):
    if strata is None or redis_result is None or redis_result["ops_per_s"] == 0:
        return "n/a"
    return f"{strata['ops_per_s'] / redis_result['ops_per_s']:.2f}"


def section(results, command, note, requests, timeout, placements):
    lines = ["## Redis types", ""]
    if note:
        lines += [f"**{note}**", ""]
    lines += [
        "strata's hashes, lists, sets, sorted sets and streams beside Redis 7 in one run "
        "(`bench/redis_types.py`, run by `make bench`), both on loopback. redis-benchmark, "
        f"{CONNECTIONS} connections, one test at a time: pipeline 16 with {requests:,} "
        f"requests (`-n {requests} -c {CONNECTIONS} -P 16 -t <test>`) and no pipeline with "
        f"{max(requests // 20, 1000):,}. Each test starts from the state redis-benchmark's "
        "own sequence would leave its key in, set up in bulk on both servers (LPOP pops a "
        "list of 2n elements, RPOP and LRANGE_100 one of n; redis-benchmark 7.0 has no xadd "
        "test, so XADD is its 7.2 command `XADD mystream * myfield xxx`). A run still going "
        f"after {timeout:g} s is stopped and its rate so far shown, with about how many "
        "requests were done: for a push or a pop, the average over a list shorter than the "
        "full run's. "
        "n/a: the server does not know the command (yet). *Pinned*: the server on every CPU "
        "but the last, redis-benchmark on the last (taskset); *unpinned*: both on every CPU.",
        "",
        f"Command: `{command}`",
        "",
    ]
    for placement in placements:
        strata, redis_results = (results["types"][f"{placement} strata"],
                                 results["types"][f"{placement} redis"])
        lines += [f"### redis-benchmark, {placement}", "",
                  "| test | pipeline | strata ops/s | Redis ops/s | strata / Redis |",
                  "|---|---:|---:|---:|---:|"]
        for pipeline in (16, 1):
            for name, *_ in TESTS:
                label = f"{name} P{pipeline}"
                lines.append(f"| {name} | {pipeline} | {rate_cell(strata[label])} | "
                             f"{rate_cell(redis_results[label])} | "
                             f"{ratio_cell(strata[label], redis_results[label])} |")
        lines.append("")
    lines += [
        "### Feature store", "",
        f"{FEATURE_ENTITIES:,} entities x {FEATURES} features (hashes; 10-byte field names, "
        "8-byte values), then HMGET of one random entity's 20 features, pipelined "
        f"{FEATURE_BATCH} to a batch: `redis-benchmark -n {requests} -c 16 -P "
        f"{FEATURE_BATCH} -r {FEATURE_ENTITIES} HMGET entity:__rand_int__ feature_00 ... "
        "feature_19`. Features per second are 20 x HMGETs per second.", "",
        "| placement | strata HMGET/s | Redis HMGET/s | strata features/s | "
        "Redis features/s | strata / Redis |",
        "|---|---:|---:|---:|---:|---:|"]
    for placement in placements:
        strata, redis_result = (results["feature_store"][f"{placement} strata"],
                                results["feature_store"][f"{placement} redis"])
        lines.append(f"| {placement} | {rate_cell(strata)} | {rate_cell(redis_result)} | "
                     f"{strata['ops_per_s'] * FEATURES:,.0f} | "
                     f"{redis_result['ops_per_s'] * FEATURES:,.0f} | "
                     f"{ratio_cell(strata, redis_result)} |")
    lines += [
        "", "### DRAM per hash field and per list element", "",
        "Keys filled with one HSET or RPUSH each (9-byte field names, 8-byte values and "
        "elements), on a fresh server of each kind, in the first placement; the growth of "
        "INFO `used_memory` (strata: the bytes its DRAM tier holds, overhead included, also "
        "`strata_tier_used_bytes{tier=\"dram\"}`; Redis: its allocator's count) and of "
        "`used_memory_rss`, divided by the fields or elements added; the key's own cost is "
        "shared among its items. Redis keeps 20 items in a listpack and 200 in a hashtable "
        "(hashes) or a quicklist (lists).", "",
        "| shape | strata B/item (used_memory) | Redis B/item (used_memory) | strata / Redis "
        "| strata B/item (RSS) | Redis B/item (RSS) |",
        "|---|---:|---:|---:|---:|---:|"]
    for kind, keys, items in MEMORY_SHAPES:
        label = f"{kind} {keys}x{items}"
        strata, redis_result = results["memory"]["strata"][label], results["memory"]["redis"][label]
        shape = (f"{keys:,} hashes x {items} fields" if kind == "hash" else
                 f"{keys:,} lists x {items} elements")
        lines.append(f"| {shape} | "
                     f"{strata['used_per_item']:.1f} | {redis_result['used_per_item']:.1f} | "
                     f"{strata['used_per_item'] / redis_result['used_per_item']:.2f} | "
                     f"{strata['rss_per_item']:.1f} | {redis_result['rss_per_item']:.1f} |")
    lines += [
        "", "### Writes beside idle blocked clients", "",
        f"{IDLE_BLOCKED:,} connections blocked in `BLPOP idle:<n> 0`, each on a key of its "
        "own that nothing writes, while redis-benchmark runs LPUSH and HSET (pipeline 16, "
        f"`-n {requests} -c {CONNECTIONS} -P 16 -t <test>`); and the same with no client "
        "blocked. Same servers and placement as the table above.", "",
        "| test | clients blocked | strata ops/s | Redis ops/s | strata / Redis |",
        "|---|---:|---:|---:|---:|"]
    for name in ("LPUSH", "HSET"):
        for blocked in (0, IDLE_BLOCKED):
            label = f"{name} {blocked} blocked"
            strata, redis_result = (results["blocked"]["strata"][label],
                                    results["blocked"]["redis"][label])
            lines.append(f"| {name} | {blocked:,} | {rate_cell(strata)} | "
                         f"{rate_cell(redis_result)} | {ratio_cell(strata, redis_result)} |")
    lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=5)
    parser.add_argument("--placements", default="pinned,unpinned")
    parser.add_argument("--output", default=os.path.join(ROOT, "docs"))
    parser.add_argument("--note", default="")
    arguments = parser.parse_args()
    placements = [p for p in arguments.placements.split(",") if p]
    if not set(placements) <= {"pinned", "unpinned"} or not placements:
        sys.exit("--placements: pinned, unpinned or both, comma-separated")
    if not os.access(SERVER, os.X_OK):
        sys.exit(f"{SERVER} is missing: run `make` first")
    if shutil.which(REDIS_SERVER) is None:
        sys.exit(f"{REDIS_SERVER} is not on PATH: install redis-server or set REDIS_SERVER")
    scratch = tempfile.mkdtemp(prefix="strata-types-bench-")
    started = time.monotonic()
    try:
        results = measure(scratch, arguments.requests, arguments.timeout, placements)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"  took {time.monotonic() - started:.0f} s", flush=True)
    command = "/usr/bin/python3 bench/redis_types.py"
    for option, default in (("requests", 200_000), ("timeout", 5),
                            ("placements", "pinned,unpinned")):
        value = getattr(arguments, option)
        if value != default:
            command += f" --{option} {value:g}" if isinstance(value, float) else \
                f" --{option} {value}"
    text = section(results, command, arguments.note, arguments.requests, arguments.timeout,
                   placements)
    print(text)
    os.makedirs(os.path.join(arguments.output, "benchmarks"), exist_ok=True)
    with open(os.path.join(arguments.output, "benchmarks", "redis-types.json"), "w") as handle:
        json.dump({"date": datetime.date.today().isoformat(), "machine": platform.node(),
                   "cpus": os.cpu_count(), "command": command, "results": results}, handle,
                  indent=2)
        handle.write("\n")
    with open(os.path.join(arguments.output, "benchmarks", "redis-types.md"), "w") as handle:
        handle.write(text)
    splice(os.path.join(arguments.output, "benchmarks.md"), text, REDIS_TYPES_MARKERS)


if __name__ == "__main__":
    main()
