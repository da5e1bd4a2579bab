"""The S3 API (docs/s3.md) driven by boto3, the client users run: buckets, objects,
ranges, conditions, copies, listings, multipart uploads, versioning, presigned URLs,
signatures, digests, and what a cut-off or damaged request leaves behind."""
import base64
import datetime
import hashlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from unittest import mock

import boto3
import botocore
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import pytest

from conftest import SANITIZED, THREAD_SANITIZED, Server

ACCESS_KEY = "strata-test-key"
SECRET_KEY = "strata-test-secret/with+odd=chars"
MIB = 1024 * 1024


def s3_client(server, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **config):
    return boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{server.http_port}",
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=botocore.config.Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                                      retries={"total_max_attempts": 1}, **config))


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    instance = Server(tmp_path_factory.mktemp("s3"), "--memory", "256mb",
                      "--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY,
                      "--s3-min-part-size", "1mb")
    yield instance
    instance.stop()


@pytest.fixture
def s3(s3_server):
    return s3_client(s3_server)


@pytest.fixture
def bucket(s3, request):
    name = "b-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    s3.create_bucket(Bucket=name)
    yield name
    # Empty it (every version and upload) and remove it.
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    while True:
        listing = s3.list_object_versions(Bucket=name)
        entries = listing.get("Versions", []) + listing.get("DeleteMarkers", [])
        if not entries:
            break
        s3.delete_objects(Bucket=name, Delete={"Objects": [
            {"Key": e["Key"], "VersionId": e["VersionId"]} for e in entries]})
    s3.delete_bucket(Bucket=name)


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---- buckets ---------------------------------------------------------------------------

def test_buckets(s3):
    s3.create_bucket(Bucket="alpha-bucket")
    s3.create_bucket(Bucket="beta.bucket")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names.index("alpha-bucket") < names.index("beta.bucket")
    s3.head_bucket(Bucket="alpha-bucket")
    assert s3.get_bucket_location(Bucket="alpha-bucket")["LocationConstraint"] is None
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.create_bucket(Bucket="alpha-bucket")
    assert error_code(excinfo) == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket="alpha-bucket", Key="x", Body=b"1")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.delete_bucket(Bucket="alpha-bucket")
    assert error_code(excinfo) == "BucketNotEmpty"
    s3.delete_object(Bucket="alpha-bucket", Key="x")
    s3.delete_bucket(Bucket="alpha-bucket")
    s3.delete_bucket(Bucket="beta.bucket")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.head_bucket(Bucket="alpha-bucket")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.list_objects_v2(Bucket="alpha-bucket")
    assert error_code(excinfo) == "NoSuchBucket"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_object(Bucket="alpha-bucket", Key="k", Body=b"x" * 100000)
    assert error_code(excinfo) == "NoSuchBucket"


@pytest.mark.parametrize("name", ["ab", "UPPER", "-leading", "trailing-", "a..b", "192.168.1.1",
                                  "under_score", "x" * 64])
def test_invalid_bucket_names(s3, name):
    with pytest.raises((botocore.exceptions.ClientError,
                        botocore.exceptions.ParamValidationError)) as excinfo:
        s3.create_bucket(Bucket=name)
    if isinstance(excinfo.value, botocore.exceptions.ClientError):
        assert error_code(excinfo) == "InvalidBucketName"


# ---- objects ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 65535, 1024 * 1024 + 17, 3 * MIB + 5])
def test_put_get_round_trip(s3, bucket, size):
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key="dir/object", Body=data, ContentType="text/x-test",
                        Metadata={"model": "llama", "Shard": "3"}, CacheControl="max-age=5")
    assert put["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    got = s3.get_object(Bucket=bucket, Key="dir/object")
    assert sha256(got["Body"].read()) == sha256(data)
    assert got["ContentLength"] == size
    assert got["ContentType"] == "text/x-test"
    assert got["Metadata"] == {"model": "llama", "shard": "3"}
    assert got["CacheControl"] == "max-age=5"
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="dir/object")
    assert head["ContentLength"] == size and head["ETag"] == put["ETag"]
    s3.delete_object(Bucket=bucket, Key="dir/object")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="dir/object")
    assert error_code(excinfo) == "NoSuchKey"
    s3.delete_object(Bucket=bucket, Key="dir/object")  # deleting nothing is fine, as S3


def test_overwrite_and_odd_keys(s3, bucket):
    keys = ["a b", "ключ/ü", "with?question&amp", "plus+sign", "percent%41", "tab\tkey",
            "/leading-slash", "a//double", "~tilde*star'quote(paren)"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode() * 3)
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode() * 3
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())
    s3.put_object(Bucket=bucket, Key="a b", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="a b")["Body"].read() == b"second"


def test_key_too_long(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_code(excinfo) == "KeyTooLongError"
    s3.put_object(Bucket=bucket, Key="k" * 1024, Body=b"x")
    assert s3.get_object(Bucket=bucket, Key="k" * 1024)["Body"].read() == b"x"


def test_ranges(s3, bucket):
    data = os.urandom(3 * MIB + 100)
    s3.put_object(Bucket=bucket, Key="ranged", Body=data)
    for first, last in [(0, 0), (0, 7), (5, 1048580), (MIB - 1, MIB), (3 * MIB, 3 * MIB + 99),
                        (2 * MIB + 3, 3 * MIB + 99)]:
        got = s3.get_object(Bucket=bucket, Key="ranged", Range=f"bytes={first}-{last}")
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
        assert got["Body"].read() == data[first:last + 1]
    got = s3.get_object(Bucket=bucket, Key="ranged", Range="bytes=-10")
    assert got["Body"].read() == data[-10:]
    got = s3.get_object(Bucket=bucket, Key="ranged", Range=f"bytes={len(data) - 5}-")
    assert got["Body"].read() == data[-5:]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="ranged", Range=f"bytes={len(data)}-")
    assert error_code(excinfo) == "InvalidRange"


