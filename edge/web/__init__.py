"""The local web page: upload or record a clip and see its emotion; under the service, a live view.

``app.create_app`` builds the Flask app (page, JSON API, optional live view fed by a
``live.LiveFeed`` sink), ``server.serve_in_thread`` serves it, and ``access`` holds who may
use it (the token, the loopback rule). Importing this package imports nothing heavy; Flask is
loaded by ``edge.web.app``.
"""
