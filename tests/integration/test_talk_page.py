"""The /talk page in headless Chromium, its microphone fed from a speech file: the transcript shows,
the reply streams in as text and plays as audio, the latency and the turn's trace are linked."""

import re

import numpy as np

from bench.speech import speak
from omniwire.audio import decode, encode_wav
from tests.integration.conftest import chromium, sign_in

CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"


def test_talking_through_the_browser(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    # Chromium loops the file: the question, then long enough a silence for the reply to come back.
    speech = decode(speak("What is the capital city of France?")).samples
    wav = tmp_path / "microphone.wav"
    wav.write_bytes(encode_wav(np.concatenate([np.zeros(8000), speech, np.zeros(16_000 * 12)]), 16_000))
    errors: list[str] = []
    with sync_playwright() as p:
        browser = chromium(
            p,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required",
        )
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, server, then="/talk")
        assert page.locator("#cluster").input_value() == CLUSTER
        page.click("#start")
        # Waits by locators: the page's CSP (script-src 'self') forbids the eval wait_for_function needs.
        expect(page.locator("#transcript")).not_to_be_empty(timeout=60_000)
        transcript = page.locator("#transcript").text_content().lower()
        expect(page.locator("body")).to_have_attribute("data-played-samples", re.compile(r"^\d{5,}$"), timeout=60_000)
        expect(page.locator("#latency")).not_to_be_empty(timeout=30_000)
        reply = page.locator("#reply").text_content()
        latency = page.locator("#latency").text_content()
        trace = page.locator("#trace").get_attribute("href")
        page.click("#stop")
        browser.close()
    assert latency.endswith("after you stopped")
    assert trace.startswith(f"/tracks/T-{CLUSTER}-") and server.http.get(trace).status_code == 200
    assert not errors, errors
    # The page shows what the server heard and answered. Whisper tiny.en, through Chromium's capture
    # and resampling, once heard "France" as "friends": the question's words are checked loosely,
    # the page's text against the records exactly.
    assert {"capital", "city"} <= set(re.findall(r"[a-z]+", transcript))
    tasks = server.http.get(f"/v1/tracks/{trace.rsplit('/', 1)[1]}").json()["tasks"]
    first = {t["task_name"]: t["result_profile"] for t in tasks if t["turn"] == 1}
    assert transcript.strip() == first["speech_to_text"]["transcript"].strip().lower()
    answered = " ".join(first["quantization_llm"]["reply_text"].split())
    assert answered and " ".join(reply.split()).startswith(answered), "the page shows the reply as recorded"
    if "france" in transcript:
        assert "paris" in reply.lower()