def test_conditional_reads(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    etag = put["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"conditional"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0123"')
    assert error_code(excinfo) == "PreconditionFailed"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=modified)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    earlier = modified - datetime.timedelta(hours=1)
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=earlier)["Body"].read()
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=earlier)
    assert error_code(excinfo) == "PreconditionFailed"


def test_acl_and_unsupported_subresources(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="a")):
        assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
        assert acl["Owner"]["ID"] == "strata"
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert error_code(excinfo) == "NotImplemented"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object_acl(Bucket=bucket, Key="missing")
    assert error_code(excinfo) == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(excinfo) == "NotImplemented"


def test_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="application/json",
                        ResponseContentDisposition="attachment; filename=o.json",
                        ResponseCacheControl="no-cache")
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "attachment; filename=o.json"
    assert got["CacheControl"] == "no-cache"


def test_copy_by_reference(s3, bucket):
    data = os.urandom(2 * MIB + 3)
    s3.put_object(Bucket=bucket, Key="source", Body=data, Metadata={"a": "1"},
                  ContentType="x/source")
    copied = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket,
                                                                   "Key": "source"})
    assert copied["CopyObjectResult"]["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    head = s3.head_object(Bucket=bucket, Key="copy")
    assert head["Metadata"] == {"a": "1"} and head["ContentType"] == "x/source"
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=f"{bucket}/source",
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="x/new")
    head = s3.head_object(Bucket=bucket, Key="replaced")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "x/new"
    # The source goes away: the copies keep their bytes.
    s3.delete_object(Bucket=bucket, Key="source")
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="replaced")["Body"].read() == data
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/copy")
    assert error_code(excinfo) == "InvalidRequest"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/missing")
    assert error_code(excinfo) == "NoSuchKey"


# ---- listings --------------------------------------------------------------------------

def test_listing_pages_prefixes_and_markers(s3, bucket):
    keys = sorted([f"data/{d}/part-{i:03d}" for d in ("a", "b", "c") for i in range(7)] +
                  ["data/top", "readme", "zz/last"])
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    paginator = s3.get_paginator("list_objects_v2")
    listed = [o["Key"] for page in paginator.paginate(Bucket=bucket, PaginationConfig={
        "PageSize": 4}) for o in page.get("Contents", [])]
    assert listed == keys
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["data/", "zz/"]
    assert [o["Key"] for o in top["Contents"]] == ["readme"]
    nested = s3.list_objects_v2(Bucket=bucket, Prefix="data/", Delimiter="/")
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["data/a/", "data/b/", "data/c/"]
    assert [o["Key"] for o in nested["Contents"]] == ["data/top"]
    # Pages of one entry over common prefixes: each prefix once.
    seen = []
    token = None
    while True:
        arguments = {"Bucket": bucket, "Prefix": "data/", "Delimiter": "/", "MaxKeys": 1}
        if token:
            arguments["ContinuationToken"] = token
        page = s3.list_objects_v2(**arguments)
        seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == ["data/a/", "data/b/", "data/c/", "data/top"]
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="data/c/part-005")
    assert [o["Key"] for o in after["Contents"]] == keys[keys.index("data/c/part-005") + 1:]
    v1 = s3.list_objects(Bucket=bucket, Marker="data/b/part-006", MaxKeys=3)
    assert [o["Key"] for o in v1["Contents"]] == keys[keys.index("data/b/part-006") + 1:][:3]
    assert v1["IsTruncated"]
    v1_all = [o["Key"] for page in s3.get_paginator("list_objects").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 5}) for o in page.get("Contents", [])]
    assert v1_all == keys
    encoded = s3.list_objects_v2(Bucket=bucket, Prefix="readme", EncodingType="url")
    assert encoded["Contents"][0]["Key"] == "readme"


def test_delete_objects(s3, bucket):
    for i in range(10):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"}
                                                                  for i in range(0, 10, 2)]})
    assert sorted(d["Key"] for d in result["Deleted"]) == [f"k{i}" for i in range(0, 10, 2)]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k1"}], "Quiet": True})
    assert "Deleted" not in quiet
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert left == ["k3", "k5", "k7", "k9"]


# ---- multipart -------------------------------------------------------------------------

