"""The page end to end in headless Chromium (Debian's chromium + chromedriver, via selenium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import audio_bytes

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Set by .ci/run, which installs Chromium: there a missing browser fails instead of skipping.
REQUIRE_BROWSER = "TDANET_REQUIRE_BROWSER"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def require_browser() -> None:
    """Skip (fail in CI) when Debian's chromium or chromedriver is not installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if not missing:
        return
    reason = (
        f"{', '.join(missing)} not found: install Debian's chromium and chromium-driver "
        "(`apt-get install -y chromium chromium-driver`, as .ci/run does) to run the page test"
    )
    if os.environ.get(REQUIRE_BROWSER):
        pytest.fail(reason)
    pytest.skip(reason)


def test_a_missing_browser_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv(REQUIRE_BROWSER, raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium.* not found: install"):
        require_browser()
    monkeypatch.setenv(REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception, match="chromium.* not found: install"):
        require_browser()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1000,1200")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# Playable length of an <audio>, once its metadata has loaded (NaN before).
AUDIO_DURATION = "return arguments[0].readyState >= 1 ? arguments[0].duration : null;"
# Whether a canvas has any painted pixel.
CANVAS_PAINTED = """
const canvas = arguments[0];
const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) return true; }
return false;
"""


def test_upload_shows_a_player_waveform_and_download_per_speaker(
    server: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    recording = tmp_path / "meeting.flac"
    recording.write_bytes(audio_bytes(0.8, sample_rate=22050, channels=2, format="FLAC"))
    browser.get(server)
    wait = WebDriverWait(browser, 40)
    wait.until(lambda b: "tdanet-tiny" in b.find_element(By.ID, "model-info").text)

    browser.find_element(By.ID, "file-input").send_keys(str(recording))
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results audio")) == 3)

    tracks = browser.find_elements(By.CSS_SELECTOR, "#results .track")
    assert [t.get_attribute("data-track") for t in tracks] == ["mixture", "speaker1", "speaker2"]
    assert [t.find_element(By.TAG_NAME, "h2").text for t in tracks] == [
        "Mixture",
        "Speaker 1",
        "Speaker 2",
    ]
    for track in tracks:
        audio = track.find_element(By.TAG_NAME, "audio")
        duration = wait.until(lambda b, a=audio: b.execute_script(AUDIO_DURATION, a))
        assert duration == pytest.approx(0.8, abs=0.01)
        assert browser.execute_script(CANVAS_PAINTED, track.find_element(By.TAG_NAME, "canvas"))
        link = track.find_element(By.TAG_NAME, "a")
        assert link.get_attribute("download") == f"meeting-{track.get_attribute('data-track')}.wav"
        assert link.get_attribute("href").startswith("blob:")
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert browser.find_element(By.ID, "summary").text.startswith("meeting.flac: 0.8 s separated")


def test_a_file_that_is_not_audio_shows_the_servers_message(
    server: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.wav"
    notes.write_text("these are meeting notes, not a recording")
    browser.get(server)
    browser.find_element(By.ID, "file-input").send_keys(str(notes))
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 30).until(lambda b: error.is_displayed())
    assert error.text.startswith("notes.wav: not a readable audio file")
    assert browser.find_elements(By.CSS_SELECTOR, "#results audio") == []
