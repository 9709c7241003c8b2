"""The shipped serve configs agree with the app they build."""

from graphs.api.ingress import OmniServeIngress
from graphs.app import parse_args
from graphs.config import load_clusters, with_model_options
from graphs.launch import read_config
from graphs.pipeline.cluster_graph import ClusterGraph

GPU_MODELS = {"whisper_stt", "hf_llm", "onnx_llm", "piper_tts", "faiss_rag"}


def test_default_config_is_cpu_only_and_fits_two_cores():
    (app,) = read_config("serve_config.yaml")["applications"]
    args = parse_args(app["args"])
    config = load_clusters(args.clusters_file)
    models = config.models_for(args.enabled_clusters)
    assert not app.get("deployments"), "the default config keeps each model's CPU-only settings"
    assert all(config.models[m].ray_actor_options.num_gpus == 0 for m in models)
    graphs_and_ingress = (
        ClusterGraph.ray_actor_options["num_cpus"] * len(args.enabled_clusters)
        + OmniServeIngress.ray_actor_options["num_cpus"]
    )
    assert sum(config.models[m].ray_actor_options.num_cpus for m in models) + graphs_and_ingress <= 2


def test_gpu_config_gives_every_neural_model_a_fractional_gpu():
    default = read_config("serve_config.yaml")["applications"][0]
    (app,) = read_config("configs/serve_gpu.yaml")["applications"]
    gpu_args = {k: v for k, v in app["args"].items() if k != "model_options"}
    assert gpu_args == default["args"] and app["import_path"] == default["import_path"]
    args = parse_args(app["args"])
    config = with_model_options(load_clusters(args.clusters_file), args.model_options)
    assert config.models["qwen2.5-coder-0.5b-int4"].options["model"] == "qwen2.5-coder-1.5b-instruct"
    overrides = {d["name"]: d["ray_actor_options"] for d in app["deployments"]}
    models = set(config.models_for(parse_args(app["args"]).enabled_clusters))
    assert set(overrides) <= models, "overrides name deployments the app really starts"
    for name in models:
        if config.models[name].component in GPU_MODELS:
            options = overrides[name]
            assert 0.1 <= options["num_gpus"] <= 0.5, name
            assert options["num_cpus"] > 0, f"{name}: Serve replaces the whole dict, so num_cpus is repeated"
    assert sum(o["num_gpus"] for o in overrides.values()) <= 1, "all of it fits on one GPU"
