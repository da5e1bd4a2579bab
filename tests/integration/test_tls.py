"""TLS on every TCP port (--tls-cert, --tls-key, --tls-ca, --tls-client-auth): real clients
(redis-cli, redis-py, openssl s_client, curl, aws-cli, libstrata through the Python
binding) over TLS, and the bad inputs: plain text on a TLS port and the reverse, a
truncated handshake, refused client certificates, renegotiation, bad files at start-up
and at a SIGHUP reload. The certificates are made by the test with `openssl`."""
import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest
import redis

from conftest import ROOT, SLOW, THREAD_SANITIZED, Server

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402

MIB = 1024 * 1024
AWS = "/usr/bin/aws"  # Debian's aws-cli, whatever else is first on PATH
ACCESS_KEY = "tls-key"
SECRET_KEY = "tls-secret-0123456789"


def openssl(*arguments, cwd):
    result = subprocess.run(["openssl", *arguments], cwd=cwd, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def make_cert(directory, name, subject, ca, days=2, serial=None, san=None):
    """NAME.key and NAME.pem signed by CA (a name made by make_ca), in DIRECTORY."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", subject, cwd=directory)
    arguments = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-out", f"{name}.pem", "-days", str(days),
                 "-set_serial", str(serial or int.from_bytes(os.urandom(6), "big"))]
    if san:
        with open(os.path.join(directory, f"{name}.ext"), "w") as ext:
            ext.write(f"subjectAltName={san}\n")
        arguments += ["-extfile", f"{name}.ext"]
    openssl(*arguments, cwd=directory)


def make_ca(directory, name, subject):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.pem", "-days", "2", "-subj", subject, cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost (serial 4097) and a renewed one
    (serial 8194), a client certificate (CN alice), an expired one (CN old) and one from
    another CA (CN mallory). Returns a function naming a file."""
    directory = str(tmp_path_factory.mktemp("certs"))
    make_ca(directory, "ca", "/CN=strata test CA")
    make_ca(directory, "other-ca", "/CN=another CA")
    san = "IP:127.0.0.1,DNS:localhost"
    make_cert(directory, "server", "/CN=localhost", "ca", serial=4097, san=san)
    make_cert(directory, "renewed", "/CN=renewed.localhost", "ca", serial=8194, san=san)
    make_cert(directory, "alice", "/CN=alice", "ca")
    make_cert(directory, "old", "/CN=old", "ca", days=-1)
    make_cert(directory, "mallory", "/CN=mallory", "other-ca")
    return lambda name: os.path.join(directory, name)


def tls_options(certs, *more):
    return ["--tls-cert", certs("server.pem"), "--tls-key", certs("server.key"), *more]


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certs):
    instance = Server(tmp_path_factory.mktemp("tls"), "--memory", "512mb",
                      "--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY,
                      "--tls-handshake-timeout", "1", *tls_options(certs))
    yield instance
    instance.stop()


def tls_client(server, certs, **options):
    options.setdefault("socket_timeout", 60 * SLOW)
    return redis.Redis(host="127.0.0.1", port=server.port, ssl=True,
                       ssl_ca_certs=certs("ca.pem"), **options)


def redis_cli(server, certs, *arguments, extra=()):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), "--tls",
                           "--cacert", certs("ca.pem"), *extra, *arguments],
                          capture_output=True, text=True, timeout=30 * SLOW)


def metric(server, certs, name):
    """A counter from /metrics, fetched over https with curl."""
    text = curl(server, certs, "/metrics").stdout.decode()
    found = re.search(rf"^{name} (\d+)$", text, re.M)
    assert found, text[-2000:]
    return int(found.group(1))


def curl(server, certs, path, *arguments):
    result = subprocess.run(["curl", "-sS", "--fail", "--cacert", certs("ca.pem"), *arguments,
                             f"https://127.0.0.1:{server.http_port}{path}"],
                            capture_output=True, timeout=30 * SLOW)
    assert result.returncode == 0, result.stderr
    return result


def s_client(port, certs, *arguments, stdin=b""):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
                           certs("ca.pem"), "-servername", "localhost", *arguments],
                          input=stdin, capture_output=True, timeout=30 * SLOW)


def wait_for_log(server, text):
    """Waits (a while) for TEXT in the server's log; returns the log."""
    deadline = time.time() + 10 * SLOW
    while text not in server.read_log() and time.time() < deadline:
        time.sleep(0.05)
    return server.read_log()


