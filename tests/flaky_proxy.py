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
from collections import Counter
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
    "short",  # forward, but send half the body with a Content-Length to match: a clean, short response
    "slow",  # forward after ``slow_seconds`` of silence (a slow first byte)
    "reset",  # read the request, answer nothing, drop the connection (reset before the first byte)
}

#: The faults a client must survive by retrying (the rest are answers it must refuse, or final).
TRANSIENT = ("slowdown", "error500", "cut", "short", "slow", "reset")

#: Which requests consume faults.
MATCHES = {
    "ranged-get": lambda method, headers: method == "GET" and bool(headers.get("Range")),
    "get": lambda method, headers: method == "GET",
    "head": lambda method, headers: method == "HEAD",
    "any": lambda method, headers: True,
    # by path: what a request is for (``path`` is the request line's target, query included)
    "list": lambda method, headers, path="": method == "GET" and "list-type=" in path,
    "put": lambda method, headers: method == "PUT",
    "index": lambda method, headers, path="": ".dataplug/" in path,
    "data-get": lambda method, headers, path="": (method == "GET" and ".dataplug/" not in path
                                                  and "list-type=" not in path),
}


class Schedule:
    """A deterministic fault schedule: the 1st and then every ``every``-th request ``on`` selects gets a fault.

    The faults go round-robin over ``kinds``, a burst being a kind repeated (``["slowdown"] * 3``). No
    request target gets more than ``cap`` faults in a row, so a client with ``cap + 1`` attempts always gets
    through: what a schedule tests is that every fault is survived, not that an unlucky run exhausts the retries.
    """

    def __init__(self, kinds: list[str], every: int = 2, on: str = "any", cap: int = 3) -> None:
        unknown = set(kinds) - FAULTS
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(FAULTS)}")
        self.kinds, self.every, self.on, self.cap = list(kinds), every, on, cap
        self.seen = 0
        self.next = 0
        self.streak: dict[str, int] = {}

    def pick(self, method: str, path: str, headers: object) -> str | None:
        if not _matches(self.on, method, headers, path):
            return None
        # one logical request: its retries, resumed ranged GETs too, keep the method, path and range end
        rng = getattr(headers, "get", lambda k: None)("Range") or ""
        target = f"{method} {path.split('?')[0]} {rng.rsplit('-', 1)[-1]}"
        self.seen += 1
        if (self.seen - 1) % self.every or self.streak.get(target, 0) >= self.cap:  # a pass ends its streak
            self.streak[target] = 0
            return None
        self.streak[target] = self.streak.get(target, 0) + 1
        kind = self.kinds[self.next % len(self.kinds)]
        self.next += 1
        return kind


def _matches(on: str, method: str, headers: object, path: str) -> bool:
    fn = MATCHES[on]
    return fn(method, headers, path=path) if "path" in fn.__code__.co_varnames else fn(method, headers)


class FlakyProxy:
    """Faults (see FAULTS) are consumed in order by the requests ``fault_on`` selects (ranged GETs by default).

    ``schedule``, if set, adds faults from a :class:`Schedule`; ``deny`` holds regular expressions: request
    paths they match are answered 403 AccessDenied every time (a key the credentials may not read).
    ``injected`` counts the faults sent, by kind: each transient one must cost one more request, never a row.

    ``requests`` records (method, path, Range) of every request, ``headers`` the request headers as sent.
    ``before_forward``, if set, is called with the request number (from 0) before a request goes upstream:
    a test can change the object between two attempts of one read, as another writer would.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.faults: list[str] = []
        self.fault_on = "ranged-get"
        self.schedule: Schedule | None = None
        self.deny: set[str] = set()
        self.injected: Counter[str] = Counter()
        self.slow_seconds = 1.0
        #: until this time.monotonic(), every request is answered 503 SlowDown: a throttling burst, as S3
        #: gives a prefix that suddenly gets more requests than its partition serves
        self.throttled_until = 0.0
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
                    match = _matches(proxy.fault_on, self.command, self.headers, self.path)
                    fault = proxy.faults.pop(0) if match and proxy.faults else None
                    if fault is None and proxy.schedule is not None:
                        fault = proxy.schedule.pick(self.command, self.path, self.headers)
                    if fault is None and any(re.search(d, self.path) for d in proxy.deny):
                        fault = "denied"
                    if fault is None and time.monotonic() < proxy.throttled_until:
                        fault = "slowdown"
                    if fault is not None:
                        proxy.injected[fault] += 1
                if fault is not None and fault not in FAULTS:
                    raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
                if fault == "reset":
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(proxy.slow_seconds)
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
                if fault in ("cut", "short") and (self.command == "HEAD" or not data):
                    # no body to cut: the connection drops after the server acted (a PUT that did land)
                    self.close_connection = True
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        if fault == "wrong-content-range" and k.lower() == "content-range":
                            v = re.sub(r"(\d+)-(\d+)", lambda m: f"{int(m[1]) + 1}-{int(m[2]) + 1}", v, count=1)
                        self.send_header(k, v)
                # a HEAD has no body: its Content-Length is the object's size, pass it on
                length = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                if fault != "short" or self.command == "HEAD":
                    self.send_header("Content-Length", length)
                if fault == "short" and self.command != "HEAD":
                    # a response complete by HTTP's rules, but shorter than the range or object asked for
                    self.send_header("Content-Length", str(len(data) // 2))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    return
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
