"""The HTTP API against a real uvicorn server on localhost."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

import tdanet.web
from tdanet.audio import audio_info, load_audio
from tdanet.separate import Separator
from tdanet.web import WebSettings, WebSettingsError, create_app
from tdanet.web.errors import ApiError
from tdanet.web.service import archive_stem, decode_upload
from tdanet.web.uploads import display_name

from ..media import FORMATS, make, video_only
from .conftest import MAX_DURATION_S, MAX_UPLOAD_BYTES, audio_bytes, mixture, serve


def post_file(
    url: str, content: bytes, filename: str = "mix.wav", params: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{url}/api/separate",
        params=params,
        files={"file": (filename, content, "audio/wav")},
        timeout=60,
    )


def decode_wav(text: str) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(base64.b64decode(text)), dtype="float32")


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == error
    assert body["detail"] and "\n" not in body["detail"]
    return body


def test_health_and_info_report_model_and_limits(server: str) -> None:
    assert httpx.get(f"{server}/api/health").json() == {"status": "ok"}
    info = httpx.get(f"{server}/api/info").json()
    assert info["model"] == "tdanet-tiny"
    assert info["sample_rate"] == 16000
    assert info["num_sources"] == 2
    assert info["limits"] == {
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_duration_s": MAX_DURATION_S,
        "max_concurrent": 1,
        "max_queue": 2,
        "max_uploads": 8,
        "upload_timeout_s": 120.0,
    }
    assert info["requests_in_progress"] == 0


def test_page_and_its_assets_come_from_this_server_only(server: str) -> None:
    page = httpx.get(server)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self';")
    assert page.headers["x-content-type-options"] == "nosniff"
    static = Path(tdanet.web.__file__).parent / "static"
    for asset in sorted(static.iterdir()):
        text = asset.read_text()
        assert "http://" not in text and "https://" not in text, asset.name
        if asset.name != "index.html":
            assert f'"/static/{asset.name}"' in page.text
            assert httpx.get(f"{server}/static/{asset.name}").status_code == 200


def test_openapi_schema_documents_the_endpoint(server: str) -> None:
    schema = httpx.get(f"{server}/openapi.json").json()
    operation = schema["paths"]["/api/separate"]["post"]
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    assert body["properties"]["file"]["format"] == "binary"
    ok = operation["responses"]["200"]["content"]
    assert ok["application/json"]["schema"]["$ref"].endswith("/SeparationResponse")
    assert "application/zip" in ok
    for status in ("400", "413", "415", "422", "503"):
        ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse")
    assert {p["name"] for p in operation["parameters"]} == {
        "format",
        "mixture",
        "audio_format",
        "bit_depth",
        "segments",
    }
    assert "SeparationResponse" in schema["components"]["schemas"]


@pytest.mark.parametrize(
    ("filename", "rate", "channels", "fmt"),
    [
        ("mono.wav", 16000, 1, "WAV"),
        # FLAC content under a misleading name: the content decides, not the extension.
        ("stereo.mp3", 22050, 2, "FLAC"),
    ],
)
def test_separate_returns_one_wav_per_source_at_the_input_rate(
    server: str,
    separator: Separator,
    work_dir: Path,
    filename: str,
    rate: int,
    channels: int,
    fmt: str,
) -> None:
    seconds = 0.5
    response = post_file(
        server, audio_bytes(seconds, rate, channels, fmt), filename, {"mixture": "true"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["num_sources"] == 2
    assert body["sample_rate"] == rate
    assert body["input"] == {
        "filename": filename,
        "format": fmt,
        "subtype": "PCM_16",
        "sample_rate": rate,
        "channels": channels,
        "duration_s": pytest.approx(seconds),
    }
    assert [s["name"] for s in body["sources"]] == ["speaker1", "speaker2"]
    frames = round(seconds * rate)
    for track in body["sources"]:
        samples, track_rate = decode_wav(track["wav_base64"])
        assert track_rate == rate
        assert samples.shape == (frames,)
    # The sources are what the library's Separator gives for the same input (16-bit rounding).
    decoded = sf.read(io.BytesIO(audio_bytes(seconds, rate, channels, fmt)), dtype="float32")[0]
    expected = separator.separate(decoded.reshape(frames, channels).T, rate)
    returned = np.stack([decode_wav(track["wav_base64"])[0] for track in body["sources"]])
    assert np.abs(expected).max() > 0.01
    np.testing.assert_allclose(returned, expected, atol=1.5 / 32768)
    mix, _ = decode_wav(body["mixture"]["wav_base64"])
    # The mixture comes back as the mono downmix, within 16-bit rounding.
    np.testing.assert_allclose(mix, mixture(seconds, rate, channels).mean(axis=1), atol=2e-4)
    assert list(work_dir.iterdir()) == []


def test_zip_format_holds_a_wav_per_source_and_the_mixture(server: str) -> None:
    response = post_file(
        server, audio_bytes(0.4), "team call.wav", params={"format": "zip", "mixture": "true"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = ["team_call_mixture.wav", "team_call_spk1.wav", "team_call_spk2.wav"]
        assert sorted(archive.namelist()) == names
        samples, rate = sf.read(io.BytesIO(archive.read("team_call_spk2.wav")))
    assert rate == 16000 and samples.shape == (6400,)


@pytest.mark.parametrize(
    ("name", "stem"),
    [("talk.flac", "talk"), ("../../x y.wav", "x_y"), (".hidden", "hidden"), ("", "upload")],
)
def test_zip_entries_are_named_after_the_upload(name: str, stem: str) -> None:
    assert archive_stem(name) == stem


def test_segments_come_back_in_json_and_zip(server: str) -> None:
    content = audio_bytes(2.0)
    plain = post_file(server, content).json()
    assert plain["segments"] is None
    body = post_file(server, content, params={"segments": "true"}).json()
    assert body["segments"], body["segments"]
    for segment in body["segments"]:
        assert 0 <= segment["start_s"] < segment["end_s"] <= 2.0
        assert segment["speaker"] in {"speaker1", "speaker2"}
    response = post_file(server, content, params={"format": "zip", "segments": "true"})
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        # Named as `tdanet separate --segments` names them, after the upload (`mix.wav`).
        assert {"mix.rttm", "mix_segments.csv"} <= set(archive.namelist())
        rows = archive.read("mix_segments.csv").decode().splitlines()
        rttm = archive.read("mix.rttm").decode().splitlines()
    assert rows[0] == "start,end,speaker" and len(rows) - 1 == len(rttm) == len(body["segments"])


def multipart(
    parts: list[tuple[str, str | None, bytes]], boundary: str = "tdanetboundary"
) -> bytes:
    """A multipart/form-data body of (field name, file name or None, data) parts."""
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
        )
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


FORM = {"content-type": "multipart/form-data; boundary=tdanetboundary"}


def chunked(data: bytes, size: int = 16384) -> Iterator[bytes]:
    """The body as a stream: sent without a Content-Length header."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_bad_uploads_get_json_errors_and_leave_nothing_behind(server: str, work_dir: Path) -> None:
    url = f"{server}/api/separate"
    body = assert_error(
        post_file(server, b"RIFF....WAVEfmt not really", "fake.wav"), 415, "not_audio"
    )
    assert "fake.wav" in body["detail"] and str(work_dir) not in body["detail"]

    too_big = audio_bytes(0.1) + b"\0" * MAX_UPLOAD_BYTES
    assert_error(post_file(server, too_big), 413, "file_too_large")
    # Without a Content-Length the limit is enforced while streaming.
    streamed = multipart([("file", "big.wav", too_big)])
    response = httpx.post(url, content=chunked(streamed), headers=FORM, timeout=60)
    assert_error(response, 413, "file_too_large")

    long = audio_bytes(MAX_DURATION_S + 1, sample_rate=8000)
    assert len(long) < MAX_UPLOAD_BYTES
    body = assert_error(post_file(server, long, "long.wav"), 413, "audio_too_long")
    assert "long.wav" in body["detail"]

    assert_error(post_file(server, audio_bytes(0.0)), 422, "empty_audio")
    silent = io.BytesIO()
    sf.write(silent, np.zeros(8000, np.float32), 16000, format="WAV")
    body = assert_error(post_file(server, silent.getvalue(), "quiet.wav"), 422, "unusable_audio")
    assert body["detail"].startswith("quiet.wav: ")

    no_file = multipart([("note", None, b"hello")])
    assert_error(httpx.post(url, content=no_file, headers=FORM), 400, "missing_file")
    truncated = multipart([("file", "cut.wav", audio_bytes(0.2))])[:-200]
    assert_error(httpx.post(url, content=truncated, headers=FORM), 400, "malformed_form")
    assert_error(httpx.post(url, content=b"raw bytes"), 415, "unsupported_media_type")
    assert_error(
        post_file(server, audio_bytes(0.2), params={"format": "mp4"}), 422, "invalid_request"
    )
    assert_error(httpx.get(f"{server}/api/nothing"), 404, "not_found")
    assert list(work_dir.iterdir()) == []


