"""Helpers shared by the benchmark scripts of `make bench` (bench/suite.py, bench/s3.py,
bench/tls.py, bench/redis_types.py, bench/flash_tier.py, bench/native_kv.py): a free
loopback port, waiting for a server to listen on one, and the marked sections of
docs/benchmarks.md that s3.py, tls.py and redis_types.py write and suite.py keeps when
it rewrites the page."""
import socket
import time


def free_port():
    """A loopback TCP port nothing listens on (as of now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process=None, seconds=60):
    """Waits until something accepts connections on PORT of 127.0.0.1; raises if PROCESS
    (a subprocess.Popen, if given) exits first, or after SECONDS."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


# The markers around each section of docs/benchmarks.md written by a script of its own.
S3_MARKERS = ("<!-- s3-bench:begin -->", "<!-- s3-bench:end -->")
TLS_MARKERS = ("<!-- tls-bench:begin -->", "<!-- tls-bench:end -->")
REDIS_TYPES_MARKERS = ("<!-- redis-types-bench:begin -->", "<!-- redis-types-bench:end -->")


def marked(text, markers):
    """TEXT between the MARKERS (begin, end), each on a line of its own."""
    begin, end = markers
    return f"{begin}\n{text}\n{end}"


def splice(page, text, markers):
    """Puts TEXT between the MARKERS of PAGE (docs/benchmarks.md), adding them before the
    closing paragraph on earlier benchmarks when the page has none."""
    begin, end = markers
    block = marked(text, markers)
    with open(page) as handle:
        content = handle.read()
    if begin in content and end in content:
        before, _, rest = content.partition(begin)
        _, _, after = rest.partition(end)
        content = before + block + after
    elif "\nEarlier, narrower benchmarks" in content:
        before, _, after = content.partition("\nEarlier, narrower benchmarks")
        content = before + "\n" + block + "\n\nEarlier, narrower benchmarks" + after
    else:
        content = content.rstrip("\n") + "\n\n" + block + "\n"
    with open(page, "w") as handle:
        handle.write(content)
