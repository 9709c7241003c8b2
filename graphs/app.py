"""The app builder `serve run` calls: clusters config + serve config args -> one Serve application.

Each model used by an enabled cluster becomes one deployment, bound once and shared by every
cluster graph that names it; disabled clusters start nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from ray import serve
from ray.serve import Application

from deployments.base import components
from graphs.cluster_graph import ClusterGraph
from graphs.config import DEFAULT_CLUSTERS_FILE, ClustersConfig, ConfigError, load_clusters
from graphs.ingress import OmniServeIngress

DEFAULT_CLUSTER = "CLUSTER_HF_ETE_CONVERSATION"


class AppArgs(BaseModel):
    """The `args:` block of an application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")

    clusters_file: str = str(DEFAULT_CLUSTERS_FILE)
    enabled_clusters: list[str] = [DEFAULT_CLUSTER]
    trace_store_url: str = "sqlite:///data/omniserve.db"
    max_audio_seconds: float = 120.0


def parse_args(args: dict[str, Any]) -> AppArgs:
    try:
        return AppArgs.model_validate(args)
    except ValidationError as exc:
        lines = [f"args.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def check_enabled(config: ClustersConfig, enabled: list[str]) -> None:
    errors = []
    for name in enabled:
        if name not in config.clusters:
            errors.append(f"args.enabled_clusters: unknown cluster {name!r}; defined: {sorted(config.clusters)}")
        elif reason := config.unavailable_reason(name):
            errors.append(f"args.enabled_clusters: {name} cannot be enabled: {reason}")
    if len(set(enabled)) != len(enabled):
        errors.append("args.enabled_clusters: a cluster is listed twice")
    if errors:
        raise ConfigError("\n".join(errors))


def catalog(config: ClustersConfig, enabled: list[str]) -> list[dict[str, Any]]:
    """What GET /v1/clusters shows: every declared cluster, its stages and whether it runs here."""
    out = []
    for name, spec in config.clusters.items():
        reason = config.unavailable_reason(name) or "not listed in enabled_clusters in the serve config"
        out.append({
            "name": name,
            "description": spec.description,
            "enabled": name in enabled,
            "reason": None if name in enabled else reason,
            "stages": [
                {"name": s.name, "model": s.model, "component": config.stage_component(s)}
                for s in spec.stages
            ],
        })
    return out


def build_graphs(config: ClustersConfig, enabled: list[str], trace_store_url: str) -> dict[str, Application]:
    """One ClusterGraph per enabled cluster over model deployments bound once and shared."""
    registry = components()
    models = {}
    for name in config.models_for(enabled):
        spec = config.models[name]
        models[name] = serve.deployment(registry[spec.component]).options(
            name=name,
            num_replicas=spec.num_replicas,
            max_ongoing_requests=spec.max_ongoing_requests,
            ray_actor_options=spec.ray_actor_options.for_serve(),
        ).bind(**spec.options)

    graphs = {}
    for cluster in enabled:
        spec = config.clusters[cluster]
        stages = spec.stages
        payload = [
            {"name": s.name, "model": s.model, "kind": registry[config.stage_component(s)].kind, "params": s.params}
            for s in stages
        ]
        graphs[cluster] = ClusterGraph.options(name=cluster).bind(
            cluster, payload, {s.model: models[s.model] for s in stages}, trace_store_url, spec.history_turns
        )
    return graphs


def build_app(args: dict[str, Any]) -> Application:
    parsed = parse_args(args)
    config = load_clusters(parsed.clusters_file)
    check_enabled(config, parsed.enabled_clusters)
    graphs = build_graphs(config, parsed.enabled_clusters, parsed.trace_store_url)
    return OmniServeIngress.bind(
        graphs, catalog(config, parsed.enabled_clusters), parsed.trace_store_url, parsed.max_audio_seconds
    )
