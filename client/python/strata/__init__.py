"""Python binding of libstrata (strata's native protocol client), over ctypes.

Runs on Debian's /usr/bin/python3 with nothing from pip. Values are put from, and got
into, any object that exposes its memory: bytes, bytearray, memoryview, numpy arrays,
and torch tensors (contiguous, on the CPU) -- without copying them in Python.

    import strata
    client = strata.Client(port=6380, namespace="default")
    # over TLS: strata.Client(port=6380, tls_ca="ca.pem", tls_server_name="localhost")
    client.put(b"key", b"value")
    value = client.get(b"key")            # a new bytearray of the value's size
    buffer = bytearray(5)
    length = client.get(b"key", buffer)   # or into a buffer of the caller's

Installed with `make install` or `pip install ./client/python` (docs/install.md). The
library is found through $STRATA_LIBRARY (a path); then, when this package is imported
from a source tree that has built it, that tree's build/libstrata.so; then the installed
libstrata.so.0 through the system loader. Errors raise strata.Error, whose `code` is the
negative STRATA_ERR_* value; batch calls return per-entry codes instead.
"""

import ctypes
import ctypes.util
import os

OK = 0
ERR_NOT_FOUND = -1
ERR_EXISTS = -2
ERR_FINGERPRINT = -3
ERR_CHECKSUM = -4
ERR_QUOTA = -5
ERR_NAMESPACE = -6
ERR_TOO_LARGE = -7
ERR_BUFFER_TOO_SMALL = -8
ERR_NO_MEMORY = -9
ERR_BUSY = -10
ERR_IO = -11
ERR_PROTOCOL = -12
ERR_VERSION = -13
ERR_CONNECT = -14
ERR_TIMEOUT = -15
ERR_CLOSED = -16
ERR_INVALID = -17
ERR_NOT_NATIVE = -18
ERR_SHM = -19
ERR_PARENT_MISSING = -20
ERR_SYSTEM = -21
ERR_NOAUTH = -22
ERR_WRONGPASS = -23
ERR_NOPERM = -24
ERR_THROTTLED = -25

PUT_IF_ABSENT = 1
PUT_DURABLE = 2


SONAME = "libstrata.so.0"
__version__ = "0.1.0"


def _source_tree_library():
    """build/libstrata.so of the source tree this package sits in (client/python/strata/),
    or None when it is installed elsewhere or the tree has not built it."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    library = os.path.join(root, "build", "libstrata.so")
    if os.path.exists(os.path.join(root, "client", "strata.c")) and os.path.exists(library):
        return library
    return None


def _load_library():
    """$STRATA_LIBRARY, else the source tree's build (a developer's import), else the
    installed libstrata.so.0 through the dynamic loader (ld.so.cache, LD_LIBRARY_PATH)."""
    if os.environ.get("STRATA_LIBRARY"):
        return ctypes.CDLL(os.environ["STRATA_LIBRARY"])
    library = _source_tree_library()
    if library is not None:
        return ctypes.CDLL(library)
    errors = []
    for name in (SONAME, ctypes.util.find_library("strata")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError as error:
            errors.append(str(error))
    raise OSError("libstrata not found (%s): install it with `make install` (then ldconfig), "
                  "or set STRATA_LIBRARY to its path" % "; ".join(errors or ["no candidates"]))


_lib = _load_library()


class _Config(ctypes.Structure):
    _fields_ = [("host", ctypes.c_char_p), ("port", ctypes.c_int),
                ("name_space", ctypes.c_char_p), ("timeout_ms", ctypes.c_int),
                ("connections", ctypes.c_int), ("tls", ctypes.c_int),
                ("tls_ca_file", ctypes.c_char_p), ("tls_cert_file", ctypes.c_char_p),
                ("tls_key_file", ctypes.c_char_p), ("tls_server_name", ctypes.c_char_p),
                ("user", ctypes.c_char_p), ("password", ctypes.c_char_p),
                ("unix_socket", ctypes.c_char_p)]


class _PutItem(ctypes.Structure):
    _fields_ = [("key", ctypes.c_void_p), ("key_length", ctypes.c_size_t),
                ("value", ctypes.c_void_p), ("value_length", ctypes.c_size_t),
                ("parent", ctypes.c_void_p), ("parent_length", ctypes.c_size_t),
                ("fingerprint", ctypes.c_void_p), ("ttl_ms", ctypes.c_uint64),
                ("flags", ctypes.c_uint32), ("status", ctypes.c_int)]


class _GetItem(ctypes.Structure):
    _fields_ = [("key", ctypes.c_void_p), ("key_length", ctypes.c_size_t),
                ("buffer", ctypes.c_void_p), ("capacity", ctypes.c_size_t),
                ("fingerprint", ctypes.c_void_p), ("value_length", ctypes.c_size_t),
                ("status", ctypes.c_int)]


class _Key(ctypes.Structure):
    _fields_ = [("key", ctypes.c_void_p), ("key_length", ctypes.c_size_t)]


_lib.strata_connect.argtypes = [ctypes.POINTER(_Config), ctypes.POINTER(ctypes.c_void_p)]
_lib.strata_close.argtypes = [ctypes.c_void_p]
_lib.strata_close.restype = None
_lib.strata_put_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(_PutItem), ctypes.c_size_t]
_lib.strata_get_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(_GetItem), ctypes.c_size_t]
for _name in ("strata_exists_batch", "strata_delete_batch", "strata_touch_batch",
              "strata_unpin_batch"):
    getattr(_lib, _name).argtypes = [ctypes.c_void_p, ctypes.POINTER(_Key), ctypes.c_size_t,
                                     ctypes.POINTER(ctypes.c_int)]
_lib.strata_pin_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Key), ctypes.c_size_t,
                                  ctypes.c_uint32, ctypes.POINTER(ctypes.c_int)]
_lib.strata_match_prefix.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Key), ctypes.c_size_t,
                                     ctypes.c_uint32, ctypes.POINTER(ctypes.c_size_t)]
_lib.strata_ping.argtypes = [ctypes.c_void_p]
_lib.strata_shm_create.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                                   ctypes.POINTER(ctypes.c_void_p)]
_lib.strata_kv_key.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                               ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_lib.strata_checksum.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_lib.strata_checksum.restype = ctypes.c_uint32
_lib.strata_strerror.argtypes = [ctypes.c_int]
_lib.strata_strerror.restype = ctypes.c_char_p


def strerror(code):
    """The library's description of a status code."""
    return _lib.strata_strerror(code).decode()


