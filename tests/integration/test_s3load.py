"""The S3 benchmark's HTTP client (bench/s3load.c) against a real server: whole and
ranged GETs, single and multipart PUTs, over the S3 API and /keys/; and it must catch a
wrong byte and a wrong length, since bench/s3.py's figures rest on its check."""
import json
import os
import re
import subprocess

import pytest

from conftest import ROOT, Server

S3LOAD = os.path.join(ROOT, "build", "bench", "s3load")
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """A server without S3 credentials: loopback requests are served unsigned."""
    instance = Server(tmp_path_factory.mktemp("s3load"), "--memory", "256mb")
    yield instance
    instance.stop()


def run(server, *arguments, expect=0):
    result = subprocess.run([S3LOAD, "--port", str(server.http_port), *map(str, arguments)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == expect, result.stdout + result.stderr
    return json.loads(result.stdout)


def check_clean(report, requests, body_bytes):
    assert report["errors"] == 0, report["first_error"]
    assert report["mismatches"] == 0
    assert report["requests"] == requests
    assert report["bytes"] == body_bytes
    assert report["seconds"] > 0
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]


def test_s3_put_then_whole_and_ranged_gets(open_server):
    assert open_server.http("/s3load-bucket", method="PUT")[0] == 200
    size = 12 * MIB + 5
    check_clean(run(open_server, "--put", "--path", "/s3load-bucket/obj", "--size", size), 1, size)
    check_clean(run(open_server, "--path", "/s3load-bucket/obj", "--size", size, "--connections",
                    2, "--requests", 3), 3, 3 * size)
    # Ranges of 3 MiB: four whole ones and a last one of 5 bytes, over 4 connections.
    check_clean(run(open_server, "--path", "/s3load-bucket/obj", "--size", size,
                    "--range-size", "3m", "--connections", 4), 5, size)
    # Two passes over the object.
    check_clean(run(open_server, "--path", "/s3load-bucket/obj", "--size", size,
                    "--range-size", "1m", "--connections", 3, "--requests", 26), 26, 2 * size)


def test_keys_put_then_get(open_server):
    size = 3 * MIB
    check_clean(run(open_server, "--put", "--path", "/keys/s3load", "--size", size), 1, size)
    check_clean(run(open_server, "--path", "/keys/s3load", "--size", size, "--range-size",
                    "256k", "--connections", 4), 12, size)


def test_multipart_parts_complete_to_the_same_bytes(open_server):
    assert open_server.http("/s3load-parts", method="PUT")[0] == 200
    size = 17 * MIB
    status, _, body = open_server.http("/s3load-parts/mp?uploads", method="POST")
    assert status == 200
    upload = re.search(rb"<UploadId>([^<]+)</UploadId>", body).group(1).decode()
    report = run(open_server, "--put", "--path", "/s3load-parts/mp", "--size", size,
                 "--part-size", "8m", "--connections", 2, "--query", f"uploadId={upload}")
    check_clean(report, 3, size)
    assert len(report["etags"]) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", e)
                                             for e in report["etags"])
    document = "<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>\"{etag}\"</ETag></Part>"
        for n, etag in enumerate(report["etags"], 1)) + "</CompleteMultipartUpload>"
    status, _, body = open_server.http(f"/s3load-parts/mp?uploadId={upload}", method="POST",
                                       body=document.encode())
    assert status == 200 and b"<Error>" not in body, body
    # The parts, put together, are the object the client expects byte for byte.
    check_clean(run(open_server, "--path", "/s3load-parts/mp", "--size", size, "--range-size",
                    "5m", "--connections", 2), 4, size)


def test_catches_wrong_bytes_and_lengths(open_server):
    assert open_server.http("/keys/s3load-random", method="PUT",
                            body=os.urandom(MIB))[0] in (201, 204)
    report = run(open_server, "--path", "/keys/s3load-random", "--size", "1m", expect=1)
    assert report["mismatches"] > 0
    # The same object one byte longer than the client expects: a wrong length.
    report = run(open_server, "--path", "/keys/s3load-random", "--size", MIB - 1, expect=3)
    assert report["errors"] == 1 and "unexpected response" in report["first_error"]
    # A missing object.
    report = run(open_server, "--path", "/keys/s3load-missing", "--size", "1m", expect=3)
    assert "404" in report["first_error"]
