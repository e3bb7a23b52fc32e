"""``python -m edge serve``: the local web page for uploading or recording a clip."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from edge.commands import options

log = logging.getLogger(__name__)

HELP = """\
Serve a web page where you upload an audio file, or record one in the browser, and
see its emotion: the top label, the probability of each of the model's labels as bars,
the verdict of each window along the clip, and whether speech was found. The page classifies with the
same model and code as `python -m edge classify`.

It listens on 127.0.0.1 (this machine only) unless told otherwise. To reach it from
another machine, listen on another address and give a token; every request must then
carry it ("Authorization: Bearer <token>" or ?token=<token> in the URL):

  head -c 24 /dev/urandom | base64 > ~/.ser-token && chmod 600 ~/.ser-token
  python -m edge serve --host 0.0.0.0 --token-file ~/.ser-token
  open http://<device>:8000/?token=<the token>

The JSON API beside the page:
  curl -F file=@clip.wav http://127.0.0.1:8000/api/classify
answers what `classify --json` prints for that file, plus "windows" (one object per
window). Uploads are held in memory, decoded a second at a time, and never stored.
With --profile FILE uploads are judged against that person's voice profile. The live view of the running
service is served by `python -m edge run --http HOST:PORT`, not by this command.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="web page: upload or record a clip and see its emotion",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    p.add_argument("--token-file", metavar="PATH", help="file holding the token every request must carry; required off loopback")
    options.add_model(p)
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB", help="largest upload accepted (default: 20)")
    options.add_threads(p)
    options.add_profile(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from edge.model import Model, ModelError
    from edge.profile import ProfileError
    from edge.signals import StopFlag
    from edge.voice import in_use, load_profile
    from edge.web.access import read_token
    from edge.web.app import create_app
    from edge.web.server import ServerError, serve_in_thread

    if not 0 <= args.port <= 65535:
        print(f"error: --port must be between 0 and 65535, got {args.port}", file=sys.stderr)
        return 2
    if args.max_upload_mb <= 0:
        print("error: --max-upload-mb must be positive", file=sys.stderr)
        return 2
    if options.threads_refused(args.threads):
        return 2
    try:
        token = read_token(args.token_file) if args.token_file else None
        profile = load_profile(args.profile, Model(args.model).contract) if args.profile else None
        app = create_app(
            args.model, token=token, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), threads=args.threads, profile=profile
        )
        server = serve_in_thread(app, args.host, args.port)
    except (ValueError, ModelError, ProfileError, ServerError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stop = StopFlag()  # not threading.Event: its set() may deadlock inside a signal handler
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    uploads = f"; uploads {in_use(args.profile, profile)}" if profile else ""
    print(f"serving the page on {server.url}{uploads} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
    return 0
