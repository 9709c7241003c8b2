"""Cluster definitions: models (configured components) and clusters (ordered stages over them).

Loading validates everything a running graph would otherwise trip over later: unknown
components, bad model options, duplicate names, missing params, and stages that read a slot
no earlier stage fills. Every error names the file, the cluster or model, and the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from deployments.component import components
from deployments.kinds import KINDS, REQUEST_SLOTS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLUSTERS_FILE = ROOT / "configs" / "clusters.yaml"

CLUSTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


class ConfigError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RayActorOptions(_Strict):
    num_cpus: float = Field(0.2, ge=0)
    num_gpus: float = Field(0, ge=0)
    # Custom Ray resources, e.g. {"models": 1}: a replica goes only to nodes started with them.
    resources: dict[str, Annotated[float, Field(ge=0)]] = {}

    def for_serve(self) -> dict[str, Any]:
        """Serve warns about (and local testing mode mishandles) an explicit num_gpus of 0; no custom
        resources is left out too, so Serve sees only what a config asks for."""
        unset = {"num_gpus"} if self.num_gpus == 0 else set()
        return self.model_dump(exclude=unset | (set() if self.resources else {"resources"}))


class AutoscalingSpec(_Strict):
    """Serve's autoscaling_config, with delays for voice traffic: a burst of conversations needs
    replicas within seconds (Serve's default upscale delay is 30 s, its downscale delay 600 s)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    # Requests a replica should have in hand (running or queued in it); more, and another is started.
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(3.0, ge=0)
    downscale_delay_s: float = Field(120.0, ge=0)
    metrics_interval_s: float = Field(2.0, gt=0)
    look_back_period_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is over max_replicas ({self.max_replicas})")
        return self


class ModelSpec(_Strict):
    component: str
    options: dict[str, Any] = {}
    # A fixed number of replicas; with autoscaling_config, Serve chooses between its bounds instead.
    num_replicas: int | None = Field(None, ge=1)
    autoscaling_config: AutoscalingSpec | None = None
    # Requests a replica accepts; the rest wait in the caller's queue, up to max_queued_requests
    # (-1: no bound), then are refused at once.
    max_ongoing_requests: int = Field(16, ge=1)
    max_queued_requests: int = Field(64, ge=-1)
    # Model calls a replica runs at once, the rest waiting by priority; default: the component's
    # (one for a local model, whose threads already use its cores).
    concurrency: int | None = Field(None, ge=1)
    ray_actor_options: RayActorOptions = RayActorOptions()

    @model_validator(mode="after")
    def _one_way_to_size(self) -> ModelSpec:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("give num_replicas or autoscaling_config, not both")
        return self

    def deployment_options(self) -> dict[str, Any]:
        """What Serve's .options() takes for this model."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": self.ray_actor_options.for_serve(),
        }
        if self.autoscaling_config is not None:
            options["autoscaling_config"] = self.autoscaling_config.model_dump(exclude_none=True)
        else:
            options["num_replicas"] = self.num_replicas or 1
        if self.concurrency is not None:
            options["user_config"] = {"concurrency": self.concurrency}
        return options


class StageSpec(_Strict):
    name: str
    model: str
    params: dict[str, Any] = {}


class ParallelSpec(_Strict):
    """Stages that run side by side; the next step starts once all of them are done (a sync point)."""

    parallel: list[StageSpec] = Field(min_length=2)


def _step_kind(value: Any) -> str:
    """A step's kind, from the YAML's mapping when validating and from the model when serializing."""
    parallel = isinstance(value, ParallelSpec) or (isinstance(value, dict) and "parallel" in value)
    return "<parallel>" if parallel else "<stage>"


Step = Annotated[
    Annotated[StageSpec, Tag("<stage>")] | Annotated[ParallelSpec, Tag("<parallel>")],
    Discriminator(_step_kind),
]


class ClusterSpec(_Strict):
    description: str = ""
    # Earlier turns of the track the LLM sees, at most; the oldest are dropped half of these at a
    # time, so the LLM's cached prompt stays valid between drops (TraceStore.history).
    history_turns: int = Field(5, ge=0)
    # Whether a user speaking over a reply stops it (a live client can turn it off for itself).
    allow_interruptions: bool = True
    stages: list[Step] = Field(min_length=1)

    def steps(self) -> list[list[StageSpec]]:
        """The stages as steps run in order, each one stage or a parallel group."""
        return [s.parallel if isinstance(s, ParallelSpec) else [s] for s in self.stages]

    def flat(self) -> list[StageSpec]:
        """Every stage once, in order; a stage's place here is its task's position in a turn."""
        return [stage for step in self.steps() for stage in step]


class ClustersConfig(_Strict):
    models: dict[str, ModelSpec]
    clusters: dict[str, ClusterSpec]

    def models_for(self, clusters: list[str]) -> list[str]:
        """Model names the given clusters use, each once, in first-use order."""
        names: dict[str, None] = {}
        for cluster in clusters:
            for stage in self.clusters[cluster].flat():
                names.setdefault(stage.model)
        return list(names)

    def stage_component(self, stage: StageSpec) -> str:
        return self.models[stage.model].component


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a duplicate cluster must be an error."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, str) and part.startswith("<"):
            continue  # a union tag, not a key of the file
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_errors(prefix: str, exc: ValidationError) -> list[str]:
    errors = []
    for err in exc.errors():
        loc = _loc(tuple(err["loc"]))
        where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        errors.append(f"{where}: {err['msg']}")
    return errors


def parse_clusters(data: Any) -> ClustersConfig:
    try:
        config = ClustersConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_pydantic_errors("", exc))) from None
    errors = _check(config)
    if errors:
        raise ConfigError("\n".join(errors))
    return config


def _check(config: ClustersConfig) -> list[str]:
    registry = components()
    errors: list[str] = []
    for name, model in config.models.items():
        where = f"models.{name}"
        if not MODEL_NAME.match(name):
            errors.append(f"{where}: model names are letters, digits, '_', '.', '-', starting with a letter")
        if model.component in registry:
            try:
                registry[model.component].Options.model_validate(model.options)
            except ValidationError as exc:
                errors.extend(_pydantic_errors(f"{where}.options", exc))
        else:
            errors.append(f"{where}.component: unknown component {model.component!r}; known: {sorted(registry)}")

    for cluster, spec in config.clusters.items():
        where = f"clusters.{cluster}"
        if not CLUSTER_NAME.match(cluster):
            errors.append(f"{where}: cluster names are letters, digits and '_', starting with a letter")
        if cluster in config.models:
            errors.append(f"{where}: a model has the same name; deployment names must be unique")
        available = set(REQUEST_SLOTS)
        seen: set[str] = set()
        for i, step in enumerate(spec.steps()):
            produced: dict[str, str] = {}
            for j, stage in enumerate(step):
                at = f"{where}.stages[{i}]" + (f".parallel[{j}]" if len(step) > 1 else "")
                errors.extend(_check_stage(config, registry, stage, at, available, seen))
                kind = _stage_kind(config, registry, stage)
                for slot in KINDS[kind].produces if kind else ():
                    if slot in produced:
                        errors.append(
                            f"{at}: {slot!r} is also produced by {produced[slot]!r} in the same parallel step"
                        )
                    produced[slot] = stage.name
            # Parallel branches see only what was there before the step; the step's outputs come after.
            available |= set(produced)
    return errors


def _stage_kind(config: ClustersConfig, registry, stage: StageSpec) -> str | None:
    model = config.models.get(stage.model)
    if model is None:
        return None
    component = registry.get(model.component)
    return component.kind if component else None


def _check_stage(
    config: ClustersConfig, registry, stage: StageSpec, at: str, available: set[str], seen: set[str]
) -> list[str]:
    errors = []
    if stage.name in seen:
        errors.append(f"{at}.name: duplicate stage name {stage.name!r}")
    seen.add(stage.name)
    model = config.models.get(stage.model)
    if model is None:
        return errors + [f"{at}.model: unknown model {stage.model!r}; defined: {sorted(config.models)}"]
    kind = _stage_kind(config, registry, stage)
    if kind is None:
        return errors  # already reported under models
    for slot in sorted(KINDS[kind].consumes - available):
        errors.append(f"{at}: a {kind} stage needs {slot!r}, which no earlier stage produces")
    component = registry.get(model.component)
    if component is not None:
        try:
            component.Params.model_validate(stage.params)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(f"{at}.params", exc))
        check = getattr(component, "check_params", None)
        if check is not None:
            errors.extend(f"{at}.params.{key}: {msg}" for key, msg in check(stage.params, available))
    return errors


def with_model_options(config: ClustersConfig, overrides: dict[str, dict[str, Any]]) -> ClustersConfig:
    """The config with `overrides` merged over its models' options (a serve config's choice, such as
    a bigger LLM on a GPU), checked like the file itself; errors name `args.model_options`."""
    unknown = sorted(set(overrides) - set(config.models))
    if unknown:
        raise ConfigError(f"args.model_options: unknown models {unknown}; defined: {sorted(config.models)}")
    data = config.model_dump()
    for name, options in overrides.items():
        data["models"][name]["options"] = {**data["models"][name]["options"], **options}
    try:
        return parse_clusters(data)
    except ConfigError as exc:
        raise ConfigError(_prefix_lines("args.model_options", str(exc))) from None


def load_clusters(path: str | Path = DEFAULT_CLUSTERS_FILE) -> ClustersConfig:
    path = resolve_path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read cluster config: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
        return parse_clusters(data)
    except ConfigError as exc:
        raise ConfigError(_prefix_lines(str(path), str(exc))) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def _prefix_lines(prefix: str, message: str) -> str:
    return "\n".join(f"{prefix}: {line}" for line in message.splitlines())


def resolve_path(path: str | Path) -> Path:
    """Relative paths in configs are relative to the repository, wherever Ray starts a worker."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path
