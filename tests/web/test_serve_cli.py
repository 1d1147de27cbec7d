"""``tdanet serve``: a real process that prints its URL, answers and stops on Ctrl-C; errors."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tdanet import load_model, save_checkpoint
from tdanet.cli import main
from tdanet.commands.serve import listen_socket

from .conftest import audio_bytes


def serve_command(*args: str) -> list[str]:
    exe = shutil.which("tdanet")
    return [*([exe] if exe else [sys.executable, "-m", "tdanet"]), "serve", *args]


def test_serve_prints_its_url_answers_and_stops_on_interrupt(tmp_path: Path) -> None:
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(load_model("tdanet-tiny"), checkpoint)
    work = tmp_path / "work"
    process = subprocess.Popen(
        serve_command(
            "--model",
            str(checkpoint),
            "--port",
            "0",
            "--work-dir",
            str(work),
            "--max-upload-mb",
            "1",
            "--max-duration",
            "2",
            "--threads",
            "1",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("tdanet serve: http://127.0.0.1:"), line
        url = line.split()[2].rstrip("/")
        info = httpx.get(f"{url}/api/info", timeout=30).json()
        assert info["model"] == str(checkpoint)
        assert info["limits"]["max_upload_bytes"] == 1024 * 1024
        assert info["limits"]["max_duration_s"] == 2.0
        files = {"file": ("talk.wav", audio_bytes(0.3))}
        reply = httpx.post(f"{url}/api/separate", files=files, timeout=60)
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["sources"]) == 2
        assert work.is_dir() and list(work.iterdir()) == []
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    # Interrupted by Ctrl-C: the conventional 130, after a clean shutdown.
    assert process.returncode == 130
    err = process.stderr.read() if process.stderr else ""
    assert "Traceback" not in err
    # One log line per request, with the status, the response size and the time taken.
    assert re.search(r' 127\.0\.0\.1 "POST /api/separate" 200 \d+ \d+\.\d{3} s\n', err), err
    assert err.count('"GET /api/info" 200') == 1


def test_listen_socket_accepts_connections_before_the_server_runs() -> None:
    # The URL is printed before uvicorn starts: a client that connects at once must wait in
    # the backlog, not be refused.
    sock = listen_socket("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            pass
    finally:
        sock.close()


def test_serve_reports_a_busy_port_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", "tdanet-tiny", "--port", str(port)]) == 1
    assert capsys.readouterr().err == (
        f"tdanet serve: error: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "choose another --port or --host\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-queue", "-1"], "queue length must be 0 or more, got -1"),
        (["--max-upload-mb", "0"], "--max-upload-mb must be a number in (0, 1048576], got 0.0"),
        (["--max-upload-mb", "nan"], "--max-upload-mb must be a number in (0, 1048576], got nan"),
        (["--max-upload-mb", "inf"], "--max-upload-mb must be a number in (0, 1048576], got inf"),
        (["--max-upload-mb", "1e400"], "--max-upload-mb must be a number in (0, 1048576], got inf"),
        (["--port", "70000"], "--port must be in 0..65535 (0 picks a free one), got 70000"),
        (["--port", "-1"], "--port must be in 0..65535"),
        (["--work-dir", "/proc/1/x"], "/proc/1/x: cannot create the working folder"),
        (["--upload-timeout", "nan"], "upload time limit must be a positive number"),
        (["--max-uploads", "0"], "concurrent uploads must be at least 1, got 0"),
        (["--model", "missing.pt"], "missing.pt: no such file, model or hub name"),
    ],
)
def test_serve_rejects_bad_settings_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--model", "tdanet-tiny", "--port", "0", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tdanet serve: error: {message}")
    assert err.count("\n") == 1


def test_signals_reaching_the_server_are_recorded_and_still_handled() -> None:
    from tdanet.commands.serve import record_signals

    class FakeServer:
        def __init__(self) -> None:
            self.handled: list[int] = []

        def handle_exit(self, sig: int, frame: object) -> None:
            self.handled.append(sig)

    server = FakeServer()
    received = record_signals(server)
    server.handle_exit(signal.SIGINT, None)
    server.handle_exit(signal.SIGTERM, None)
    assert received == server.handled == [signal.SIGINT, signal.SIGTERM]
