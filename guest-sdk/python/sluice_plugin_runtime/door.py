"""The guest's side of the door: messages to the host and back, through `_host.call`.

The runtime's one host import is a door for bytes, which Python reaches as the builtin
`_host.call(message) -> answer`. The protocol (each message an operation byte, then its
fields) is the host's: `runtime/sandbox/src/door.rs` lists the operations, `wire.rs` the
encoding (little-endian numbers; `str` and `bytes` as a u32 length then the bytes;
`opt` as a byte 0 or 1 then the value; `list` as a u32 count then the items).

The functions here mirror the host's calls; a call the host refuses raises `Err`, whose
`value` is the host's message (or, for `http_send`, a `Failure`).
"""

import struct

import _host

# Operations, the first byte of a message (`door.rs`).
_TAKE_CALL, _FINISH, _LOG, _QUERY, _WRITE, _WRITE_SYNC = 0, 1, 2, 3, 4, 5
_CACHE_GET, _CACHE_PUT, _CACHE_DELETE, _HTTP_ALLOWED, _HTTP_SEND = 6, 7, 8, 9, 10

# Kinds of call (`door/call.rs`).
LOAD, WRITES, SCHEDULE, REQUEST = 0, 1, 2, 3

# Column kinds (`wire.rs`), as `columns.py` names them.
_COLUMN_KINDS = ("tag", "string", "int", "uint", "float", "boolean", "time")

_LEVELS = {"info": 0, "warn": 1, "error": 2}


class Err(Exception):
    """The host refused a call; `value` says why."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


class HttpFailureKind:
    """Why an outbound request failed (`door.rs`, `HttpSend`)."""

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

    def send(self):
        return _host.call(b"".join(self.parts))


class _Reader:
    __slots__ = ("view", "at")

    def __init__(self, answer):
        self.view = memoryview(answer)
        self.at = 0

    def u8(self):
        value = self.view[self.at]
        self.at += 1
        return value

    def u16(self):
        (value,) = struct.unpack_from("<H", self.view, self.at)
        self.at += 2
        return value

    def u32(self):
        (value,) = struct.unpack_from("<I", self.view, self.at)
        self.at += 4
        return value

    def i64(self):
        (value,) = struct.unpack_from("<q", self.view, self.at)
        self.at += 8
        return value

    def bytes(self):
        """A view of the next bytes: no copy."""
        length = self.u32()
        start = self.at
        self.at = start + length
        return self.view[start:self.at]

    def str(self):
        return str(self.bytes(), "utf-8")

    def pairs(self):
        return [(self.str(), self.str()) for _ in range(self.u32())]

    def opt_pairs(self):
        return self.pairs() if self.u8() else None

    def columns(self):
        """A list of columns as `columns.py` reads them: (name, kind, payload, present)."""
        columns = []
        for _ in range(self.u32()):
            name = self.str()
            kind = _COLUMN_KINDS[self.u8()]
            if kind == "tag" or kind == "string":
                values = [self.str() for _ in range(self.u32())]
                payload = (values, self.bytes())
            else:
                payload = self.bytes()
            present = self.bytes() if self.u8() else None
            columns.append((name, kind, payload, present))
        return columns

    def refusal(self):
        """Raises `Err` if the answer says the host refused."""
        if self.u8():
            raise Err(self.str())


def take_call():
    """The call to run: (LOAD, ("file", name, code, compiled or None) or ("package", name));
    (WRITES, args, [(table, rows, columns)]); (SCHEDULE, args, call_time_ns); or (REQUEST,
    args, method, path, query, headers, body). `compiled` is the file's code as a load of
    it handed over before (`finish_load`), marshalled."""
    r = _Reader(_Writer(_TAKE_CALL).send())
    kind = r.u8()
    if kind == LOAD:
        if r.u8() == 0:
            return LOAD, ("file", r.str(), r.str(), r.bytes() if r.u8() else None)
        return LOAD, ("package", r.str())
    args = r.opt_pairs()
    if kind == WRITES:
        return WRITES, args, [(r.str(), r.u32(), r.columns()) for _ in range(r.u32())]
    if kind == SCHEDULE:
        return SCHEDULE, args, r.i64()
    return REQUEST, args, r.str(), r.str(), r.pairs(), r.pairs(), bytes(r.bytes())


def finish_load(compiled):
    """Hands the host a successful load's outcome: the file's code, marshalled, if it was
    compiled now (else None)."""
    _Writer(_FINISH).u8(0).opt_bytes(compiled).send()


def finish(response=None):
    """Hands the host a successful call's outcome: for a request, (status, headers, body)."""
    w = _Writer(_FINISH).u8(0)
    if response is not None:
        status, headers, body = response
        w.u16(status).pairs(headers).bytes(body)
    w.send()


def fail(message):
    """Hands the host a failed call's outcome: the plugin's error."""
    _Writer(_FINISH).u8(1).str(message).send()


def log(level, text):
    _Writer(_LOG).u8(_LEVELS[level]).str(text).send()


def query(sql, params, database):
    """(row count, columns) of `sql` run with `params` on `database` (None: the
    trigger's)."""
    r = _Reader(_Writer(_QUERY).str(sql).pairs(params).opt_str(database).send())
    r.refusal()
    return r.u32(), r.columns()


def write(database, line_protocol, floats, timestamps):
    _Writer(_WRITE).opt_str(database).str(line_protocol).bytes(floats).bytes(timestamps).send()


def write_sync(database, line_protocol, no_sync):
    w = _Writer(_WRITE_SYNC).opt_str(database).str(line_protocol).u8(1 if no_sync else 0)
    _Reader(w.send()).refusal()


def cache_get(key, use_global):
    r = _Reader(_Writer(_CACHE_GET).str(key).u8(1 if use_global else 0).send())
    return bytes(r.bytes()) if r.u8() else None


def cache_put(key, value, ttl_seconds, use_global):
    w = _Writer(_CACHE_PUT).str(key).bytes(value).opt_f64(ttl_seconds)
    _Reader(w.u8(1 if use_global else 0).send()).refusal()


def cache_delete(key, use_global):
    r = _Reader(_Writer(_CACHE_DELETE).str(key).u8(1 if use_global else 0).send())
    return r.u8() == 1


def http_allowed(scheme, host, port):
    _Reader(_Writer(_HTTP_ALLOWED).str(scheme).str(host).u16(port).send()).refusal()


def http_send(scheme, host, port, method, target, headers, body, timeout_seconds):
    """The host's `Response` to the request; raises `Err` with a `Failure`."""
    w = _Writer(_HTTP_SEND).str(scheme).str(host).u16(port).str(method).str(target)
    w.pairs(headers).bytes(body).opt_f64(timeout_seconds)
    r = _Reader(w.send())
    if r.u8():
        kind = r.u8()
        raise Err(Failure(kind, r.str()))
    return Response(r.u16(), r.str(), r.pairs(), bytes(r.bytes()))
