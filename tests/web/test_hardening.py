"""The server against misuse: a shared working folder, slow uploads, foreign Host headers;
and its request log."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from tdanet.cli import main
from tdanet.commands.serve import allowed_hosts
from tdanet.separate import Separator
from tdanet.web import WebSettings, create_app
from tdanet.web.workdir import WorkDir, WorkDirError, remove_stale_temporary_folders

from .conftest import audio_bytes, serve
from .test_api import assert_error, post_file

STALE = time.time() - 3600


def test_a_second_server_on_a_work_dir_is_refused_and_leaves_the_first_ones_uploads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    first = WorkDir(work)
    try:
        in_flight = work / f"upload-{'ab' * 16}"
        in_flight.write_bytes(b"half an upload")
        with pytest.raises(WorkDirError, match="another tdanet serve is using"):
            WorkDir(work)
        args = ["serve", "--model", "tdanet-tiny", "--port", "0", "--work-dir", str(work)]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err == (
            f"tdanet serve: error: {work}: another tdanet serve is using this working folder; "
            "stop it or pass another --work-dir\n"
        )
        assert in_flight.read_bytes() == b"half an upload"
    finally:
        first.close()
    # The first server is gone (killed): the next one takes the folder and clears its uploads.
    second = WorkDir(work)
    try:
        assert list(work.iterdir()) == []
    finally:
        second.close()
    assert work.is_dir()


def test_stale_temporary_folders_of_killed_servers_are_removed(tmp_path: Path) -> None:
    def folder(name: str, age_s: float) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / f"upload-{'0' * 32}").write_bytes(b"x")
        os.utime(path, (time.time() - age_s, time.time() - age_s))
        return path

    killed = folder("tdanet-serve-abcd_123", 3600)
    starting = folder("tdanet-serve-young123", 5)
    not_ours = folder("tdanet-serve-x", 3600)
    other = folder("mine-abcd1234", 3600)
    running = WorkDir(None)
    try:
        live = tmp_path / "tdanet-serve-live1234"
        running.path.rename(live)
        running.path = live
        os.utime(live, (STALE, STALE))
        remove_stale_temporary_folders(tmp_path)
        assert not killed.exists()
        assert starting.is_dir() and not_ours.is_dir() and other.is_dir() and live.is_dir()
    finally:
        running.close()
    assert not live.exists()


def test_a_new_server_without_work_dir_cleans_up_after_a_killed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    killed = tmp_path / "tdanet-serve-k1ll3d00"
    killed.mkdir()
    os.utime(killed, (STALE, STALE))
    work = WorkDir(None)
    try:
        assert not killed.exists()
        assert work.path.parent == tmp_path and work.path.name.startswith("tdanet-serve-")
    finally:
        work.close()
    assert list(tmp_path.iterdir()) == []


def start_slow_upload(url: str, declared: int = 200_000) -> socket.socket:
    """A client that sends its headers and a few bytes of body, then stalls."""
    host, port = url.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)), timeout=30)
    boundary = "slowslowslow"
    client.sendall(
        (
            "POST /api/separate HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {declared}\r\n\r\n"
            f"--{boundary}\r\n"
        ).encode()
    )
    return client


def read_answer(client: socket.socket) -> str:
    """One HTTP response: its head and its Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += client.recv(4096)
    return (head + b"\r\n\r\n" + body).decode("latin-1")


