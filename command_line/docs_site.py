"""`spine docs`: the dbt docs site and the reports it links, served over HTTP.

The site is one static page (`<reports>/dbt_docs/index.html`, written by the `dbt_docs` asset)
whose overview and exposures link the reports beside it by relative paths
(`../scorecard.html`), so they open wherever the reports folder is read from: the files
themselves, or this server of the folder on 127.0.0.1, which a browser elsewhere reaches
through a forwarded port.
"""

from __future__ import annotations

import errno
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click

SITE = Path("dbt_docs") / "index.html"


class _QuietHandler(SimpleHTTPRequestHandler):
    # The terminal is for the one line saying where the site is, not a line per request.
    def log_message(self, format: str, *args) -> None:
        pass


def make_server(reports_dir: Path, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server of `reports_dir` on `host:port` (port 0: any free one), not yet serving."""
    handler = functools.partial(_QuietHandler, directory=str(reports_dir))
    return ThreadingHTTPServer((host, port), handler)


def site_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/{SITE.as_posix()}"


def serve(reports_dir: Path, port: int) -> None:
    """Serve `reports_dir` until interrupted, after saying where the docs site is."""
    if not (reports_dir / SITE).is_file():
        raise click.ClickException(f"no docs site in {reports_dir} yet: run `spine run` first")
    try:
        server = make_server(reports_dir, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(f"port {port} is in use: pick another with --port") from None
        raise
    with server:
        click.echo(f"dbt docs and reports: {site_url(server)} (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
