"""The page in a real browser: Debian's headless Chromium driven by Selenium through Debian's chromedriver.

Uploads and records real clips from ../shared/data, reads the label, the bars and the
timeline off the page and compares them with the classifier's own answer; follows the
live view while events arrive. Screenshots go to artifacts/ (desktop and phone size).
Runs against the shipped model when it exists, else the tiny test model.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_model import EMOTIONS

from edge.classifier import StreamingClassifier
from edge.model import Model, shipped_model_path
from edge.web.app import create_app
from edge.web.live import LiveFeed
from edge.web.server import serve_in_thread

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PHONE = (390, 844)
DESKTOP = (1000, 900)
WAIT_S = 30  # generous: the machine is shared; the test never asserts on how long anything took


@pytest.fixture(scope="module")
def model_path(request) -> Path:
    """The shipped model when it has been made, otherwise the tiny random one."""
    shipped = shipped_model_path()
    if shipped.is_file() and shipped.with_suffix(".json").is_file():
        return shipped
    return request.getfixturevalue("tiny_model_path")


@pytest.fixture(scope="module")
def clip(data_dir) -> Path:
    """A real RAVDESS clip: actor 15, happy (emotion 03), strong intensity (a test speaker of the shipped model)."""
    return data_dir / "ravdess" / "Actor_15" / "03-01-03-02-01-02-15.flac"


@pytest.fixture(scope="module")
def fake_mic(clip, tmp_path_factory) -> Path:
    """The clip as 48 kHz WAV, which Chromium plays as its fake microphone."""
    x, rate = sf.read(str(clip), dtype="float32")
    from edge.resample import resample

    y = resample(x, rate)  # to 16 kHz; Chromium resamples the file to the capture rate itself
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(str(path), y, 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def driver(fake_mic):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(
            f"the browser test needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver"
        )
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not fetch a browser or driver
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        # A microphone without a person: permission granted, the clip played as the input.
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_mic}",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield browser
    browser.quit()


@pytest.fixture()
def page(driver):
    """The driver at desktop size, with the console log of earlier tests discarded."""
    driver.set_window_size(*DESKTOP)
    driver.get_log("browser")
    yield driver
    problems = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not problems, f"the browser console reported errors: {problems}"


@pytest.fixture(scope="module")
def plain_server(model_path):
    server = serve_in_thread(create_app(model_path), "127.0.0.1", 0)
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def live_server(model_path):
    feed = LiveFeed()
    server = serve_in_thread(create_app(model_path, live=feed), "127.0.0.1", 0)
    yield feed, server
    feed.close()
    server.shutdown()


def wait_for(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d), message=f"waited for {what}")


def emulate(driver, size: tuple[int, int], mobile: bool) -> None:
    """Lay the page out as on a screen of this size (a phone: mobile viewport, touch-size layout)."""
    metrics = {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def screenshot(driver, name: str, size: tuple[int, int] = DESKTOP, mobile: bool = False) -> Path:
    """The whole page laid out at ``size``, saved under artifacts/."""
    emulate(driver, size, mobile)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    clip = {"x": 0, "y": 0, "width": size[0], "height": height, "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def read_result(driver) -> dict:
    """What a person sees: the label, each bar's value and drawn width, the timeline marks."""
    from selenium.webdriver.common.by import By

    bars = {}
    for bar in driver.find_elements(By.CSS_SELECTOR, "#bars .bar"):
        track = bar.find_element(By.CSS_SELECTOR, ".track").size["width"]
        fill = bar.find_element(By.CSS_SELECTOR, ".fill").size["width"]
        bars[bar.get_attribute("data-emotion")] = {
            "p": float(bar.get_attribute("data-p")),
            "text": bar.find_element(By.CSS_SELECTOR, ".value").text,
            "drawn": fill / track,
        }
    return {
        "label": driver.find_element(By.ID, "top-label").text.lower(),
        "bars": bars,
        "marks": driver.find_elements(By.CSS_SELECTOR, "#timeline .w"),
        "speech": driver.find_element(By.ID, "speech").text,
        "name": driver.find_element(By.ID, "result-name").text,
    }


