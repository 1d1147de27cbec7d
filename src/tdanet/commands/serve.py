"""``tdanet serve``: the web page and HTTP API for separation (see docs/web.md)."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from ..errors import TDANetError
from . import add_cpu_arguments, apply_cpu_arguments

HELP = "run the web app and HTTP API for separation"
# Largest --max-upload-mb: 1 TiB.
MAX_UPLOAD_MB = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="preset, bundled name, checkpoint file or hub name (default: the bundled demo "
        "model, which separates new voices only a little; for real recordings "
        "JusperLee/TDANetBest-4ms-LRS2)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    add_cpu_arguments(parser)
    parser.add_argument(
        "--max-upload-mb", type=float, default=100.0, help="largest accepted upload in MiB"
    )
    parser.add_argument(
        "--max-duration", type=float, default=300.0, help="longest accepted recording in seconds"
    )
    parser.add_argument(
        "--max-queue", type=int, default=4, help="requests that may wait; more get 503"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="separations that run at the same time"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="the only folder uploads are written to, locked while the server runs "
        "(default: a new temporary folder)",
    )
    parser.add_argument(
        "--max-uploads", type=int, default=8, help="uploads received at once; more get 503"
    )
    parser.add_argument(
        "--upload-timeout",
        type=float,
        default=120.0,
        help="seconds an upload may take; slower ones get 408",
    )
    parser.add_argument(
        "--allowed-hosts",
        default="",
        metavar="NAMES",
        help="comma-separated host names the server answers besides localhost, 127.0.0.1, "
        "::1 and the --host address; * allows any (needed behind a proxy or for LAN names)",
    )


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv4 or IPv6) and listening, for uvicorn to serve.

    Binding here, before the model is served, turns a busy port or a bad address into one
    :class:`TDANetError` line instead of a server log and a bare exit. Listening here too means
    a client that connects as soon as the URL is printed waits in the backlog instead of being
    refused while uvicorn is still starting.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise TDANetError(f"--host {host}: not a usable address ({exc})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise TDANetError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host"
        ) from None
    return sock


def run(args: argparse.Namespace) -> int:
    from ..pretrained import DEFAULT_MODEL
    from . import warn_if_untrained

    try:
        import uvicorn

        from ..web import WebSettings, create_app
    except ImportError as exc:
        raise TDANetError(
            f"serve needs the web extra ({exc.name} is missing); run `pip install 'tdanet[web]'`"
        ) from None
    from ..separate import Separator
    from ..web.settings import LOCAL_HOSTS
    from ..web.workdir import WorkDir

    model = args.model or DEFAULT_MODEL
    if not (math.isfinite(args.max_upload_mb) and 0 < args.max_upload_mb <= MAX_UPLOAD_MB):
        raise TDANetError(
            f"--max-upload-mb must be a number in (0, {MAX_UPLOAD_MB}], got {args.max_upload_mb}"
        )
    if not 0 <= args.port <= 65535:
        raise TDANetError(f"--port must be in 0..65535 (0 picks a free one), got {args.port}")
    settings = WebSettings(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_duration_s=args.max_duration,
        max_concurrent=args.concurrency,
        max_queue=args.max_queue,
        work_dir=args.work_dir,
        model_name=model,
        max_uploads=args.max_uploads,
        upload_timeout_s=args.upload_timeout,
        allowed_hosts=allowed_hosts(args.host, args.allowed_hosts, LOCAL_HOSTS),
    )
    workers = apply_cpu_arguments(args)
    work_dir = WorkDir(args.work_dir)
    try:
        separator = Separator(model=model, device=args.device, workers=workers)
        app = create_app(separator, settings, work_dir)
        sock = listen_socket(args.host, args.port)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        warn_if_untrained("serve", model)
        print(f"tdanet serve: http://{shown}:{port}/ (model {model}; Ctrl-C to stop)", flush=True)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access = logging.getLogger("tdanet.web.access")
        level = access.level
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        # Our access log has the response size and time; uvicorn's has neither.
        config = uvicorn.Config(
            app, log_level="info", timeout_graceful_shutdown=5, access_log=False
        )
        server = uvicorn.Server(config)
        signals = record_signals(server)
        try:
            server.run(sockets=[sock])
            # uvicorn re-raises a caught Ctrl-C only if asyncio is still waiting when it
            # does (a race under load): make the exit status 130 every time.
            if signal.SIGINT in signals:
                raise KeyboardInterrupt
        finally:
            sock.close()
            access.removeHandler(handler)
            access.setLevel(level)
    finally:
        work_dir.close()
    return 0 if server.started else 1


def record_signals(server: Any) -> list[int]:
    """The signals ``server`` (a ``uvicorn.Server``) handles from now on, in arrival order."""
    received: list[int] = []
    handle = server.handle_exit

    def recording(sig: int, frame: Any) -> None:
        received.append(sig)
        handle(sig, frame)

    server.handle_exit = recording
    return received


def allowed_hosts(host: str, extra: str, local: tuple[str, ...]) -> tuple[str, ...]:
    """The local names, the listening address unless it is a wildcard, and ``extra``'s names."""
    names = list(local)
    if host not in ("", "0.0.0.0", "::"):
        names.append(host)
    names.extend(name.strip() for name in extra.split(",") if name.strip())
    return tuple(dict.fromkeys(names))
