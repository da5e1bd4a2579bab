"""Fixtures: a real strata-server process per test module, on a free loopback port.

STRATA_SERVER names the binary (default build/strata-server). With STRATA_SANITIZED=1
the binary is a sanitizer build (AddressSanitizer with UndefinedBehaviorSanitizer, or
ThreadSanitizer with STRATA_TSAN=1 as well): every server's log is then checked for
sanitizer reports when it stops, and its exit status must be 0 (LeakSanitizer makes a
leaking server exit non-zero, ThreadSanitizer one that reported a race).
"""
import os
import re
import resource
import signal
import subprocess
import time

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, os.environ.get("STRATA_SERVER", "build/strata-server"))
SANITIZED = os.environ.get("STRATA_SANITIZED") == "1"
# The ThreadSanitizer build (make integration-tsan): its shadow memory counts in the
# server's resident size, so resident-memory bounds do not apply to it.
THREAD_SANITIZED = os.environ.get("STRATA_TSAN") == "1"
# A sanitized server is slower: allow more time for start and stop.
SLOW = 4 if SANITIZED else 1

# Some tests hold a thousand connections open at once.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != resource.RLIM_INFINITY and _soft < 4096:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, _hard), _hard))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "strata: broken rule")


class Server:
    """One strata-server process. Options are command-line arguments."""

    def __init__(self, directory, *arguments, port=0, http_port=0, native_port=0, binary=None,
                 environment=None, wait_ready=True, prefix=()):
        """PREFIX: a command that runs the server, as in `unshare ... -- sh -c 'exec "$@"'`,
        which must exec it (the process is then the server's)."""
        self.directory = str(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.log_path = os.path.join(self.directory, "server.log")
        self.arguments = [
            *prefix,
            binary or BINARY,
            "--port", str(port),
            "--http-port", str(http_port),
            "--native-port", str(native_port),
            "--dir", os.path.join(self.directory, "data"),
            *[str(argument) for argument in arguments],
        ]
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.arguments, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(environment or {})})
        self.port, self.http_port, self.native_port = self._wait_for_ports()
        self.stopped = False
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, seconds=60):
        """Waits for the log's event=ready: the ports open before the flash index is
        rebuilt, and the server answers LOADING, BUSY or 503 until it is whole."""
        deadline = time.time() + seconds * SLOW
        while time.time() < deadline:
            if "event=ready" in self.read_log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"strata-server exited with {self.process.returncode}:\n"
                                   + self.read_log())
            time.sleep(0.02)
        raise RuntimeError("strata-server did not become ready:\n" + self.read_log())

    def _wait_for_ports(self):
        """The Redis protocol, HTTP and native ports, from the listening log lines."""
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline:
            text = self.read_log()
            resp = re.search(r"event=listening protocol=resp .*port=(\d+)", text)
            http = re.search(r"event=listening protocol=http .*port=(\d+)", text)
            native = re.search(r"event=listening protocol=native .*port=(\d+)", text)
            if resp and http and native:
                return int(resp.group(1)), int(http.group(1)), int(native.group(1))
            if self.process.poll() is not None:
                raise RuntimeError(f"strata-server exited with {self.process.returncode}:\n{text}")
            time.sleep(0.02)
        raise RuntimeError("strata-server did not start:\n" + self.read_log())

    def read_log(self):
        """Standard output and error, followed by the --log-file if one was given."""
        paths = [self.log_path]
        if "--log-file" in self.arguments:
            paths.append(self.arguments[self.arguments.index("--log-file") + 1])
        text = ""
        for path in paths:
            if os.path.exists(path):
                with open(path, "rb") as log:
                    text += log.read().decode("utf-8", "replace")
        return text

    def client(self, **options):
        """A redis-py client (RESP2) connected to this server."""
        options.setdefault("socket_timeout", 30 * SLOW)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def http(self, path, method="GET", body=None, headers=None, timeout=None):
        """One HTTP request on a fresh connection: (status, headers dict, body bytes)."""
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                                timeout=timeout or 30 * SLOW)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def info(self, section=None):
        client = self.client()
        try:
            return client.info(section) if section else client.info()
        finally:
            client.close()

    def stop(self, check=True):
        """SIGTERM, wait, and check a clean exit without sanitizer reports."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=60 * SLOW)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("strata-server did not stop on SIGTERM:\n" + self.read_log())
        finally:
            self.log.close()
        if check:
            check_clean_exit(status, self.read_log())

    def kill(self):
        self.stopped = True
        self.process.kill()
        self.process.wait()
        self.log.close()


def check_clean_exit(status, log):
    reports = [line for line in log.splitlines() if any(m in line for m in SANITIZER_MARKERS)]
    assert not reports, "sanitizer report:\n" + log[-20000:]
    assert status == 0, f"strata-server exited with status {status}:\n" + log[-5000:]


def hash_passwords(*passwords):
    """The users-file rules (#$argon2id$...) of PASSWORDS, from strata-server --hash-password,
    computed in parallel."""
    processes = [subprocess.Popen([BINARY, "--hash-password"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in passwords]
    rules = []
    for process, password in zip(processes, passwords):
        out, err = process.communicate(password.encode() + b"\n", timeout=60 * SLOW)
        assert process.returncode == 0, err
        rule = out.decode().strip()
        assert rule.startswith("#$argon2id$")
        rules.append(rule)
    return rules


def write_users_file(path, text):
    """Writes TEXT as a users file (--users), mode 0600; returns PATH."""
    with open(path, "w") as users:
        users.write(text)
    os.chmod(path, 0o600)
    return path


def metric(server, name, headers=None):
    """The value of the line NAME of SERVER's /metrics (plain HTTP), as a float."""
    status, _, body = server.http("/metrics", headers=headers)
    assert status == 200, body
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


INSTALL_PREFIX = "/usr/local"


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """DESTDIR root of `make install PREFIX=/usr/local`, made once per session and shared
    by test_install.py and test_docs.py (release suite only: both skip under sanitizers)."""
    root = tmp_path_factory.mktemp("destdir")
    # A make that runs this test must not hand its jobserver or flags to this one.
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    command = ["make", "-s", "-C", ROOT, "install", f"DESTDIR={root}", f"PREFIX={INSTALL_PREFIX}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, f"{command}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server shared by the tests of one module."""
    instance = Server(tmp_path_factory.mktemp("strata"), "--memory", "512mb")
    yield instance
    instance.stop()


@pytest.fixture
def start_server(tmp_path):
    """Starts servers with given options; stops and checks them after the test."""
    started = []

    def start(*arguments, **keywords):
        instance = Server(tmp_path / f"server{len(started)}", *arguments, **keywords)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture
def client(server):
    connection = server.client()
    connection.flushall()
    yield connection
    connection.close()