def test_slow_uploads_hold_no_queue_place_and_are_cut_off(
    separator: Separator, tmp_path: Path
) -> None:
    settings = WebSettings(
        max_concurrent=1,
        max_queue=0,
        max_uploads=3,
        upload_timeout_s=2.0,
        work_dir=tmp_path / "work",
    )
    with serve(create_app(separator, settings)) as url:
        slow = [start_slow_upload(url) for _ in range(2)]
        try:
            time.sleep(0.3)
            # Two stalled uploads hold two upload places but no queue place.
            reply = post_file(url, audio_bytes(0.3), "talk.wav")
            assert reply.status_code == 200, reply.text
            slow.append(start_slow_upload(url))
            time.sleep(0.3)
            # All upload places are taken now: a fourth upload is refused at once.
            body = assert_error(post_file(url, audio_bytes(0.3)), 503, "server_busy")
            assert "3 uploads in progress" in body["detail"]
            for client in slow:
                answer = read_answer(client)
                assert answer.startswith("HTTP/1.1 408"), answer
                assert "upload_timeout" in answer
        finally:
            for client in slow:
                client.close()
        time.sleep(0.2)
        assert post_file(url, audio_bytes(0.3)).status_code == 200
    assert list((tmp_path / "work").iterdir()) == []


def test_only_the_served_host_names_are_answered(separator: Separator, tmp_path: Path) -> None:
    settings = WebSettings(work_dir=tmp_path / "work")
    with serve(create_app(separator, settings)) as url:
        port = url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}"):
            assert httpx.get(f"{url}/api/health", headers={"Host": host}).status_code == 200
        for host in (f"attacker.example:{port}", "localhost.attacker.example", ""):
            reply = httpx.get(f"{url}/api/info", headers={"Host": host})
            body = assert_error(reply, 400, "invalid_host")
            assert "--allowed-hosts" in body["detail"]
        reply = httpx.post(
            f"{url}/api/separate",
            files={"file": ("a.wav", audio_bytes(0.2))},
            headers={"Host": "rebound.example"},
        )
        assert_error(reply, 400, "invalid_host")
    settings = WebSettings(work_dir=tmp_path / "work", allowed_hosts=("box.lan",))
    with serve(create_app(separator, settings)) as url:
        assert httpx.get(f"{url}/api/health", headers={"Host": "box.lan:80"}).status_code == 200
        assert httpx.get(f"{url}/api/health").status_code == 400


def test_allowed_hosts_of_the_command_line() -> None:
    local = ("localhost", "127.0.0.1", "::1")
    assert allowed_hosts("127.0.0.1", "", local) == local
    assert allowed_hosts("0.0.0.0", "box.lan, *", local) == (*local, "box.lan", "*")
    assert allowed_hosts("192.168.1.5", "", local) == (*local, "192.168.1.5")


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tdanet.web.access"]


def test_every_request_gets_one_log_line(server: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tdanet.web.access"):
        httpx.get(f"{server}/api/health")
        post_file(server, b"not audio", "x.wav")
        httpx.get(f"{server}/api/health", headers={"Host": "evil.example"})
        # The server logs a request after sending its answer: wait for the last line.
        deadline = time.monotonic() + 10
        while len(access_lines(caplog)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    lines = access_lines(caplog)
    assert len(lines) == 3, lines
    assert lines[0].startswith('127.0.0.1 "GET /api/health" 200 15 ')
    assert lines[0].endswith(" s")
    assert lines[1].startswith('127.0.0.1 "POST /api/separate" 415 ')
    assert lines[2].startswith('127.0.0.1 "GET /api/health" 400 ')


def test_a_truncated_upload_is_separated_with_a_warning(server: str) -> None:
    whole = audio_bytes(0.5)
    cut = whole[: 44 + 2 * 4000]  # the header still declares 8000 frames
    expected = (
        "cut.wav: truncated: the header declares 8000 frames but the file holds 4000; "
        "separated the frames found"
    )
    reply = post_file(server, cut, "cut.wav")
    assert reply.status_code == 200, reply.text
    assert reply.json()["warnings"] == [expected]
    assert reply.json()["input"]["duration_s"] == 0.25
    zipped = post_file(server, cut, "cut.wav", {"format": "zip"})
    assert zipped.headers["x-tdanet-warnings"] == expected
    assert post_file(server, whole, "whole.wav").json()["warnings"] == []
