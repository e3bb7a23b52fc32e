"""The Flask app: one page, a JSON API beside it, and the live view when the service runs it.

    GET  /                 the page (upload or record a clip; the live view under the service)
    POST /api/classify     multipart field "file" -> what `classify --json` prints, plus "windows"
    GET  /api/state        live only: smoothed state, recent windows, active alerts
    GET  /api/health       live only: the service's last health event and uptime
    GET  /api/events       live only: the same events pushed as server-sent events
    GET  /api/history      with a history database: minutes added up by hour, day or week, and a weekday-by-hour table

Uploads are held in memory, decoded a second at a time and classified by the same
StreamingClassifier as the `classify` command (memory does not grow with the clip's length);
nothing is written to disk and the client's filename is only shown, never used as a path. With a token, every request must carry it (``edge.web.access``).
``create_app`` builds the app; each route below is a plain function that reads what it
needs from ``page()``.
"""

from __future__ import annotations

import dataclasses
import hmac
import io
import json
import logging
import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from edge import __version__, history, history_query
from edge.audio import AudioError, ClipTooLongError, audio_blocks
from edge.classifier import StreamingClassifier
from edge.inputs import RateTap, rate_warning
from edge.model import Model
from edge.profile import VoiceProfile
from edge.web.access import given_token, loopback_host
from edge.web.live import CLOSED, LiveFeed, clear_queue

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # 20 MiB: ~100 s of 48 kHz stereo WAV, minutes of FLAC
MAX_CLIP_S = 600.0  # longer clips are refused before decoding: they would hold the classifier for minutes
SSE_KEEPALIVE_S = 15.0  # a comment line this often lets the server notice a browser that went away
DEFAULT_HISTORY_DAYS = 30
NO_HISTORY = "this page keeps no history: run the service with [history] path (or mqtt.queue_file) in its configuration"
LIVE_ONLY = "the live view exists only under `python -m edge run --http HOST:PORT`; this is `python -m edge serve`"


class InMemoryRequest(flask.Request):
    """Keeps uploaded files in memory (Werkzeug spools big ones to a temporary file by default).

    Memory stays bounded because MAX_CONTENT_LENGTH rejects bigger bodies while they are read.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


@dataclass(frozen=True)
class Page:
    """What every route reads: one classifier (with the lock its state needs), the model's facts, the live feed, the limits."""

    classifier: StreamingClassifier
    classify_lock: threading.Lock
    """Flask serves requests on several threads; the classifier has state."""
    model_name: str
    labels: tuple[str, ...]
    hop_s: float
    live: LiveFeed | None
    token: str | None
    max_upload_bytes: int
    history: str | None = None
    """The service's history database (``edge.history``), read by GET /api/history; None: no history is kept."""


def create_app(
    model_path=None,
    *,
    live: LiveFeed | None = None,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    threads: int | None = None,
    profile: VoiceProfile | None = None,
    history: str | None = None,
) -> flask.Flask:
    """The web app around one classifier built now from ``model_path`` (default: the shipped model).

    ``model_path`` may also be a loaded ``Model``: the app then loads its own copy from the
    same file, because an interpreter must not be shared with the daemon's thread.
    ``live`` adds the live view; ``token`` makes every request require it; ``profile`` normalises
    uploads against one person's voice; ``history`` is the database the page draws the days from.
    Raises ModelError if the model cannot be served, ProfileError
    if the profile belongs to another model.
    """
    if isinstance(model_path, Model):
        threads = model_path.threads if threads is None else threads
        model_path = model_path.path
    _check_token(token)
    model = Model(model_path, threads=threads)

    here = Path(__file__).parent
    app = flask.Flask(__name__, static_folder=str(here / "static"), template_folder=str(here / "templates"))
    app.request_class = InMemoryRequest
    app.config.update(MAX_CONTENT_LENGTH=int(max_upload_bytes), SER_TOKEN_SET=token is not None)
    app.json.sort_keys = False
    app.extensions["ser_edge"] = Page(
        classifier=StreamingClassifier(model, profile=profile),
        classify_lock=threading.Lock(),
        model_name=model.path.stem,
        labels=model.labels,
        hop_s=model.contract.hop_s,
        live=live,
        token=token,
        max_upload_bytes=int(max_upload_bytes),
        history=history,
    )
    app.before_request(check_access)
    app.after_request(harden)
    app.register_error_handler(HTTPException, http_error)
    app.register_blueprint(routes)
    return app


