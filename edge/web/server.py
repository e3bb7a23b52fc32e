"""Serving the web app from background threads, for `serve` and for the service's `run --http`.

waitress, a production WSGI server, not Werkzeug's development server (one thread per connection,
no cap, no timeout: 150 idle sockets made 161 threads, and under the unit's TasksMax=64 the
service itself could no longer start one). Here:

- one thread reads and writes every connection; a connection costs no thread until it has sent a
  whole request, so idle or slow clients cannot hold the workers;
- a fixed pool of WORKERS threads runs the app (a live view holds one for as long as it is open,
  and the feed admits at most ``LiveSettings.max_subscribers`` of them, so uploads and pages always
  find a free one);
- at most MAX_CONNECTIONS connections are open: the next one closes the longest-idle connection,
  with one log line; a connection idle for IDLE_TIMEOUT_S is closed (the read timeout);
- request bodies are received in memory (an upload never touches the disk) within one budget
  (UPLOADS_AT_ONCE uploads of the largest size); a request that would exceed it is answered 503
  with one log line, and one over the size limit 413, before its body is read.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.utilities import Error, RequestEntityTooLarge

from edge.web.access import is_loopback
from edge.web.live import LiveSettings

log = logging.getLogger(__name__)

WORKERS = LiveSettings().max_subscribers + 4
"""Threads that run the app: every live view the feed admits, and four more for pages, uploads and the API."""
MAX_CONNECTIONS = 48
"""Connections open at once; beyond it the longest-idle one is closed (well under the 1,024 descriptors select() watches)."""
IDLE_TIMEOUT_S = 30
"""A connection with no request under way that sends nothing for this long is closed."""
CLEANUP_INTERVAL_S = 5
"""How often idle connections are looked for."""
UPLOADS_AT_ONCE = 2
"""Request bodies of the largest allowed size received at once; the classifier takes one at a time anyway."""
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for the form's boundaries and headers around an upload of the largest allowed size."""
OUTBUF_HIGH_WATERMARK_BYTES = 256 * 1024
"""A browser that reads its live view slower than events come blocks its worker here; its feed queue then drops
events and it gets a fresh snapshot, instead of waitress buffering megabytes for it."""
STOP_GRACE_S = 0.5
"""How long shutdown lets answers under way finish (a live view's "closed" event) before it closes their connections."""
STOP_WAIT_S = 0.5
"""How long shutdown waits for the workers (daemon threads: a live view still open does not hold the process)."""


class ServerError(OSError):
    """The web server cannot start, with one sentence saying why."""


class JsonError(Error):
    """waitress's own refusals (a body too large, the upload budget spent) as the JSON sentences the app answers with."""

    def to_response(self, ident=None):
        body = json.dumps({"path": "upload", "error": self.body}).encode()
        return f"{self.code} {self.reason}", [("Content-Type", "application/json")], body


class TooLargeError(JsonError):
    code, reason = 413, "Request Entity Too Large"


class BusyError(JsonError):
    code, reason = 503, "Service Unavailable"


class BodyBudget:
    """Bytes of request bodies being received or handled, across every connection."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self._used + n > self.limit_bytes:
                return False
            self._used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self._used -= n

    @property
    def used(self) -> int:
        return self._used


class _Parser(HTTPRequestParser):
    """waitress's request parser, with the body budget and JSON refusals."""

    budget: BodyBudget
    max_upload_bytes: int
    _held = 0

    def received(self, data):
        n = super().received(data)
        if isinstance(self.error, RequestEntityTooLarge) and not isinstance(self.error, JsonError):
            self.error = TooLargeError(f"the upload is larger than the limit of {_mb(self.max_upload_bytes)}")
        return n

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        wanted = self.adj.max_request_body_size if self.chunked else self.content_length  # a chunked body may grow to the limit
        if 0 < wanted < self.adj.max_request_body_size:
            if self.budget.take(wanted):
                self._held = wanted
            else:
                log.warning(
                    "web: refused a request of %d bytes: %s of uploads are being received or classified already",
                    wanted,
                    _mb(self.budget.used),
                )
                self.error = BusyError("the device is busy with other uploads; try again in a minute")
                self.completed = True

    def close(self):
        self.release()
        super().close()

    def release(self) -> None:
        held, self._held = self._held, 0
        if held:
            self.budget.give(held)


class _Channel(HTTPChannel):
    def handle_close(self):
        if self.request is not None:  # a body still arriving: its share of the budget is free again
            self.request.release()
        super().handle_close()