def test_upload_a_real_clip_and_read_label_and_bars(page, plain_server, clip, model_path):
    from selenium.webdriver.common.by import By

    expected = StreamingClassifier(Model(model_path)).classify_file(str(clip))
    page.get(plain_server.url)
    assert page.find_element(By.ID, "result").is_displayed() is False
    page.find_element(By.ID, "file").send_keys(str(clip))  # the browser reads it; the server sees only bytes
    page.find_element(By.ID, "upload").click()
    wait_for(page, lambda d: d.find_element(By.ID, "top-label").text, "the result")

    seen = read_result(page)
    assert seen["label"] == expected.label
    assert seen["name"] == clip.name
    assert list(seen["bars"]) == list(EMOTIONS)
    for emotion, p in zip(EMOTIONS, expected.probs, strict=True):
        bar = seen["bars"][emotion]
        assert bar["p"] == pytest.approx(float(p), abs=1e-4)
        assert bar["drawn"] == pytest.approx(float(p), abs=0.02)  # the bar's length is its probability
        assert bar["text"].endswith("%")
    assert len(seen["marks"]) == len(expected.windows)
    labels = [m.get_attribute("data-emotion") for m in seen["marks"]]
    assert labels == [w.label for w in expected.windows]
    assert seen["speech"] == ("found" if expected.speech else "not found")

    assert screenshot(page, "web_upload.png").stat().st_size > 10_000
    emulate(page, PHONE, mobile=True)
    width = page.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0], "the page scrolls sideways on a phone"
    screenshot(page, "web_upload_phone.png", PHONE, mobile=True)


def test_labels_the_stylesheet_has_no_colour_for_get_colours_of_their_own(page, clip, tmp_path):
    """A model of other labels: every bar, mark and legend key is coloured, each label differently."""
    from selenium.webdriver.common.by import By
    from tiny_model import build_tiny_model

    labels = ("bored", "frustrated", "neutral", "złość")
    server = serve_in_thread(create_app(build_tiny_model(tmp_path, name="own", labels=labels)), "127.0.0.1", 0)
    try:
        page.get(server.url)
        page.find_element(By.ID, "file").send_keys(str(clip))
        page.find_element(By.ID, "upload").click()
        wait_for(page, lambda d: d.find_element(By.ID, "top-label").text, "the result")
        colour = "return getComputedStyle(arguments[0]).backgroundColor"
        fills = {
            b.get_attribute("data-emotion"): page.execute_script(colour, b.find_element(By.CSS_SELECTOR, ".fill"))
            for b in page.find_elements(By.CSS_SELECTOR, "#bars .bar")
        }
        keys = {
            k.get_attribute("data-emotion"): page.execute_script(colour, k.find_element(By.TAG_NAME, "i"))
            for k in page.find_elements(By.CSS_SELECTOR, ".key")
        }
        marks = page.find_elements(By.CSS_SELECTOR, "#timeline .w:not(.quiet)")
    finally:
        server.shutdown()
    assert list(fills) == list(labels) == list(keys)
    assert len(set(fills.values())) == len(labels), f"two labels share a colour: {fills}"
    assert fills == keys, "a bar and its legend key differ"
    assert all(page.execute_script(colour, m) == fills[m.get_attribute("data-emotion")] for m in marks)


def test_a_file_that_is_not_audio_shows_the_error(page, plain_server, tmp_path):
    from selenium.webdriver.common.by import By

    fake = tmp_path / "notes.wav"
    fake.write_text("these are notes, not audio\n" * 20)
    page.get(plain_server.url)
    page.find_element(By.ID, "file").send_keys(str(fake))
    page.find_element(By.ID, "upload").click()
    status = page.find_element(By.ID, "status")
    wait_for(page, lambda d: "error" in status.get_attribute("class"), "the error")
    assert status.text == "notes.wav: not an audio file that can be read (WAV, FLAC, OGG, AIFF, MP3)"
    assert page.find_element(By.ID, "result").is_displayed() is False
    page.get_log("browser")  # the 400 answer is logged by the browser as a failed request; it is the point here


def test_record_in_the_browser_and_classify_the_wav(page, plain_server):
    from selenium.webdriver.common.by import By

    page.get(plain_server.url)
    record = page.find_element(By.ID, "record")
    assert record.is_enabled(), page.find_element(By.ID, "record-note").text
    record.click()
    wait_for(page, lambda d: record.get_attribute("aria-pressed") == "true", "recording to start")
    wait_for(page, lambda d: "Recording… 2 s" in d.find_element(By.ID, "status").text, "two seconds of recording")
    record.click()
    wait_for(page, lambda d: d.find_element(By.ID, "top-label").text, "the result of the recording")
    seen = read_result(page)
    assert seen["name"] == "recording.wav"
    assert seen["label"] in EMOTIONS
    assert sum(b["p"] for b in seen["bars"].values()) == pytest.approx(1.0, abs=0.05)
    duration = float(page.find_element(By.ID, "duration").text.split()[0])
    assert duration >= 1.5  # the WAV the page wrote holds the seconds it recorded
    assert seen["speech"] == "found"  # the fake microphone played a real voice


