"""The app builder `serve run` calls: clusters config + serve config args -> one Serve application.

Each model used by an enabled cluster becomes one deployment, bound once and shared by every
cluster graph that names it; disabled clusters start nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve import Application

from deployments.component import components
from deployments.kinds import KINDS
from graphs.api.auth import ExposureError, check_exposure
from graphs.api.ingress import OmniServeIngress
from graphs.api.openai_routes import OpenAIAPIArgs
from graphs.config import DEFAULT_CLUSTERS_FILE, ClustersConfig, ConfigError, load_clusters, with_model_options
from graphs.limits.admission import AdmissionSettings
from graphs.limits.requests import Limits
from graphs.pipeline.cluster_graph import ClusterGraph

logger = logging.getLogger("ray.serve")

# The fastest local cluster: what a config that names no enabled_clusters runs.
DEFAULT_CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"


class AppArgs(BaseModel):
    """The `args:` block of an application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")

    clusters_file: str = str(DEFAULT_CLUSTERS_FILE)
    enabled_clusters: list[str] = [DEFAULT_CLUSTER]
    trace_store_url: str = "sqlite:///data/omniserve.db"
    max_audio_seconds: float = 120.0
    # Days the user's and reply recordings are kept; older ones are removed (their records stay). None: forever.
    audio_retention_days: float | None = Field(None, gt=0)
    # What one request or live session may ask (graphs/limits/requests.py); each refusal names its key.
    limits: Limits = Limits()
    # When to refuse a turn at once instead of queueing it (graphs/limits/admission.py).
    admission: AdmissionSettings = AdmissionSettings()
    openai_api: OpenAIAPIArgs = OpenAIAPIArgs()
    # OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318/v1/traces); each track becomes a trace.
    otlp_endpoint: str | None = None
    # Listen beyond localhost with every route open (no OMNISERVE_API_KEY): only behind something that
    # authenticates for it.
    allow_unauthenticated: bool = False
    # Options merged over those the clusters file gives a model, e.g. a bigger LLM on a GPU.
    model_options: dict[str, dict[str, Any]] = {}

    def clusters(self) -> ClustersConfig:
        """The clusters file with `model_options` merged in: the models this app serves."""
        return with_model_options(load_clusters(self.clusters_file), self.model_options)


# Model kinds the OpenAI-compatible API serves.
OPENAI_KINDS = ("speech_to_text", "llm", "text_to_speech", "image_to_text")


