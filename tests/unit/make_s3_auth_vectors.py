#!/usr/bin/python3
"""Writes tests/unit/s3_auth_botocore_vectors.h: requests signed by botocore (Debian's
python3-botocore), the signer the AWS CLI and boto3 use, for test_s3_auth.c to verify.
They cover what the documentation's examples do not: object keys with spaces, '+', '=',
'&', parentheses and UTF-8; query strings with encoded values and empty parameters;
header values with runs of spaces; another region; UNSIGNED-PAYLOAD; and a presigned
PUT of a multipart part. Keys go in the URL percent-encoded, as botocore's request
serializer puts them (its S3 signer takes the path as it is). botocore reads the clock with datetime.utcnow(), which is
fixed here, so the output is the same on every run.

BOTOCORE_V2_VECTORS are Signature Version 2 requests signed by botocore's HmacV1Auth
(header) and HmacV1QueryAuth (presigned URL), what boto3 uses with
signature_version="s3": a key with spaces, '+' and UTF-8 with Content-MD5, Content-Type
and x-amz-* headers; a virtual-hosted request with sub-resources (versionId) and
response-* overrides whose values need decoding, besides parameters V2 does not sign;
the multipart sub-resources; a bucket's path signed with a trailing '/'; and presigned
GETs. HmacV1Auth's Date comes from email.utils.formatdate() and HmacV1QueryAuth's
Expires from time.time(), both fixed here:

    /usr/bin/python3 tests/unit/make_s3_auth_vectors.py && clang-format -i tests/unit/s3_auth_botocore_vectors.h
"""
import datetime
import email.utils
import os
from unittest import mock
from urllib.parse import quote, urlsplit

