"""Ray Serve metrics of the cluster graphs, exported with Ray's own on its metrics port (names get
a `ray_` prefix)."""

from __future__ import annotations

from omniwire.profile import model_time, transfer_time

_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32]


class ClusterMetrics:
    def __init__(self, cluster: str) -> None:
        from ray.serve import metrics

        self.cluster = cluster
        self.stage_seconds = metrics.Histogram(
            "omniserve_stage_seconds",
            description="Time of a stage, by part: model, transfer or total",
            boundaries=_SECONDS,
            tag_keys=("cluster", "stage", "part"),
        )
        self.first_audio_seconds = metrics.Histogram(
            "omniserve_time_to_first_audio_seconds",
            description="End of the user's speech to the first reply audio",
            boundaries=_SECONDS,
            tag_keys=("cluster",),
        )
        self.failures = metrics.Counter(
            "omniserve_task_failures", description="Stages that failed", tag_keys=("cluster", "stage")
        )
        self.active = metrics.Gauge(
            "omniserve_active_tracks",
            description="Tracks with a turn in progress in this replica",
            tag_keys=("cluster",),
        )
        self._active = 0

    def stage(self, name: str, profile: dict[str, float]) -> None:
        tags = {"cluster": self.cluster, "stage": name}
        self.stage_seconds.observe(model_time(profile), tags={**tags, "part": "model"})
        self.stage_seconds.observe(transfer_time(profile), tags={**tags, "part": "transfer"})
        self.stage_seconds.observe(profile["ts_end"] - profile["ts_start"], tags={**tags, "part": "total"})

    def failed(self, stage: str) -> None:
        self.failures.inc(tags={"cluster": self.cluster, "stage": stage})

    def turn(self, delta: int) -> None:
        self._active += delta
        self.active.set(self._active, tags={"cluster": self.cluster})

    def first_audio(self, seconds: float) -> None:
        self.first_audio_seconds.observe(seconds, tags={"cluster": self.cluster})


class AdmissionMetrics:
    """The ingress's refusals and the turns it has admitted."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.refused = metrics.Counter(
            "omniserve_refused_turns",
            description="Turns refused at once because their expected wait was over admission.max_wait_s",
            tag_keys=("route",),
        )

    def refusal(self, route: str) -> None:
        self.refused.inc(tags={"route": route})
