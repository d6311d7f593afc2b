"""The guest's side of the door: messages to the host and back, through `_host.call`.

The runtime's one host import is a door for bytes, which Python reaches as the builtin
`_host.call(message) -> answer`. The protocol is the host's: `runtime/door/src/lib.rs`
lists the operations. A message from here is an operation byte, then its fields
(`wire.rs`: little-endian numbers; `str` and `bytes` as a u32 length then the bytes; `opt`
as a byte 0 or 1 then the value; `list` as a u32 count then the items). An answer is one
Python value, written by the host in `marshal`'s format (`marshal.rs`) and loaded here in
one C call: reading it field by field in Python cost more than the rest of a trivial call.

The functions here mirror the host's calls; a call the host refuses raises `Err`, whose
`value` is the host's message (or, for `http_send`, a `Failure`).
"""

import marshal
import struct

import _host

# Operations, the first byte of a message (`lib.rs`).
_TAKE_CALL, _FINISH, _LOG, _QUERY, _WRITE, _WRITE_SYNC = 0, 1, 2, 3, 4, 5
_CACHE_GET, _CACHE_PUT, _CACHE_DELETE, _HTTP_ALLOWED, _HTTP_SEND = 6, 7, 8, 9, 10

# Kinds of call (`runtime/door/src/call.rs`).
LOAD, WRITES, SCHEDULE, REQUEST = 0, 1, 2, 3

_LEVELS = {"info": 0, "warn": 1, "error": 2}

_loads = marshal.loads
_pack = struct.pack
_TAKE_CALL_MESSAGE = bytes((_TAKE_CALL,))
# A successful call's outcome with nothing to hand back.
_FINISHED = bytes((_FINISH, 0))
# The start of a request's: the operation, 0 (done), the status and the count of headers.
_REQUEST_FINISHED = "<BBHI"


class Err(Exception):
    """The host refused a call; `value` says why."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


class HttpFailureKind:
    """Why an outbound request failed (`lib.rs`, `HttpSend`)."""

    REFUSED, TIMED_OUT, TOO_LARGE, TOO_MANY, FAILED = 0, 1, 2, 3, 4


class Failure:
    __slots__ = ("kind", "message")

    def __init__(self, kind, message):
        self.kind = kind
        self.message = message


class Response:
    """The host's answer to an outbound request."""

    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


class _Writer:
    __slots__ = ("parts",)

    def __init__(self, op):
        self.parts = [bytes((op,))]

    def u8(self, value):
        self.parts.append(bytes((value,)))
        return self

    def u16(self, value):
        self.parts.append(struct.pack("<H", value))
        return self

    def f64(self, value):
        self.parts.append(struct.pack("<d", value))
        return self

    def bytes(self, value):
        self.parts.append(struct.pack("<I", len(value)))
        self.parts.append(value)
        return self

    def str(self, value):
        return self.bytes(value.encode("utf-8"))

    def opt_str(self, value):
        if value is None:
            return self.u8(0)
        return self.u8(1).str(value)

    def opt_bytes(self, value):
        if value is None:
            return self.u8(0)
        return self.u8(1).bytes(value)

    def opt_f64(self, value):
        if value is None:
            return self.u8(0)
        return self.u8(1).f64(float(value))

    def pairs(self, pairs):
        self.parts.append(struct.pack("<I", len(pairs)))
        for name, value in pairs:
            self.str(name).str(value)
        return self

    def message(self):
        return b"".join(self.parts)

    def send(self):
        _host.call(self.message())


def _ask(message):
    """The host's answer to `message`; raises `Err` if it refused."""
    refusal, value = _loads(_host.call(message))
    if refusal is not None:
        raise Err(refusal)
    return value


def take_call():
    """The call to run: (LOAD, ("file", name, code, compiled or None) or ("package", name));
    (WRITES, args, [(table, rows, columns)]); (SCHEDULE, args, call_time_ns); or (REQUEST,
    args, method, path, query, headers, body), `args` None or a list of pairs, `query` and
    `headers` lists of pairs. `compiled` is the file's code as a load of it handed over
    before (`finish_load`), marshalled; `columns` are as `columns.py` reads them."""
    return _loads(_host.call(_TAKE_CALL_MESSAGE))


def finish_load(compiled):
    """Hands the host a successful load's outcome: the file's code, marshalled, if it was
    compiled now (else None)."""
    _Writer(_FINISH).u8(0).opt_bytes(compiled).send()


def finish(response=None):
    """Hands the host a successful call's outcome: for a request, (status, headers, body)."""
    if response is None:
        _host.call(_FINISHED)
        return
    status, headers, body = response
    parts = [_pack(_REQUEST_FINISHED, _FINISH, 0, status, len(headers))]
    for name, value in headers:
        name = name.encode("utf-8")
        value = value.encode("utf-8")
        parts += (_pack("<I", len(name)), name, _pack("<I", len(value)), value)
    parts += (_pack("<I", len(body)), body)
    _host.call(b"".join(parts))


def fail(message):
    """Hands the host a failed call's outcome: the plugin's error."""
    _Writer(_FINISH).u8(1).str(message).send()


def log(level, text):
    _Writer(_LOG).u8(_LEVELS[level]).str(text).send()


def query(sql, params, database):
    """(row count, columns) of `sql` run with `params` on `database` (None: the
    trigger's)."""
    return _ask(_Writer(_QUERY).str(sql).pairs(params).opt_str(database).message())


def write(database, line_protocol, floats, timestamps):
    _Writer(_WRITE).opt_str(database).str(line_protocol).bytes(floats).bytes(timestamps).send()


def write_sync(database, line_protocol, no_sync):
    w = _Writer(_WRITE_SYNC).opt_str(database).str(line_protocol).u8(1 if no_sync else 0)
    _ask(w.message())


def cache_get(key, use_global):
    return _ask(_Writer(_CACHE_GET).str(key).u8(1 if use_global else 0).message())


def cache_put(key, value, ttl_seconds, use_global):
    w = _Writer(_CACHE_PUT).str(key).bytes(value).opt_f64(ttl_seconds)
    _ask(w.u8(1 if use_global else 0).message())


def cache_delete(key, use_global):
    return _ask(_Writer(_CACHE_DELETE).str(key).u8(1 if use_global else 0).message())


def http_allowed(scheme, host, port):
    _ask(_Writer(_HTTP_ALLOWED).str(scheme).str(host).u16(port).message())


def http_send(scheme, host, port, method, target, headers, body, timeout_seconds):
    """The host's `Response` to the request; raises `Err` with a `Failure`."""
    w = _Writer(_HTTP_SEND).str(scheme).str(host).u16(port).str(method).str(target)
    w.pairs(headers).bytes(body).opt_f64(timeout_seconds)
    refusal, response = _loads(_host.call(w.message()))
    if refusal is not None:
        raise Err(Failure(*refusal))
    return Response(*response)