def test_multipart_upload(s3, bucket):
    parts_data = [os.urandom(MIB + 7), os.urandom(MIB), os.urandom(12345)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big", ContentType="x/parts",
                                        Metadata={"m": "v"})
    upload_id = upload["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("big", upload_id)]
    etags = []
    # Out of order, and part 2 uploaded twice (the second one counts).
    for number in (3, 2, 1, 2):
        part = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=number,
                              Body=parts_data[number - 1])
        assert part["ETag"] == '"%s"' % hashlib.md5(parts_data[number - 1]).hexdigest()
        etags.append((number, part["ETag"]))
    parts = s3.list_parts(Bucket=bucket, Key="big", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, MIB + 7), (2, MIB), (3, 12345)]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": hashlib.md5(
            parts_data[n - 1]).hexdigest()} for n in (1, 2, 3)]})
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts_data)).hexdigest()
    assert done["ETag"] == f'"{expected}-3"'
    got = s3.get_object(Bucket=bucket, Key="big")
    assert sha256(got["Body"].read()) == sha256(b"".join(parts_data))
    assert got["ContentType"] == "x/parts" and got["Metadata"] == {"m": "v"}
    assert got["ETag"] == done["ETag"]
    ranged = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={MIB}-{MIB + 20}")
    assert ranged["Body"].read() == b"".join(parts_data)[MIB:MIB + 21]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_multipart_errors(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=1,
                           Body=b"small")["ETag"]
    last = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=2,
                          Body=b"last")["ETag"]
    def complete(parts):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
        return error_code(excinfo)
    assert complete([{"PartNumber": 1, "ETag": small},
                     {"PartNumber": 2, "ETag": last}]) == "EntityTooSmall"
    assert complete([{"PartNumber": 2, "ETag": last},
                     {"PartNumber": 1, "ETag": small}]) == "InvalidPartOrder"
    assert complete([{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]) \
        == "InvalidPart"
    assert complete([{"PartNumber": 7, "ETag": small}]) == "InvalidPart"
    # A single small part is fine: it is the last.
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": last}]})
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"last"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.upload_part(Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert error_code(excinfo) == "NoSuchUpload"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.list_parts(Bucket=bucket, Key="m", UploadId="no-such-upload")
    assert error_code(excinfo) == "NoSuchUpload"
    aborted = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="gone", UploadId=aborted, PartNumber=1, Body=b"x" * 100)
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=aborted)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=aborted)
    assert error_code(excinfo) == "NoSuchUpload"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.upload_part(Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=10001, Body=b"x")
    assert error_code(excinfo) in ("InvalidArgument", "NoSuchUpload")


def test_upload_part_copy(s3, bucket):
    data = os.urandom(3 * MIB)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    first = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "src"},
                                CopySourceRange=f"bytes={MIB}-{2 * MIB - 1}")
    assert first["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(data[MIB:2 * MIB]).hexdigest()
    # The whole object, no range: its ETag is the part's, nothing is read.
    whole = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=2,
                                CopySource={"Bucket": bucket, "Key": "src"})
    assert whole["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    third = s3.upload_part(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=3,
                           Body=b"tail")
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
                  {"PartNumber": 2, "ETag": whole["CopyPartResult"]["ETag"]},
                  {"PartNumber": 3, "ETag": third["ETag"]}]})
    got = s3.get_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    expected = data[MIB:2 * MIB] + data + b"tail"
    assert got["Body"].read() == expected
    # The CRC32C of the whole, combined from the parts' (one of them never read).
    assert got["ChecksumCRC32C"] == base64.b64encode(crc32c(expected).to_bytes(4, "big")).decode()


# ---- versioning ------------------------------------------------------------------------

def test_versioning(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="v", Body=b"before")  # the null version
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    one = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    two = s3.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]
    assert one != two and "null" not in (one, two)
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=one)["Body"].read() == b"one"
    assert s3.get_object(Bucket=bucket, Key="v", VersionId="null")["Body"].read() == b"before"
    deleted = s3.delete_object(Bucket=bucket, Key="v")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="v")
    assert error_code(excinfo) == "NoSuchKey"
    assert excinfo.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] \
        == "true"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    versions = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in versions["Versions"]] == [two, one, "null"]
    assert [(m["VersionId"], m["IsLatest"]) for m in versions["DeleteMarkers"]] == [(marker, True)]
    # Removing the marker brings the newest version back.
    s3.delete_object(Bucket=bucket, Key="v", VersionId=marker)
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    s3.delete_object(Bucket=bucket, Key="v", VersionId=two)
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"one"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="v", VersionId="0" * 32)
    assert error_code(excinfo) == "NoSuchVersion"
    # Suspended: writes replace the null version.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=bucket, Key="v", Body=b"null-1")
    s3.put_object(Bucket=bucket, Key="v", Body=b"null-2")
    ids = [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]]
    assert ids == ["null", one]
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"null-2"
    # Version paging.
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 1})
    assert [v["VersionId"] for p in pages for v in p.get("Versions", [])] == ["null", one]



def test_slow_download_outlives_overwrite_and_delete(s3, bucket, s3_server):
    """A writer of a new version never disturbs a reader of the old one: a GET of a
    3-part object read slowly through a raw socket returns the whole old object although
    the object is overwritten, then deleted, while it is under way; its blobs go when the
    GET is over. The parts are 5 MiB (well over --s3-min-part-size): what the server
    reads ahead (a few 1 MiB chunks) and the kernel's socket buffers (a few MiB) must not
    cover the last part, or its blob would be opened before the overwrite."""
    blobs = os.path.join(s3_server.directory, "data", "objects", "blobs")
    before = set(os.listdir(blobs))
    parts = [os.urandom(5 * MIB) for _ in range(3)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="slow")["UploadId"]
    refs = []
    for number, data in enumerate(parts, 1):
        part = s3.upload_part(Bucket=bucket, Key="slow", UploadId=upload_id, PartNumber=number,
                              Body=data)
        refs.append({"PartNumber": number, "ETag": part["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="slow", UploadId=upload_id,
                                 MultipartUpload={"Parts": refs})
    old = b"".join(parts)
    assert len(set(os.listdir(blobs)) - before) == 3
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "slow"},
                                    ExpiresIn=60)
    path = url.split(str(s3_server.http_port), 1)[1]
    connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    connection.settimeout(30)
    connection.connect(("127.0.0.1", s3_server.http_port))
    try:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{s3_server.http_port}\r\n"
                           f"Connection: close\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received) < 256 * 1024:
            piece = connection.recv(64 * 1024)
            assert piece, "the server closed the connection early"
            received += piece
        head, body = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200")
        assert f"content-length: {len(old)}".encode() in head.lower()
        time.sleep(0.3)  # the server fills what the window and the socket take
        # Overwritten, then deleted: the GET's version is gone from the index.
        s3.put_object(Bucket=bucket, Key="slow", Body=b"the new version")
        s3.delete_object(Bucket=bucket, Key="slow")
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            s3.get_object(Bucket=bucket, Key="slow")
        assert error_code(excinfo) == "NoSuchKey"
        # Its blobs stay while the GET lives (the new version's is gone already).
        assert len(set(os.listdir(blobs)) - before) == 3
        while len(body) < len(old):
            piece = connection.recv(256 * 1024)
            if not piece:
                break
            body += piece
    finally:
        connection.close()
    assert len(body) == len(old)
    assert sha256(body) == sha256(old)
    deadline = time.time() + 10
    while set(os.listdir(blobs)) != before and time.time() < deadline:
        time.sleep(0.05)
    assert set(os.listdir(blobs)) == before

