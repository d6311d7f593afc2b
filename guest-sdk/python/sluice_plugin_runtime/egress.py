"""Outbound HTTP and HTTPS for plugins, sent by the host.

WASI's CPython can open no connection of its own: its sockets resolve no name and
connect nowhere, and it has no `ssl`, so `http.client` lacks `HTTPSConnection`,
`urllib.request` lacks HTTPS and urllib3 refuses HTTPS URLs. The host offers instead to
send a whole request to `scheme://host:port`, if the trigger is granted it, and to return
the whole response (`HttpSend` through the door, `door.py`); it makes the connection, does the TLS
and verifies the server's certificate.

So that plugins use `http.client`, `urllib.request`, urllib3 and requests unchanged,
their own HTTP/1.1 code runs as it is, over a `HostSocket` standing for one connection:
what the library writes is a request, kept until the library reads the response;
reading sends it through the host and gives the response back as the HTTP/1.1 bytes a
server would have sent, for the library to parse. Only opening a connection changes:
`http.client.HTTPConnection.connect`, an `http.client.HTTPSConnection`, and urllib3's
connection classes, patched as urllib3 is imported (it is not in the runtime: a plugin
installs it). httpx, which has sockets of its own, gets transports that hand each
request to the host whole.

Nothing of this is imported while the runtime is built: `http.client` too is patched
as it is first imported, so that an instance whose plugin sends nothing starts from a
snapshot without it.

Failures are exceptions the libraries already handle, carrying the host's message: a
destination not granted raises `PermissionError` as the connection opens (urllib3 makes
it a `NewConnectionError`, requests a `ConnectionError`), a time-out `TimeoutError` as
the response is read (urllib3: `ReadTimeoutError`, requests: `ReadTimeout`), anything
else `ConnectionError`.

A CONNECT tunnel, which HTTPS through a proxy needs, cannot run through the host, as the
host makes the TLS connection: a connection asked to tunnel goes to the tunnel's end
instead, and the trigger's grants apply there. A proxy for plain HTTP is a destination
like any other.
"""

import io
import sys

from . import door, on_import
from .door import Err


class HostSocket:
    """What a library sees of one connection to `scheme://host:port`.

    The host sends each request on a connection of its own, so this one holds none: it
    checks that the destination is granted when made, so that one that is not fails at
    once, and keeps the bytes sent until the response is read.
    """

    def __init__(self, scheme, host, port, timeout):
        try:
            door.http_allowed(scheme, host, port)
        except Err as e:
            raise PermissionError(e.value) from None
        self._destination = (scheme, host, port)
        self._sent = bytearray()
        self.settimeout(timeout)

    def settimeout(self, timeout):
        """The most the next response may take, whole (`None`: the host's bound only)."""
        self._timeout = None if timeout is None else float(timeout)

    def sendall(self, data):
        self._sent += data

    def makefile(self, mode="rb"):
        """The response to what was sent since the last one (http.client reads "rb")."""
        request, self._sent = self._sent, bytearray()
        stream = _ResponseStream(self._destination, request, self._timeout)
        return io.BufferedReader(stream)

    def close(self):
        """Drops what was sent and not answered: there is no connection to close."""
        self._sent = bytearray()


class _ResponseStream(io.RawIOBase):
    """The bytes of the response to one request, which is sent when they are first read.

    Sending then, and not when the file is made, raises a failure where a real socket's
    would: while the library reads the status line (http.client closes the connection on
    a `ConnectionError` there).
    """

    def __init__(self, destination, request, timeout):
        self._exchange = (destination, request, timeout)
        self._parts = None

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._parts is None:
            self._parts = [memoryview(part) for part in _send(*self._exchange)]
            self._exchange = None
        while self._parts:
            part = self._parts[0]
            if part:
                count = min(len(buffer), len(part))
                buffer[:count] = part[:count]
                self._parts[0] = part[count:]
                return count
            del self._parts[0]
        return 0


