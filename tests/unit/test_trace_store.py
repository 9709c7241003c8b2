import logging
import multiprocessing
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

from graphs.store import (
    TaskRecord,
    TaskStatus,
    TraceStore,
    TrackBusy,
    TurnEventRecord,
    history_start,
    metadata,
    migration_config,
)
from omniwire.tracks import new_track_id

CLUSTER = "CLUSTER_HF_ETE_CONVERSATION"
STAGES = [("speech_to_text", {}), ("hf_llm", {"prompt_template": "{transcript}"}), ("text_to_speech", {})]


@pytest.fixture
def url(store_url):
    return store_url


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
    assert store.audio(audio_id) == (b"RIFF....", "audio/wav", None)
    assert store.audio("0" * 32) is None
    assert store.track(track_id)["audio"][0]["role"] == "reply"


def _write_turns(url: str, track_id: str, n: int, start) -> None:
    start.wait(60)
    store = TraceStore(url)
    for _ in range(n):
        _, ids = store.begin_turn(track_id, CLUSTER, STAGES)
        for task_id in ids:
            store.start_task(task_id, 0.0)
            store.complete_task(task_id, {}, {"ts_start": 0.0, "ts_end": 0.0})


def test_writers_in_several_processes_share_one_database(url):
    """Cluster graphs run in their own processes, each opening the store (so migrating a new database)
    at once; their writes must neither clash nor be lost."""
    track_id = new_track_id(CLUSTER)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(3)
    procs = [ctx.Process(target=_write_turns, args=(url, track_id, 5, start)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    tasks = TraceStore(url).track(track_id)["tasks"]
    assert len(tasks) == 3 * 5 * len(STAGES)
    assert sorted({t["turn"] for t in tasks}) == list(range(1, 16)), "every turn gets its own number"
    assert all(t["status"] == TaskStatus.completed.value for t in tasks)


def test_sqlite_reads_do_not_wait_for_the_write_lock(tmp_path):
    path = tmp_path / "traces.db"
    store = TraceStore(f"sqlite:///{path}")
    track_id = new_track_id(CLUSTER)
    store.begin_turn(track_id, CLUSTER, STAGES)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        assert len(store.track(track_id)["tasks"]) == 3 and len(store.tracks()) == 1
        assert time.monotonic() - started < 1, "a read takes no lock that a writer holds"
        with ThreadPoolExecutor(1) as pool:
            write = pool.submit(store.begin_turn, track_id, CLUSTER, STAGES)
            time.sleep(0.5)
            assert not write.done(), "a write waits for the lock"
            writer.execute("ROLLBACK")
            assert write.result(timeout=10)[0] == 2
    finally:
        writer.close()


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


def test_a_reply_spoken_over_is_remembered_as_far_as_it_was_heard(url):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    _, (stt, llm, tts) = store.begin_turn(track_id, CLUSTER, STAGES)
    store.complete_task(stt, {"transcript": "Tell me about Paris."}, {})
    store.complete_task(llm, {"reply_text": "Paris is the capital of France. It has the Louvre."}, {})
    store.complete_task(tts, {"sentences": 2, "spoken_text": "Paris is the capital of France. It has the Louvre."}, {})
    store.record_heard(track_id, [stt, llm, tts], "Paris is the capital", 1.2)
    record = store.track(track_id)["tasks"][2]
    assert record["status"] == "completed", "the speech was made; the user cut its playing short"
    assert record["result_profile"] == {
        "sentences": 2,
        "spoken_text": "Paris is the capital of France. It has the Louvre.",
        "heard_text": "Paris is the capital",
        "heard_s": 1.2,
        "interrupted": True,
    }
    assert [t["result_profile"] for t in store.track(track_id)["tasks"][:2]] == [
        {"transcript": "Tell me about Paris."},
        {"reply_text": "Paris is the capital of France. It has the Louvre."},
    ], "only the speech record says what was heard"
    assert store.history(track_id, 5)[-1] == {"role": "assistant", "content": "Paris is the capital"}

    store.record_heard(track_id, [stt, llm, tts], "", 0.0)
    assert store.history(track_id, 5) == [], "nothing of the reply heard: no exchange to build on"


def test_what_was_heard_holds_when_recorded_before_the_turn_closed(url):
    """The session records it at once; the interrupted turn's graph closes its tasks later, and
    the records it writes then are read with what was heard."""
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    _, (stt, llm, tts) = store.begin_turn(track_id, CLUSTER, STAGES)
    store.complete_task(stt, {"transcript": "Tell me a story."}, {})
    store.start_task(tts, time.time())
    store.record_heard(track_id, [stt, llm, tts], "Once upon", 0.6)
    assert "heard_text" not in store.track(track_id)["tasks"][2]["result_profile"], "nothing spoken yet"
    store.cancel_task(tts, "cancelled: interrupted", {"spoken_text": "Once upon a time.", "interrupted": True})
    store.close_tasks([llm], "cancelled: interrupted")
    record = store.track(track_id)["tasks"][2]
    assert record["status"] == "cancelled"
    assert record["result_profile"] == {
        "spoken_text": "Once upon a time.",
        "interrupted": True,
        "heard_text": "Once upon",
        "heard_s": 0.6,
    }
    assert store.history(track_id, 5) == [
        {"role": "user", "content": "Tell me a story."},
        {"role": "assistant", "content": "Once upon"},
    ]


def _answered_turn(store: TraceStore, track_id: str, question: str, answer: str) -> list[str]:
    _, ids = store.begin_turn(track_id, CLUSTER, STAGES)
    stt, llm, tts = ids
    store.complete_task(stt, {"transcript": question}, {"ts_start": 1.0, "ts_end": 1.5})
    store.complete_task(llm, {"reply_text": answer}, {"ts_start": 1.5, "ts_end": 2.0})
    store.complete_task(tts, {"spoken_text": answer}, {"ts_start": 2.0, "ts_end": 2.5})
    return ids


@pytest.mark.parametrize("order", ["after the graph closed it", "before the graph closed it"])
def test_a_discarded_turn_is_cancelled_and_not_history(url, order):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    _answered_turn(store, track_id, "What is the capital", "Which capital?")
    dropped = store.begin_turn(track_id, CLUSTER, STAGES)[1]
    stt, llm, tts = dropped
    reason = "cancelled: the user went on speaking after a pause"

    def graph_closes() -> None:
        store.complete_task(stt, {"transcript": "What is the capital"}, {"ts_start": 1.0, "ts_end": 1.5})
        store.cancel_task(llm, "cancelled: interrupted", {"reply_text": "Paris", "interrupted": True})
        store.close_tasks(dropped, "cancelled: interrupted")

    if order == "after the graph closed it":
        graph_closes()
        store.record_discarded(track_id, dropped, reason)
    else:
        store.record_discarded(track_id, dropped, reason)
        assert store.history(track_id, 5)[-1]["content"] == "Which capital?"
        graph_closes()
    store.record_heard(track_id, dropped, "Paris", 0.3)  # a discarded turn said nothing: this changes nothing

    track = store.track(track_id)
    tasks = [t for t in track["tasks"] if t["turn"] == 2]
    assert [t["status"] for t in tasks] == ["cancelled"] * 3
    assert all(t["error"] == reason for t in tasks)
    assert [t["result_profile"] for t in tasks] == [
        {"transcript": "What is the capital", "discarded": True},
        {"interrupted": True, "discarded": True},
        {"discarded": True},
    ]
    assert [t["status"] for t in store.tracks()[0:1]] == ["cancelled"]
    assert len(store.history(track_id, 5)) == 2, "the discarded turn is neither said nor answered"
    assert [len(turn) for turn in store.cluster_turns(CLUSTER)] == [3, 3]
    discarded = [t for turn in store.cluster_turns(CLUSTER) for t in turn if t["turn"] == 2]
    assert all(t["result_profile"].get("discarded") for t in discarded)


def test_a_turn_discarded_before_its_graph_wrote_it_is_discarded_once_written(url):
    """The session chose the task ids; the graph may make the track and its records after the fact."""
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    task_ids = ["a" * 32, "b" * 32, "c" * 32]
    store.record_discarded(track_id, task_ids, "cancelled: the utterance went on")
    assert store.track(track_id) is None
    store.begin_turn(track_id, CLUSTER, STAGES, task_ids=task_ids)
    store.close_tasks(task_ids, "cancelled: interrupted")
    tasks = store.track(track_id)["tasks"]
    assert [(t["status"], t["error"]) for t in tasks] == [("cancelled", "cancelled: the utterance went on")] * 3
    assert store.history(track_id, 5) == []


def test_a_fact_makes_its_records_as_new_as_itself(url):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    ids = _answered_turn(store, track_id, "Hello", "Hi there, how can I help?")
    before = store.track(track_id)["tasks"]
    time.sleep(0.01)
    store.record_heard(track_id, ids, "Hi there", 0.5)
    after = store.track(track_id)["tasks"]
    assert [a["updated_at"] == b["updated_at"] for a, b in zip(after, before)] == [True, True, False]
    assert store.tracks()[0]["last_activity"] == after[2]["updated_at"]


def test_opening_a_store_says_only_when_it_migrates(url, caplog):
    with caplog.at_level(logging.INFO):
        TraceStore(url)
        TraceStore(url)
    assert not [r for r in caplog.records if r.name.startswith("alembic")], "Alembic's chatter at every open"
    migrated = [r.getMessage() for r in caplog.records if r.name == "graphs.store.schema"]
    assert len(migrated) == 1 and "schema migrated from None to" in migrated[0], migrated


def test_history_drops_its_oldest_exchanges_half_a_window_at_a_time():
    """The window's start stays put between moves, so the prompt's beginning (cached by the LLM) does."""
    for turns in (1, 2, 5, 6):
        starts = [history_start(n, turns) for n in range(1, 40)]
        least = turns - (turns + 1) // 2 + 1
        assert all(min(n, least) <= n - start <= turns for n, start in zip(range(1, 40), starts))
        moves = [n for n, (a, b) in enumerate(zip(starts, starts[1:]), start=2) if b != a]
        assert all(later - earlier == (turns + 1) // 2 for earlier, later in zip(moves, moves[1:])), moves
    assert [history_start(n, 5) for n in range(4, 12)] == [0, 0, 3, 3, 3, 6, 6, 6]


def test_history_keeps_its_beginning_until_the_window_moves(url):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    firsts = []
    for i in range(9):
        _, (stt, llm, _tts) = store.begin_turn(track_id, CLUSTER, STAGES)
        store.complete_task(stt, {"transcript": f"question {i}"}, {})
        store.complete_task(llm, {"reply_text": f"answer {i}"}, {})
        history = store.history(track_id, 5)
        assert history[-1] == {"role": "assistant", "content": f"answer {i}"} and len(history) <= 10
        firsts.append(history[0]["content"])
    assert firsts == ["question 0"] * 5 + ["question 3"] * 3 + ["question 6"]


def _finished_turn(store: TraceStore, track_id: str, cluster: str = CLUSTER, audio: bool = True) -> list[str]:
    user_audio = {"data": b"RIFFuser", "media_type": "audio/wav", "sample_rate": 16000, "duration_s": 1.0}
    turn, ids = store.begin_turn(track_id, cluster, STAGES, user_audio=user_audio if audio else None)
    for task_id in ids:
        store.complete_task(task_id, {}, {"model_inference": 0.1, "ts_start": 1.0, "ts_end": 1.1})
    if audio:
        store.add_audio(track_id, turn, "reply", b"RIFFreply", "audio/wav", 22050, 1.0)
    return ids


def test_tracks_filter_by_cluster_status_and_time_and_page(url):
    store = TraceStore(url)
    other = "CLUSTER_ONNX_ETE_CONVERSATION"
    done = [new_track_id(CLUSTER) for _ in range(5)]
    for track_id in done:
        _finished_turn(store, track_id, audio=False)
    failed = new_track_id(CLUSTER)
    _, (stt, *_rest) = store.begin_turn(failed, CLUSTER, STAGES)
    store.fail_task(stt, "boom", {})
    running = new_track_id(other)
    store.begin_turn(running, other, STAGES)

    everything = store.tracks()
    assert [t["track_id"] for t in everything] == [running, failed, *reversed(done)], "newest first"
    assert everything[0]["status"] == "running" and everything[0]["cluster"] == other
    assert everything[1]["status"] == "failed"
    assert {"turns", "created_at", "last_activity"} <= set(everything[2])

    assert [t["track_id"] for t in store.tracks(cluster=other)] == [running]
    completed = store.tracks(status="completed", limit=2)
    assert [t["track_id"] for t in completed] == [done[4], done[3]]
    assert [t["track_id"] for t in store.tracks(status="completed", limit=2, offset=2)] == [done[2], done[1]]
    assert [t["track_id"] for t in store.tracks(status="completed", limit=2, offset=4)] == [done[0]]
    assert [t["track_id"] for t in store.tracks(limit=3, offset=1)] == [failed, done[4], done[3]]
    assert store.tracks(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(store.tracks(since=datetime.now(UTC) - timedelta(minutes=1))) == 7


def test_deleting_a_track_leaves_nothing_of_it_and_others_untouched(url):
    store = TraceStore(url)
    gone, kept = new_track_id(CLUSTER), new_track_id(CLUSTER)
    for track_id in (gone, kept):
        ids = _finished_turn(store, track_id)
        store.annotate(track_id, 1, None, 4, "fine")
        store.record_heard(track_id, ids, "", 0.0)
    gone_audio = [a["id"] for a in store.track(gone)["audio"]]

    assert store.delete_track(gone) is True
    assert store.track(gone) is None and all(store.audio(a) is None for a in gone_audio)
    assert store.delete_track(gone) is False
    with store.engine.connect() as connection:
        events = connection.execute(select(TurnEventRecord.track_id)).scalars().all()
    assert events == [kept], "its turn events went with it"
    track = store.track(kept)
    assert len(track["tasks"]) == 3 and len(track["audio"]) == 2 and len(track["annotations"]) == 1


def test_a_track_with_a_running_turn_is_not_deleted(url):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    _, (stt, *_rest) = store.begin_turn(track_id, CLUSTER, STAGES)
    store.start_task(stt, 1.0)
    with pytest.raises(TrackBusy, match="running"):
        store.delete_track(track_id)
    assert len(store.track(track_id)["tasks"]) == 3


def test_retention_removes_old_audio_and_keeps_the_records(url):
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    _finished_turn(store, track_id)
    old = [a["id"] for a in store.track(track_id)["audio"]]
    assert store.purge_audio(30) == 0, "fresh audio stays"
    later = datetime.now(UTC) + timedelta(days=31)
    new_id = store.add_audio(track_id, 1, "reply", b"RIFFnew", "audio/wav", 22050, 1.0)
    assert store.purge_audio(30, now=later) == 3
    for audio_id in old + [new_id]:
        data, _, removed = store.audio(audio_id)
        assert data == b"" and removed == "removed by retention: kept for 30 days"
    track = store.track(track_id)
    assert len(track["tasks"]) == 3 and all(a["removed"] for a in track["audio"])
    assert store.purge_audio(30, now=later) == 0, "removed once"


@pytest.mark.parametrize("had_removed", [True, False], ids=["with-removed", "without-removed"])
def test_a_database_from_before_migrations_is_adopted(url, had_removed):
    """Earlier stores made the schema with create_all, which the initial revision repeats: such a
    database is the migrated one without alembic_version and the tables added since (turn_events),
    and, older still, without audio.removed."""
    store = TraceStore(url)
    track_id = new_track_id(CLUSTER)
    _finished_turn(store, track_id)
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text("DROP TABLE turn_events"))
        if not had_removed:
            connection.execute(text("ALTER TABLE audio DROP COLUMN removed"))
    store.engine.dispose()

    store = TraceStore(url)
    assert len(store.track(track_id)["audio"]) == 2 and store.purge_audio(0) == 2
    assert all(a["removed"] for a in store.track(track_id)["audio"])
    _assert_migrated(store)


def test_migrations_have_one_head_and_make_the_models_schema(url):
    _assert_migrated(TraceStore(url))


def _assert_migrated(store: TraceStore) -> None:
    with store.engine.connect() as connection:
        heads = ScriptDirectory.from_config(migration_config(connection)).get_heads()
        assert len(heads) == 1, "one line of revisions"
        context = MigrationContext.configure(connection)
        assert context.get_current_heads() == tuple(heads)
        assert compare_metadata(context, metadata) == []


def test_a_status_filter_reads_past_the_first_batch(url):
    store = TraceStore(url)
    done = [new_track_id(CLUSTER) for _ in range(55)]
    for track_id in done:
        _finished_turn(store, track_id, audio=False)
    for _ in range(3):
        store.begin_turn(new_track_id(CLUSTER), CLUSTER, STAGES)  # newer, still running
    last = store.tracks(status="completed", limit=2, offset=52)
    assert [t["track_id"] for t in last] == [done[2], done[1]]
    assert [t["track_id"] for t in store.tracks(status="completed", limit=5, offset=54)] == [done[0]]


def test_tasks_a_stopped_server_left_open_are_closed_and_running_ones_are_not(url):
    store = TraceStore(url)
    old_track, running_track = new_track_id(CLUSTER), new_track_id(CLUSTER)
    _, old = store.begin_turn(old_track, CLUSTER, STAGES)
    store.start_task(old[0], time.time())
    _, running = store.begin_turn(running_track, CLUSTER, STAGES)
    store.start_task(running[0], time.time())
    assert store.close_abandoned(600) == 0, "nothing has been idle that long"
    with store.engine.begin() as connection:  # the old turn's last write was 20 minutes ago
        connection.execute(
            TaskRecord.__table__.update()
            .where(TaskRecord.track_id == old_track)
            .values(updated_at=datetime.now(UTC) - timedelta(minutes=20))
        )
    assert store.close_abandoned(600) == 3
    tasks = store.track(old_track)["tasks"]
    assert [t["status"] for t in tasks] == ["failed", "cancelled", "cancelled"]
    assert all("abandoned" in t["error"] for t in tasks)
    assert [t["status"] for t in store.track(running_track)["tasks"]] == ["started", "pending", "pending"]