# ---- signatures, presigned URLs, digests -----------------------------------------------

def test_presigned_urls(s3, bucket, s3_server):
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"},
                                    ExpiresIn=60)
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"presigned body"
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"},
                                        ExpiresIn=60)
    request = urllib.request.Request(put_url, data=b"uploaded", method="PUT")
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    assert s3.get_object(Bucket=bucket, Key="up")["Body"].read() == b"uploaded"
    tampered = url.replace("shared", "other")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(tampered)
    assert excinfo.value.code == 403
    assert b"SignatureDoesNotMatch" in excinfo.value.read()
    expiring = s3.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                               "Key": "shared"}, ExpiresIn=1)
    time.sleep(2.2)
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(expiring)
    assert excinfo.value.code == 403
    assert b"Request has expired" in excinfo.value.read()


def test_wrong_credentials(s3_server, bucket):
    wrong_secret = s3_client(s3_server, secret_key="not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        wrong_secret.list_objects_v2(Bucket=bucket)
    assert error_code(excinfo) == "SignatureDoesNotMatch"
    unknown = s3_client(s3_server, access_key="nobody")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        unknown.list_buckets()
    assert error_code(excinfo) == "InvalidAccessKeyId"
    status, _, body = s3_server.http(f"/{bucket}/anything")
    assert status == 403 and b"AccessDenied" in body


def test_clock_skew(s3_server, bucket):
    """A request signed 20 minutes ago is refused with RequestTimeTooSkewed."""
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    request = botocore.awsrequest.AWSRequest(
        method="GET", url=f"http://127.0.0.1:{s3_server.http_port}/{bucket}?list-type=2")
    late = datetime.datetime.utcnow() - datetime.timedelta(minutes=20)

    class Past(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return late

    with mock.patch.object(botocore.auth.datetime, "datetime", Past):
        botocore.auth.S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    status, _, body = s3_server.http(prepared.url.split(str(s3_server.http_port), 1)[1],
                                     headers=dict(prepared.headers))
    assert status == 403 and b"RequestTimeTooSkewed" in body


def test_signature_version_2(s3, s3_server):
    """Signature Version 2 (HMAC-SHA1) as boto3 signs it with signature_version="s3" (and
    s3fs falls back to): the Authorization header with an odd key, response overrides and
    a multipart upload, presigned GET URLs, a virtual-hosted request; tampering, a wrong
    secret and an unknown key are refused."""
    import http.client
    from urllib.parse import quote

    def v2_client(access_key=ACCESS_KEY, secret_key=SECRET_KEY):
        return boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{s3_server.http_port}",
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=botocore.config.Config(signature_version="s3",
                                          s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))

    v2 = v2_client()
    bucket, key = "sigv2-bucket", "dir/a b+c/\u00fc"
    v2.create_bucket(Bucket=bucket)
    try:
        v2.put_object(Bucket=bucket, Key=key, Body=b"version two", ContentType="text/x-v2",
                      Metadata={"note": "hmac sha1"})
        got = v2.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == b"version two"
        assert got["ContentType"] == "text/x-v2" and got["Metadata"] == {"note": "hmac sha1"}
        got = v2.get_object(Bucket=bucket, Key=key, ResponseContentType="application/x-override",
                            ResponseContentDisposition='attachment; filename="\u00fc.txt"')
        assert got["ContentType"] == "application/x-override"
        assert v2.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(b"version two")
        # ListObjects (v1): botocore puts the query of an operation's URI template in
        # what it signs for a path-style request, so it signs ListObjectsV2 with V2 as
        # "/bucket?list-type=2", which S3 refuses too (boto/boto3 issue 4433).
        listing = v2.list_objects(Bucket=bucket, Prefix="dir/")
        assert [entry["Key"] for entry in listing["Contents"]] == [key]
        assert bucket in [b["Name"] for b in v2.list_buckets()["Buckets"]]

        # The upload is created with V4: botocore signs a path-style CreateMultipartUpload
        # with V2 as ".../multi%20part?uploads?uploads" (the same bug). Its parts and its
        # completion carry the uploadId and partNumber sub-resources.
        upload = s3.create_multipart_upload(Bucket=bucket, Key="multi part")["UploadId"]
        part = v2.upload_part(Bucket=bucket, Key="multi part", UploadId=upload, PartNumber=1,
                              Body=b"one part")
        v2.complete_multipart_upload(Bucket=bucket, Key="multi part", UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                 "ETag": part["ETag"]}]})
        assert v2.get_object(Bucket=bucket, Key="multi part")["Body"].read() == b"one part"

        url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                        ExpiresIn=60)
        assert "AWSAccessKeyId=" in url and "Signature=" in url and "Expires=" in url
        assert "X-Amz-" not in url
        with urllib.request.urlopen(url) as response:
            assert response.read() == b"version two"
        # A later Expires, another key, another signature: refused.
        expires = url.split("Expires=")[1].split("&")[0]
        signature = url.split("Signature=")[1].split("&")[0]
        tampered_urls = [url.replace("Expires=" + expires, "Expires=%d" % (int(expires) + 60)),
                         url.replace("%C3%BC", "%C3%BD"),
                         url.replace("Signature=" + signature,
                                     "Signature=" + ("B" if signature[0] == "A" else "A")
                                     + signature[1:])]
        for tampered in tampered_urls:
            assert tampered != url
            with pytest.raises(urllib.error.HTTPError) as excinfo:
                urllib.request.urlopen(tampered)
            assert excinfo.value.code == 403
            assert b"SignatureDoesNotMatch" in excinfo.value.read()

        # Virtual-hosted style: the bucket comes from the Host and is signed.
        credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
        quoted = quote(key, safe="/~")
        request = botocore.awsrequest.AWSRequest(
            method="GET", url=f"http://{bucket}.localhost:{s3_server.http_port}/{quoted}",
            auth_path=f"/{bucket}/{quoted}")
        botocore.auth.HmacV1Auth(credentials).add_auth(request)
        headers = dict(request.prepare().headers)
        assert headers["Authorization"].startswith("AWS " + ACCESS_KEY + ":")
        for host, status in [(f"{bucket}.localhost:{s3_server.http_port}", 200),
                             (f"other-bucket.localhost:{s3_server.http_port}", 403)]:
            headers["Host"] = host
            connection = http.client.HTTPConnection("127.0.0.1", s3_server.http_port,
                                                    timeout=30)
            try:
                connection.request("GET", "/" + quoted, headers=headers)
                response = connection.getresponse()
                body = response.read()
                assert response.status == status
                assert body == b"version two" if status == 200 else b"SignatureDoesNotMatch" in body
            finally:
                connection.close()

        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            v2_client(secret_key="not-the-secret").list_objects(Bucket=bucket)
        assert error_code(excinfo) == "SignatureDoesNotMatch"
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            v2_client(access_key="nobody").list_buckets()
        assert error_code(excinfo) == "InvalidAccessKeyId"
    finally:
        for name in (key, "multi part"):
            v2.delete_object(Bucket=bucket, Key=name)
        v2.delete_bucket(Bucket=bucket)