class Error(Exception):
    """A libstrata error; `code` is the negative STRATA_ERR_* value."""

    def __init__(self, code, what=""):
        self.code = code
        super().__init__(f"{what}{': ' if what else ''}{strerror(code)} ({code})")


def _check(code, what=""):
    if code != 0:
        raise Error(code, what)


class _Buffer:
    """The address and size of an object's memory, kept alive while in use.

    Accepts bytes (read-only), objects with the buffer protocol (bytearray,
    memoryview, numpy arrays), and torch tensors (through data_ptr()).
    """

    __slots__ = ("owner", "address", "size", "keep")

    def __init__(self, data, writable=False):
        self.owner = data
        self.keep = None
        if hasattr(data, "data_ptr") and hasattr(data, "element_size"):  # torch.Tensor
            if data.device.type != "cpu" or not data.is_contiguous():
                raise ValueError("torch tensors must be contiguous and on the CPU")
            self.address = data.data_ptr()
            self.size = data.numel() * data.element_size()
            return
        if isinstance(data, bytes):
            if writable:
                raise TypeError("bytes are read-only; give a bytearray, array or tensor")
            self.keep = ctypes.c_char_p(data)
            self.address = ctypes.cast(self.keep, ctypes.c_void_p).value or 0
            self.size = len(data)
            return
        if hasattr(data, "__array_interface__"):  # numpy
            interface = data.__array_interface__
            if interface.get("strides") is not None and not data.flags["C_CONTIGUOUS"]:
                raise ValueError("arrays must be C-contiguous")
            if writable and interface["data"][1]:
                raise TypeError("the array is read-only")
            self.address = interface["data"][0]
            self.size = data.nbytes
            return
        view = memoryview(data)
        if not view.contiguous:
            raise ValueError("buffers must be contiguous")
        if view.readonly:
            if writable:
                raise TypeError("the buffer is read-only")
            self.keep = bytes(view)  # no address for a read-only view: one copy
            self.address = ctypes.cast(ctypes.c_char_p(self.keep), ctypes.c_void_p).value or 0
        else:
            self.keep = (ctypes.c_char * view.nbytes).from_buffer(view)
            self.address = ctypes.addressof(self.keep)
        self.size = view.nbytes


def _key_bytes(key):
    if isinstance(key, str):
        return key.encode()
    return bytes(key)


def checksum(data):
    """CRC32C of DATA (what PUT sends as the value's checksum)."""
    buffer = _Buffer(data)
    return _lib.strata_checksum(buffer.address, buffer.size)


