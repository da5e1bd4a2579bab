"""Raw native-protocol frames (docs/native-protocol.md) over a plain socket, for the tests
that send what libstrata never would: bad frames, pipelined AUTH, descriptors passed with
SCM_RIGHTS. Also the path of libstrata's C test program."""
import os
import socket
import struct
import sys

from conftest import ROOT, SANITIZED, SLOW

sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import strata  # noqa: E402

# tests/client/test_libstrata.c, from the build the server under test came from.
C_TESTS = os.path.join(ROOT, "build/asan" if SANITIZED else "build", "tests", "test_libstrata")


def frame(opcode, body, count, argument=0, version=1, magic=b"STRN", request_id=7):
    """A request frame: the 32-byte header, then BODY."""
    header = magic + bytes([version, opcode, 0, 0])
    return header + struct.pack("<QQIi", request_id, len(body), count, argument) + body


def name(namespace=b"default"):
    """A namespace name as a frame body begins with it (b"" also names the default one)."""
    return struct.pack("<H", len(namespace)) + namespace


def put_entry(key, value, checksum=None, flags=0, parent=b"", ttl=0):
    """One PUT entry; CHECKSUM defaults to the value's right one."""
    if parent:
        flags |= 8
    crc = strata.checksum(value) if checksum is None else checksum
    return (struct.pack("<IIQQII", len(key), flags, len(value), ttl, crc, len(parent)) +
            b"\0" * 16 + struct.pack("<Q", 0) + key + parent + value)


def get_entry(key, capacity=1 << 20, flags=0, offset=0):
    """One GET entry."""
    return struct.pack("<IIQQ", len(key), flags, capacity, offset) + b"\0" * 16 + key


def receive_exactly(sock, length):
    data = b""
    while len(data) < length:
        piece = sock.recv(length - len(data))
        if not piece:
            raise ConnectionError("closed")
        data += piece
    return data


def read_frame(sock):
    """(opcode, request id, count, status, body) of one response frame."""
    header = receive_exactly(sock, 32)
    magic, version, opcode, _flags, request_id, length, count, status = struct.unpack(
        "<4sBBHQQIi", header)
    assert magic == b"STRN" and version == 1
    return opcode, request_id, count, status, receive_exactly(sock, length)


def closed_by_server(sock):
    """True if the server closes SOCK (end of stream or reset) before anything comes."""
    sock.settimeout(10 * SLOW)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def raw(server):
    """A plain TCP connection to SERVER's native port."""
    return socket.create_connection(("127.0.0.1", server.native_port), timeout=30 * SLOW)
