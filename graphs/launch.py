"""Deploy a serve config file onto the Ray instance this process is connected to.

This is what `serve run CONFIG` does, without blocking the caller: tests and the benchmark use
it to run exactly the shipped configs, with a different port or database where they must.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values
from ray import serve
from ray.serve.schema import ServeDeploySchema

from graphs.config import resolve_path


def read_config(path: str | Path, port: int | None = None, **args: Any) -> dict[str, Any]:
    """The config file as a dict; `port` and app `args` given here replace the file's."""
    config = copy.deepcopy(yaml.safe_load(resolve_path(path).read_text()))
    if port is not None:
        config.setdefault("http_options", {})["port"] = port
    for app in config["applications"]:
        app.setdefault("args", {}).update(args)
    return config


def deploy(config: dict[str, Any], timeout_s: float = 600) -> str:
    """Start Serve, deploy every application, wait until all run; returns the HTTP base URL."""
    # Ray Serve has no public API that deploys a config file from Python ("Call serve.run with a config
    # file path", ray-project/ray#41359, open): `serve.run` takes an Application and would drop the
    # config's per-deployment overrides. This is what `serve run CONFIG` itself calls.
    from ray.serve._private import api as serve_api

    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
    )
    client.deploy_apps(schema)
    names = {app.name for app in schema.applications}
    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        states = {name: apps[name] for name in names if name in apps}
        failed = {n: s.message for n, s in states.items() if s.status == "DEPLOY_FAILED"}
        if failed:
            raise RuntimeError(f"deploy failed: {failed}")
        if len(states) == len(names) and all(s.status == "RUNNING" for s in states.values()):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"applications not running after {timeout_s:.0f} s: { {n: s.status for n, s in states.items()} }"
            )
        time.sleep(0.5)
    host = schema.http_options.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{schema.http_options.port}"


def ray_environment(path: str | Path = "configs/ray.env") -> dict[str, str]:
    """The KEY=VALUE lines of the file scripts/serve.sh sources before `serve run`."""
    return {key: value for key, value in dotenv_values(resolve_path(path)).items() if value is not None}


def use_ray_environment() -> None:
    """Give a local Ray this process starts the environment `scripts/serve.sh` gives `serve run`;
    what the caller has set already stays."""
    for key, value in ray_environment().items():
        os.environ.setdefault(key, value)


def serve_locally(config_path: str | Path) -> str:
    """Start a local Ray instance and deploy a serve config on it, as the benchmarks do without --url."""
    use_ray_environment()
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    return deploy(read_config(config_path))