def kv_key(tokens, parent=None, extra=b""):
    """The 32-byte key of a KV-cache block (docs/kv-keys.md): TOKENS (ints), the PARENT
    block's key (None for the first block), EXTRA bytes (LoRA id, salt)."""
    token_list = list(tokens)
    array = (ctypes.c_uint32 * len(token_list))(*token_list) if token_list else None
    if parent is not None and len(parent) != 32:
        raise ValueError("parent must be a 32-byte key")
    extra = _key_bytes(extra)
    out = ctypes.create_string_buffer(32)
    parent_buffer = ctypes.c_char_p(bytes(parent)) if parent is not None else None
    _check(_lib.strata_kv_key(parent_buffer, array, len(token_list),
                              ctypes.c_char_p(extra) if extra else None, len(extra), out),
           "kv_key")
    return out.raw


def kv_chain(tokens, block_size, extra=b""):
    """Keys of the full blocks of TOKENS, each chained to the one before."""
    keys = []
    parent = None
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = kv_key(tokens[start:start + block_size], parent, extra)
        keys.append(parent)
    return keys


class Client:
    """A pool of connections to one strata server and namespace. Thread-safe.

    With USER or PASSWORD, every connection authenticates first (docs/security.md); a
    refusal raises Error with code ERR_WRONGPASS (or ERR_THROTTLED, or ERR_NOAUTH when
    the server wants credentials and none were given). With UNIX_SOCKET (the server's
    --unix-socket path) it connects there instead of HOST and PORT: shared memory
    (shm_create) needs it."""

    def __init__(self, host="127.0.0.1", port=6380, namespace="default", timeout_ms=10000,
                 connections=4, tls=False, tls_ca=None, tls_cert=None, tls_key=None,
                 tls_server_name=None, user=None, password=None, unix_socket=None):
        """TLS (a server with --tls-cert): tls=True, or any tls_* given. tls_ca: the PEM
        CAs that sign the server's certificate (None: the system's); tls_cert and
        tls_key: a client certificate (--tls-client-auth); tls_server_name: the name the
        server's certificate must carry (None: host)."""
        def encoded(text):
            return None if text is None else os.fsencode(text)

        def utf8(text):
            return text.encode() if isinstance(text, str) else text

        tls = tls or any(value is not None for value in (tls_ca, tls_cert, tls_key,
                                                         tls_server_name))
        config = _Config(host.encode(), port, namespace.encode(), timeout_ms, connections,
                         1 if tls else 0, encoded(tls_ca), encoded(tls_cert), encoded(tls_key),
                         encoded(tls_server_name), utf8(user), utf8(password),
                         encoded(unix_socket))
        handle = ctypes.c_void_p()
        _check(_lib.strata_connect(ctypes.byref(config), ctypes.byref(handle)), "connect")
        self._handle = handle
        self._shm = None

    def close(self):
        if self._handle:
            _lib.strata_close(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def ping(self):
        _check(_lib.strata_ping(self._handle), "ping")

    # ---- batches: per-entry status codes -----------------------------------------

    def put_batch(self, items):
        """ITEMS: (key, value) or dicts with key, value and optionally parent,
        fingerprint (16 bytes), ttl_ms, flags. Returns the list of status codes."""
        entries = (_PutItem * len(items))()
        keep = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                item = {"key": item[0], "value": item[1]}
            key = _Buffer(_key_bytes(item["key"]))
            value = _Buffer(item["value"])
            keep += [key, value]
            entry = entries[i]
            entry.key, entry.key_length = key.address, key.size
            entry.value, entry.value_length = value.address, value.size
            if item.get("parent") is not None:
                parent = _Buffer(_key_bytes(item["parent"]))
                keep.append(parent)
                entry.parent, entry.parent_length = parent.address, parent.size
            if item.get("fingerprint") is not None:
                fingerprint = _Buffer(bytes(item["fingerprint"]))
                if fingerprint.size != 16:
                    raise ValueError("a fingerprint is 16 bytes")
                keep.append(fingerprint)
                entry.fingerprint = fingerprint.address
            entry.ttl_ms = int(item.get("ttl_ms", 0))
            entry.flags = int(item.get("flags", 0))
        _check(_lib.strata_put_batch(self._handle, entries, len(items)), "put_batch")
        return [entries[i].status for i in range(len(items))]

    def get_batch(self, items):
        """ITEMS: (key, buffer) or dicts with key, buffer, fingerprint. Returns a list of
        (status, value_length)."""
        entries = (_GetItem * len(items))()
        keep = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                item = {"key": item[0], "buffer": item[1]}
            key = _Buffer(_key_bytes(item["key"]))
            buffer = _Buffer(item["buffer"], writable=True)
            keep += [key, buffer]
            entries[i].key, entries[i].key_length = key.address, key.size
            entries[i].buffer, entries[i].capacity = buffer.address, buffer.size
            if item.get("fingerprint") is not None:
                fingerprint = _Buffer(bytes(item["fingerprint"]))
                keep.append(fingerprint)
                entries[i].fingerprint = fingerprint.address
        _check(_lib.strata_get_batch(self._handle, entries, len(items)), "get_batch")
        return [(entries[i].status, entries[i].value_length) for i in range(len(items))]

    def _keys(self, keys):
        entries = (_Key * len(keys))()
        keep = []
        for i, key in enumerate(keys):
            buffer = _Buffer(_key_bytes(key))
            keep.append(buffer)
            entries[i].key, entries[i].key_length = buffer.address, buffer.size
        return entries, keep

    def _key_call(self, function, keys, *arguments):
        entries, _keep = self._keys(keys)
        statuses = (ctypes.c_int * max(1, len(keys)))()
        _check(function(self._handle, entries, len(keys), *arguments, statuses),
               function.__name__)
        return [statuses[i] for i in range(len(keys))]

    def exists_batch(self, keys):
        return self._key_call(_lib.strata_exists_batch, keys)

    def delete_batch(self, keys):
        return self._key_call(_lib.strata_delete_batch, keys)

    def touch_batch(self, keys):
        return self._key_call(_lib.strata_touch_batch, keys)

    def pin_batch(self, keys, lease_ms):
        return self._key_call(_lib.strata_pin_batch, keys, lease_ms)

    def unpin_batch(self, keys):
        return self._key_call(_lib.strata_unpin_batch, keys)

    def match_prefix(self, keys, lease_ms=0):
        """How many leading keys of the chain KEYS are present (one round trip); with
        LEASE_MS they are pinned for that long."""
        entries, _keep = self._keys(keys)
        matched = ctypes.c_size_t()
        _check(_lib.strata_match_prefix(self._handle, entries, len(keys), lease_ms,
                                        ctypes.byref(matched)), "match_prefix")
        return matched.value

    # ---- single keys: raise on error ----------------------------------------------

    def put(self, key, value, parent=None, fingerprint=None, ttl_ms=0, flags=0):
        status = self.put_batch([{"key": key, "value": value, "parent": parent,
                                  "fingerprint": fingerprint, "ttl_ms": ttl_ms,
                                  "flags": flags}])[0]
        _check(status, "put")

    # The first read of get() without a buffer: values up to this size take one round trip.
    GET_FIRST_CAPACITY = 64 * 1024

    def get(self, key, buffer=None, fingerprint=None):
        """Reads KEY's value into BUFFER and returns its length; with no BUFFER, returns
        the value as a new bytearray of its size. A value larger than the first read's
        GET_FIRST_CAPACITY costs a second round trip: the server's ERR_BUFFER_TOO_SMALL
        reply carries the length, and the read is made again into a buffer of that size
        (again if the value grew in between)."""
        if buffer is not None:
            status, length = self.get_batch([{"key": key, "buffer": buffer,
                                               "fingerprint": fingerprint}])[0]
            _check(status, "get")
            return length
        capacity = self.GET_FIRST_CAPACITY
        for _attempt in range(8):
            value = bytearray(capacity)
            status, length = self.get_batch([{"key": key, "buffer": value,
                                               "fingerprint": fingerprint}])[0]
            if status == ERR_BUFFER_TOO_SMALL and length > capacity:
                capacity = length
                continue
            _check(status, "get")
            del value[length:]  # in place: no copy
            return value
        raise Error(ERR_BUFFER_TOO_SMALL, "get: the value kept growing")

    def exists(self, key):
        return self.exists_batch([key])[0] == OK

    def delete(self, key):
        return self.delete_batch([key])[0] == OK

    # ---- shared memory ------------------------------------------------------------

    def shm_create(self, size):
        """Creates the client's shared memory region and returns it as a writable
        memoryview of SIZE bytes: values whose buffers lie inside it move with one copy
        on the server and only descriptors on the socket. Needs a client connected with
        unix_socket= (the memfd is passed over it); over TCP it raises Error(ERR_SHM)."""
        address = ctypes.c_void_p()
        _check(_lib.strata_shm_create(self._handle, size, ctypes.byref(address)), "shm_create")
        array = (ctypes.c_char * size).from_address(address.value)
        self._shm = array
        return memoryview(array).cast("B")