def test_live_view_follows_the_service_as_events_arrive(page, live_server, clip, model_path):
    from selenium.webdriver.common.by import By

    feed, server = live_server
    page.get(server.url)
    status = page.find_element(By.ID, "live-status")
    wait_for(page, lambda d: status.get_attribute("data-status") == "live", "the event stream")
    assert page.find_element(By.ID, "live-timeline").get_attribute("data-count") == "0"

    # What the daemon sends: each window of a real clip, then the smoothed state, an alert, health.
    classifier = StreamingClassifier(Model(model_path))
    x, rate = sf.read(str(clip), dtype="float32")
    windows = classifier.process(x, rate) + classifier.flush()
    for w in windows:
        feed.handle({"type": "window", "time_s": w.end_s, **w.to_dict()})
    mean = np.mean([w.probs for w in windows], axis=0)
    state = EMOTIONS[int(np.argmax(mean))]
    feed.handle({"type": "state", "time_s": windows[-1].end_s, "state": state, "probs": dict(zip(EMOTIONS, map(float, mean), strict=True))})
    feed.handle(
        {
            "type": "alert",
            "time_s": 3.0,
            "id": "t-1",
            "emotion": "angry",
            "score": 0.72,
            "started_s": 3.0,
            "wall_time": "2026-11-25T05:00:00Z",
        }
    )
    feed.handle(
        {
            "type": "alert",
            "time_s": 3.0,
            "id": "t-2",
            "emotion": "fearful",
            "score": 0.61,
            "started_s": 3.0,
            "wall_time": "2026-11-25T05:00:00Z",
        }
    )
    feed.handle({"type": "alert_end", "time_s": 3.5, "id": "t-2", "emotion": "fearful", "ended_s": 3.5, "duration_s": 0.5})
    feed.handle(
        {
            "type": "health",
            "time_s": 3.5,
            "source": f"file {clip.name}",
            "sinks": {"stdout": "ok", "http": feed.status},
            "queue_length": 0,
            "cpu_percent": 4.2,
            "uptime_s": 65.0,
        }
    )

    timeline = page.find_element(By.ID, "live-timeline")
    wait_for(page, lambda d: timeline.get_attribute("data-count") == str(len(windows)), "every window on the timeline")
    wait_for(page, lambda d: d.find_element(By.ID, "live-state").get_attribute("data-state") == state, "the state")
    assert page.find_element(By.ID, "live-state").text.lower() == state
    alerts = wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#live-alerts .alert"), "the alert")
    assert [a.text for a in alerts] == ["angry"]  # the fearful one ended
    health = page.find_element(By.ID, "live-health")
    wait_for(page, lambda d: clip.name in health.text, "the health report")
    assert "4.2 % of one core" in health.text and "stdout: ok" in health.text and "1 min 5 s" in health.text
    bars = page.find_elements(By.CSS_SELECTOR, "#live-bars .bar")
    assert [b.get_attribute("data-emotion") for b in bars] == list(EMOTIONS)

    # The same page still classifies uploads under the service.
    page.find_element(By.ID, "file").send_keys(str(clip))
    page.find_element(By.ID, "upload").click()
    wait_for(page, lambda d: d.find_element(By.ID, "top-label").text, "the upload's result")
    screenshot(page, "web_live.png")
    screenshot(page, "web_live_phone.png", PHONE, mobile=True)

    feed.close()
    wait_for(page, lambda d: status.get_attribute("data-status") == "stopped", "the end of the stream")


