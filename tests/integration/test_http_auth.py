"""Credentials and rights on the HTTP port (docs/security.md, HTTP and S3): the operator
token (--http-auth), users' credentials on /keys/, and S3 access keys mapped to users.
One server with a users file serves every test but the last, which is throttled."""
import subprocess
import urllib.request

import pytest

from conftest import BINARY, Server

TOKEN = "operator-token-4f9c2a"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("http_auth")
    instance = Server(directory, "--memory", "256mb", "--http-auth", TOKEN)
    yield instance
    instance.stop()


def bearer(token):
    return {"Authorization": "Bearer " + token}


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