def parse_args(args: dict[str, Any]) -> AppArgs:
    try:
        return AppArgs.model_validate(args)
    except ValidationError as exc:
        lines = [f"args.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def check_enabled(config: ClustersConfig, enabled: list[str], openai_api: OpenAIAPIArgs | None = None) -> None:
    errors = []
    for name in enabled:
        if name not in config.clusters:
            errors.append(f"args.enabled_clusters: unknown cluster {name!r}; defined: {sorted(config.clusters)}")
    if len(set(enabled)) != len(enabled):
        errors.append("args.enabled_clusters: a cluster is listed twice")
    openai_api = openai_api or OpenAIAPIArgs()
    for role in ("speech_to_text", "text_to_speech", "image_to_text"):
        name = getattr(openai_api, role)
        if name and (name not in config.models or _kind(config, name) != role):
            errors.append(f"args.openai_api.{role}: {name!r} is not a {role} model of {sorted(config.models)}")
    for alias, name in openai_api.aliases.items():
        if name not in config.models or _kind(config, name) not in OPENAI_KINDS:
            errors.append(f"args.openai_api.aliases.{alias}: {name!r} is not a model the OpenAI API can serve")
    if errors:
        raise ConfigError("\n".join(errors))


def _kind(config: ClustersConfig, model: str) -> str | None:
    component = components().get(config.models[model].component)
    return component.kind if component else None


def environment_reason(config: ClustersConfig, cluster: str) -> str | None:
    """Why `cluster` cannot run in this environment (an API key not set, say), or None."""
    registry = components()
    for stage in config.clusters[cluster].flat():
        spec = config.models[stage.model]
        if reason := registry[spec.component].unavailable_reason(spec.options):
            return f"stage {stage.name!r} ({stage.model}): {reason}"
    return None


def catalog(config: ClustersConfig, enabled: list[str], reasons: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """What GET /v1/clusters shows: every declared cluster, its stages and whether it runs here."""
    reasons = reasons or {}
    out = []
    for name, spec in config.clusters.items():
        reason = reasons.get(name) or "not listed in enabled_clusters in the serve config"
        out.append(
            {
                "name": name,
                "description": spec.description,
                "enabled": name in enabled,
                "reason": None if name in enabled else reason,
                "allow_interruptions": spec.allow_interruptions,
                "stages": [
                    {"name": s.name, "model": s.model, "component": config.stage_component(s), "step": i}
                    for i, step in enumerate(spec.steps())
                    for s in step
                ],
            }
        )
    return out


def build_models(config: ClustersConfig, names: list[str]) -> dict[str, Application]:
    """One deployment per model, bound once so every graph that names it shares its replicas."""
    registry = components()
    models = {}
    for name in names:
        spec = config.models[name]
        models[name] = (
            serve.deployment(registry[spec.component])
            .options(name=name, **spec.deployment_options())
            .bind(**spec.options)
        )
    return models


def build_graphs(
    config: ClustersConfig,
    enabled: list[str],
    trace_store_url: str,
    models: dict[str, Application] | None = None,
    otlp_endpoint: str | None = None,
) -> dict[str, Application]:
    """One ClusterGraph per enabled cluster over the given (or newly bound) model deployments."""
    registry = components()
    models = models if models is not None else build_models(config, config.models_for(enabled))
    graphs = {}
    for cluster in enabled:
        spec = config.clusters[cluster]
        graphs[cluster] = ClusterGraph.options(name=cluster).bind(
            cluster,
            graph_steps(config, cluster, registry),
            {s.model: models[s.model] for s in spec.flat()},
            trace_store_url,
            spec.history_turns,
            otlp_endpoint,
        )
    return graphs


def graph_steps(config: ClustersConfig, cluster: str, registry: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """A cluster's steps as its ClusterGraph takes them: each stage with its model's kind, and whether
    its model can read the next turn's prompt ahead (what the stages before it produce decides)."""
    steps, earlier = [], frozenset()
    for step in config.clusters[cluster].steps():
        stages = []
        for s in step:
            component = registry[config.stage_component(s)]
            reads_ahead = "history" in KINDS[component.kind].accepts and component.reads_ahead(s.params, earlier)
            stages.append(
                {
                    "name": s.name,
                    "model": s.model,
                    "kind": component.kind,
                    "params": s.params,
                    "reads_ahead": reads_ahead,
                }
            )
        earlier |= {slot for s in stages for slot in KINDS[s["kind"]].produces}
        steps.append(stages)
    return steps


def serve_host() -> str | None:
    """The host Serve's HTTP proxy listens on, from the running Serve controller (None: no Serve here)."""
    # Private, as in graphs/launch.py: Ray Serve 2.60 has no public call that tells the HTTP options of a
    # running Serve (serve.status() lists proxies and applications, not where they listen; the REST API
    # that does needs the dashboard, which local runs leave off), and this check must see the real host.
    import ray
    from ray.serve.context import _get_global_client

    if not ray.is_initialized():
        return None
    client = _get_global_client(raise_if_no_controller_running=False)
    return client.http_config.host if client is not None else None


def check_open_routes(host: str | None, allow_unauthenticated: bool) -> None:
    """Refuses open routes beyond localhost; says so in the log when the routes are open at all."""
    if host is None:
        return
    try:
        warning = check_exposure(host, allow_unauthenticated)
    except ExposureError as exc:
        raise ConfigError(str(exc)) from None
    if warning:
        logger.warning(warning)


def build_app(args: dict[str, Any]) -> Application:
    parsed = parse_args(args)
    check_open_routes(serve_host(), parsed.allow_unauthenticated)
    config = parsed.clusters()
    check_enabled(config, parsed.enabled_clusters, parsed.openai_api)
    reasons = {c: r for c in parsed.enabled_clusters if (r := environment_reason(config, c))}
    for cluster, reason in reasons.items():
        logger.warning("%s is disabled: %s", cluster, reason)
    enabled = [c for c in parsed.enabled_clusters if c not in reasons]

    names = config.models_for(enabled)
    names += sorted(parsed.openai_api.model_names() - set(names))
    models = build_models(config, names)
    graphs = build_graphs(config, enabled, parsed.trace_store_url, models, parsed.otlp_endpoint)
    openai_models = {
        name: (_kind(config, name), app) for name, app in models.items() if _kind(config, name) in OPENAI_KINDS
    }
    return OmniServeIngress.bind(
        graphs,
        catalog(config, enabled, reasons),
        parsed.trace_store_url,
        parsed.max_audio_seconds,
        openai_models,
        parsed.openai_api.model_dump(),
        parsed.audio_retention_days,
        parsed.limits.model_dump(),
        parsed.admission.model_dump(),
    )