def test_client_file_names_are_never_used_as_paths(
    server: str, work_dir: Path, tmp_path: Path
) -> None:
    for name in ("../../escape.wav", "/tmp/escape.wav", "..\\..\\escape.wav"):
        response = post_file(server, audio_bytes(0.2), name)
        assert response.status_code == 200, response.text
        assert response.json()["input"]["filename"] == "escape.wav"
    written = [path for path in tmp_path.rglob("*")]
    assert written == [work_dir]
    assert not Path("/tmp/escape.wav").exists()


def test_decoding_stops_at_the_duration_limit(tmp_path: Path) -> None:
    path = tmp_path / "upload-x"
    path.write_bytes(audio_bytes(1.0, sample_rate=8000, channels=2))
    mono, rate = decode_upload(audio_info(path), "talk.wav", 1.0)
    assert rate == 8000
    np.testing.assert_allclose(mono, mixture(1.0, 8000)[:, 0], atol=1e-4)
    with pytest.raises(ApiError) as raised:
        decode_upload(audio_info(path), "talk.wav", 0.999)
    assert (raised.value.status, raised.value.error) == (413, "audio_too_long")
    assert raised.value.detail.startswith("talk.wav: longer than the limit of 0.999 s")


def test_display_name_keeps_only_a_clean_last_component() -> None:
    assert display_name("C:\\Users\\me\\talk.flac") == "talk.flac"
    assert display_name("a/b/\x00evil\n.wav") == "evil.wav"
    assert display_name("../") == "upload"
    assert len(display_name("x" * 1000)) == 120