from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = os.path.dirname(os.path.abspath(__file__))
CREDENTIALS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
WHEN = datetime.datetime(2026, 11, 30, 3, 7, 1)
WHEN_MS = int(WHEN.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
PAYLOADS = {"UNSIGNED-PAYLOAD": 0, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": 2}


def c_string(text):
    """A C string literal; octal escapes cannot run into the next character."""
    out = '"'
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out += "\\" + ch
        elif 32 <= byte < 127:
            out += ch
        else:
            out += "\\%03o" % byte
    return out + '"'


def sign(name, method, url, headers=None, body=b"", region="us-east-1", presign_seconds=0):
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    with mock.patch("botocore.auth.datetime") as clock:
        clock.datetime.utcnow.return_value = WHEN
        clock.datetime.strptime = datetime.datetime.strptime
        if presign_seconds:
            S3SigV4QueryAuth(CREDENTIALS, "s3", region, expires=presign_seconds).add_auth(request)
        else:
            S3SigV4Auth(CREDENTIALS, "s3", region).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    lines = ["Host: " + parts.netloc]
    for key, value in prepared.headers.items():
        value = value.decode() if isinstance(value, bytes) else value
        lines.append("%s: %s" % (key, value))
    content = prepared.headers.get("X-Amz-Content-SHA256", "")
    content = content.decode() if isinstance(content, bytes) else content
    payload = 0 if presign_seconds else PAYLOADS.get(content, 1)
    return (name, method, parts.path, parts.query, lines, payload)


VECTORS = [
    sign("put-odd-key", "PUT",
         "http://bucket.s3.amazonaws.com/" + quote("photos/2026/a b+c=d&\u00e9(1).jpg", safe="/~"),
         {"Content-Type": "image/jpeg", "x-amz-meta-note": "two   spaces  here"}, b"hello"),
    sign("list-v2-encoded-query", "GET",
         "http://s3.amazonaws.com/bucket?list-type=2&prefix=a%2Fb%20c&delimiter=%2F"
         "&encoding-type=url&fetch-owner"),
    sign("delete-https-unsigned", "POST", "https://s3.eu-central-1.amazonaws.com/bucket?delete",
         {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, b"<Delete></Delete>",
         region="eu-central-1"),
    sign("presigned-upload-part", "PUT",
         "https://bucket.s3.amazonaws.com/big%20file.bin?partNumber=3&uploadId=VXBsb2FkIElE+x",
         region="us-west-2", presign_seconds=3600),
]


def sign_v2(name, method, url, headers=None, auth_path=None, virtual_bucket="",
            presign_seconds=0):
    request = AWSRequest(method=method, url=url, headers=headers or {}, auth_path=auth_path)
    seconds = WHEN_MS // 1000
    with mock.patch("botocore.auth.formatdate",
                    lambda usegmt: email.utils.formatdate(seconds, usegmt=usegmt)), \
            mock.patch("botocore.auth.time.time", lambda: seconds):
        if presign_seconds:
            HmacV1QueryAuth(CREDENTIALS, expires=presign_seconds).add_auth(request)
        else:
            HmacV1Auth(CREDENTIALS).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    lines = ["Host: " + parts.netloc]
    for key, value in prepared.headers.items():
        value = value.decode() if isinstance(value, bytes) else value
        if presign_seconds and key == "Date":
            continue  # the signer's Expires, in the URL: whoever fetches it sends no Date
        lines.append("%s: %s" % (key, value))
    return (name, method, parts.path, parts.query, virtual_bucket, lines)


ODD_KEY = quote("dir/a b+c/\u00fc \u20ac.bin", safe="/~")
V2_VECTORS = [
    sign_v2("v2-put-odd-key", "PUT", "http://127.0.0.1:9000/bucket/" + ODD_KEY,
            {"Content-Type": "application/octet-stream", "Content-MD5": "XUFAKrxLKna5cZ2REBfFkg==",
             "x-amz-meta-note": "  two   spaces  here ", "X-Amz-Meta-Owner": "\u00e9l\u00e8ve",
             "x-amz-acl": "private"}),
    sign_v2("v2-virtual-subresources", "GET",
            "http://bucket.s3.amazonaws.com/" + ODD_KEY + "?versionId=3%2B4%2F5"
            "&response-content-type=text%2Fplain%3B%20charset%3Dutf-8"
            "&response-content-disposition=attachment%3B%20filename%3D%22%C3%BC.txt%22"
            "&response-cache-control=no-cache&x-id=GetObject&encoding-type=url",
            auth_path="/bucket/" + ODD_KEY, virtual_bucket="bucket"),
    sign_v2("v2-create-multipart", "POST", "http://127.0.0.1:9000/bucket/big%20file.bin?uploads"),
    sign_v2("v2-upload-part", "PUT",
            "http://127.0.0.1:9000/bucket/big%20file.bin?partNumber=3&uploadId=VXBsb2FkIElE%2Bx"),
    sign_v2("v2-list-buckets", "GET", "http://127.0.0.1:9000/"),
    # botocore signs a path-style request for a bucket as "/bucket/" (its auth_path).
    sign_v2("v2-create-bucket", "PUT", "http://127.0.0.1:9000/bucket", auth_path="/bucket/"),
    sign_v2("v2-presigned-get", "GET", "http://127.0.0.1:9000/bucket/" + ODD_KEY,
            presign_seconds=3600),
    sign_v2("v2-presigned-get-override", "GET",
            "http://127.0.0.1:9000/bucket/" + ODD_KEY + "?response-content-type=text%2Fplain",
            presign_seconds=60),
]

with open(os.path.join(HERE, "s3_auth_botocore_vectors.h"), "w") as out:
    out.write("/* Generated by tests/unit/make_s3_auth_vectors.py with botocore: requests as\n"
              " * botocore signs them, for test_s3_auth.c. Do not edit. */\n")
    out.write("#ifndef STRATA_TESTS_UNIT_S3_AUTH_BOTOCORE_VECTORS_H\n")
    out.write("#define STRATA_TESTS_UNIT_S3_AUTH_BOTOCORE_VECTORS_H\n\n")
    out.write("#include <stdint.h>\n\n")
    out.write("struct botocore_vector {\n    const char *name;\n    const char *method;\n"
              "    const char *path;\n    const char *query;\n    const char *headers[12];\n"
              "    int64_t now_ms;\n    int payload; /* enum s3_payload */\n};\n\n")
    out.write("static const struct botocore_vector BOTOCORE_VECTORS[] = {\n")
    for name, method, path, query, lines, payload in VECTORS:
        out.write("    {\n        .name = %s,\n        .method = %s,\n        .path = %s,\n"
                  "        .query = %s,\n        .headers = {\n" %
                  (c_string(name), c_string(method), c_string(path), c_string(query)))
        for line in lines:
            out.write("            %s,\n" % c_string(line))
        out.write("        },\n        .now_ms = %dLL,\n        .payload = %d,\n    },\n" %
                  (WHEN_MS, payload))
    out.write("};\n\n")
    out.write("struct botocore_v2_vector {\n    const char *name;\n    const char *method;\n"
              "    const char *path;\n    const char *query;\n"
              "    const char *virtual_bucket;\n    const char *headers[12];\n"
              "    int64_t now_ms;\n};\n\n")
    out.write("static const struct botocore_v2_vector BOTOCORE_V2_VECTORS[] = {\n")
    for name, method, path, query, bucket, lines in V2_VECTORS:
        out.write("    {\n        .name = %s,\n        .method = %s,\n        .path = %s,\n"
                  "        .query = %s,\n        .virtual_bucket = %s,\n"
                  "        .headers = {\n" %
                  (c_string(name), c_string(method), c_string(path), c_string(query),
                   c_string(bucket)))
        for line in lines:
            out.write("            %s,\n" % c_string(line))
        out.write("        },\n        .now_ms = %dLL,\n    },\n" % WHEN_MS)
    out.write("};\n\n#endif\n")