def test_bad_digests_store_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="d", Body=b"original")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="d", Body=b"replacement",
                      ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")  # the MD5 of nothing
    assert error_code(excinfo) == "BadDigest"

    def wrong_crc(request, **kwargs):
        request.headers["x-amz-checksum-crc32c"] = "AAAAAA=="

    s3.meta.events.register("before-sign.s3.PutObject", wrong_crc)
    try:
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            s3.put_object(Bucket=bucket, Key="d", Body=b"replacement")
        assert error_code(excinfo) == "BadDigest"
    finally:
        s3.meta.events.unregister("before-sign.s3.PutObject", wrong_crc)
    assert s3.get_object(Bucket=bucket, Key="d")["Body"].read() == b"original"


def test_body_cut_off_stores_nothing(s3, bucket, s3_server):
    """A client that goes away in the middle of its body leaves no object and no file."""
    blobs = os.path.join(s3_server.directory, "data", "objects", "blobs")
    before = set(os.listdir(blobs))
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "cut"},
                                    ExpiresIn=60)
    path = url.split(str(s3_server.http_port), 1)[1]
    with socket.create_connection(("127.0.0.1", s3_server.http_port)) as connection:
        connection.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{s3_server.http_port}\r\n"
                           f"Content-Length: {4 * MIB}\r\n\r\n".encode() + b"x" * MIB)
        time.sleep(0.2)
    deadline = time.time() + 10
    while set(os.listdir(blobs)) != before and time.time() < deadline:
        time.sleep(0.05)
    assert set(os.listdir(blobs)) == before
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.head_object(Bucket=bucket, Key="cut")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_operator_paths_still_served(s3_server):
    status, headers, body = s3_server.http("/health")
    assert status == 200 and body.startswith(b"ok")
    status, headers, body = s3_server.http("/metrics")
    assert status == 200 and b"strata_" in body
    status, _, _ = s3_server.http("/keys/plain", method="PUT", body=b"v")
    assert status in (201, 204)
    assert s3_server.http("/keys/plain")[2] == b"v"


# ---- restarts --------------------------------------------------------------------------

def test_objects_survive_restart_and_kill(tmp_path):
    arguments = ("--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY,
                 "--s3-min-part-size", "1mb", "--fsync", "always")
    server = Server(tmp_path / "s", *arguments)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="durable")
        data = {f"o{i}": os.urandom(i * 100000 + 1) for i in range(5)}
        for key, value in data.items():
            s3.put_object(Bucket="durable", Key=key, Body=value)
        server.stop()
        server = Server(tmp_path / "s", *arguments)
        s3 = s3_client(server)
        for key, value in data.items():
            assert sha256(s3.get_object(Bucket="durable", Key=key)["Body"].read()) == sha256(value)
        # kill -9 in the middle of a multipart upload: the upload survives, listable and
        # abortable; a completed object is intact.
        upload_id = s3.create_multipart_upload(Bucket="durable", Key="mp")["UploadId"]
        s3.upload_part(Bucket="durable", Key="mp", UploadId=upload_id, PartNumber=1,
                       Body=os.urandom(MIB))
        server.kill()
        server = Server(tmp_path / "s", *arguments)
        s3 = s3_client(server)
        uploads = s3.list_multipart_uploads(Bucket="durable")["Uploads"]
        assert [u["UploadId"] for u in uploads] == [upload_id]
        assert len(s3.list_parts(Bucket="durable", Key="mp", UploadId=upload_id)["Parts"]) == 1
        s3.abort_multipart_upload(Bucket="durable", Key="mp", UploadId=upload_id)
        for key, value in data.items():
            assert sha256(s3.get_object(Bucket="durable", Key=key)["Body"].read()) == sha256(value)
        assert "mp" not in [o["Key"] for o in s3.list_objects_v2(Bucket="durable")["Contents"]]
    finally:
        server.stop()