class GatedSeparator:
    """The real separator, but each call waits for ``release`` and counts calls in flight."""

    def __init__(self, inner: Separator) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.entered = threading.Event()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    @property
    def num_sources(self) -> int:
        return self.inner.num_sources

    def separate(self, waveform: np.ndarray, sample_rate: int, *, name: str) -> np.ndarray:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.entered.set()
        try:
            assert self.release.wait(timeout=60)
            return self.inner.separate(waveform, sample_rate, name=name)
        finally:
            with self._lock:
                self.active -= 1


def test_concurrent_requests_are_queued_and_overflow_gets_503(
    separator: Separator, work_dir: Path
) -> None:
    gated = GatedSeparator(separator)
    settings = WebSettings(max_concurrent=1, max_queue=1, work_dir=work_dir)
    results: dict[int, httpx.Response] = {}

    def send(index: int) -> None:
        results[index] = post_file(url, audio_bytes(0.3), f"q{index}.wav")

    with serve(create_app(gated, settings)) as url:
        try:
            first = threading.Thread(target=send, args=(1,))
            first.start()
            assert gated.entered.wait(timeout=30)
            second = threading.Thread(target=send, args=(2,))
            second.start()
            deadline = time.monotonic() + 30
            while httpx.get(f"{url}/api/info").json()["requests_in_progress"] < 2:
                assert time.monotonic() < deadline, "the second request was not queued"
                time.sleep(0.02)
            # Both uploads are on disk (one separating, one waiting); a third is refused.
            assert len(list(work_dir.iterdir())) == 2
            body = assert_error(post_file(url, audio_bytes(0.3), "q3.wav"), 503, "server_busy")
            assert "try again" in body["detail"]
            assert len(list(work_dir.iterdir())) == 2
        finally:
            gated.release.set()
        first.join(timeout=60)
        second.join(timeout=60)
        assert [results[i].status_code for i in (1, 2)] == [200, 200]
        assert gated.max_active == 1
        assert httpx.get(f"{url}/api/info").json()["requests_in_progress"] == 0
    assert list(work_dir.iterdir()) == []


