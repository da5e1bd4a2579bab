"""Credentials and rights on the HTTP port (docs/security.md, HTTP and S3): the operator
token (--http-auth), users' credentials on /keys/, and S3 access keys mapped to users.
One server with a users file serves every test but the last, which is throttled."""
import base64
import re
import subprocess
import urllib.request

import pytest

from conftest import BINARY, Server

TOKEN = "operator-token-4f9c2a"


def hash_rule(password):
    """The users file rule for PASSWORD, as `strata-server --hash-password` prints it."""
    result = subprocess.run([BINARY, "--hash-password"], input=password + "\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#$argon2id$")
    return result.stdout.strip()


def write_users(path):
    path.write_text("\n".join([
        "user default off",
        f"user alice on {hash_rule('secret')} namespace:default=read,write",
        f"user reader on {hash_rule('readpw')} namespace:default=read",
        "",
    ]))
    path.chmod(0o600)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("http_auth")
    write_users(directory / "users")
    instance = Server(directory, "--memory", "256mb", "--http-auth", TOKEN,
                      "--users", directory / "users")
    yield instance
    instance.stop()


def bearer(token):
    return {"Authorization": "Bearer " + token}


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def metric(server, name):
    _, _, body = server.http("/metrics", headers=bearer(TOKEN))
    match = re.search(rf"^{name} (\d+)$", body.decode(), re.M)
    return int(match.group(1))


def curl(server, *arguments):
    """curl's answer: (status, body)."""
    result = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *arguments,
                             f"http://127.0.0.1:{server.http_port}/keys/curl-key"],
                            capture_output=True, text=True, timeout=30)
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


# ---- the operator token ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/metrics", "/info", "/history", "/"])
def test_operator_paths_need_the_token(server, path):
    status, headers, body = server.http(path)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="strata"'
    assert b"strata_" not in body and b"uptime" not in body
    status, headers, _ = server.http(path, headers=bearer(TOKEN + "x"))
    assert status == 401
    status, _, body = server.http(path, headers=bearer(TOKEN))
    assert status == 200 and body


def test_prometheus_scrape_with_bearer(server):
    # What Prometheus sends with `authorization: {type: Bearer, credentials: ...}`.
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/metrics",
                                     headers={"Authorization": "Bearer " + TOKEN,
                                              "Accept": "text/plain;version=0.0.4"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert "version=0.0.4" in response.headers["Content-Type"]
        assert b"strata_http_requests_total" in response.read()
    result = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             f"http://127.0.0.1:{server.http_port}/metrics"],
                            capture_output=True, text=True, timeout=10)
    assert result.stdout == "401"
    result = subprocess.run(["curl", "-s", "-H", "Authorization: Bearer " + TOKEN,
                             f"http://127.0.0.1:{server.http_port}/metrics"],
                            capture_output=True, text=True, timeout=10)
    assert "strata_http_client_errors_total" in result.stdout


def test_health_stays_open(server):
    status, _, body = server.http("/health")
    assert status == 200 and body.startswith(b"ok")


# ---- /keys/ with users -------------------------------------------------------------------

def test_keys_with_curl_user(server):
    assert curl(server, "-u", "alice:secret", "-X", "PUT", "--data-binary", "v1")[0] == 201
    assert curl(server, "-u", "alice:secret") == (200, "v1")
    status, body = curl(server)
    assert status == 401 and "needs a user's credentials" in body
    assert curl(server, "-u", "alice:wrong")[0] == 401
    assert curl(server, "-u", "nobody:secret")[0] == 401
    assert curl(server, "-u", "alice:wrong", "-X", "PUT", "--data-binary", "v2")[0] == 401
    assert curl(server, "-u", "reader:readpw") == (200, "v1")


def test_keys_challenge_and_bearer_is_not_a_user(server):
    status, headers, _ = server.http("/keys/curl-key")
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="strata"'
    # The operator token opens the operator paths only.
    status, _, _ = server.http("/keys/curl-key", headers=bearer(TOKEN))
    assert status == 401
    status, _, _ = server.http("/keys/curl-key", headers={"Authorization": "Basic !!!"})
    assert status == 401


def test_read_only_user_cannot_write(server):
    status, _, _ = server.http("/keys/ro", "PUT", b"original", headers=basic("alice", "secret"))
    assert status == 201
    denied = metric(server, "strata_access_denied_total")
    status, _, body = server.http("/keys/ro", "PUT", b"changed", headers=basic("reader", "readpw"))
    assert status == 403 and b"no write right" in body
    status, _, _ = server.http("/keys/ro", "DELETE", headers=basic("reader", "readpw"))
    assert status == 403
    assert metric(server, "strata_access_denied_total") == denied + 2
    status, _, body = server.http("/keys/ro", headers=basic("reader", "readpw"))
    assert (status, body) == (200, b"original")


def test_keep_alive_connection_checks_each_request(server):
    """The same credentials again on a connection are recognised without a new check;
    other credentials, or none, on the same connection are checked as their own."""
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        def ask(method, headers, body=None):
            connection.request(method, "/keys/alive", body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        successes = metric(server, "strata_auth_successes_total")
        assert ask("PUT", basic("alice", "secret"), b"a")[0] in (201, 204)
        for _ in range(5):
            assert ask("GET", basic("alice", "secret")) == (200, b"a")
        assert metric(server, "strata_auth_successes_total") == successes + 1
        assert ask("GET", {})[0] == 401
        assert ask("PUT", basic("reader", "readpw"), b"b")[0] == 403
        assert ask("GET", basic("alice", "nope"))[0] == 401
        assert ask("GET", basic("alice", "secret")) == (200, b"a")
    finally:
        connection.close()


def test_failures_are_throttled(start_server, tmp_path):
    write_users(tmp_path / "users")
    throttled = start_server("--users", tmp_path / "users")
    statuses = [throttled.http("/keys/x", headers=basic("alice", f"bad{i}"))[0] for i in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    status, headers, _ = throttled.http("/keys/x", headers=basic("alice", "secret"))
    assert status == 429 and int(headers["Retry-After"]) >= 1
