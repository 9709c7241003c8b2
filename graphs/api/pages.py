"""The trace viewer: server-rendered pages over the trace store, charts as plain SVG.

`/tracks` lists conversations, `/tracks/{id}` shows each turn as a waterfall of its tasks
(model time, transfer time, waiting) with what each stage found, the audio both ways and a form
to rate the turn; `/clusters/{name}` benchmarks a cluster from its recorded turns.
"""

import asyncio
import io
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from graphs.api.auth import COOKIE, key_matches
from graphs.api.http_app import api
from graphs.observability.latency import spread, turn_summary
from graphs.store import TaskStatus, TraceStore, summarise_turns
from omniwire.profile import model_time, transfer_time
from omniwire.tracks import TrackIdError, parse_track_id

WIDTH = 720  # px of the time axis
_DRAWING = threading.Lock()
FILLS = {"model": "#2f6fd6", "transfer": "#b9cdf0", "wait": "#e9ecf2", "failed": "#d64a3f", "cancelled": "#d9b44a"}

_STATIC = Path(__file__).parent / "static"
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}
_templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape())


def waterfall(tasks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """One row per task: its span on a shared time axis, split into model, transfer and waiting."""
    timed = [
        t["latency_profile"] for t in tasks if "ts_start" in t["latency_profile"] and "ts_end" in t["latency_profile"]
    ]
    start = min((p["ts_start"] for p in timed), default=0.0)
    span = max((p["ts_end"] for p in timed), default=start) - start or 1.0
    scale = WIDTH / span
    rows = []
    for task in tasks:
        p = task["latency_profile"]
        row = {
            "name": task["task_name"],
            "status": task["status"],
            "error": task["error"],
            "x": None,
            "model_ms": model_time(p) * 1000,
            "transfer_ms": transfer_time(p) * 1000,
            "total_ms": None,
            "segments": [],
            "span_fill": FILLS["wait"],
        }
        if "ts_start" in p and "ts_end" in p:
            row.update(
                x=(p["ts_start"] - start) * scale,
                w=(p["ts_end"] - p["ts_start"]) * scale,
                total_ms=(p["ts_end"] - p["ts_start"]) * 1000,
            )
            if task["status"] in (TaskStatus.failed.value, TaskStatus.cancelled.value):
                row["span_fill"] = FILLS[task["status"]]
            # Laid out in order: transfer in, model, transfer out; what is left of the span is waiting.
            x = row["x"]
            for key, fill in (("transfer_in", "transfer"), ("model_inference", "model"), ("transfer_out", "transfer")):
                width = p.get(key, 0.0) * scale
                row["segments"].append({"x": x, "w": width, "fill": FILLS[fill]})
                x += width
        rows.append(row)
    return rows, span


def _turn_view(number: int, tasks: list[dict], audio: list[dict], annotations: list[dict]) -> dict[str, Any]:
    rows, _ = waterfall(tasks)
    found: dict[str, Any] = {}
    for task in tasks:
        profile = task["result_profile"]
        for key in ("transcript", "reply_text", "image_text"):
            if key in profile:
                found.setdefault(key, profile[key])
        if "chunks" in profile:
            found["chunks"] = profile["chunks"]
        if "label" in profile and "summary" in profile:
            found["emotion"] = profile
    summary = turn_summary(t["latency_profile"] for t in tasks if t["status"] == TaskStatus.completed.value)
    return {
        "number": number,
        "status": summarise_turns(tasks)[0]["status"],
        "rows": rows,
        "end_to_end_s": summary.get("end_to_end_s"),
        "overhead_s": summary.get("overhead_s"),
        "transcript": found.get("transcript"),
        "reply_text": found.get("reply_text"),
        "image_text": found.get("image_text"),
        "chunks": found.get("chunks"),
        "emotion": found.get("emotion"),
        "audio": [a for a in audio if a["turn"] == number],
        "annotations": [a for a in annotations if a["turn"] == number],
    }


def _histogram(values: list[float], bins: int = 12) -> str:
    """The end-to-end times as an SVG histogram (matplotlib, as bench/report.py draws), counts on the bars;
    the page shows it inline. Empty when there is nothing to count. Takes 0.1-1 s: call it off the event loop."""
    if not values:
        return ""
    # Imported here: only the process that serves this page pays for loading matplotlib.
    import matplotlib
    from matplotlib.figure import Figure

    # rcParams are global: one figure at a time; text stays text, ids the same on each draw.
    with _DRAWING, matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "histogram", "font.size": 9}):
        figure = Figure(figsize=((WIDTH + 40) / 100, 1.9), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        counts, edges, bars = axes.hist([v * 1000 for v in values], bins=bins, color="#2f6fd6", rwidth=0.95)
        for i, bar in enumerate(bars):
            bar.set_gid(f"bar-{i}")
        axes.bar_label(bars, labels=[f"{c:.0f}" if c else "" for c in counts], fontsize=8)
        axes.set_xlabel("ms")
        axes.set_yticks([])
        axes.spines[["top", "right", "left"]].set_visible(False)
        svg = io.StringIO()
        figure.savefig(svg, format="svg", metadata={"Date": None})
    text = svg.getvalue()
    return text[text.index("<svg") :]


class TracePages:
    """Mixed into the ingress, which sets `store` and `catalog`."""

    store: TraceStore
    catalog: dict[str, dict[str, Any]]

    def _render(self, template: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(_templates.get_template(template).render(clusters=sorted(self.catalog), **context))

    @api.get("/", include_in_schema=False)
    def home(self) -> RedirectResponse:
        return RedirectResponse("/tracks")

    @api.get("/static/{name}", include_in_schema=False)
    def static_file(self, name: str) -> FileResponse:
        """The pages' scripts, served from here so that the pages' CSP allows no other script."""
        path = _STATIC / name
        if path.parent != _STATIC or path.suffix not in _MEDIA_TYPES or not path.is_file():
            raise HTTPException(404, f"unknown file {name!r}")
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix])

    @api.get("/talk", response_class=HTMLResponse, include_in_schema=False)
    def talk_page(self) -> HTMLResponse:
        """Talk through the microphone: the page speaks the live WebSocket's protocol (static/talk.js)."""
        enabled = [name for name, c in sorted(self.catalog.items()) if c["enabled"]]
        preferred = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"
        return self._render("talk.html", enabled=enabled, default=preferred if preferred in enabled else None)

    @api.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(self, next: str = "/tracks") -> HTMLResponse:
        return self._render("login.html", next=_local(next), failed=False)

    @api.post("/login", include_in_schema=False)
    async def login(self, request: Request) -> Response:
        """The API key typed into the form becomes an HttpOnly cookie, so the pages need no Basic prompt."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = form.get("key", [""])[0]
        target = _local(form.get("next", ["/tracks"])[0])
        if not key_matches(key):
            response = self._render("login.html", next=target, failed=True)
            response.status_code = 401
            return response
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @api.get("/tracks", response_class=HTMLResponse, include_in_schema=False)
    async def tracks_page(self, cluster: str | None = None, status: str | None = None) -> HTMLResponse:
        tracks = await asyncio.to_thread(self.store.tracks, cluster or None, 200, status or None)
        return self._render(
            "tracks.html",
            tracks=tracks,
            cluster=cluster,
            status=status,
            statuses=["completed", "failed", "cancelled", "running"],
        )

    async def _track_or_error(self, track_id: str) -> dict[str, Any]:
        """The track, or the 400/404 that says why there is none."""
        try:
            parse_track_id(track_id)
        except TrackIdError as exc:
            raise HTTPException(400, str(exc)) from None
        track = await asyncio.to_thread(self.store.track, track_id)
        if track is None:
            raise HTTPException(404, f"unknown track {track_id!r}")
        return track

    @api.get("/tracks/{track_id}", response_class=HTMLResponse, include_in_schema=False)
    async def track_page(self, track_id: str) -> HTMLResponse:
        track = await self._track_or_error(track_id)
        numbers = sorted({t["turn"] for t in track["tasks"]})
        turns = [
            _turn_view(n, [t for t in track["tasks"] if t["turn"] == n], track["audio"], track["annotations"])
            for n in numbers
        ]
        return self._render("track.html", track=track, turns=turns, width=WIDTH)

    @api.get("/clusters/{cluster}", response_class=HTMLResponse, include_in_schema=False)
    async def cluster_page(self, cluster: str) -> HTMLResponse:
        if cluster not in self.catalog:
            raise HTTPException(404, f"unknown cluster {cluster!r}")
        turns = await asyncio.to_thread(self.store.cluster_turns, cluster)
        ratings = await asyncio.to_thread(self.store.ratings, cluster)
        completed = [t for t in turns if all(task["status"] == TaskStatus.completed.value for task in t)]
        per_stage: dict[str, dict[str, list[float]]] = {}
        for turn in completed:
            for task in turn:
                p = task["latency_profile"]
                stage = per_stage.setdefault(task["task_name"], {"model": [], "transfer": [], "ttfb": []})
                stage["model"].append(model_time(p))
                stage["transfer"].append(transfer_time(p))
                if "ttfb_s" in p:
                    stage["ttfb"].append(p["ttfb_s"])
        e2e = [turn_summary(task["latency_profile"] for task in turn)["end_to_end_s"] for turn in completed]
        spreads = {name: (spread(s["model"]), spread(s["transfer"])) for name, s in per_stage.items()}
        longest = (
            max((model["median"] + transfer["median"] for model, transfer in spreads.values()), default=1.0) or 1.0
        )
        ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731
        stages = []
        for name, s in per_stage.items():
            model, transfer = spreads[name]
            stages.append(
                {
                    "name": name,
                    "rating": ratings.get(name),
                    "model": " / ".join(ms(model[k]) for k in ("min", "median", "max")),
                    "transfer": " / ".join(ms(transfer[k]) for k in ("min", "median", "max")),
                    "ttfb": ms(spread(s["ttfb"])["median"]) if s["ttfb"] else "",
                    "model_median": ms(model["median"]),
                    "transfer_median": ms(transfer["median"]),
                    "model_w": WIDTH * model["median"] / longest,
                    "transfer_w": WIDTH * transfer["median"] / longest,
                }
            )
        histogram = await asyncio.to_thread(_histogram, e2e)
        return self._render(
            "cluster.html",
            cluster=cluster,
            turns=len(completed),
            stages=stages,
            width=WIDTH,
            e2e=spread(e2e),
            histogram=histogram,
            overall_rating=ratings.get("overall"),
        )


def _local(target: str) -> str:
    """Where to go after signing in: a path on this server, never another site."""
    return target if target.startswith("/") and not target.startswith("//") else "/tracks"
