"""Credentials and rights on the HTTP port (docs/security.md, HTTP and S3): the operator
token (--http-auth), users' credentials on /keys/, and S3 access keys mapped to users.
One server with a users file serves every test but the last, which is throttled."""
import base64
import os
import subprocess
import urllib.error
import urllib.request
from unittest import mock

import boto3
import botocore.config
import botocore.exceptions
import pytest

import test_s3
from conftest import Server, hash_passwords, metric, write_users_file

TOKEN = "operator-token-4f9c2a"
# The users' S3 keys (users file s3key: rules) and the --s3-access-key pair (every right).
ALICE_KEY, ALICE_SECRET = "AKIDALICE", "alice-secret/0123+456"
READER_KEY, READER_SECRET = "AKIDREADER", "reader-secret-789"
ADMIN_KEY, ADMIN_SECRET = "AKIDADMIN", "admin-secret-000"


def write_users(path):
    alice, reader = hash_passwords("secret", "readpw")
    write_users_file(path, "\n".join([
        "user default off",
        f"user alice on {alice} namespace:default=read,write bucket:a-*=all "
        f"s3key:{ALICE_KEY}:{ALICE_SECRET}",
        f"user reader on {reader} namespace:default=read bucket:a-*=read "
        f"s3key:{READER_KEY}:{READER_SECRET}",
        "",
    ]))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("http_auth")
    write_users(directory / "users")
    instance = Server(directory, "--memory", "256mb", "--http-auth", TOKEN,
                      "--users", directory / "users", "--s3-access-key", ADMIN_KEY,
                      "--s3-secret-key", ADMIN_SECRET)
    yield instance
    instance.stop()


def bearer(token):
    return {"Authorization": "Bearer " + token}


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


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
    denied = metric(server, "strata_access_denied_total", bearer(TOKEN))
    status, _, body = server.http("/keys/ro", "PUT", b"changed", headers=basic("reader", "readpw"))
    assert status == 403 and b"no write right" in body
    status, _, _ = server.http("/keys/ro", "DELETE", headers=basic("reader", "readpw"))
    assert status == 403
    assert metric(server, "strata_access_denied_total", bearer(TOKEN)) == denied + 2
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
        successes = metric(server, "strata_auth_successes_total", bearer(TOKEN))
        assert ask("PUT", basic("alice", "secret"), b"a")[0] in (201, 204)
        for _ in range(5):
            assert ask("GET", basic("alice", "secret")) == (200, b"a")
        assert metric(server, "strata_auth_successes_total", bearer(TOKEN)) == successes + 1
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


# ---- S3: access keys are users ---------------------------------------------------------

def s3_client(server, key, secret, signature_version="s3v4"):
    return boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{server.http_port}", aws_access_key_id=key,
        aws_secret_access_key=secret, region_name="us-east-1",
        config=botocore.config.Config(s3={"addressing_style": "path"},
                                      signature_version=signature_version,
                                      retries={"total_max_attempts": 1}))


def denied(call, code="AccessDenied"):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        call()
    assert excinfo.value.response["Error"]["Code"] == code, excinfo.value.response
    return excinfo.value.response


@pytest.fixture(scope="module")
def buckets(server):
    """a-data (alice's) and b-data (nobody's but the --s3-access-key's), one object each."""
    admin = s3_client(server, ADMIN_KEY, ADMIN_SECRET)
    admin.create_bucket(Bucket="b-data")
    admin.put_object(Bucket="b-data", Key="secret.txt", Body=b"b's data")
    alice = s3_client(server, ALICE_KEY, ALICE_SECRET)
    alice.create_bucket(Bucket="a-data")
    alice.put_object(Bucket="a-data", Key="mine.txt", Body=b"a's data")
    return admin, alice