def test_kill_during_put_leaves_nothing(tmp_path):
    arguments = ("--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY)
    server = Server(tmp_path / "s", *arguments)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="torn")
        s3.put_object(Bucket="torn", Key="keep", Body=b"kept")
        url = s3.generate_presigned_url("put_object", Params={"Bucket": "torn", "Key": "half"},
                                        ExpiresIn=60)
        path = url.split(str(server.http_port), 1)[1]
        connection = socket.create_connection(("127.0.0.1", server.http_port))
        connection.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.http_port}\r\nContent-Length: {8 * MIB}\r\n\r\n"
                           .encode() + b"y" * (3 * MIB))
        time.sleep(0.3)
        server.kill()
        connection.close()
        server = Server(tmp_path / "s", *arguments)
        s3 = s3_client(server)
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="torn")["Contents"]] == ["keep"]
        assert s3.get_object(Bucket="torn", Key="keep")["Body"].read() == b"kept"
        blobs = os.path.join(server.directory, "data", "objects", "blobs")
        assert len(os.listdir(blobs)) == 1  # the interrupted PUT's file was removed
    finally:
        server.stop()


def test_object_larger_than_memory(tmp_path):
    """A value several times the DRAM budget goes in and comes back (multipart, as
    aws-cli and boto3's transfer manager send it)."""
    size = (96 if SANITIZED else 768) * MIB
    server = Server(tmp_path / "s", "--memory", "64mb", "--s3-access-key", ACCESS_KEY,
                    "--s3-secret-key", SECRET_KEY)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="large")
        source = tmp_path / "source.bin"
        digest = hashlib.sha256()
        with open(source, "wb") as output:
            block = os.urandom(MIB)
            for i in range(size // MIB):
                piece = block[i % 97:] + block[:i % 97]
                output.write(piece)
                digest.update(piece)
        s3.upload_file(str(source), "large", "weights.bin")
        target = tmp_path / "target.bin"
        s3.download_file("large", "weights.bin", str(target))
        check = hashlib.sha256()
        with open(target, "rb") as received:
            for piece in iter(lambda: received.read(8 * MIB), b""):
                check.update(piece)
        assert check.hexdigest() == digest.hexdigest()
        info = server.info("memory")
        assert info["used_memory"] <= 64 * MIB
    finally:
        server.stop()


def test_full_disk_during_put(tmp_path):
    """A PUT that fills the disk is an error (507 InsufficientStorage), and the version it
    would have replaced is intact; once space is freed, PUTs succeed again."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount_point)],
                   check=True)
    server = None
    try:
        server = Server(tmp_path / "s", "--objects-dir", mount_point / "objects",
                        "--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY)
        s3 = s3_client(server)
        s3.create_bucket(Bucket="full")
        original = os.urandom(4 * MIB)
        s3.put_object(Bucket="full", Key="model", Body=original)
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            s3.put_object(Bucket="full", Key="model", Body=os.urandom(32 * MIB))
        assert error_code(excinfo) == "InsufficientStorage"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507
        assert s3.get_object(Bucket="full", Key="model")["Body"].read() == original
        assert len(os.listdir(mount_point / "objects" / "blobs")) == 1
        s3.put_object(Bucket="full", Key="small", Body=b"fits")
        assert s3.get_object(Bucket="full", Key="small")["Body"].read() == b"fits"
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


# ---- aws-chunked uploads, as newer AWS SDKs send them ------------------------------------

def _hmac(key, text):
    import hmac
    return hmac.new(key, text.encode() if isinstance(text, str) else text,
                    hashlib.sha256).digest()


def _signing_key(day):
    key = _hmac(("AWS4" + SECRET_KEY).encode(), day)
    for part in ("us-east-1", "s3", "aws4_request"):
        key = _hmac(key, part)
    return key


def chunked_put(server, bucket, key, data, kind, chunk=65536, tamper=None, trailer_crc=None):
    """Sends a PUT with Content-Encoding: aws-chunked, signed by hand as the SigV4 streaming
    documentation says. KIND is the x-amz-content-sha256 value. Returns (status, body)."""
    import http.client

    now = datetime.datetime.utcnow()
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    scope = f"{day}/us-east-1/s3/aws4_request"
    host = f"127.0.0.1:{server.http_port}"
    trailing = kind.endswith("TRAILER")
    headers = {"host": host, "x-amz-content-sha256": kind, "x-amz-date": amz_date,
               "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data))}
    if trailing:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32c"
    signed = sorted(headers)
    canonical = "\n".join(["PUT", f"/{bucket}/{key}", "",
                           "".join(f"{name}:{headers[name]}\n" for name in signed),
                           ";".join(signed), kind])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = _signing_key(day)
    seed = _hmac(signing_key, to_sign).hex()
    body = b""
    previous = seed
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for number, piece in enumerate(pieces):
        if kind.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
            text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous,
                              hashlib.sha256(b"").hexdigest(),
                              hashlib.sha256(piece).hexdigest()])
            signature = _hmac(signing_key, text).hex()
            if tamper == number:
                signature = ("0" if signature[0] != "0" else "1") + signature[1:]
            previous = signature
            body += f"{len(piece):x};chunk-signature={signature}\r\n".encode()
        else:
            body += f"{len(piece):x}\r\n".encode()
        body += piece
        if piece:
            body += b"\r\n"
    if trailing:
        crc = trailer_crc if trailer_crc is not None else crc32c(data)
        value = base64.b64encode(crc.to_bytes(4, "big")).decode()
        body += f"x-amz-checksum-crc32c:{value}\r\n".encode()
        if kind == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER":
            text = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous,
                              hashlib.sha256(f"x-amz-checksum-crc32c:{value}\n".encode())
                              .hexdigest()])
            body += f"x-amz-trailer-signature:{_hmac(signing_key, text).hex()}\r\n".encode()
        body += b"\r\n"
    else:
        body += b"\r\n"
    credential = f"{ACCESS_KEY}/{scope}"
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={credential}, "
                                f"SignedHeaders={';'.join(signed)}, Signature={seed}")
    headers["content-length"] = str(len(body))
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        connection.request("PUT", f"/{bucket}/{key}", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def crc32c(data):
    crc = 0xFFFFFFFF
    table = crc32c.table
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c.table = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    crc32c.table.append(_c)


@pytest.mark.parametrize("kind", ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                                  "STREAMING-UNSIGNED-PAYLOAD-TRAILER"])
def test_aws_chunked_uploads(s3, bucket, s3_server, kind):
    data = os.urandom(200000)
    status, body = chunked_put(s3_server, bucket, "chunked", data, kind)
    assert status == 200, body
    got = s3.get_object(Bucket=bucket, Key="chunked")
    assert got["Body"].read() == data
    assert got.get("ContentEncoding") in (None, "")  # aws-chunked is not stored
    if kind.startswith("STREAMING-AWS4"):
        status, body = chunked_put(s3_server, bucket, "chunked", b"other" * 30000, kind,
                                   tamper=1)
        assert status == 403 and b"SignatureDoesNotMatch" in body
    if kind.endswith("TRAILER"):
        status, body = chunked_put(s3_server, bucket, "chunked", b"other" * 30000, kind,
                                   trailer_crc=12345)
        assert status == 400 and b"BadDigest" in body
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == data


def signed_request(server, method, path, body=b"", headers=None):
    """One request signed with SigV4 by botocore: (status, body)."""
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    request = botocore.awsrequest.AWSRequest(
        method=method, url=f"http://127.0.0.1:{server.http_port}{path}", data=body,
        headers=headers or {})
    botocore.auth.S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    status, _, answer = server.http(path, method=method, body=body or None,
                                    headers=dict(prepared.headers))
    return status, answer


def test_bucket_quota(s3, bucket, s3_server):
    status, _ = signed_request(s3_server, "PUT", f"/{bucket}?quota", b"1mb")
    assert status == 200
    s3.put_object(Bucket=bucket, Key="first", Body=os.urandom(600 * 1024))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="second", Body=os.urandom(600 * 1024))
    assert error_code(excinfo) == "QuotaExceeded"
    # Replacing an object with a smaller one, and deleting, still work over the quota.
    s3.put_object(Bucket=bucket, Key="first", Body=b"small")
    s3.put_object(Bucket=bucket, Key="second", Body=os.urandom(600 * 1024))
    status, answer = signed_request(s3_server, "GET", f"/{bucket}?quota")
    assert status == 200 and b"<Bytes>1048576</Bytes>" in answer
    assert f"<UsedBytes>{600 * 1024 + 5}</UsedBytes>".encode() in answer
    status, answer = signed_request(s3_server, "PUT", f"/{bucket}?quota", b"lots")
    assert status == 400 and b"InvalidArgument" in answer
    status, _ = signed_request(s3_server, "PUT", f"/{bucket}?quota", b"0")
    assert status == 200
    s3.put_object(Bucket=bucket, Key="third", Body=os.urandom(600 * 1024))


# ---- what a review found: each a regression test -----------------------------------------

def test_long_content_type_cannot_split_the_response(s3, bucket, s3_server):
    content_type = "text/plain; x=" + "a" * 1200
    body = b"Injected: yes\r\nSet-Cookie: session=attacker\r\n\r\n<script>"
    s3.put_object(Bucket=bucket, Key="split", Body=body, ContentType=content_type)
    got = s3.get_object(Bucket=bucket, Key="split")
    assert got["ContentType"] == content_type
    assert got["Body"].read() == body
    assert "set-cookie" not in got["ResponseMetadata"]["HTTPHeaders"]


def test_unsigned_amz_headers_are_refused(s3, bucket, s3_server):
    """A presigned PUT with an added x-amz-copy-source must not become a copy."""
    s3.put_object(Bucket=bucket, Key="secret", Body=b"TOP SECRET")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "upload"},
                                    ExpiresIn=60)
    request = urllib.request.Request(url, data=b"", method="PUT",
                                     headers={"x-amz-copy-source": f"/{bucket}/secret"})
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request)
    assert excinfo.value.code == 403
    assert b"not signed" in excinfo.value.read()
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="upload")


def test_conditional_writes(s3, bucket, s3_server):
    """If-None-Match: * creates only when absent, If-Match replaces only that version;
    a condition strata cannot evaluate is refused (501), never ignored."""
    def with_headers(headers):
        def add(request, **kwargs):
            for name, value in headers.items():
                request.headers[name] = value
        return add

    def put(key, body, headers):
        handler = with_headers(headers)
        s3.meta.events.register("before-sign.s3.PutObject", handler)
        try:
            return s3.put_object(Bucket=bucket, Key=key, Body=body)
        finally:
            s3.meta.events.unregister("before-sign.s3.PutObject", handler)

    first = put("lock", b"first", {"If-None-Match": "*"})
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        put("lock", b"second", {"If-None-Match": "*"})
    assert error_code(excinfo) == "PreconditionFailed"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        put("lock", b"third", {"If-Match": '"0123456789abcdef0123456789abcdef"'})
    assert error_code(excinfo) == "PreconditionFailed"
    put("lock", b"fourth", {"If-Match": first["ETag"]})
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"fourth"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        put("absent", b"x", {"If-Match": first["ETag"]})
    assert error_code(excinfo) == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        put("lock", b"fifth", {"If-None-Match": '"abc"'})
    assert error_code(excinfo) == "NotImplemented"
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"fourth"
    # Once deleted, it can be created again.
    s3.delete_object(Bucket=bucket, Key="lock")
    put("lock", b"again", {"If-None-Match": "*"})
    # CompleteMultipartUpload takes the condition too.
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="lock")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="lock", UploadId=upload_id, PartNumber=1,
                          Body=b"part")["ETag"]
    status, answer = signed_request(
        s3_server, "POST", f"/{bucket}/lock?uploadId={upload_id}",
        f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{part}</ETag></Part>"
        "</CompleteMultipartUpload>".encode(), headers={"If-None-Match": "*"})
    assert status == 412, answer
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"again"
    assert len(s3.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 1


def test_keys_must_be_utf8_and_overrides_clean(s3, bucket, s3_server):
    status, answer = signed_request(s3_server, "PUT", f"/{bucket}/bad%FFkey", b"x")
    assert status == 400 and b"UTF-8" in answer
    s3.put_object(Bucket=bucket, Key="ok", Body=b"x")
    status, answer = signed_request(s3_server, "GET",
                                    f"/{bucket}/ok?response-content-type=text%2Fhtml%0Bx")
    assert status == 400 and b"InvalidArgument" in answer
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_delete_objects_needs_a_digest(s3, bucket, s3_server):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    body = b"<Delete><Object><Key>keep</Key></Object></Delete>"
    status, answer = signed_request(s3_server, "POST", f"/{bucket}?delete", body)
    assert status == 400 and b"Content-Md5" in answer
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"


def test_null_version_named_in_versioned_buckets(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    put = s3.put_object(Bucket=bucket, Key="n", Body=b"x")
    assert put["VersionId"] == "null"
    assert s3.get_object(Bucket=bucket, Key="n")["VersionId"] == "null"


def test_part_number_reads(s3, bucket, s3_server):
    s3.put_object(Bucket=bucket, Key="single", Body=b"whole")
    assert s3.get_object(Bucket=bucket, Key="single", PartNumber=1)["Body"].read() == b"whole"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert error_code(excinfo) == "NotImplemented"


def test_operator_paths_with_other_authorization(s3_server):
    status, _, body = s3_server.http("/metrics", headers={"Authorization": "Bearer token"})
    assert status == 200 and b"strata_" in body
    status, _, body = s3_server.http("/health", headers={"Authorization": "Basic dXNlcjpw"})
    assert status == 200 and body.startswith(b"ok")


def test_without_credentials_web_pages_and_rebinding_are_refused(start_server):
    server = start_server()
    status, _, _ = server.http("/open-bucket", method="PUT")
    assert status == 200
    status, _, body = server.http("/open-bucket/k", method="PUT", body=b"v",
                                  headers={"Origin": "http://evil.example"})
    assert status == 403 and b"AccessDenied" in body
    status, _, body = server.http("/open-bucket/k", method="PUT", body=b"v",
                                  headers={"Host": f"rebind.attacker.example:{server.http_port}"})
    assert status == 403
    status, _, _ = server.http("/open-bucket/k", method="PUT", body=b"v",
                               headers={"Host": f"localhost:{server.http_port}"})
    assert status == 200
    assert server.http("/open-bucket/k")[2] == b"v"


def _mapped_bytes(pid):
    """The process's virtual size: what it has allocated, touched or not."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(THREAD_SANITIZED, reason="ThreadSanitizer maps memory of its own as it goes")
def test_pipelined_small_gets_hold_little_memory(s3, bucket, s3_server):
    """A client that pipelines GETs of small objects without reading the answers makes the
    server hold a small buffer per GET, not a chunk (1 MiB) each: 400 GETs grew it by
    448 MiB before, by one malloc arena (64 MiB of address space) after."""
    s3.put_object(Bucket=bucket, Key="tiny", Body=b"0123456789")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "tiny"},
                                    ExpiresIn=60)
    path = url.split(str(s3_server.http_port), 1)[1]
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{s3_server.http_port}\r\n\r\n").encode()
    before = _mapped_bytes(s3_server.process.pid)
    with socket.create_connection(("127.0.0.1", s3_server.http_port)) as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.sendall(request * 400)
        time.sleep(1.0)
        grown = _mapped_bytes(s3_server.process.pid) - before
        assert grown < 160 * MIB, f"the server's memory grew by {grown} bytes"
        received = b""
        connection.settimeout(30)
        while received.count(b"0123456789") < 400:
            piece = connection.recv(1 << 20)
            assert piece, "connection closed early"
            received += piece
    assert received.count(b"HTTP/1.1 200") == 400