def test_default_work_dir_is_temporary_and_removed_at_shutdown(separator: Separator) -> None:
    app = create_app(separator, WebSettings())
    with serve(app) as url:
        assert post_file(url, audio_bytes(0.2)).status_code == 200
        work = app.state.work_dir
        assert work.is_dir() and os.listdir(work) == []
    assert not work.exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_upload_bytes": 0},
        {"max_duration_s": 0.0},
        {"max_duration_s": float("nan")},
        {"max_concurrent": 0},
        {"max_queue": -1},
    ],
)
def test_settings_reject_limits_out_of_range(kwargs: dict[str, float]) -> None:
    with pytest.raises(WebSettingsError):
        WebSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["m4a-aac", "mp4-video", "webm-video", "wma", "amr"])
def test_uploads_in_ffmpeg_formats_are_decoded_by_content(
    server: str, tmp_path: Path, name: str
) -> None:
    rate = FORMATS[name][3]
    path, _ = make(tmp_path / "clip", name, mixture(0.5, rate, 1))
    decoded, _ = load_audio(path)
    # A misleading file name: the server never looks at it.
    response = post_file(server, path.read_bytes(), "clip.wav")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["input"]["subtype"] == path_codec(name)
    assert (body["sample_rate"], body["input"]["channels"]) == (rate, 1)
    assert body["input"]["duration_s"] == pytest.approx(decoded.shape[1] / rate)
    for track in body["sources"]:
        samples, track_rate = decode_wav(track["wav_base64"])
        assert (track_rate, samples.shape) == (rate, (decoded.shape[1],))


def path_codec(name: str) -> str:
    """The decoder's name of a format's audio codec."""
    codec = FORMATS[name][2]
    return {"libopus": "opus", "libopencore_amrnb": "amrnb"}.get(codec, codec)


def test_a_video_without_sound_is_refused(server: str, tmp_path: Path) -> None:
    response = post_file(server, video_only(tmp_path / "v.mp4").read_bytes(), "talk.mp4")
    body = assert_error(response, 422, "empty_audio")
    assert body["detail"] == "talk.mp4: holds no audio (video only); choose a recording with sound"


def test_output_format_choice(server: str) -> None:
    params = {"format": "zip", "audio_format": "flac", "bit_depth": "24", "mixture": "true"}
    response = post_file(server, audio_bytes(0.4, 44100), params=params)
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        # Named after the upload (`mix.wav`), as `tdanet separate` names its outputs.
        assert sorted(archive.namelist()) == ["mix_mixture.flac", "mix_spk1.flac", "mix_spk2.flac"]
        info = sf.info(io.BytesIO(archive.read("mix_spk1.flac")))
    assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_24", 44100)

    response = post_file(server, audio_bytes(0.4, 44100), params={"audio_format": "opus"})
    assert response.status_code == 200, response.text
    track = response.json()["sources"][0]
    assert track["media_type"] == "audio/ogg" and track["wav_base64"] is None
    info = sf.info(io.BytesIO(base64.b64decode(track["audio_base64"])))
    assert (info.subtype, info.samplerate) == ("OPUS", 48000)

    response = post_file(
        server, audio_bytes(0.4), params={"audio_format": "mp3", "bit_depth": "16"}
    )
    assert assert_error(response, 422, "invalid_request")["detail"] == (
        "mp3 has no bit depth; a bit depth applies to wav and flac only"
    )