def closed_by_server(sock, seconds):
    """True if the server closes SOCK (end of stream or reset) within SECONDS."""
    sock.settimeout(seconds)
    try:
        while True:
            if sock.recv(4096) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def client_hello():
    """The bytes of a real TLS ClientHello, as Python's ssl module would send them."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        connection.do_handshake()
    return outgoing.read()


# ---- the clients ------------------------------------------------------------------


def test_redis_cli_and_redis_py(tls_server, certs):
    result = redis_cli(tls_server, certs, "SET", "cli-key", "from redis-cli")
    assert result.returncode == 0 and result.stdout.strip() == "OK", result.stderr
    client = tls_client(tls_server, certs)
    assert client.get("cli-key") == b"from redis-cli"
    client.set("py-key", b"from redis-py")
    assert redis_cli(tls_server, certs, "GET", "py-key").stdout.strip() == "from redis-py"
    client.close()
    # No plain-text listener is left beside the TLS ones.
    plain = redis.Redis(host="127.0.0.1", port=tls_server.port, socket_timeout=5 * SLOW)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()


def test_s_client_versions(tls_server, certs):
    for port in (tls_server.port, tls_server.http_port, tls_server.native_port):
        result = s_client(port, certs, "-brief")
        output = result.stderr.decode() + result.stdout.decode()
        assert "Verification: OK" in output and "TLSv1.3" in output, output
    result = s_client(tls_server.port, certs, "-brief", "-tls1_2", "-ign_eof",
                      stdin=b"PING\r\nQUIT\r\n")
    output = result.stderr.decode() + result.stdout.decode()
    assert "TLSv1.2" in output and "+PONG" in output, output
    # TLS 1.1 and older are refused.
    result = s_client(tls_server.port, certs, "-brief", "-tls1_1")
    assert result.returncode != 0


def test_pipelined_gets(tls_server, certs):
    client = tls_client(tls_server, certs)
    pipe = client.pipeline(transaction=False)
    for i in range(10000):
        pipe.set(f"pipe:{i}", f"value-{i}-" + "x" * (i % 50))
    assert all(pipe.execute())
    pipe = client.pipeline(transaction=False)
    for i in range(10000):
        pipe.get(f"pipe:{i}")
    answers = pipe.execute()
    assert answers == [f"value-{i}-".encode() + b"x" * (i % 50) for i in range(10000)]
    client.close()


def test_large_value_resp(tls_server, certs):
    value = os.urandom(MIB) * 64
    client = tls_client(tls_server, certs)
    client.set("big", value)
    back = client.get("big")
    assert len(back) == len(value) and hashlib.sha256(back).digest() == hashlib.sha256(
        value).digest()
    client.delete("big")
    client.close()


def test_client_vanishing_mid_reply_over_tls(tls_server, certs):
    """A client that closes its TLS connection while a large reply is being sent: the
    server drops that connection (a failed SSL_write) and serves the others."""
    client = tls_client(tls_server, certs)
    client.set("vanishing", os.urandom(MIB) * 16)
    context = ssl.create_default_context(cafile=certs("ca.pem"))
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", tls_server.port), timeout=30 * SLOW) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"GET vanishing\r\n")
                assert sock.recv(65536).startswith(b"$")  # the reply has begun
    assert client.ping() and client.strlen("vanishing") == 16 * MIB
    client.delete("vanishing")
    client.close()


def test_libstrata_over_tls(tls_server, certs):
    value = os.urandom(MIB) * 64
    with strata.Client(port=tls_server.native_port, tls=True, tls_ca=certs("ca.pem"),
                       tls_server_name="localhost", timeout_ms=60000 * SLOW) as client:
        client.put(b"native-small", b"hello over tls")
        buffer = bytearray(64)
        assert client.get(b"native-small", buffer) == 14 and buffer[:14] == b"hello over tls"
        client.put(b"native-big", value)
        back = bytearray(len(value))
        assert client.get(b"native-big", back) == len(value)
        assert hashlib.sha256(back).digest() == hashlib.sha256(value).digest()
        client.delete(b"native-big")
    # A client that does not trust the server's CA is refused by libstrata.
    with pytest.raises(strata.Error):
        strata.Client(port=tls_server.native_port, tls=True, tls_ca=certs("other-ca.pem"))
    # And plain text to the TLS native port gets nowhere.
    with pytest.raises(strata.Error):
        strata.Client(port=tls_server.native_port, timeout_ms=3000 * SLOW)


def test_passwords_over_tls(start_server, certs):
    """AUTH inside TLS: libstrata and redis-py with a password, and a wrong one refused."""
    server = start_server("--memory", "64mb", "--requirepass", "tls-pw", *tls_options(certs))
    with strata.Client(port=server.native_port, tls=True, tls_ca=certs("ca.pem"),
                       password="tls-pw", timeout_ms=60000 * SLOW) as client:
        client.put(b"authed", b"over tls")
        buffer = bytearray(16)
        assert client.get(b"authed", buffer) == 8 and buffer[:8] == b"over tls"
    with pytest.raises(strata.Error):
        strata.Client(port=server.native_port, tls=True, tls_ca=certs("ca.pem"),
                      password="wrong", timeout_ms=60000 * SLOW)
    with tls_client(server, certs, password="tls-pw") as client:
        assert client.set("resp-authed", "yes") and client.get("resp-authed") == b"yes"
    with pytest.raises((redis.AuthenticationError, redis.ResponseError), match="WRONGPASS"):
        tls_client(server, certs, password="wrong").ping()


def test_curl_https(tls_server, certs):
    assert metric(tls_server, certs, "strata_tls_handshakes_total") > 0
    curl(tls_server, certs, "/keys/curl-key", "-X", "PUT", "--data-binary", "over https")
    assert curl(tls_server, certs, "/keys/curl-key").stdout == b"over https"


@pytest.mark.skipif(THREAD_SANITIZED, reason="aws-cli runs against the release and ASan servers "
                    "(as in test_s3_clients.py); curl covers HTTPS under TSan")
def test_aws_cli_https(tls_server, certs, tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "AWS_CA_BUNDLE"}
    environment.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                        "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
                        "AWS_PAGER": ""})

    def aws(*arguments):
        result = subprocess.run([AWS, "--endpoint-url", f"https://127.0.0.1:{tls_server.http_port}",
                                 "--ca-bundle", certs("ca.pem"), *arguments], env=environment,
                                capture_output=True, text=True, timeout=120 * SLOW)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    aws("s3", "mb", "s3://tls-bucket")
    source = tmp_path / "up.bin"
    source.write_bytes(os.urandom(3 * MIB + 17))
    aws("s3", "cp", str(source), "s3://tls-bucket/up.bin")
    back = tmp_path / "down.bin"
    aws("s3", "cp", "s3://tls-bucket/up.bin", str(back))
    assert back.read_bytes() == source.read_bytes()


# ---- bad input --------------------------------------------------------------------


def test_plain_text_on_tls_ports(tls_server, certs):
    before = metric(tls_server, certs, "strata_tls_handshake_failures_total")
    with socket.create_connection(("127.0.0.1", tls_server.port)) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert closed_by_server(sock, 10 * SLOW)
    with socket.create_connection(("127.0.0.1", tls_server.http_port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10 * SLOW)
        answer = b""
        while True:
            piece = sock.recv(4096)
            if not piece:
                break
            answer += piece
        assert answer.startswith(b"HTTP/1.1 400 ") and b"https://" in answer, answer
    with socket.create_connection(("127.0.0.1", tls_server.native_port)) as sock:
        sock.sendall(b"\x00" * 64)
        assert closed_by_server(sock, 10 * SLOW)
    assert metric(tls_server, certs, "strata_tls_handshake_failures_total") >= before + 3
    assert "reason=\"http request\"" in wait_for_log(tls_server, "reason=\"http request\"")
    # The server and other clients carry on.
    assert tls_client(tls_server, certs).ping()


def test_tls_client_on_plain_port(start_server, certs):
    server = start_server("--memory", "64mb")
    result = subprocess.run(["redis-cli", "-p", str(server.port), "--tls", "--cacert",
                             certs("ca.pem"), "PING"], capture_output=True, text=True,
                            timeout=30 * SLOW)
    assert "PONG" not in result.stdout
    assert result.returncode != 0 or "ERR" in result.stdout + result.stderr or \
        "Could not" in result.stdout + result.stderr, result.stdout + result.stderr
    # The HTTP port reads the hello as a broken request (an error or, waiting for the rest
    # of a request line, nothing): either way no TLS session.
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=2 * SLOW) as raw:
            context = ssl.create_default_context(cafile=certs("ca.pem"))
            context.wrap_socket(raw, server_hostname="localhost")
    assert server.client().ping()


def test_truncated_handshake(tls_server, certs):
    hello = client_hello()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", tls_server.port)) as sock:
        sock.sendall(hello[:len(hello) // 2])
        # --tls-handshake-timeout 1, checked once a second: closed within about 2 s.
        assert closed_by_server(sock, 10 * SLOW)
    assert time.monotonic() - started < 5 * SLOW
    assert "handshake not finished in time" in wait_for_log(tls_server,
                                                            "handshake not finished in time")
    # Half a hello, then the client goes away.
    with socket.create_connection(("127.0.0.1", tls_server.port)) as sock:
        sock.sendall(hello[:len(hello) // 2])
    assert tls_client(tls_server, certs).ping()


def test_renegotiation_refused(tls_server, certs):
    # s_client's R asks for a renegotiation (TLS 1.2); the server refuses it.
    script = b"PING\r\n"
    result = s_client(tls_server.port, certs, "-tls1_2", stdin=b"R\n" + script)
    output = result.stdout.decode() + result.stderr.decode()
    assert "RENEGOTIATING" in output and "no renegotiation" in output, output
    assert tls_client(tls_server, certs).ping()


# ---- client certificates ----------------------------------------------------------


def test_client_certificates_required(start_server, certs):
    server = start_server("--memory", "64mb", "--tls-ca", certs("ca.pem"),
                          "--tls-client-auth", "required", *tls_options(certs))
    alice = ("--cert", certs("alice.pem"), "--key", certs("alice.key"))
    result = redis_cli(server, certs, "PING", extra=alice)
    assert result.stdout.strip() == "PONG", result.stderr
    assert 'client_cert="alice"' in wait_for_log(server, 'client_cert="alice"')
    for refused in ((), ("--cert", certs("mallory.pem"), "--key", certs("mallory.key")),
                    ("--cert", certs("old.pem"), "--key", certs("old.key"))):
        result = redis_cli(server, certs, "PING", extra=refused)
        assert "PONG" not in result.stdout, (refused, result.stdout)
    log = wait_for_log(server, "certificate has expired")
    assert "certificate has expired" in log, log[-3000:]
    assert "peer did not return a certificate" in log, log[-3000:]
    assert "unable to get local issuer certificate" in log, log[-3000:]
    assert redis_cli(server, certs, "PING", extra=alice).stdout.strip() == "PONG"


def test_client_certificates_optional(start_server, certs):
    server = start_server("--memory", "64mb", "--tls-ca", certs("ca.pem"),
                          "--tls-client-auth", "optional", *tls_options(certs))
    assert redis_cli(server, certs, "PING").stdout.strip() == "PONG"
    result = redis_cli(server, certs, "PING",
                       extra=("--cert", certs("alice.pem"), "--key", certs("alice.key")))
    assert result.stdout.strip() == "PONG"
    result = redis_cli(server, certs, "PING",
                       extra=("--cert", certs("mallory.pem"), "--key", certs("mallory.key")))
    assert "PONG" not in result.stdout


# ---- start-up and reload ----------------------------------------------------------


def start_fails(tmp_path, *arguments):
    from conftest import BINARY
    result = subprocess.run([BINARY, "--port", "0", "--http-port", "0", "--native-port", "0",
                             "--dir", str(tmp_path / "data"), *arguments],
                            capture_output=True, text=True, timeout=60 * SLOW)
    assert result.returncode != 0, result.stderr
    return result.stderr


def test_bad_files_at_start(tmp_path, certs):
    missing = str(tmp_path / "missing.pem")
    error = start_fails(tmp_path, "--tls-cert", missing, "--tls-key", certs("server.key"))
    assert missing in error and "No such file" in error, error
    error = start_fails(tmp_path, "--tls-cert", certs("server.pem"))
    assert "--tls-key" in error, error
    error = start_fails(tmp_path, "--tls-client-auth", "required", *tls_options(certs))
    assert "--tls-ca" in error, error
    error = start_fails(tmp_path, "--tls-cert", certs("server.pem"), "--tls-key",
                        certs("alice.key"))
    assert "does not match" in error and certs("alice.key") in error, error
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    error = start_fails(tmp_path, "--tls-cert", str(garbage), "--tls-key", certs("server.key"))
    assert str(garbage) in error, error


def serial_seen(port, certs):
    result = s_client(port, certs)
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                    result.stdout, re.S)
    assert pem, result.stdout + result.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem.group(0),
                          capture_output=True).stdout
    return int(text.decode().strip().split("=")[1], 16)


def test_sighup_reload(start_server, certs, tmp_path):
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    cert.write_bytes(open(certs("server.pem"), "rb").read())
    key.write_bytes(open(certs("server.key"), "rb").read())
    server = start_server("--memory", "64mb", "--tls-cert", str(cert), "--tls-key", str(key))
    assert serial_seen(server.port, certs) == 4097
    kept = tls_client(server, certs)
    assert kept.ping()
    # A broken certificate: the reload fails with a warning, the old one stays.
    cert.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    server.process.send_signal(signal.SIGHUP)
    assert "tls_reload_failed" in wait_for_log(server, "tls_reload_failed")
    assert serial_seen(server.port, certs) == 4097
    # A renewed certificate: new connections see it, the open one carries on.
    cert.write_bytes(open(certs("renewed.pem"), "rb").read())
    key.write_bytes(open(certs("renewed.key"), "rb").read())
    server.process.send_signal(signal.SIGHUP)
    assert "event=tls_reloaded" in wait_for_log(server, "event=tls_reloaded")
    assert serial_seen(server.port, certs) == 8194
    assert kept.ping()
    kept.close()
