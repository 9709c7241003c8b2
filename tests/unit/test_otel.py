"""Tracks exported as OpenTelemetry traces to a real OTLP/HTTP receiver on a local port."""

import asyncio
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from ray import serve

from graphs.app import AppArgs, build_graphs
from graphs.config import parse_clusters
from graphs.pipeline.turn import TurnRequest
from graphs.store import TraceStore
from omniwire.audio import MODEL_RATE
from omniwire.tracks import new_track_id, parse_track_id
from tests.unit.test_cluster_graph import CONFIG


class Receiver(BaseHTTPRequestHandler):
    spans: list = []

    def do_POST(self):
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                type(self).spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    server.shutdown()


def test_export_is_off_by_default():
    assert AppArgs().otlp_endpoint is None


def test_a_track_is_one_trace_of_turn_and_stage_spans(endpoint, store_url):
    graphs = build_graphs(parse_clusters(CONFIG), ["GOOD"], store_url, otlp_endpoint=endpoint)
    handle = serve.run(graphs["GOOD"], name="OTEL", route_prefix=None, _local_testing_mode=True)
    track_id = new_track_id("GOOD")

    async def turn():
        ids = [uuid.uuid4().hex for _ in range(3)]
        return await handle.run_turn.remote(
            TurnRequest(track_id, ids, 0.1 * np.ones(MODEL_RATE, np.float32), b"RIFF", "audio/wav")
        )

    Receiver.spans = []
    for _ in range(2):
        assert asyncio.run(turn()).status == "completed"
    spans = Receiver.spans
    assert len(spans) == 2 * (1 + 3)
    _, uid = parse_track_id(track_id)
    assert {s.trace_id.hex() for s in spans} == {uid}, "the track's uid is the trace id"
    turns = [s for s in spans if s.name.startswith("GOOD turn")]
    assert sorted(s.name for s in turns) == ["GOOD turn 1", "GOOD turn 2"]
    tasks = TraceStore(store_url).track(track_id)["tasks"]
    for task in tasks:
        span = next(
            s
            for s in spans
            if any(a.key == "omniserve.task_id" and a.value.string_value == task["id"] for a in s.attributes)
        )
        parent = next(t for t in turns if t.name == f"GOOD turn {task['turn']}")
        assert span.parent_span_id == parent.span_id and span.name == task["task_name"]
        assert span.start_time_unix_nano == int(task["latency_profile"]["ts_start"] * 1e9)
        attributes = {a.key: a.value for a in span.attributes}
        assert attributes["omniserve.track_id"].string_value == track_id