def test_with_a_token_the_page_works_when_opened_with_it(page, model_path, clip):
    """Behind a token (as off loopback): the page's assets, uploads and live stream all carry it."""
    from selenium.webdriver.common.by import By

    token = "browser-test-token-0123456789abcdef"
    feed = LiveFeed()
    server = serve_in_thread(create_app(model_path, live=feed, token=token), "127.0.0.1", 0)
    try:
        page.get(server.url)
        assert "requires its token" in page.find_element(By.TAG_NAME, "body").text
        page.get_log("browser")  # the refused page load is logged as a failed request; it is the point here
        page.get(server.url + "?token=" + token)
        status = page.find_element(By.ID, "live-status")
        wait_for(page, lambda d: status.get_attribute("data-status") == "live", "the event stream with the token")
        page.find_element(By.ID, "file").send_keys(str(clip))
        page.find_element(By.ID, "upload").click()
        wait_for(page, lambda d: d.find_element(By.ID, "top-label").text, "the result with the token")
        assert page.find_element(By.ID, "result-name").text == clip.name
    finally:
        feed.close()
        server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_live_view_of_the_real_service_fed_a_file(page, clip, model_path, tmp_path):
    """`python -m edge run --source FILE --realtime --http`: the page follows the running process."""
    from selenium.webdriver.common.by import By

    port = free_port()
    data = clip.parents[2]  # run from the corpora folder so the page shows a short source name
    command = [sys.executable, "-m", "edge", "run", "--source", str(clip.relative_to(data)), "--realtime", "--loop"]
    command += ["--model", str(model_path), "--http", f"127.0.0.1:{port}"]
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        service = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=data)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(page, lambda d: _answers(url) or service.poll() is not None, "the service's web page")
        assert service.poll() is None, log_path.read_text()
        page.get(url)
        status = page.find_element(By.ID, "live-status")
        wait_for(page, lambda d: status.get_attribute("data-status") == "live", "the event stream")
        timeline = page.find_element(By.ID, "live-timeline")
        wait_for(page, lambda d: int(timeline.get_attribute("data-count")) >= 4, "four windows from the service")
        health = page.find_element(By.ID, "live-health")
        wait_for(page, lambda d: clip.name in health.text, "the service's health report")
        assert "http: ok, 1 viewer(s)" in health.text
        state = page.find_element(By.ID, "live-state").get_attribute("data-state")
        assert state in (*EMOTIONS, "silence")
        # An upload while the service runs (the other test speaker, angry): the README's screenshot shows both halves.
        other = data / "ravdess" / "Actor_16" / "03-01-05-02-01-01-16.flac"
        page.find_element(By.ID, "file").send_keys(str(other))
        page.find_element(By.ID, "upload").click()
        wait_for(page, lambda d: d.find_element(By.ID, "top-label").text, "the upload's result")
        wait_for(page, lambda d: int(timeline.get_attribute("data-count")) >= 8, "a few more windows")
        screenshot(page, "web_live_service.png")
        service.send_signal(signal.SIGTERM)
        wait_for(page, lambda d: status.get_attribute("data-status") == "stopped", "the page to see the service stop")
        assert service.wait(10) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "api/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# --------------------------------------------------------------------------------------------- the history of days


def plausible_history(path: Path, labels: tuple[str, ...], days: int = 30) -> None:
    """``days`` of minutes up to today, as the service writes them: a few hours of listening a day, sadder on
    weekday evenings, a row of angry days with alerts. Made up (seeded), not heard: a month of listening cannot be replayed in a test."""
    from datetime import date, timedelta

    from edge import history, history_query

    rng = np.random.default_rng(16)
    source = history.Source("browser-test", "ab" * 32, "test", labels)
    minutes = []
    today = date.today()
    base = np.array([0.40 if e == "neutral" else 0.12 if e in ("calm", "happy") else 0.06 for e in labels])
    for d in range(days):
        day = today - timedelta(days=days - 1 - d)
        if d in (5, 17):  # days the device was off
            continue
        angry_days = 20 <= d <= 23
        for hour in sorted(rng.choice(np.arange(7, 23), size=int(rng.integers(2, 6)), replace=False)):
            evening = hour >= 18 and day.weekday() < 5
            weights = base.copy()
            if evening and "sad" in labels:
                weights[labels.index("sad")] += 0.35
            if angry_days and "angry" in labels:
                weights[labels.index("angry")] += 0.30
            weights /= weights.sum()
            start = int(history_query.local_midnight(day)) + int(hour) * 3600
            for i in range(60):
                m = history.Minute(start + 60 * i, heard_s=60.0)
                n = int(rng.integers(30, 100))  # speech windows of the 120 in a minute
                m.speech_s = n * 0.5
                counts = rng.multinomial(n, weights)
                m.verdicts = {label: int(c) for label, c in zip(labels, counts, strict=True) if c}
                m.prob_sums = {label: float(p * n) for label, p in zip(labels, 0.5 * weights + 0.5 * counts / n, strict=True)}
                if angry_days and i == 30 and hour == 19 and "angry" in labels:
                    m.raised = {"angry": 1}
                if evening and i == 45 and "sad" in labels and d % 3 == 0:
                    m.raised = {"sad": 1}
                minutes.append(m)
    db = history.open_for_writing(path)
    try:
        history.write_minutes(db, source, minutes)
    finally:
        db.close()