class _Server(TcpWSGIServer):
    """waitress's TCP server that keeps accepting and closes the longest-idle connection beyond MAX_CONNECTIONS."""

    channel_class = _Channel

    def readable(self):
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return self.accepting

    def handle_accept(self):
        super().handle_accept()
        channels = list(self.active_channels.values())
        excess = len(channels) - MAX_CONNECTIONS
        if excess <= 0:
            return
        # Connections with no request under way, the longest idle first (the one just accepted is the newest).
        idle = sorted((c for c in channels if not c.requests), key=lambda c: c.last_activity)
        now = time.time()
        for channel in idle[:excess]:
            log.warning(
                "web: %d connections are open, at most %d are served: closed the one from %s, idle for %.0f s",
                len(channels),
                MAX_CONNECTIONS,
                _peer(channel.addr),
                now - channel.last_activity,
            )
            channel.handle_close()

    def stop_accepting(self) -> None:
        """In the server's own thread: close the listening socket; open connections go on."""
        wasyncore.dispatcher.close(self)

    def busy(self) -> bool:
        """Whether a connection still has a request under way or an answer not yet sent (read from another thread)."""
        return any(c.requests or c.total_outbufs_len for c in list(self.active_channels.values()))

    def close_everything(self) -> None:
        """In the server's own thread: close every connection, and the trigger; its loop then ends."""
        wasyncore.close_all(self._map)


class WebServer:
    """A running server: its address, and ``shutdown()`` to stop it and wait for its thread."""

    def __init__(self, server: _Server, thread: threading.Thread, app) -> None:
        self._server = server
        self._thread = thread
        self._shutting = threading.Lock()
        self.app = app
        self.host = str(server.effective_host)
        self.port = int(server.effective_port)  # the real port, also when 0 was asked for

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def token(self) -> str | None:
        """The token the page checks now (a reload compares it, and may change it with ``set_token``)."""
        from edge.web.app import app_token

        return app_token(self.app)

    def set_token(self, token: str | None) -> None:
        from edge.web.app import set_token

        set_token(self.app, token)

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop accepting, let answers under way finish (a live view's last event) for a moment, close everything."""
        # asyncore is not thread-safe: the server's own thread does the closing.
        if self._in_server_thread(self._server.stop_accepting):
            deadline = time.monotonic() + STOP_GRACE_S
            while self._server.busy() and time.monotonic() < deadline:
                time.sleep(0.01)
            self._in_server_thread(self._server.close_everything)
        self._thread.join(timeout_s)
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=STOP_WAIT_S)
        log.info("web server on %s stopped", self.url)

    def _in_server_thread(self, thunk) -> bool:
        """Hand ``thunk`` to the server's loop; False when the loop has already closed its trigger (nothing is left to close)."""
        trigger = self._server.trigger
        with self._shutting:  # two shutdowns at once: the second sees the first's close
            if trigger._closed or not self._thread.is_alive():  # its descriptor may belong to another file by now
                return False
            try:
                trigger.pull_trigger(thunk)
            except OSError as exc:  # EBADF: closed already, by the loop's own end
                log.debug("web server on %s: its loop is closed already (%s)", self.url, exc)
                return False
            return True


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 8000) -> WebServer:
    """Start serving ``app`` on host:port from background threads and return at once.

    Refuses (ServerError) a non-loopback address unless the app was made with a token,
    and an address that cannot be bound, each with one sentence.
    """
    if not is_loopback(host) and not app.config.get("SER_TOKEN_SET"):
        raise ServerError(
            f"refusing to listen on {host}, which other machines can reach, without a token; "
            "set one with --token-file PATH (or the [http] token in the service config), or listen on 127.0.0.1"
        )
    try:
        family, _, _, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
        sock = socket.create_server(address, family=family)
    except (OSError, OverflowError) as exc:
        raise ServerError(f"cannot listen on {host}:{port} ({getattr(exc, 'strerror', None) or exc})") from None
    max_upload = int(app.config.get("MAX_CONTENT_LENGTH") or 0) or 20 * 1024 * 1024
    max_body = max_upload + MULTIPART_OVERHEAD_BYTES
    parser = type("Parser", (_Parser,), {"budget": BodyBudget(UPLOADS_AT_ONCE * max_body), "max_upload_bytes": max_upload})
    adj = Adjustments(
        threads=WORKERS,
        channel_timeout=IDLE_TIMEOUT_S,
        cleanup_interval=CLEANUP_INTERVAL_S,
        max_request_body_size=max_body,
        inbuf_overflow=max_body + 1,  # bodies stay in memory: an upload is never written to a temporary file
        outbuf_high_watermark=OUTBUF_HIGH_WATERMARK_BYTES,
        ident="ser-edge",
        expose_tracebacks=False,
    )
    try:
        server = _Server(app, _sock=sock, bind_socket=False, adj=adj, sockinfo=(family, socket.SOCK_STREAM, 0, address))
    except BaseException:
        sock.close()
        raise
    server.channel_class = type("Channel", (_Channel,), {"parser_class": parser})
    thread = threading.Thread(target=server.run, name="edge-web", daemon=True)
    thread.start()
    web = WebServer(server, thread, app)
    log.info("web page on %s", web.url)
    return web


def _peer(addr) -> str:
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"