def _send(destination, request, timeout):
    """Sends the HTTP/1.1 `request` through the host: the response's head and body."""
    method, target, headers, body = _parse_request(request)
    try:
        response = _exchange(destination, (method, target, headers, body), timeout)
    except Err as e:
        raise _exception(e.value) from None
    return _response_head(response), response.body


def _exchange(destination, request, timeout):
    """The host's response to `request`, (method, target, headers, body), sent to
    `destination`, (scheme, host, port); raises `Err` with the host's `Failure`."""
    scheme, host, port = destination
    method, target, headers, body = request
    return door.http_send(scheme, host, port, method, target, headers, body, timeout)


def _parse_request(request):
    """(method, target, headers, body) of the one request http.client wrote in `request`.

    http.client sends no request before it has read the previous response, so `request`
    holds exactly one, its body framed by `Content-Length` or chunked.
    """
    end = request.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError("an HTTP request was not sent whole: its headers have no end")
    lines = request[:end].decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = _header_fields(lines[1:])
    values = {name.lower(): value.lower() for name, value in headers}
    start = end + 4
    if "chunked" in values.get("transfer-encoding", ""):
        return method, target, headers, _dechunk(request, start)
    length = int(values.get("content-length", "0"))
    if len(request) - start != length:
        raise ValueError(
            f"an HTTP request has {len(request) - start} bytes of body, not the {length} "
            "its Content-Length gives (a body needs a Content-Length or chunked encoding)"
        )
    return method, target, headers, bytes(memoryview(request)[start:])


def _header_fields(lines):
    """The (name, value) pairs of header `lines`, a folded value unfolded.

    http.client folds the values given together to one `putheader` onto several lines.
    """
    fields = []
    for line in lines:
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
        else:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))
    return fields


def _dechunk(request, start):
    """The body sent with `Transfer-Encoding: chunked` from `start` in `request`."""
    view = memoryview(request)
    chunks = []
    while True:
        line_end = request.find(b"\r\n", start)
        if line_end < 0:
            raise ValueError("an HTTP request was not sent whole: a chunk is missing")
        size = int(request[start:line_end].split(b";", 1)[0], 16)
        start = line_end + 2
        if size == 0:
            return b"".join(chunks)
        if start + size + 2 > len(request):
            raise ValueError("an HTTP request was not sent whole: a chunk is cut short")
        chunks.append(view[start:start + size])
        start += size + 2


def _response_head(response):
    """The status line and headers of `response` as a server would have sent them.

    The host hands the server's header bytes over one character per byte (Latin-1):
    encoding them back gives http.client the bytes a real socket would have.
    """
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _exception(failure):
    """The exception for the host's `failure`, of a kind the libraries already handle."""
    if failure.kind == door.HttpFailureKind.REFUSED:
        return PermissionError(failure.message)
    if failure.kind == door.HttpFailureKind.TIMED_OUT:
        return TimeoutError(failure.message)
    return ConnectionError(failure.message)


def _destination(connection):
    """The host and port an http.client or urllib3 `connection` goes to.

    The end of its tunnel, if it has one: the host cannot run a CONNECT tunnel, as it
    makes the TLS connection itself.
    """
    if connection._tunnel_host:
        return connection._tunnel_host, connection._tunnel_port
    return connection.host, connection.port


def _connect(self):
    """`http.client.HTTPConnection.connect`, through the host."""
    import socket

    timeout = self.timeout
    if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:
        timeout = socket.getdefaulttimeout()
    self.sock = HostSocket(self._egress_scheme, *_destination(self), timeout)


def _no_tls_context(http_version):
    """No TLS context: the host's TLS needs none from the plugin.

    Stands for `http.client._create_https_context`, which urllib.request's
    `HTTPSHandler` calls when it is given no context.
    """
    return None


