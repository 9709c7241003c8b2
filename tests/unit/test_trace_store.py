import multiprocessing

import pytest

from graphs.store.trace_store import TaskStatus, TraceStore
from omniwire.tracks import new_track_id

CLUSTER = "CLUSTER_HF_ETE_CONVERSATION"
STAGES = [("speech_to_text", {}), ("hf_llm", {"prompt_template": "{transcript}"}), ("text_to_speech", {})]


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'traces.db'}"


def statuses(track):
    return [(t["turn"], t["task_name"], t["status"]) for t in track["tasks"]]


def test_turns_create_pending_tasks_in_order(url):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    assert store.track(track_id) is None and not store.track_exists(track_id)
    turn, ids = store.begin_turn(track_id, CLUSTER, STAGES)
    assert turn == 1 and len(ids) == 3
    turn2, _ = store.begin_turn(track_id, CLUSTER, STAGES)
    assert turn2 == 2
    track = store.track(track_id)
    assert track["cluster"] == CLUSTER
    assert statuses(track)[:3] == [
        (1, "speech_to_text", "pending"),
        (1, "hf_llm", "pending"),
        (1, "text_to_speech", "pending"),
    ]
    assert track["tasks"][1]["parameters"] == {"prompt_template": "{transcript}"}


def test_status_transitions_and_closing_a_turn(url):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    turn, (stt, llm, tts) = store.begin_turn(track_id, CLUSTER, STAGES)
    store.start_task(stt, 1.0)
    store.complete_task(stt, {"transcript": "hi"}, {"model_inference": 0.5, "ts_start": 1.0, "ts_end": 1.6})
    store.start_task(llm, 1.6)
    assert store.close_tasks([stt, llm, tts], "cancelled: stage 'hf_llm' failed") == 2
    tasks = store.track(track_id)["tasks"]
    assert [t["status"] for t in tasks] == ["completed", "failed", "cancelled"]
    assert tasks[0]["result_profile"] == {"transcript": "hi"}
    assert tasks[2]["error"] == "cancelled: stage 'hf_llm' failed"
    assert store.close_tasks([stt, llm, tts], "again") == 0, "closed tasks stay as they are"


def test_numpy_values_in_profiles_are_stored_as_json(url):
    np = pytest.importorskip("numpy")
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    _, (task, *_) = store.begin_turn(track_id, CLUSTER, STAGES)
    store.complete_task(task, {"score": np.float32(0.25), "n": np.int64(3)}, {"model_inference": np.float64(0.1)})
    stored = store.track(track_id)["tasks"][0]
    assert stored["result_profile"] == {"score": 0.25, "n": 3}


def test_audio_is_kept_with_the_track(url):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    turn, _ = store.begin_turn(track_id, CLUSTER, STAGES)
    audio_id = store.add_audio(track_id, turn, "reply", b"RIFF....", "audio/wav", 22050, 1.5)
    assert store.audio(audio_id) == (b"RIFF....", "audio/wav")
    assert store.audio("0" * 32) is None
    assert store.track(track_id)["audio"][0]["role"] == "reply"


def _write_turns(url: str, track_id: str, n: int) -> None:
    store = TraceStore(url)
    for _ in range(n):
        _, ids = store.begin_turn(track_id, CLUSTER, STAGES)
        for task_id in ids:
            store.start_task(task_id, 0.0)
            store.complete_task(task_id, {}, {"ts_start": 0.0, "ts_end": 0.0})


def test_writers_in_several_processes_share_one_file(url):
    """Cluster graphs run in their own processes; their writes must neither clash nor be lost."""
    track_id = new_track_id(CLUSTER)
    TraceStore(url)  # create the schema before the writers race
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_turns, args=(url, track_id, 5)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    tasks = TraceStore(url).track(track_id)["tasks"]
    assert len(tasks) == 3 * 5 * len(STAGES)
    assert sorted({t["turn"] for t in tasks}) == list(range(1, 16)), "every turn gets its own number"
    assert all(t["status"] == TaskStatus.completed.value for t in tasks)


def test_history_is_the_last_completed_exchanges(url):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    for i in range(3):
        _, (stt, llm, tts) = store.begin_turn(track_id, CLUSTER, STAGES)
        store.complete_task(stt, {"transcript": f"question {i}"}, {})
        if i != 1:  # turn 2 failed in its LLM: no exchange to remember
            store.complete_task(llm, {"reply_text": f"answer {i}"}, {})
    assert store.history(track_id, 5) == [
        {"role": "user", "content": "question 0"},
        {"role": "assistant", "content": "answer 0"},
        {"role": "user", "content": "question 2"},
        {"role": "assistant", "content": "answer 2"},
    ]
    assert store.history(track_id, 1) == store.history(track_id, 5)[2:]
    assert store.history(track_id, 0) == []
