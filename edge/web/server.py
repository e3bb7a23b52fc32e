"""Serving the web app from a background thread, for `serve` and for the service's `run --http`.

Werkzeug's threaded server: each request gets a thread, so a browser following the live
view (a long server-sent-events response) does not hold up uploads or other browsers.
"""

from __future__ import annotations

import logging
import socket
import threading

from werkzeug.serving import WSGIRequestHandler, get_sockaddr, make_server, select_address_family

from edge.web.access import is_loopback

log = logging.getLogger(__name__)

SHUTDOWN_POLL_S = 0.1
"""How often the server loop looks for a shutdown request (socketserver's default 0.5 s would take a
quarter of the service's 2 s stop budget, on top of MQTT's goodbye)."""


class ServerError(OSError):
    """The web server cannot start, with one sentence saying why."""


class QuietHandler(WSGIRequestHandler):
    """Logs each request at debug level through our logger, without its query (it may hold the token)."""

    def log_request(self, code="-", size="-") -> None:
        log.debug("%s %s %s", self.command, self.path.split("?", 1)[0], getattr(code, "value", code))


class WebServer:
    """A running server: its address, and ``shutdown()`` to stop it and wait for its thread."""

    def __init__(self, server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host = server.host
        self.port = int(server.port)  # the real port, also when 0 was asked for
        self.token: str | None = None  # the token the app checks, when the caller tells: a reload compares it

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop accepting requests and close the socket; open live views end with the feed's close()."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout_s)
        log.info("web server on %s stopped", self.url)


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 8000) -> WebServer:
    """Start serving ``app`` on host:port in a daemon thread and return at once.

    Refuses (ServerError) a non-loopback address unless the app was made with a token,
    and an address that cannot be bound, each with one sentence.
    """
    if not is_loopback(host) and not app.config.get("SER_TOKEN_SET"):
        raise ServerError(
            f"refusing to listen on {host}, which other machines can reach, without a token; "
            "set one with --token-file PATH (or the [http] token in the service config), or listen on 127.0.0.1"
        )
    # Bind here rather than in make_server, which prints to stderr and exits the process on failure.
    family = select_address_family(host, port)
    try:
        sock = socket.create_server(get_sockaddr(host, int(port), family), family=family)
    except (OSError, OverflowError) as exc:
        raise ServerError(f"cannot listen on {host}:{port} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        server = make_server(host, port, app, threaded=True, request_handler=QuietHandler, fd=sock.fileno())  # werkzeug uses a duplicate
    finally:
        sock.close()
    server.daemon_threads = True  # a live view left open must not keep the process alive
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_S,), name="edge-web", daemon=True)
    thread.start()
    web = WebServer(server, thread)
    log.info("web page on %s", web.url)
    return web