# The TLS settings urllib3's HTTPSConnection takes: the host's TLS uses none of them.
_URLLIB3_TLS_SETTINGS = (
    "cert_reqs", "assert_hostname", "assert_fingerprint", "server_hostname",
    "ssl_context", "ca_certs", "ca_cert_dir", "ca_cert_data", "ssl_minimum_version",
    "ssl_maximum_version", "ssl_version", "cert_file", "key_file", "key_password",
)


def _patch_http_client(client):
    """Makes the module `http.client` open its connections through the host, and gives it
    an HTTPSConnection, which it lacks without `ssl`.

    Before `urllib.request` is imported: that module has HTTPS only if http.client has
    an HTTPSConnection when it is (`urllib.request` imports http.client first, so the
    patch is in place by then).
    """
    import socket

    class HTTPSConnection(client.HTTPConnection):
        """`http.client.HTTPSConnection`, whose TLS the host makes.

        The host verifies the server's certificate, and its name, against the roots it
        trusts: `context` and `check_hostname` (which urllib.request passes up to Python
        3.11) are accepted for the callers that give them, and change nothing.
        """

        default_port = client.HTTPS_PORT
        _egress_scheme = "https"

        def __init__(self, host, port=None, *, timeout=socket._GLOBAL_DEFAULT_TIMEOUT,
                     source_address=None, context=None, check_hostname=None, blocksize=8192):
            super().__init__(host, port, timeout, source_address, blocksize)

    HTTPSConnection.__module__ = client.__name__
    client.HTTPConnection._egress_scheme = "http"
    client.HTTPConnection.connect = _connect
    client.HTTPSConnection = HTTPSConnection
    if "HTTPSConnection" not in client.__all__:
        client.__all__.append("HTTPSConnection")
    client._create_https_context = _no_tls_context


def _patch_urllib3_connection(connection):
    """Makes the module `urllib3.connection` open its connections through the host.

    Without `ssl`, urllib3 names `DummyConnection` its HTTPSConnection, and its HTTPS
    pool then refuses to connect: an HTTPSConnection of its HTTPConnection takes that
    name, so that the modules importing it next (`connectionpool`) get it instead.
    urllib3 1 cannot be made to (its pools poll their sockets' file descriptors): its
    import fails, saying so.
    """
    if int(connection.__version__.split(".")[0]) < 2:
        raise ImportError(
            f"urllib3 {connection.__version__} cannot send requests from a plugin: "
            "install urllib3 2 (urllib3>=2)"
        )
    base = connection.HTTPConnection

    def _new_conn(self):
        """A connection through the host: one not granted fails as a refused one would."""
        timeout = connection.Timeout.resolve_default_timeout(self.timeout)
        try:
            return HostSocket(self._egress_scheme, *_destination(self), timeout)
        except OSError as e:
            raise connection.NewConnectionError(
                self, f"Failed to establish a new connection: {e}"
            ) from e

    class HTTPSConnection(base):
        """urllib3's HTTPSConnection, whose TLS the host makes.

        The host verifies the server's certificate against the roots it trusts, so the
        connection counts as verified; urllib3's TLS settings (CA files, client
        certificates, fingerprints, versions) are accepted and change nothing.
        """

        default_port = connection.port_by_scheme["https"]
        _egress_scheme = "https"

        def __init__(self, host, port=None, **settings):
            for name in _URLLIB3_TLS_SETTINGS:
                settings.pop(name, None)
            super().__init__(host, port, **settings)

        def connect(self):
            self.sock = self._new_conn()
            self._has_connected_to_proxy = bool(self.proxy)
            self.is_verified = True

    base._new_conn = _new_conn
    # urllib3 asks the socket whether the server closed it; the host keeps no
    # connection for it to close.
    base.is_connected = property(lambda self: self.sock is not None)
    HTTPSConnection.__module__ = connection.__name__
    HTTPSConnection.__qualname__ = HTTPSConnection.__name__
    connection.HTTPSConnection = connection.VerifiedHTTPSConnection = HTTPSConnection


