"""A real HTTP proxy on 127.0.0.1 in front of the S3 server that injects the faults S3 really produces.

No client is patched: boto3 talks HTTP to this proxy exactly as it would to S3, and the proxy forwards to
moto, except when a scheduled fault says otherwise: throttling, server errors, a body cut off mid-way, a
denied request, or a misbehaving cache or gateway in the path that drops ``Range`` or ``If-Match`` or
rewrites ``Content-Range``.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

SLOWDOWN = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"""
ACCESS_DENIED = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"""

#: The fault kinds; each is consumed by one matching request.
FAULTS = {
    "slowdown",  # 503 SlowDown
    "error500",  # 500 InternalError
    "cut",  # forward, but send half the body and drop the connection
    "denied",  # 403 AccessDenied (headers only for HEAD, as S3 does)
    "ignore-range",  # forward without Range: a 200 with the whole object comes back
    "ignore-if-match",  # forward without If-Match: the current version comes back, whatever its ETag
    "wrong-content-range",  # forward, but shift the Content-Range the response claims by one byte
}

#: Which requests consume faults.
MATCHES = {
    "ranged-get": lambda method, headers: method == "GET" and bool(headers.get("Range")),
    "get": lambda method, headers: method == "GET",
    "head": lambda method, headers: method == "HEAD",
    "any": lambda method, headers: True,
}


class FlakyProxy:
    """Faults (see FAULTS) are consumed in order by the requests ``fault_on`` selects (ranged GETs by default).

    ``requests`` records (method, path, Range) of every request, ``headers`` the request headers as sent.
    ``before_forward``, if set, is called with the request number (from 0) before a request goes upstream:
    a test can change the object between two attempts of one read, as another writer would.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.faults: list[str] = []
        self.fault_on = "ranged-get"
        self.requests: list[tuple[str, str, str | None]] = []
        self.headers: list[dict[str, str]] = []
        self.before_forward: Callable[[int], None] | None = None
        #: shaping, to look like S3 from a cluster: seconds before the first byte of every response, and a
        #: cap on each connection's bytes per second (None: as fast as loopback)
        self.latency = 0.0
        self.bandwidth: float | None = None
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, self.headers.get("Range")))
                    proxy.headers.append(dict(self.headers.items()))
                    number = len(proxy.requests) - 1
                    match = MATCHES[proxy.fault_on](self.command, self.headers)
                    fault = proxy.faults.pop(0) if match and proxy.faults else None
                if fault is not None and fault not in FAULTS:
                    raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
                if fault == "slowdown":
                    self._reply(503, SLOWDOWN)
                    return
                if fault == "error500":
                    self._reply(500, b"<Error><Code>InternalError</Code></Error>")
                    return
                if fault == "denied":
                    self._reply(403, ACCESS_DENIED)
                    return
                if proxy.before_forward is not None:
                    proxy.before_forward(number)
                drop = {"host"}
                if fault == "ignore-range":
                    drop.add("range")
                if fault == "ignore-if-match":
                    drop.add("if-match")
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in drop}
                headers["Host"] = f"{proxy.upstream.hostname}:{proxy.upstream.port}"
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        if fault == "wrong-content-range" and k.lower() == "content-range":
                            v = re.sub(r"(\d+)-(\d+)", lambda m: f"{int(m[1]) + 1}-{int(m[2]) + 1}", v, count=1)
                        self.send_header(k, v)
                # a HEAD has no body: its Content-Length is the object's size, pass it on
                length = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                if fault == "cut":
                    # promise the whole body, send half, drop the connection: a reset mid-stream
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if proxy.latency:
                    time.sleep(proxy.latency)
                self.end_headers()
                if self.command != "HEAD":
                    self._send_paced(data)

            def _send_paced(self, data: bytes) -> None:
                if not proxy.bandwidth:
                    self.wfile.write(data)
                    return
                t0, step = time.perf_counter(), 256 << 10
                for at in range(0, len(data), step):
                    self.wfile.write(data[at: at + step])
                    ahead = (at + step) / proxy.bandwidth - (time.perf_counter() - t0)
                    if ahead > 0:
                        time.sleep(ahead)

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":  # a body after a HEAD would be read as the next response
                    self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