def test_s3_user_rights(server, buckets):
    admin, alice = buckets
    assert alice.get_object(Bucket="a-data", Key="mine.txt")["Body"].read() == b"a's data"
    assert [o["Key"] for o in alice.list_objects_v2(Bucket="a-data")["Contents"]] == ["mine.txt"]
    before = metric(server, "strata_access_denied_total", bearer(TOKEN))
    denied(lambda: alice.get_object(Bucket="b-data", Key="secret.txt"))
    denied(lambda: alice.put_object(Bucket="b-data", Key="secret.txt", Body=b"overwritten"))
    denied(lambda: alice.delete_object(Bucket="b-data", Key="secret.txt"))
    denied(lambda: alice.list_objects_v2(Bucket="b-data"))
    denied(lambda: alice.create_bucket(Bucket="b-new"))
    # A copy needs read on its source bucket.
    denied(lambda: alice.copy_object(Bucket="a-data", Key="stolen",
                                     CopySource={"Bucket": "b-data", "Key": "secret.txt"}))
    response = denied(lambda: alice.delete_bucket(Bucket="b-data"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert metric(server, "strata_access_denied_total", bearer(TOKEN)) == before + 7
    # Nothing was done.
    assert admin.get_object(Bucket="b-data", Key="secret.txt")["Body"].read() == b"b's data"
    denied(lambda: admin.head_bucket(Bucket="b-new"), "404")
    denied(lambda: admin.head_object(Bucket="a-data", Key="stolen"), "404")
    # Within its own buckets a copy works; a bucket it may create it may delete.
    alice.copy_object(Bucket="a-data", Key="copy", CopySource={"Bucket": "a-data",
                                                               "Key": "mine.txt"})
    alice.create_bucket(Bucket="a-new")
    alice.delete_bucket(Bucket="a-new")


def test_s3_list_buckets_shows_only_the_users(server, buckets):
    admin, alice = buckets
    assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == ["a-data"]
    assert {"a-data", "b-data"} <= {b["Name"] for b in admin.list_buckets()["Buckets"]}


def test_s3_read_only_user(server, buckets):
    reader = s3_client(server, READER_KEY, READER_SECRET)
    assert reader.get_object(Bucket="a-data", Key="mine.txt")["Body"].read() == b"a's data"
    denied(lambda: reader.put_object(Bucket="a-data", Key="mine.txt", Body=b"changed"))
    denied(lambda: reader.delete_object(Bucket="a-data", Key="mine.txt"))
    denied(lambda: reader.create_multipart_upload(Bucket="a-data", Key="big"))
    denied(lambda: reader.put_bucket_versioning(
        Bucket="a-data", VersioningConfiguration={"Status": "Enabled"}))
    assert reader.get_object(Bucket="a-data", Key="mine.txt")["Body"].read() == b"a's data"


def test_s3_presigned_and_signature_version_2(server, buckets):
    _, alice = buckets

    def fetch(url):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    for client in (alice, s3_client(server, ALICE_KEY, ALICE_SECRET, "s3")):
        own = client.generate_presigned_url("get_object", Params={"Bucket": "a-data",
                                                                  "Key": "mine.txt"})
        assert fetch(own) == (200, b"a's data")
        other = client.generate_presigned_url("get_object", Params={"Bucket": "b-data",
                                                                    "Key": "secret.txt"})
        status, body = fetch(other)
        assert status == 403 and b"AccessDenied" in body and b"b's data" not in body
    v2 = s3_client(server, ALICE_KEY, ALICE_SECRET, "s3")
    assert v2.get_object(Bucket="a-data", Key="mine.txt")["Body"].read() == b"a's data"
    denied(lambda: v2.get_object(Bucket="b-data", Key="secret.txt"))


def test_s3_aws_chunked_upload_as_a_user(server, buckets):
    data = os.urandom(100000)
    with mock.patch.object(test_s3, "ACCESS_KEY", ALICE_KEY), \
            mock.patch.object(test_s3, "SECRET_KEY", ALICE_SECRET):
        status, body = test_s3.chunked_put(server, "a-data", "chunked", data,
                                           "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        assert status == 200, body
        status, body = test_s3.chunked_put(server, "b-data", "chunked", data,
                                           "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        assert status == 403 and b"AccessDenied" in body
    _, alice = buckets
    assert alice.get_object(Bucket="a-data", Key="chunked")["Body"].read() == data


def test_s3_unknown_key_and_unsigned(server, buckets):
    stranger = s3_client(server, "AKIDNOBODY", "whatever")
    denied(lambda: stranger.list_buckets(), "InvalidAccessKeyId")
    denied(lambda: s3_client(server, ALICE_KEY, "wrong secret").list_buckets(),
           "SignatureDoesNotMatch")
    status, _, body = server.http("/a-data/mine.txt")
    assert status == 403 and b"AccessDenied" in body


def test_aws_cli_with_a_users_key(server, buckets, tmp_path):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("AWS_CA_BUNDLE", "SSL_CERT_FILE")}
    environment.update({"AWS_ACCESS_KEY_ID": ALICE_KEY, "AWS_SECRET_ACCESS_KEY": ALICE_SECRET,
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "",
                        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials")})
    command = ["/usr/bin/aws", "--endpoint-url", f"http://127.0.0.1:{server.http_port}", "s3"]
    result = subprocess.run(command + ["ls"], env=environment, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "a-data" in result.stdout and "b-data" not in result.stdout
    result = subprocess.run(command + ["ls", "s3://b-data"], env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "AccessDenied" in result.stderr


def test_token_is_a_secret(start_server):
    open_server = start_server("--http-auth", TOKEN)
    client = open_server.client()
    try:
        assert client.config_get("http-auth") == {"http-auth": "(hidden)"}
    finally:
        client.close()
    assert open_server.http("/info")[0] == 401
    assert open_server.http("/keys/k", "PUT", b"v")[0] == 201  # no users: /keys/ is open