def _patch_urllib3_connectionpool(connectionpool):
    """Has urllib3's read time-outs give the host's message.

    urllib3 words a time-out from what the plugin asked, `read timeout=None` if nothing;
    the host's message names the time-out that passed, which may be the trigger's own.
    """
    pool = connectionpool.HTTPConnectionPool
    raise_timeout = pool._raise_timeout

    def _raise_timeout(self, err, url, timeout_value):
        if isinstance(err, TimeoutError):
            message = f"Read timed out. ({err})"
            raise connectionpool.ReadTimeoutError(self, url, message) from err
        raise_timeout(self, err, url, timeout_value)

    pool._raise_timeout = _raise_timeout


def _patch_httpx_transports(default):
    """Makes httpx's transports (`httpx._transports.default`) send through the host.

    httpx speaks HTTP over its own sockets (httpcore), not http.client, and makes a TLS
    context (`ssl`) when a transport is made; its transports have one method that takes
    a request and returns a response, which is what the host does: they are given that.
    """
    import httpx

    def __init__(self, *args, **settings):
        """Takes httpx's settings (TLS, limits, proxy, retries) and uses none: the host
        makes the connection, does the TLS and keeps no connection."""

    def exchange(request, body):
        """httpx's `request`, whose body is `body`, sent through the host: the response
        as httpx's transports give it, its body still in its content encoding."""
        url = request.url
        port = url.port or {"http": 80, "https": 443}.get(url.scheme)
        destination = (url.scheme, url.raw_host.decode("ascii"), port)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        sent = (request.method, url.raw_path.decode("ascii"), headers, body)
        timeout = request.extensions.get("timeout", {}).get("read")
        try:
            response = _exchange(destination, sent, timeout)
        except Err as e:
            raise _httpx_exception(httpx, e.value, request) from None
        return httpx.Response(
            response.status,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers],
            stream=httpx.ByteStream(response.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode()},
        )

    def handle_request(self, request):
        return exchange(request, request.read())

    async def handle_async_request(self, request):
        return exchange(request, await request.aread())

    # Nothing to open or close (httpx's own would import httpcore, which needs `ssl`).
    def __enter__(self):
        return self

    def __exit__(self, *exception):
        return None

    def close(self):
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exception):
        return None

    async def aclose(self):
        pass

    for transport in (default.HTTPTransport, default.AsyncHTTPTransport):
        transport.__init__ = __init__
    sync, asynchronous = default.HTTPTransport, default.AsyncHTTPTransport
    sync.handle_request = handle_request
    sync.__enter__, sync.__exit__, sync.close = __enter__, __exit__, close
    asynchronous.handle_async_request = handle_async_request
    asynchronous.__aenter__, asynchronous.__aexit__ = __aenter__, __aexit__
    asynchronous.aclose = aclose


def _httpx_exception(httpx, failure, request):
    """The httpx exception for the host's `failure` of `request`."""
    kinds = door.HttpFailureKind
    if failure.kind == kinds.TIMED_OUT:
        return httpx.ReadTimeout(failure.message, request=request)
    if failure.kind == kinds.TOO_LARGE:
        return httpx.ReadError(failure.message, request=request)
    return httpx.ConnectError(failure.message, request=request)


def install():
    """Sends http.client's requests through the host, and urllib3's and httpx's, once
    each is imported.

    Must run before `urllib.request` is imported (see `_patch_http_client`).
    """
    if "urllib.request" in sys.modules:
        raise RuntimeError("egress.install() must run before urllib.request is imported")
    on_import.patch("http.client", _patch_http_client)
    on_import.patch("urllib3.connection", _patch_urllib3_connection)
    on_import.patch("urllib3.connectionpool", _patch_urllib3_connectionpool)
    on_import.patch("httpx._transports.default", _patch_httpx_transports)
