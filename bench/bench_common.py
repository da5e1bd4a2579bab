"""Helpers shared by the benchmark scripts of `make bench` (bench/suite.py, bench/s3.py,
bench/tls.py, bench/flash_tier.py, bench/native_kv.py): a free loopback port, and waiting
for a server to listen on one."""
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
