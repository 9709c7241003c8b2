"""What a benchmark run found: statistics, word error rate, a Markdown report and PNG plots.

Kept apart from bench/evaluate.py, which talks to a server, so that all of it can be computed and
checked from turn records alone, and a report rebuilt from a saved bench.json.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from graphs.observability.latency import spread

REPORT = "report.md"
STAGES_PLOT = "stages.png"
END_TO_END_PLOT = "end_to_end.png"
FIRST_AUDIO_PLOT = "time_to_first_audio.png"

_NORMALISE = jiwer.Compose(
    [jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
)
_TO_WORDS = jiwer.Compose([_NORMALISE, jiwer.ReduceToListOfListOfWords()])

# Measures of a completed turn, as they appear in records and summaries, with their report labels.
TURN_MEASURES = {
    "end_to_end_s": "end to end (server)",
    "client_s": "client round trip",
    "time_to_first_audio_s": "time to first audio",
    "model_s": "model",
    "transfer_s": "transfer",
    "overhead_s": "orchestration overhead",
}


def machine(**extra: Any) -> dict[str, Any]:
    """What the figures were measured on: absolute times belong to a named machine."""
    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(), **extra}


def save_json(path: Path, result: dict[str, Any]) -> Path:
    """A benchmark's figures as JSON at `path`, its folder made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))
    return path


def normalise(text: str) -> str:
    """Lower case, punctuation removed, single spaces: so WER counts words, not spelling of commas."""
    return _NORMALISE(text)


def word_errors(references: list[str], hypotheses: list[str]) -> dict[str, Any]:
    """Corpus word error rate (all errors over all reference words) after normalising both sides."""
    found = jiwer.process_words(references, hypotheses, reference_transform=_TO_WORDS, hypothesis_transform=_TO_WORDS)
    return {
        "wer": found.wer,
        "substitutions": found.substitutions,
        "deletions": found.deletions,
        "insertions": found.insertions,
        "reference_words": found.hits + found.substitutions + found.deletions,
        "turns": len(references),
    }


def scored(turn: dict[str, Any]) -> bool:
    """A turn counts towards WER when it has a reference and speech-to-text ran (even if a later stage failed)."""
    return bool(turn.get("reference") and normalise(turn["reference"])) and isinstance(turn.get("transcript"), str)


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """One cluster's turns in numbers: latency over the completed turns, WER, and every failure."""
    completed = [t for t in turns if t["ok"]]
    stages: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(name for t in completed for name in t["stages"]):
        runs = [t["stages"][name] for t in completed if name in t["stages"]]
        stages[name] = {
            "model_s": spread([s["model_s"] for s in runs]),
            "transfer_s": spread([s["transfer_s"] for s in runs]),
        }
    measures = {key: spread([t[key] for t in completed if t.get(key) is not None]) for key in TURN_MEASURES}
    ratio = spread([t["overhead_ratio"] for t in completed])
    if ratio:
        ratio["overall"] = sum(t["overhead_s"] for t in completed) / sum(t["end_to_end_s"] for t in completed)
    wer_turns = [t for t in turns if scored(t)]
    wall_s = max(t["started_at"] + t["client_s"] for t in turns) - min(t["started_at"] for t in turns) if turns else 0.0
    return {
        "turns": len(turns),
        "completed": len(completed),
        "failed": len(turns) - len(completed),
        "wall_s": wall_s,
        "turns_per_min": 60 * len(completed) / wall_s if wall_s else None,
        "stages": stages,
        **measures,
        "overhead_ratio": ratio,
        "wer": word_errors([t["reference"] for t in wer_turns], [t["transcript"] for t in wer_turns])
        if wer_turns
        else None,
        "failures": [
            {"audio": t["audio"], "round": t["round"], "status": t["status"], "detail": t["detail"]}
            for t in turns
            if not t["ok"]
        ],
    }


def failure_groups(failures: list[dict[str, Any]]) -> list[tuple[str, int, str, list[str]]]:
    """Failures with the same status and detail together, most frequent first: (status, turns, detail, audio)."""
    groups = Counter((f["status"], f["detail"]) for f in failures)
    return [
        (
            "no answer" if status is None else str(status),
            count,
            detail,
            sorted({f["audio"] for f in failures if (f["status"], f["detail"]) == (status, detail)}),
        )
        for (status, detail), count in groups.most_common()
    ]


def short_name(cluster: str) -> str:
    """CLUSTER_HF_RAG_ETE_CONVERSATION -> HF_RAG: plot labels that fit."""
    return cluster.removeprefix("CLUSTER_").removesuffix("_ETE_CONVERSATION")


def ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    value = seconds * 1000
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]], text_columns: Collection[int] = (0,)) -> list[str]:
    """A Markdown table; numbers right-aligned, the columns in `text_columns` left."""
    rules = ["---" if i in text_columns else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _quartet(values: dict[str, float] | None) -> list[str]:
    return [ms(values[k]) if values else "" for k in ("min", "median", "p95", "max")]


def _wer_text(wer: dict[str, Any] | None) -> str:
    return f"{wer['wer']:.1%}" if wer else "n/a"


def comparison_rows(summaries: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for cluster, s in summaries.items():
        end_to_end, first_audio = s["end_to_end_s"] or {}, s["time_to_first_audio_s"] or {}
        rows.append(
            [
                f"`{cluster}`",
                f"{s['completed']}/{s['turns']}",
                str(s["failed"]),
                ms(end_to_end.get("median")),
                ms(end_to_end.get("p95")),
                ms(first_audio.get("median")),
                ms(first_audio.get("p95")),
                ms((s["model_s"] or {}).get("median")),
                ms((s["overhead_s"] or {}).get("median")),
                f"{s['overhead_ratio']['overall']:.1%}" if s["overhead_ratio"] else "",
                _wer_text(s["wer"]),
                f"{s['turns_per_min']:.1f}" if s["turns_per_min"] else "",
            ]
        )
    return rows


COMPARISON_HEADER = [
    "cluster",
    "completed",
    "failed",
    "end to end median",
    "end to end p95",
    "first audio median",
    "first audio p95",
    "model median",
    "overhead median",
    "overhead ratio",
    "WER",
    "turns/min",
]


def _cluster_section(cluster: str, summary: dict[str, Any], turns: list[dict[str, Any]]) -> list[str]:
    lines = [f"## `{cluster}`", ""]
    lines.append(
        f"{summary['completed']} of {summary['turns']} turns completed in {summary['wall_s']:.1f} s"
        + (f" ({summary['turns_per_min']:.1f} turns/min)." if summary["turns_per_min"] else ".")
    )
    lines.append("")
    if summary["stages"]:
        rows = []
        for name, stage in summary["stages"].items():
            rows.append([f"`{name}`", "model", *_quartet(stage["model_s"])])
            rows.append(["", "transfer", *_quartet(stage["transfer_s"])])
        lines += ["Per stage, ms:", ""] + _table(["stage", "time", "min", "median", "p95", "max"], rows, (0, 1))
        rows = [[label, *_quartet(summary[key])] for key, label in TURN_MEASURES.items() if summary[key]]
        lines += ["Per turn, ms:", ""] + _table(["measure", "min", "median", "p95", "max"], rows)
        ratio = summary["overhead_ratio"]
        lines += [
            f"Overhead ratio (orchestration time over end to end): median {ratio['median']:.1%}, "
            f"p95 {ratio['p95']:.1%}, over all turns {ratio['overall']:.1%}.",
            "",
        ]
    wer = summary["wer"]
    if wer:
        lines += [
            f"Speech-to-text word error rate: **{wer['wer']:.1%}** over {wer['turns']} turns and "
            f"{wer['reference_words']} reference words ({wer['substitutions']} substituted, "
            f"{wer['deletions']} deleted, {wer['insertions']} inserted), lower case, punctuation removed.",
            "",
        ]
        misheard = {}
        for t in turns:
            if scored(t) and normalise(t["transcript"]) != normalise(t["reference"]):
                misheard.setdefault((t["audio"], t["transcript"]), t)
        if misheard:
            worst = sorted(misheard.values(), key=lambda t: -t["wer"])[:10]
            lines += ["Transcripts that differ from their reference (worst first):", ""]
            rows = [[t["audio"], t["reference"], t["transcript"], f"{t['wer']:.0%}"] for t in worst]
            lines += _table(["audio", "reference", "transcript", "WER"], rows, (0, 1, 2))
    else:
        lines += ["Speech-to-text word error rate: no turn had both a reference and a transcript.", ""]
    if summary["failures"]:
        rows = [
            [status, count, detail, ", ".join(audio)]
            for status, count, detail, audio in failure_groups(summary["failures"])
        ]
        lines += [f"Failures: {summary['failed']}.", ""]
        lines += _table(["status", "turns", "detail", "audio"], rows, (0, 2, 3))
    else:
        lines += ["Failures: none.", ""]
    return lines


def render_report(run: dict[str, Any], plots: list[str]) -> str:
    """The run as Markdown; `plots` are the PNG file names written beside it."""
    summaries = {c: r["summary"] for c, r in run["clusters"].items()}
    settings = run["settings"]
    machine = run["machine"]
    with_reference = sum(1 for u in run["inputs"] if u["reference"])
    lines = [
        "# OmniServe benchmark",
        "",
        f"Run at {run['started_at']} against {run['url']}; the benchmark client ran on {machine['platform']} "
        f"with {machine['cpus']} CPUs.",
        "",
        f"Input: {len(run['inputs'])} utterances from {settings['audio']} ({with_reference} with a reference "
        f"transcript); rounds: {settings['rounds']}; turns in flight: {settings['concurrency']}; warm-up turns "
        f"per cluster, not counted: {settings['warmup']}"
        + (f"; every turn shows {', '.join(settings['images'])}." if settings["images"] else "."),
        "",
        "Model time is inference inside a model's replica; transfer time the rest of each stage call (serialisation, "
        "handle hops, queueing). A turn's model time is the sum over its stages, and streamed stages (the LLM and "
        "the TTS speaking its sentences) overlap, so it can exceed end to end. Orchestration overhead is the "
        "transfer time plus the time no stage ran at all (graphs/pipeline/latency.py). Latency figures are over completed "
        "turns; time to first audio runs from the turn's start in the cluster graph to its first reply audio. "
        "Failures are listed per cluster.",
        "",
        "## Clusters compared",
        "",
    ]
    lines += _table(COMPARISON_HEADER, comparison_rows(summaries))
    titles = {
        STAGES_PLOT: "Per-stage model and transfer time",
        END_TO_END_PLOT: "End to end per turn",
        FIRST_AUDIO_PLOT: "Time to first audio per turn",
    }
    lines += [f"![{titles[name]}]({name})\n" for name in plots]
    for cluster, result in run["clusters"].items():
        lines += _cluster_section(cluster, result["summary"], result["turns"])
    return "\n".join(lines)


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_stages(summaries: dict[str, dict[str, Any]], path: Path) -> None:
    """One panel per cluster: each stage's median model time with its median transfer time stacked on it."""
    clusters = [c for c, s in summaries.items() if s["stages"]]
    heights = [len(summaries[c]["stages"]) for c in clusters]
    figure = Figure(figsize=(10, 1.2 + 0.5 * sum(heights) + 0.4 * len(clusters)))
    axes = figure.subplots(len(clusters), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    longest_ms = 1000 * max(
        s["model_s"]["median"] + s["transfer_s"]["median"] for c in clusters for s in summaries[c]["stages"].values()
    )
    for ax, cluster in zip(axes, clusters):
        stages = summaries[cluster]["stages"]
        names = list(stages)[::-1]
        model = np.array([stages[n]["model_s"]["median"] * 1000 for n in names])
        transfer = np.array([stages[n]["transfer_s"]["median"] * 1000 for n in names])
        ax.barh(names, model, color="tab:blue", label="model")
        ax.barh(names, transfer, left=model, color="tab:orange", label="transfer")
        for y, (m, t) in enumerate(zip(model, transfer)):
            ax.text(m + t + longest_ms * 0.01, y, f"{m:.0f} + {t:.1f} ms", va="center", fontsize=8)
        ax.set_title(cluster, fontsize=9, loc="left")
        ax.tick_params(axis="y", labelsize=8)
    axes[-1].set_xlim(0, longest_ms * 1.3)
    axes[-1].set_xlabel("median per turn (ms)")
    axes[0].legend(loc="lower right", fontsize=8)
    figure.suptitle("Per-stage model and transfer time")
    _save(figure, path)


def plot_distribution(turns: dict[str, list[dict[str, Any]]], key: str, title: str, path: Path) -> None:
    """Box plot per cluster of one per-turn measure, every turn drawn as a dot over it."""
    values = {c: [t[key] for t in ts if t["ok"] and t.get(key) is not None] for c, ts in turns.items()}
    values = {c: v for c, v in values.items() if v}
    clusters = list(values)[::-1]
    figure = Figure(figsize=(9, 1.4 + 0.6 * len(clusters)))
    ax = figure.subplots()
    ax.boxplot([values[c] for c in clusters], orientation="horizontal", widths=0.5, whis=(0, 100))
    jitter = np.random.default_rng(0)
    for y, cluster in enumerate(clusters, start=1):
        ax.scatter(
            values[cluster],
            y + jitter.uniform(-0.12, 0.12, len(values[cluster])),
            s=12,
            alpha=0.6,
            color="tab:blue",
            zorder=3,
            label="turn" if y == 1 else None,
        )
        ax.scatter(
            [np.percentile(values[cluster], 95)],
            [y],
            marker="|",
            s=400,
            color="tab:red",
            zorder=4,
            label="p95" if y == 1 else None,
        )
    ax.set_yticks(range(1, len(clusters) + 1), [short_name(c) for c in clusters], fontsize=8)
    ax.set_xlabel("seconds (box: quartiles and median; whiskers: min to max)")
    ax.set_xlim(0, 1.08 * max(max(v) for v in values.values()))
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    _save(figure, path)


def write_plots(run: dict[str, Any], out_dir: Path) -> list[str]:
    """The PNGs there is data for, by file name."""
    summaries = {c: r["summary"] for c, r in run["clusters"].items()}
    turns = {c: r["turns"] for c, r in run["clusters"].items()}
    written = []
    if any(s["stages"] for s in summaries.values()):
        plot_stages(summaries, out_dir / STAGES_PLOT)
        written.append(STAGES_PLOT)
    for key, name, title in (
        ("end_to_end_s", END_TO_END_PLOT, "End to end per turn (server)"),
        ("time_to_first_audio_s", FIRST_AUDIO_PLOT, "Time to first audio per turn"),
    ):
        if any(s[key] for s in summaries.values()):
            plot_distribution(turns, key, title, out_dir / name)
            written.append(name)
    return written


def write_report(run: dict[str, Any], out_dir: Path) -> list[Path]:
    """report.md and its plots in `out_dir`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(run, out_dir)
    (out_dir / REPORT).write_text(render_report(run, plots))
    return [out_dir / REPORT] + [out_dir / name for name in plots]