def page() -> Page:
    return flask.current_app.extensions["ser_edge"]


def app_token(app: flask.Flask) -> str | None:
    """The token every request to ``app`` must carry, or None."""
    return app.extensions["ser_edge"].token


def set_history(app: flask.Flask, path: str | None) -> None:
    """Draw the days from this database (None: none) from the next request on; a reload of the service calls it."""
    app.extensions["ser_edge"] = dataclasses.replace(app.extensions["ser_edge"], history=path)


def set_token(app: flask.Flask, token: str | None) -> None:
    """Require ``token`` (None: none, loopback only) from the next request on; a reload of the service calls it."""
    _check_token(token)
    app.extensions["ser_edge"] = dataclasses.replace(app.extensions["ser_edge"], token=token)
    app.config["SER_TOKEN_SET"] = token is not None


def _check_token(token: str | None) -> None:
    if token is not None and not token.strip():
        raise ValueError("the web token is empty; put a long random string in the token file or the [http] token setting")


# --------------------------------------------------------------------------------------------- every request


def check_access():
    """Without a token, only requests addressed to this machine's loopback; with one, only requests that carry it."""
    token = page().token
    if token is None:
        # Without a token the server only listens on loopback; refusing other Host names
        # keeps a web site from reaching it through DNS rebinding.
        if not loopback_host(flask.request.host):
            return _error(403, f"requests must address this device as localhost, not {flask.request.host!r}")
        return None
    given = given_token(flask.request.headers.get("Authorization", ""), flask.request.args.get("token"))
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        return _error(401, "this server requires its token: send the header 'Authorization: Bearer <token>' or add ?token=<token>")
    return None