def element_screenshot(driver, css: str, name: str) -> Path:
    """One element of the page (laid out at desktop size), saved under artifacts/."""
    rect = driver.execute_script(
        "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height};",
        css,
    )
    margin = 8
    clip = {
        "x": rect["x"] - margin,
        "y": rect["y"] - margin,
        "width": rect["width"] + 2 * margin,
        "height": rect["height"] + 2 * margin,
        "scale": 1,
    }
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def test_history_days_and_heat_map_are_drawn_from_the_database(page, model_path, tmp_path):
    """The days view and the weekday-by-hour heat map under the live view, read off the page against GET /api/history."""
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    labels = Model(model_path).labels
    db = tmp_path / "history.sqlite"
    plausible_history(db, labels)
    token = "browser-history-token-0123456789"
    feed = LiveFeed()
    server = serve_in_thread(create_app(model_path, live=feed, history=str(db), token=token), "127.0.0.1", 0)
    try:
        request = urllib.request.Request(server.url + "api/history?by=day&since=2000-01-01", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            answer = json.load(r)
        periods = {p["period"]: p for p in answer["periods"]}
        page.get(server.url + "?token=" + token)
        days = page.find_element(By.ID, "history-days")
        wait_for(page, lambda d: days.get_attribute("data-count") == str(len(periods)), "the days from the history")

        columns = page.find_elements(By.CSS_SELECTOR, "#history-days .day")
        assert len(columns) == 30  # every day of the range, listened to or not
        most = max(p["speech_s"] for p in periods.values())
        bars = {b.get_attribute("data-day"): b for b in page.find_elements(By.CSS_SELECTOR, "#history-hours .day")}
        for column in columns:
            day = column.get_attribute("data-day")
            stack = column.find_element(By.CSS_SELECTOR, ".stack")
            segments = stack.find_elements(By.CSS_SELECTOR, ".seg")
            bar, fill = bars[day], bars[day].find_element(By.CSS_SELECTOR, ".fill")
            if day not in periods:
                assert segments == [] and "none" in stack.get_attribute("class")
                assert fill.size["height"] == 0
                continue
            p = periods[day]
            drawn = {s.get_attribute("data-emotion"): s.size["height"] / stack.size["height"] for s in segments}
            assert list(drawn) == [label for label in labels if p["shares"].get(label, 0) > 0]  # stacked in the model's order
            for label, share in drawn.items():
                assert share == pytest.approx(p["shares"][label], abs=0.015)  # a segment's height is its share of the day's speech
            assert fill.size["height"] / bar.size["height"] == pytest.approx(p["speech_s"] / most, abs=0.03)
            alerts = sum(p["alerts"].values())
            assert column.get_attribute("data-alerts") == str(alerts)
            assert column.find_element(By.CSS_SELECTOR, ".mark").text == ("" if not alerts else "▲" if alerts == 1 else f"▲{alerts}")

        heat = page.find_element(By.ID, "history-heat")
        cells = page.find_elements(By.CSS_SELECTOR, "#history-heat .cell")
        assert len(cells) == 7 * 24
        heard = {(c["weekday"], c["hour"]): c for c in answer["heatmap"] if c["speech_s"] > 0}
        assert heat.get_attribute("data-count") == str(len(heard))
        # It opens on the label alerted most in the range, and shows its share in each hour of each weekday.
        alerted = {label: sum(p["alerts"].get(label, 0) for p in periods.values()) for label in labels}
        shown = heat.get_attribute("data-label")
        assert shown == max(labels, key=lambda label: alerted[label])
        for cell in cells:
            key = (int(cell.get_attribute("data-weekday")), int(cell.get_attribute("data-hour")))
            if key in heard:
                assert float(cell.get_attribute("data-share")) == pytest.approx(heard[key]["shares"].get(shown, 0), abs=1e-6)
            else:
                assert "empty" in cell.get_attribute("class")
        if "sad" in labels:  # weekday evenings were made sadder: the heat map says so
            Select(page.find_element(By.ID, "heat-label")).select_by_visible_text("sad")
            wait_for(page, lambda d: heat.get_attribute("data-label") == "sad", "the heat map of sadness")
            share = {
                (int(c.get_attribute("data-weekday")), int(c.get_attribute("data-hour"))): float(c.get_attribute("data-share") or 0)
                for c in cells
                if "empty" not in c.get_attribute("class")
            }
            evenings = [v for (w, h), v in share.items() if w < 5 and h >= 18]
            mornings = [v for (w, h), v in share.items() if w < 5 and h < 12]
            assert min(evenings) > max(mornings)

        element_screenshot(page, "#history", "web_history.png")
        emulate(page, PHONE, mobile=True)
        assert page.execute_script("return document.documentElement.scrollWidth") <= PHONE[0], "the history scrolls sideways on a phone"
        screenshot(page, "web_history_phone.png", PHONE, mobile=True)
    finally:
        feed.close()
        server.shutdown()
