"""Each track as an OpenTelemetry trace, exported over OTLP/HTTP when an endpoint is configured.

The track's 32 hex uid is the trace id, so every turn of a conversation lands in one trace
whatever replica ran it; each turn is a span and each task a child span, with the recorded
timestamps (not the export time) and the track id, statuses and model/transfer times as attributes.
"""

from __future__ import annotations

from typing import Any

from omniwire.profile import model_time, transfer_time, wait_time
from omniwire.tracks import parse_track_id


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class TrackTracer:
    def __init__(self, endpoint: str, service_name: str = "omniserve") -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self.provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self.tracer = self.provider.get_tracer("omniserve")

    def export_turn(self, track_id: str, cluster: str, turn: int, status: str, tasks: list[dict[str, Any]]) -> None:
        """Sends one turn's spans; blocking (an HTTP call), so callers run it off the event loop."""
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

        timed = [t for t in tasks if {"ts_start", "ts_end"} <= set(t["latency_profile"])]
        if not timed:
            return
        _, uid = parse_track_id(track_id)
        track = SpanContext(
            trace_id=int(uid, 16), span_id=int(uid[:16], 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
        parent = trace.set_span_in_context(NonRecordingSpan(track))
        start = min(t["latency_profile"]["ts_start"] for t in timed)
        end = max(t["latency_profile"]["ts_end"] for t in timed)
        span = self.tracer.start_span(
            f"{cluster} turn {turn}",
            context=parent,
            start_time=_ns(start),
            attributes={
                "omniserve.track_id": track_id,
                "omniserve.cluster": cluster,
                "omniserve.turn": turn,
                "omniserve.status": status,
            },
        )
        context = trace.set_span_in_context(span)
        for task in timed:
            p = task["latency_profile"]
            child = self.tracer.start_span(
                task["task_name"],
                context=context,
                start_time=_ns(p["ts_start"]),
                attributes={
                    "omniserve.track_id": track_id,
                    "omniserve.task_id": task["id"],
                    "omniserve.status": task["status"],
                    "omniserve.model_s": model_time(p),
                    "omniserve.transfer_s": transfer_time(p),
                    "omniserve.wait_s": wait_time(p),
                },
            )
            if task["status"] == "failed":
                child.set_status(Status(StatusCode.ERROR, task["error"] or ""))
            child.end(end_time=_ns(p["ts_end"]))
        if status == "failed":
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=_ns(end))