def harden(response: flask.Response) -> flask.Response:
    """Headers that keep the page to its own origin and the token out of referrers and caches."""
    h = response.headers
    h["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"  # the token may be in the URL
    h["X-Frame-Options"] = "DENY"
    h.setdefault("Cache-Control", "no-store")
    return response


def http_error(exc: HTTPException):
    """Errors as JSON sentences, like every other answer."""
    if isinstance(exc, RequestEntityTooLarge):
        # The body was refused before its filename could be read.
        return _error(413, f"the upload is larger than the limit of {_mb(page().max_upload_bytes)}", path="upload")
    return _error(exc.code or 500, f"{exc.name.lower()}: {flask.request.method} {flask.request.path}")


# --------------------------------------------------------------------------------------------- routes

routes = flask.Blueprint("page", __name__)


@routes.get("/")
def index():
    """The page: upload or record a clip; the live view above it under the service."""
    p = page()
    given = flask.request.args.get("token") if p.token is not None else None
    return flask.render_template(
        "index.html",
        live=p.live is not None,
        model_name=p.model_name,
        version=__version__,
        emotions=p.labels,
        max_upload=_mb(p.max_upload_bytes),
        max_upload_bytes=p.max_upload_bytes,
        hop_s=p.hop_s,
        history=p.history is not None,
        profile_s=round(p.classifier.profile.speech_s) if p.classifier.profile else None,
        token_query={"token": given} if given else {},
    )


@routes.post("/api/classify")
def classify():
    """An uploaded clip's verdict, as `classify --json` prints it, plus its windows for the timeline."""
    upload = flask.request.files.get("file")
    if upload is None:
        other = ", ".join(sorted(flask.request.files)) or "none"
        return _error(400, f"send the audio as the multipart form field 'file' (fields received: {other})", path=None)
    name = _display_name(upload.filename)
    stream = upload.stream  # a BytesIO (InMemoryRequest): decoded where it lies, not copied
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    if size == 0:
        return _error(400, f"{name}: the file is empty (0 bytes)", path=name)
    p = page()
    blocks = RateTap(audio_blocks(stream, name, MAX_CLIP_S))  # a second at a time: memory flat in the clip's length
    try:
        with p.classify_lock:
            result = p.classifier.classify_blocks(blocks, name)
    except ClipTooLongError as exc:
        return _error(413, str(exc), path=name)
    except AudioError as exc:
        return _error(400, str(exc), path=name)
    except Exception as exc:  # one bad upload must not end the server
        log.warning("classification of an upload failed", exc_info=True)
        return _error(500, f"{name}: could not be classified ({type(exc).__name__}: {exc})", path=name)
    finally:
        upload.close()  # nothing of the upload outlives the request
    out = result.to_dict(name)
    warning = rate_warning(name, blocks.rate_hz)
    if warning:
        out["warning"] = warning
        log.warning("%s", warning)
    out["windows"] = [w.to_dict() for w in result.windows]
    log.info("classified upload %s: %s (%.1f s)", name, result.label, result.duration_s)
    return flask.jsonify(out)


@routes.get("/api/state")
def state():
    """Live only: the smoothed state, recent windows and active alerts."""
    live = page().live
    return flask.jsonify(live.snapshot()) if live is not None else _error(404, LIVE_ONLY)


@routes.get("/api/health")
def health():
    """Live only: the service's last health event and uptime."""
    live = page().live
    return flask.jsonify(live.health()) if live is not None else _error(404, LIVE_ONLY)


@routes.get("/api/events")
def events():
    """Live only: the service's events pushed as server-sent events, after a snapshot."""
    live = page().live
    if live is None:
        return _error(404, LIVE_ONLY)
    sub = live.subscribe()
    if sub is None:
        why = "the service has stopped" if live.closed else f"too many live views are open (at most {live.settings.max_subscribers})"
        return _error(503, f"cannot follow the live view now: {why}")
    return flask.Response(
        _stream(live, sub),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@routes.get("/api/history")
def history_view():
    """The history grouped by ``by`` (hour, day, week) from ``since`` to ``until`` (dates, local), default the last 30 days by day."""
    path = page().history
    if path is None:
        return _error(404, NO_HISTORY)
    args = flask.request.args
    try:
        by = args.get("by", "day")
        since = history_query.parse_when(args["since"], "since") if args.get("since") else _days_ago(DEFAULT_HISTORY_DAYS - 1)
        until = history_query.parse_when(args["until"], "until", end=True) if args.get("until") else None
        try:
            db = history.connect(path, readonly=True)
        except history.HistoryError:  # the service makes it within a minute of listening
            return flask.jsonify(history_query.empty_summary(by, since, until))
        try:
            return flask.jsonify(history_query.summary(db, by, since, until))
        finally:
            db.close()
    except history.HistoryError as exc:
        return _error(400, str(exc))
    except sqlite3.Error as exc:
        log.warning("reading the history failed: %s", exc)
        return _error(503, f"the history database {path} cannot be read now ({exc}); try again in a moment")


def _days_ago(days: int) -> float:
    return history_query.local_midnight(date.today() - timedelta(days=days))


def _stream(live: LiveFeed, sub):
    """Server-sent events: a snapshot first, then every event; a snapshot again after drops."""
    try:
        yield _sse("snapshot", {**live.snapshot(), **live.health()})
        while True:
            if sub.needs_snapshot:
                sub.needs_snapshot = False
                clear_queue(sub.events)  # the snapshot covers them; the page skips the few repeated after it
                if live.closed:  # the clearing may have taken the feed's CLOSED with it
                    yield _sse("closed", {})
                    return
                yield _sse("dropped", {"dropped": sub.dropped})
                yield _sse("snapshot", {**live.snapshot(), **live.health()})
            event = sub.get(SSE_KEEPALIVE_S)
            if event is None:
                yield ": keepalive\n\n"
            elif event is CLOSED:
                yield _sse("closed", {})
                return
            else:
                yield _sse(str(event.get("type", "message")), event)
    finally:
        live.unsubscribe(sub)


def _sse(kind: str, data: dict) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _display_name(filename: str | None) -> str:
    """The client's filename for display only: its last path part, printable, at most 100 characters."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:100] or "upload"


def _error(status: int, message: str, path: str | None = None):
    """A JSON error; answers of /api/classify always carry "path", as `classify --json` does."""
    body = {"path": path, "error": message} if path is not None or flask.request.path == "/api/classify" else {"error": message}
    response = flask.jsonify(body)
    response.status_code = status
    return response


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"
