"""The S3 API driven by the command-line tools and mounts users run against it: aws-cli
(its s3 commands and multipart path, a file larger than the server's memory), s3cmd,
rclone, a read-only s3fs-fuse mount, and a Python loader that reads a safetensors file
the way Run:ai Model Streamer does. Every object is compared by SHA-256."""
import concurrent.futures
import hashlib
import json
import os
import struct
import subprocess
import time

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import pytest
import torch

from conftest import SANITIZED, THREAD_SANITIZED, Server

# The command-line clients drive the same server paths as test_s3.py's boto3 tests, which
# run under every build; here they run against the release and ASan servers, and are left
# out of the ThreadSanitizer run to keep `make test` within its time (README).
pytestmark = pytest.mark.skipif(THREAD_SANITIZED, reason="run against the release and ASan "
                                "servers; test_s3.py covers these paths under TSan")

ACCESS_KEY = "clients-key"
SECRET_KEY = "clients-secret-0123456789"
MIB = 1024 * 1024
AWS = "/usr/bin/aws"  # Debian's aws-cli, whatever else is first on PATH


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    instance = Server(tmp_path_factory.mktemp("s3clients"), "--memory", "256mb",
                      "--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY)
    yield instance
    instance.stop()


def endpoint(server):
    return f"http://127.0.0.1:{server.http_port}"


def boto(server):
    return boto3.client("s3", endpoint_url=endpoint(server), aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                        config=botocore.config.Config(s3={"addressing_style": "path"}))


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for piece in iter(lambda: source.read(8 * MIB), b""):
            digest.update(piece)
    return digest.hexdigest()


def write_file(path, size, seed):
    """SIZE bytes of cheap pseudo-random data (a random MiB rotated per MiB)."""
    block = os.urandom(MIB) if seed is None else hashlib.sha512(str(seed).encode()).digest() * (
        MIB // 64)
    with open(path, "wb") as output:
        written = 0
        index = 0
        while written < size:
            piece = block[index % 89:] + block[:index % 89]
            piece = piece[:size - written]
            output.write(piece)
            written += len(piece)
            index += 1


def aws(server, tmp_path, *arguments):
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                   "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
                   "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
                   "AWS_PAGER": ""}
    result = subprocess.run([AWS, "--endpoint-url", endpoint(server), *arguments],
                            env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_aws_cli(s3_server, tmp_path):
    aws(s3_server, tmp_path, "s3", "mb", "s3://cli-bucket")
    assert "cli-bucket" in aws(s3_server, tmp_path, "s3", "ls")
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello from aws-cli\n")
    aws(s3_server, tmp_path, "s3", "cp", str(small), "s3://cli-bucket/docs/small.txt")
    # Larger than aws-cli's 8 MiB multipart threshold: its multipart path.
    medium = tmp_path / "medium.bin"
    write_file(medium, 40 * MIB + 123, seed=None)
    aws(s3_server, tmp_path, "s3", "cp", str(medium), "s3://cli-bucket/medium.bin")
    listing = aws(s3_server, tmp_path, "s3", "ls", "--recursive", "s3://cli-bucket")
    assert "docs/small.txt" in listing and "medium.bin" in listing
    back = tmp_path / "back.bin"
    aws(s3_server, tmp_path, "s3", "cp", "s3://cli-bucket/medium.bin", str(back))
    assert file_sha256(back) == file_sha256(medium)
    head = json.loads(aws(s3_server, tmp_path, "s3api", "head-object", "--bucket", "cli-bucket",
                          "--key", "medium.bin"))
    assert head["ContentLength"] == 40 * MIB + 123 and head["ETag"].endswith('-6"')
    # sync up, change one file, sync again, sync down.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(6):
        (tree / "sub" / f"f{i}").write_bytes(os.urandom(1000 * i + 1))
    aws(s3_server, tmp_path, "s3", "sync", str(tree), "s3://cli-bucket/tree")
    (tree / "sub" / "f2").write_bytes(b"changed")
    aws(s3_server, tmp_path, "s3", "sync", str(tree), "s3://cli-bucket/tree")
    down = tmp_path / "down"
    aws(s3_server, tmp_path, "s3", "sync", "s3://cli-bucket/tree", str(down))
    for i in range(6):
        assert (down / "sub" / f"f{i}").read_bytes() == (tree / "sub" / f"f{i}").read_bytes()
    aws(s3_server, tmp_path, "s3", "rm", "--recursive", "s3://cli-bucket")
    assert aws(s3_server, tmp_path, "s3", "ls", "s3://cli-bucket") == ""
    aws(s3_server, tmp_path, "s3", "rb", "s3://cli-bucket")


def test_aws_cli_file_larger_than_memory(tmp_path):
    """A file far larger than the DRAM budget (--memory 256mb): 3 GiB in the release build
    (a smaller one under the sanitizers, which are several times slower)."""
    size = (192 * MIB) if SANITIZED else 3 * 1024 * MIB
    server = Server(tmp_path / "server", "--memory", "256mb", "--s3-access-key", ACCESS_KEY,
                    "--s3-secret-key", SECRET_KEY)
    try:
        source = tmp_path / "large.bin"
        write_file(source, size, seed=7)
        expected = file_sha256(source)
        aws(server, tmp_path, "s3", "mb", "s3://large")
        aws(server, tmp_path, "s3", "cp", str(source), "s3://large/model.bin")
        source.unlink()
        assert server.info("memory")["used_memory"] <= 256 * MIB
        target = tmp_path / "back.bin"
        aws(server, tmp_path, "s3", "cp", "s3://large/model.bin", str(target))
        assert file_sha256(target) == expected
    finally:
        server.stop()


def test_s3cmd(s3_server, tmp_path):
    config = tmp_path / "s3cfg"
    config.write_text(f"""[default]
access_key = {ACCESS_KEY}
secret_key = {SECRET_KEY}
host_base = 127.0.0.1:{s3_server.http_port}
host_bucket = 127.0.0.1:{s3_server.http_port}
use_https = False
signature_v2 = False
bucket_location = us-east-1
""")

    def s3cmd(*arguments):
        result = subprocess.run(["s3cmd", "-c", str(config), *arguments], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    s3cmd("mb", "s3://s3cmd-bucket")
    payload = tmp_path / "payload.bin"
    write_file(payload, 20 * MIB + 5, seed=None)  # above s3cmd's 15 MiB multipart chunk
    s3cmd("put", str(payload), "s3://s3cmd-bucket/dir/payload.bin")
    assert "dir/payload.bin" in s3cmd("ls", "--recursive", "s3://s3cmd-bucket")
    back = tmp_path / "back.bin"
    s3cmd("get", "s3://s3cmd-bucket/dir/payload.bin", str(back))
    assert file_sha256(back) == file_sha256(payload)
    s3cmd("del", "s3://s3cmd-bucket/dir/payload.bin")
    s3cmd("rb", "s3://s3cmd-bucket")


def test_rclone(s3_server, tmp_path):
    # A CA bundle named in the environment is for HTTPS; rclone refuses it on plain HTTP.
    environment = {**{name: value for name, value in os.environ.items()
                      if name not in ("AWS_CA_BUNDLE", "SSL_CERT_FILE")},
                   "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
                   "RCLONE_CONFIG_STRATA_TYPE": "s3",
                   "RCLONE_CONFIG_STRATA_PROVIDER": "Other",
                   "RCLONE_CONFIG_STRATA_ENDPOINT": endpoint(s3_server),
                   "RCLONE_CONFIG_STRATA_ACCESS_KEY_ID": ACCESS_KEY,
                   "RCLONE_CONFIG_STRATA_SECRET_ACCESS_KEY": SECRET_KEY,
                   "RCLONE_CONFIG_STRATA_FORCE_PATH_STYLE": "true",
                   "RCLONE_CONFIG_STRATA_UPLOAD_CUTOFF": "5M",
                   "RCLONE_CONFIG_STRATA_CHUNK_SIZE": "5M"}

    def rclone(*arguments):
        result = subprocess.run(["rclone", *arguments], env=environment, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    tree = tmp_path / "dataset"
    (tree / "shard").mkdir(parents=True)
    for i in range(8):
        (tree / "shard" / f"part-{i}").write_bytes(os.urandom(30000 * i + 7))
    write_file(tree / "big.bin", 12 * MIB, seed=None)  # past the 5 MiB cutoff: multipart
    rclone("mkdir", "strata:rclone-bucket")
    rclone("copy", str(tree), "strata:rclone-bucket/dataset")
    rclone("check", str(tree), "strata:rclone-bucket/dataset")
    listed = rclone("lsf", "-R", "strata:rclone-bucket/dataset")
    assert "shard/part-7" in listed and "big.bin" in listed
    down = tmp_path / "down"
    rclone("copy", "strata:rclone-bucket/dataset", str(down))
    for path in tree.rglob("*"):
        if path.is_file():
            assert file_sha256(path) == file_sha256(down / path.relative_to(tree))
    rclone("purge", "strata:rclone-bucket")


def test_s3fs_read_only_mount(s3_server, tmp_path):
    s3 = boto(s3_server)
    s3.create_bucket(Bucket="mounted")
    files = {"a.txt": b"alpha\n", "dir/b.bin": os.urandom(3 * MIB + 11),
             "dir/deeper/c.bin": os.urandom(70000)}
    for key, value in files.items():
        s3.put_object(Bucket="mounted", Key=key, Body=value)
    password = tmp_path / "passwd"
    password.write_text(f"{ACCESS_KEY}:{SECRET_KEY}\n")
    password.chmod(0o600)
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    process = subprocess.Popen(
        ["s3fs", "mounted", str(mount_point), "-f", "-o", f"url={endpoint(s3_server)}",
         "-o", "use_path_request_style", "-o", f"passwd_file={password}", "-o", "ro",
         "-o", "sigv4", "-o", "endpoint=us-east-1", "-o", "nonempty"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while not os.path.ismount(mount_point):
            assert process.poll() is None, process.stdout.read().decode()
            assert time.time() < deadline, "s3fs did not mount"
            time.sleep(0.1)
        for key, value in files.items():
            with open(mount_point / key, "rb") as mounted:
                assert hashlib.sha256(mounted.read()).hexdigest() == \
                    hashlib.sha256(value).hexdigest()
        assert sorted(os.listdir(mount_point / "dir")) == ["b.bin", "deeper"]
    finally:
        subprocess.run(["fusermount", "-u", str(mount_point)], capture_output=True)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_safetensors(path, tensors):
    """A safetensors file: u64 header length, JSON header, then the tensors' bytes."""
    header = {}
    offset = 0
    blobs = []
    for name, tensor in tensors.items():
        data = tensor.contiguous().numpy().tobytes()
        header[name] = {"dtype": {torch.float32: "F32", torch.float16: "F16",
                                  torch.int64: "I64"}[tensor.dtype],
                        "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as output:
        output.write(struct.pack("<Q", len(text)))
        output.write(text)
        for data in blobs:
            output.write(data)


def test_model_streamer_loader(s3_server, tmp_path):
    """What Run:ai Model Streamer does: list, read 8 bytes, read the header, then fetch the
    tensor region in concurrent 8 MiB ranged GETs into one buffer."""
    torch.manual_seed(3)
    tensors = {f"layer.{i}.weight": torch.randn(512, 1024 + i) for i in range(12)}
    tensors["embed"] = torch.randn(3000, 256).to(torch.float16)
    tensors["positions"] = torch.arange(100000)
    path = tmp_path / "model-00001-of-00001.safetensors"
    write_safetensors(path, tensors)
    s3 = boto(s3_server)
    s3.create_bucket(Bucket="models")
    s3.upload_file(str(path), "models", "llama/model-00001-of-00001.safetensors")
    s3.put_object(Bucket="models", Key="llama/config.json", Body=b"{}")

    listing = s3.list_objects_v2(Bucket="models", Prefix="llama/")
    keys = [o["Key"] for o in listing["Contents"] if o["Key"].endswith(".safetensors")]
    assert keys == ["llama/model-00001-of-00001.safetensors"]
    key = keys[0]
    size = [o["Size"] for o in listing["Contents"] if o["Key"] == key][0]
    first = s3.get_object(Bucket="models", Key=key, Range="bytes=0-7")["Body"].read()
    (header_length,) = struct.unpack("<Q", first)
    header = json.loads(s3.get_object(Bucket="models", Key=key,
                                      Range=f"bytes=8-{8 + header_length - 1}")["Body"].read())
    start = 8 + header_length
    buffer = bytearray(size - start)
    chunk = 8 * MIB

    def fetch(offset):
        last = min(offset + chunk, len(buffer)) - 1
        body = s3.get_object(Bucket="models", Key=key,
                             Range=f"bytes={start + offset}-{start + last}")["Body"].read()
        buffer[offset:last + 1] = body
        return len(body)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(fetch, range(0, len(buffer), chunk))) == len(buffer)
    dtypes = {"F32": torch.float32, "F16": torch.float16, "I64": torch.int64}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        loaded = torch.frombuffer(bytearray(buffer[begin:end]), dtype=dtypes[entry["dtype"]])
        assert torch.equal(loaded.reshape(entry["shape"]), tensors[name]), name


def test_virtual_hosted_style(s3_server):
    """BUCKET.localhost in the Host header names the bucket (--s3-domain localhost)."""
    import http.client

    s3 = boto(s3_server)
    s3.create_bucket(Bucket="vhost")
    s3.put_object(Bucket="vhost", Key="inside/key", Body=b"virtual")
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    url = f"http://vhost.localhost:{s3_server.http_port}/inside/key"
    request = botocore.awsrequest.AWSRequest(method="GET", url=url)
    botocore.auth.S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    connection = http.client.HTTPConnection("127.0.0.1", s3_server.http_port, timeout=30)
    try:
        headers = dict(prepared.headers)
        headers["Host"] = f"vhost.localhost:{s3_server.http_port}"
        connection.request("GET", "/inside/key", headers=headers)
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b"virtual"
    finally:
        connection.close()
