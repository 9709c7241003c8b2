"""Seeing every track: the trace viewer in a real headless Chromium, annotations, Ray metrics."""

import time

import httpx
import pytest

from bench.speech import speak
from tests.integration.conftest import chromium, sign_in
from tests.integration.test_conversation import post

CLUSTER = "CLUSTER_HF_ETE_CONVERSATION"


@pytest.fixture(scope="module")
def track(server):
    first = post(server, speak("What is the capital city of France?"), cluster=CLUSTER)
    assert first.status_code == 200, first.text
    track_id = first.json()["track_id"]
    second = post(server, speak("And what about Spain?"), track_id=track_id)
    assert second.status_code == 200, second.text
    return server.http.get(f"/v1/tracks/{track_id}").json()


def test_annotations_are_stored_and_checked(server, track):
    url = f"/v1/tracks/{track['track_id']}/annotations"
    created = server.http.post(url, json={"turn": 1, "stage": "hf_llm", "score": 4, "note": "good answer"})
    assert created.status_code == 201, created.text
    assert server.http.post(url, json={"turn": 1, "score": 5}).status_code == 201
    bad = [
        ({"turn": 9, "score": 3}, 400, "has no turn 9"),
        ({"turn": 1, "stage": "nope", "score": 3}, 400, "has no stage 'nope'"),
        ({"turn": 1, "score": 6}, 422, "less than or equal to 5"),
    ]
    for body, status, message in bad:
        response = server.http.post(url, json=body)
        assert response.status_code == status and message in response.text
    unknown = server.http.post(f"/v1/tracks/T-{CLUSTER}-{'0' * 32}/annotations", json={"turn": 1, "score": 1})
    assert unknown.status_code == 404
    stored = server.http.get(f"/v1/tracks/{track['track_id']}").json()["annotations"]
    assert [(a["stage"], a["score"], a["note"]) for a in stored] == [("hf_llm", 4, "good answer"), (None, 5, None)]


def test_pages_in_a_real_browser(server, track):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = chromium(
            p,
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
        )
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        sign_in(page, server)
        page.goto(f"{server.url}/tracks?cluster={CLUSTER}")
        assert page.locator(f"#tracks a[href='/tracks/{track['track_id']}']").count() == 1

        page.goto(f"{server.url}/tracks/{track['track_id']}")
        assert page.locator("section.turn").count() == 2
        for number in (1, 2):
            tasks = [t for t in track["tasks"] if t["turn"] == number]
            bars = page.locator(f"#turn-{number} svg.waterfall g.bar")
            assert bars.count() == len(tasks), "one bar per task"
            assert [bars.nth(i).get_attribute("data-task") for i in range(bars.count())] == [
                t["task_name"] for t in tasks
            ]
        sources = [page.locator("audio").nth(i).get_attribute("src") for i in range(page.locator("audio").count())]
        assert len(sources) == 4, "user and reply audio of both turns"
        for src in sources:
            audio = server.http.get(src)
            assert (
                audio.status_code == 200
                and audio.headers["content-type"].startswith("audio/")
                and len(audio.content) > 1000
            )
        assert "What is the capital city of France" in page.content() or "capital" in page.content().lower()

        # rating a turn through the page's own form
        form = page.locator("#turn-2 form.rate")
        form.locator("select[name=overall]").select_option("3")
        form.locator("input[name=note]").fill("a bit short")
        with page.expect_navigation():
            form.locator("button").click()
        assert "a bit short" in page.locator("#turn-2").inner_text()

        page.goto(f"{server.url}/clusters/{CLUSTER}")
        rows = page.locator("#stages tr")
        assert rows.count() >= 1 + 4, "a header, the four stages and the overall rating"
        assert page.locator("svg.stacked g.bar").count() == 4
        assert page.locator(".histogram svg g[id^=bar-]").count() >= 1
        browser.close()
    assert errors == []


def test_custom_metrics_reach_the_metrics_port(server, track):
    wanted = {
        "ray_omniserve_stage_seconds_count": f'cluster="{CLUSTER}"',
        "ray_omniserve_time_to_first_audio_seconds_count": f'cluster="{CLUSTER}"',
        "ray_omniserve_active_tracks": f'cluster="{CLUSTER}"',
    }
    deadline = time.time() + 60
    while True:
        text = httpx.get(server.metrics_url, timeout=10).text
        found = {
            name: [line for line in text.splitlines() if line.startswith(name) and tag in line]
            for name, tag in wanted.items()
        }
        if all(found.values()) or time.time() > deadline:
            break
        time.sleep(2)
    assert all(found.values()), {name: bool(lines) for name, lines in found.items()}
    stt = [
        line
        for line in found["ray_omniserve_stage_seconds_count"]
        if 'stage="speech_to_text"' in line and 'part="model"' in line
    ]
    assert stt and float(stt[0].rsplit(" ", 1)[1]) >= 2, "both turns' speech-to-text were observed"
