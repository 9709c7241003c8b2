"""Tracks as data a user controls: listing them, deleting one with everything it kept, and
recordings removed by retention, over real HTTP against the session server's database."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bench.speech import speak
from graphs.store import AudioRecord, TraceStore
from omniwire.tracks import new_track_id
from tests.integration.test_conversation import MALFORMED, UNKNOWN_TRACK, post

CLUSTER = "CLUSTER_HF_ETE_CONVERSATION"


@pytest.fixture(scope="module")
def two_tracks(server):
    """Two one-turn tracks, the second rated."""
    ids = []
    for question in ("What is the capital city of France?", "What colour is the sky?"):
        response = post(server, speak(question), cluster=CLUSTER)
        assert response.status_code == 200, response.text
        ids.append(response.json()["track_id"])
    rated = server.http.post(f"/v1/tracks/{ids[1]}/annotations", json={"turn": 1, "score": 4})
    assert rated.status_code == 201
    return ids


def test_tracks_are_listed_newest_first_and_paged(server, two_tracks):
    first, second = two_tracks
    page = server.http.get("/v1/tracks", params={"cluster": CLUSTER, "status": "completed", "limit": 1}).json()
    assert [t["track_id"] for t in page["tracks"]] == [second]
    item = page["tracks"][0]
    assert item["cluster"] == CLUSTER and item["turns"] == 1 and item["status"] == "completed"
    assert item["created_at"] and item["last_activity"] >= item["created_at"]
    assert page["next_offset"] == 1
    following = server.http.get(page["next"]).json()
    assert following["tracks"][0]["track_id"] == first

    since = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert server.http.get("/v1/tracks", params={"since": since}).json()["tracks"] == []
    recent = server.http.get("/v1/tracks", params={"since": datetime.now(UTC).timestamp() - 3600}).json()
    assert {first, second} <= {t["track_id"] for t in recent["tracks"]}


@pytest.mark.parametrize(
    "params,name",
    [
        ({"status": "happy"}, "status"),
        ({"since": "last tuesday"}, "since"),
        ({"limit": 1000}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
def test_bad_filters_name_the_parameter(server, params, name):
    response = server.http.get("/v1/tracks", params=params)
    assert response.status_code == 422
    assert name in str(response.json()["detail"])


def test_an_unknown_cluster_is_not_found_and_named(server):
    response = server.http.get("/v1/tracks", params={"cluster": "CLUSTER_NOPE"})
    assert response.status_code == 404
    assert "CLUSTER_NOPE" in response.json()["detail"]


def test_deleting_a_track_leaves_nothing_behind(server, two_tracks):
    gone, kept = two_tracks
    before = server.http.get(f"/v1/tracks/{kept}").json()
    audio = [a["id"] for a in server.http.get(f"/v1/tracks/{gone}").json()["audio"]]
    assert len(audio) == 2  # the question and the reply
    assert server.http.delete(f"/v1/tracks/{gone}").status_code == 204

    assert server.http.get(f"/v1/tracks/{gone}").status_code == 404
    assert all(server.http.get(f"/v1/audio/{a}").status_code == 404 for a in audio)
    assert gone not in {t["track_id"] for t in server.http.get("/v1/tracks").json()["tracks"]}
    assert server.http.get(f"/v1/tracks/{kept}").json() == before, "other tracks are untouched"
    assert server.http.delete(f"/v1/tracks/{gone}").status_code == 404
    assert server.http.delete(f"/v1/tracks/{UNKNOWN_TRACK}").status_code == 404
    assert server.http.delete(f"/v1/tracks/{MALFORMED}").status_code == 400


def test_a_track_with_a_running_turn_is_not_deleted(server):
    store = TraceStore(server.trace_store_url)
    track_id = new_track_id(CLUSTER)
    _, task_ids = store.begin_turn(track_id, CLUSTER, [("speech_to_text", {})])
    response = server.http.delete(f"/v1/tracks/{track_id}")
    assert response.status_code == 409 and "running" in response.json()["detail"]
    store.close_tasks(task_ids, "test: the turn ended")
    assert server.http.delete(f"/v1/tracks/{track_id}").status_code == 204


def test_audio_removed_by_retention_is_gone_not_unknown(server, two_tracks):
    store = TraceStore(server.trace_store_url)
    track_id = two_tracks[1]
    old = store.add_audio(track_id, 1, "user", b"RIFF", "audio/wav", 16000, 0.1)
    with store.engine.begin() as conn:
        conn.execute(
            update(AudioRecord).where(AudioRecord.id == old).values(created_at=datetime.now(UTC) - timedelta(days=400))
        )
    assert store.purge_audio(365) == 1, "only the old recording"
    response = server.http.get(f"/v1/audio/{old}")
    assert response.status_code == 410 and "retention" in response.json()["detail"]
    track = server.http.get(f"/v1/tracks/{track_id}").json()
    assert len(track["tasks"]) > 0
    assert [a["removed"] for a in track["audio"] if a["id"] == old] == ["removed by retention: kept for 365 days"]
