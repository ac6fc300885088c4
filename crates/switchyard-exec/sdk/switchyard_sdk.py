"""Switchyard SDK for Python executors.

Every call goes to the hub over the socket inherited as file descriptor SWITCHYARD_SDK_FD (it has
no name, so no other process can reach it): HTTP requests are
made by the hub (so its egress policy and secret injection apply), storage is the
organization's key-value store, secrets come from the hub's encrypted store.
"""
import os

# JSON on CPython's own accelerator, without importing `json` (which imports `re`, `enum` and
# more: about 7 ms of every run's start). Code that wants `json` imports it as usual.
try:
    import _json as _c
except ImportError:  # another Python: the standard module
    _c = None
    import json as _std


class _Decoding:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name):
        return float({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[name])


def _not_json(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


if _c is not None:
    _scan = _c.make_scanner(_Decoding)

    def loads(text):
        """One JSON value from `text` (str or bytes)."""
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        i, n = 0, len(text)
        while i < n and text[i] in " \t\n\r":
            i += 1
        try:
            value, end = _scan(text, i)
        except StopIteration as e:
            raise ValueError(f"invalid JSON at character {e.value}") from None
        while end < n and text[end] in " \t\n\r":
            end += 1
        if end != n:
            raise ValueError(f"extra data after the JSON value at character {end}")
        return value

    def dumps(value):
        """`value` as compact JSON text."""
        encode = _c.make_encoder(
            {}, _not_json, _c.encode_basestring_ascii, None, ":", ",", False, False, True
        )
        return "".join(encode(value, 0))
else:
    loads = _std.loads

    def dumps(value):
        return _std.dumps(value, separators=(",", ":"))


_fd = None
_pending = b""


class SdkError(Exception):
    """The hub refused or failed an SDK call; the message says why."""


def _send(data):
    view = memoryview(data)
    while view:
        view = view[os.write(_fd, view):]


def _read_line():
    global _pending
    parts = [_pending]
    while b"\n" not in parts[-1]:
        chunk = os.read(_fd, 65536)
        if not chunk:
            return b""
        parts.append(chunk)
    line, _, _pending = b"".join(parts).partition(b"\n")
    return line


def _rpc(op, **args):
    global _fd
    if _fd is None:
        # The inherited socket, read and written as a plain descriptor.
        _fd = int(os.environ["SWITCHYARD_SDK_FD"])
    args["op"] = op
    _send(dumps(args).encode() + b"\n")
    line = _read_line()
    if not line:
        raise SdkError("the hub closed the SDK channel")
    answer = loads(line)
    if not answer.get("ok"):
        raise SdkError(answer.get("error"))
    return answer.get("value")


class _Storage:
    def get(self, key):
        return _rpc("storage.get", key=key)

    def set(self, key, value):
        _rpc("storage.set", key=key, value=value)

    def delete(self, key):
        return _rpc("storage.delete", key=key)


class Sdk:
    storage = _Storage()

    def http(self, method, url, options=None, **kw):
        """-> {"status", "headers", "body", "json"}; options: headers, query, json, body."""
        opts = dict(options or {})
        opts.update(kw)
        return _rpc("http", method=method, url=url, headers=opts.get("headers"),
                    query=opts.get("query"), json=opts.get("json"), body=opts.get("body"))

    def secret(self, name):
        return _rpc("secret", name=name)

    def call(self, udf, input=None):
        return _rpc("call", executor=udf, input=input)

    def api(self, method, path, body=None):
        """The hub's own API as this executor's organization, with the executor's `api_role`:
        `path` is under `/v1/orgs/{org}` (e.g. "/events"). -> {"status", "body"}."""
        return _rpc("api", method=method, path=path, body=body)

    def log(self, *parts):
        _rpc("log", message=" ".join(p if isinstance(p, str) else dumps(p) for p in parts))


sdk = Sdk()
storage = sdk.storage
http = sdk.http
secret = sdk.secret
call = sdk.call
log = sdk.log


def _result(value):
    _rpc("result", value=value)
