"""The Redis command-line tools against strata: redis-cli (RESP2 and RESP3) and
redis-benchmark."""
import os
import re
import subprocess

from conftest import SANITIZED, SLOW


def cli(server, *arguments, input_text=None):
    result = subprocess.run(
        ["redis-cli", "-p", str(server.port), *arguments],
        input=input_text, capture_output=True, text=True, timeout=60 * SLOW,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_redis_cli_session(server):
    assert cli(server, "PING") == "PONG\n"
    assert cli(server, "SET", "greeting", "hello world") == "OK\n"
    assert cli(server, "GET", "greeting") == "hello world\n"
    assert cli(server, "INCR", "visits") == "1\n"
    assert cli(server, "EXPIRE", "greeting", "100") == "1\n"
    assert cli(server, "TTL", "greeting") in ("100\n", "99\n")
    assert cli(server, "GET", "missing") == "\n"
    assert "ERR unknown command" in cli(server, "NOSUCH")
    assert "# Memory" in cli(server, "INFO", "memory")
    # Commands from standard input, the way scripts feed redis-cli.
    output = cli(server, input_text="SET a 1\nMSET b 2 c 3\nMGET a b c\nDBSIZE\n")
    assert output.split("\n")[:6] == ["OK", "OK", "1", "2", "3", str(int(cli(server, "DBSIZE")))]


def test_redis_cli_resp3(server):
    output = cli(server, "-3", "HELLO", "3")
    assert "server" in output and "strata" in output and "proto" in output
    cli(server, "SET", "r3", "v")
    assert cli(server, "-3", "GET", "r3") == "v\n"
    assert cli(server, "-3", "GET", "nothing-here") == "(nil)\n" or \
        cli(server, "-3", "GET", "nothing-here") == "\n"
    config = cli(server, "-3", "CONFIG", "GET", "max-clients")
    assert "max-clients" in config and "10000" in config


def test_redis_cli_interactive_tty(server):
    """redis-cli on a terminal runs its interactive loop (prompt, line editing)."""
    process = subprocess.Popen(
        ["script", "-qec", f"redis-cli -p {server.port}", "/dev/null"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "TERM": "dumb"},
    )
    output, errors = process.communicate(b"SET tty works\nGET tty\nQUIT\n", timeout=60 * SLOW)
    text = output.decode(errors="replace")
    assert "OK" in text and "works" in text, text + errors.decode(errors="replace")
    assert "ERR" not in text
    listing = cli(server, "CLIENT", "LIST")
    assert listing  # the server is still fine


def test_redis_benchmark(server):
    result = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-t", "set,get", "-d", "4096",
         "-c", "16", "-n", "100000" if not SLOW > 1 else "20000", "-q"],
        capture_output=True, text=True, timeout=300 * SLOW,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout.replace("\r", "\n")
    assert "error" not in output.lower(), output
    rates = dict(re.findall(r"^(SET|GET): ([0-9.]+) requests per second", output, re.M))
    assert float(rates["SET"]) > 0 and float(rates["GET"]) > 0, output


def test_redis_benchmark_pipelined(server):
    result = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-t", "set,get,incr,mset", "-P", "16",
         "-c", "8", "-n", "50000", "-r", "10000", "-q"],
        capture_output=True, text=True, timeout=300 * SLOW,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout.replace("\r", "\n")
    assert "error" not in output.lower(), output
    for name in ("SET", "GET", "INCR", "MSET"):
        assert re.search(rf"^{name}.*: [0-9.]+ requests per second", output, re.M), output


def test_redis_benchmark_defaults(server):
    """`redis-benchmark -q` as a new user runs it: every default test (50 clients, one
    list grown to tens of thousands of elements by the LPUSH tests), with no error and a
    rate for each. 20,000 requests a test rather than the default 100,000, which takes a
    minute here (docs/benchmarks.md has that run); 5,000 under the sanitizers."""
    result = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-q", "-n",
         "5000" if SANITIZED else "20000"],
        capture_output=True, text=True, timeout=600 * SLOW,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout.replace("\r", "\n")
    assert "error" not in output.lower(), output
    for name in ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP",
                 "RPOP", "SADD", "HSET", "SPOP", "ZADD", "ZPOPMIN",
                 r"LPUSH \(needed to benchmark LRANGE\)", r"LRANGE_100 \(first 100 elements\)",
                 r"LRANGE_300 \(first 300 elements\)", r"LRANGE_500 \(first 500 elements\)",
                 r"LRANGE_600 \(first 600 elements\)", r"MSET \(10 keys\)"):
        assert re.search(rf"^{name}: [0-9.]+ requests per second", output, re.M), (name, output)


def test_redis_benchmark_hashes_and_lists(server):
    """The hash and list tests, on one key each: small -n and no -r, since every hash or
    list command rewrites the whole value (docs/redis-compatibility.md): HSET with -r
    10000 builds a 10,000-field hash, which a sanitized server takes minutes over."""
    result = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-t",
         "hset,lpush,rpush,lpop,rpop,lrange_100", "-n", "2000", "-q"],
        capture_output=True, text=True, timeout=300 * SLOW,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout.replace("\r", "\n")
    assert "error" not in output.lower(), output
    for name in ("HSET", "LPUSH", "RPUSH", "LPOP", "RPOP", r"LRANGE_100 \(first 100 elements\)"):
        assert re.search(rf"^{name}.*: [0-9.]+ requests per second", output, re.M), output
