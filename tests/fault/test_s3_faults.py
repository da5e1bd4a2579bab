"""Fault injection on the S3 path (the fault-injection build): a failed write, sync or
read of an object's bytes is an error to the client (never a wrong byte), nothing is
stored by a PUT that failed, and the server carries on. `make integration-fault` runs
this module."""
import hashlib
import os
import sys

import boto3
import botocore.config
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
from conftest import ROOT, Server  # noqa: E402

FAULT_BINARY = os.path.join(ROOT, os.environ.get("STRATA_FAULT_SERVER",
                                                 "build/fault/strata-server"))
MIB = 1024 * 1024


def start(directory, *arguments):
    return Server(directory, "--s3-access-key", "fault-key", "--s3-secret-key", "fault-secret",
                  *arguments, binary=FAULT_BINARY)


def s3_client(server):
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{server.http_port}",
                        aws_access_key_id="fault-key", aws_secret_access_key="fault-secret",
                        region_name="us-east-1",
                        config=botocore.config.Config(s3={"addressing_style": "path"},
                                                      retries={"total_max_attempts": 1}))


def blob_files(server):
    return os.listdir(os.path.join(server.directory, "data", "objects", "blobs"))


@pytest.mark.parametrize("rule,arguments", [
    ("write:nth=1", ()),
    ("write:nth=2:error=ENOSPC", ()),
    ("sync:nth=1", ("--fsync", "always")),
])
def test_a_failed_put_stores_nothing(tmp_path, rule, arguments):
    server = start(tmp_path / "server", *arguments)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="faults")
        original = os.urandom(3 * MIB)
        s3.put_object(Bucket="faults", Key="object", Body=original)
        files = sorted(blob_files(server))
        redis_client = server.client()
        redis_client.execute_command("DEBUG", "FAULT", rule)
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            s3.put_object(Bucket="faults", Key="object", Body=os.urandom(3 * MIB))
        status = excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]
        assert status in (500, 507)
        redis_client.execute_command("DEBUG", "FAULT", "reset")
        assert s3.get_object(Bucket="faults", Key="object")["Body"].read() == original
        assert sorted(blob_files(server)) == files
        s3.put_object(Bucket="faults", Key="after", Body=b"after")
        assert s3.get_object(Bucket="faults", Key="after")["Body"].read() == b"after"
        redis_client.close()
    finally:
        server.stop()


def test_a_failed_read_is_an_error_never_wrong_bytes(tmp_path):
    server = start(tmp_path / "server")
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="faults")
        data = os.urandom(6 * MIB)
        s3.put_object(Bucket="faults", Key="object", Body=data)
        redis_client = server.client()
        for nth in (1, 2, 4):
            redis_client.execute_command("DEBUG", "FAULT", f"read:nth={nth}")
            try:
                body = s3.get_object(Bucket="faults", Key="object")["Body"].read()
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError,
                    ConnectionError):
                continue  # an error, or a body cut short: both are allowed
            # A body that arrived whole must be the right one.
            assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest() or \
                len(body) < len(data)
            redis_client.execute_command("DEBUG", "FAULT", "reset")
        redis_client.execute_command("DEBUG", "FAULT", "reset")
        assert s3.get_object(Bucket="faults", Key="object")["Body"].read() == data
        redis_client.close()
    finally:
        server.stop()
