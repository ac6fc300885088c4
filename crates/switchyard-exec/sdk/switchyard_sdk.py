"""Switchyard SDK for Python executors.

Every call goes to the hub over the socket inherited as file descriptor SWITCHYARD_SDK_FD (it has
no name, so no other process can reach it): HTTP requests are
made by the hub (so its egress policy and secret injection apply), storage is the
organization's key-value store, secrets come from the hub's encrypted store.
"""
import json
import os
import socket

_chan = None


class SdkError(Exception):
    """The hub refused or failed an SDK call; the message says why."""


def _rpc(op, **args):
    global _chan
    if _chan is None:
        s = socket.socket(fileno=int(os.environ["SWITCHYARD_SDK_FD"]))
        s.setblocking(True)
        _chan = s.makefile("rwb")
    args["op"] = op
    _chan.write(json.dumps(args).encode() + b"\n")
    _chan.flush()
    line = _chan.readline()
    if not line:
        raise SdkError("the hub closed the SDK channel")
    answer = json.loads(line)
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

    def log(self, *parts):
        _rpc("log", message=" ".join(p if isinstance(p, str) else json.dumps(p) for p in parts))


sdk = Sdk()
storage = sdk.storage
http = sdk.http
secret = sdk.secret
call = sdk.call
log = sdk.log


def _result(value):
    _rpc("result", value=value)
