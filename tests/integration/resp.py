"""A small RESP2/RESP3 client over a raw socket, for checking replies byte for byte
and type for type (redis-py in Debian 12 speaks only RESP2)."""
import socket


class Null:
    """A null reply, remembering how it was encoded: "$-1", "*-1" or "_"."""

    def __init__(self, encoding):
        self.encoding = encoding

    def __eq__(self, other):
        return isinstance(other, Null) and other.encoding == self.encoding

    def __repr__(self):
        return f"Null({self.encoding!r})"


class Simple(str):
    """A +simple string."""


class Error(str):
    """A -error reply (returned, not raised)."""


class Double(float):
    """A RESP3 ,double."""


class Verbatim(bytes):
    """A RESP3 =verbatim string; .format holds its three-letter format."""

    def __new__(cls, value, format_):
        obj = super().__new__(cls, value)
        obj.format = format_
        return obj


class Map(dict):
    """A RESP3 %map."""


class Set(list):
    """A RESP3 ~set."""


class Push(list):
    """A RESP3 >push."""


class Connection:
    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def encode(*args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            if isinstance(arg, int):
                arg = str(arg).encode()
            elif isinstance(arg, str):
                arg = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        return b"".join(parts)

    def send(self, *args):
        self.sock.sendall(self.encode(*args))

    def send_raw(self, data):
        self.sock.sendall(data)

    def call(self, *args):
        self.send(*args)
        return self.read()

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def _line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exact(self, length):
        while len(self.buffer) < length + 2:
            self._fill()
        data = self.buffer[:length]
        assert self.buffer[length:length + 2] == b"\r\n", "bulk not followed by CRLF"
        self.buffer = self.buffer[length + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return Simple(rest.decode())
        if kind == b"-":
            return Error(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            return Null("$-1") if length < 0 else self._exact(length)
        if kind == b"*":
            count = int(rest)
            return Null("*-1") if count < 0 else [self.read() for _ in range(count)]
        if kind == b"_":
            return Null("_")
        if kind == b",":
            return Double(float(rest))
        if kind == b"#":
            return rest == b"t"
        if kind == b"(":
            return int(rest)
        if kind == b"=":
            data = self._exact(int(rest))
            return Verbatim(data[4:], data[:3].decode())
        if kind == b"%":
            count = int(rest)
            result = Map()
            for _ in range(count):
                key = self.read()
                result[key] = self.read()
            return result
        if kind == b"~":
            return Set(self.read() for _ in range(int(rest)))
        if kind == b">":
            return Push(self.read() for _ in range(int(rest)))
        raise AssertionError(f"unknown reply type in {line!r}")

    def read_all_raw(self, timeout=5):
        """Reads until the server closes the connection; returns all bytes."""
        self.sock.settimeout(timeout)
        data = self.buffer
        self.buffer = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
        return data
