"""The shipped serve configs agree with the app they build."""

from graphs.api.ingress import OmniServeIngress
from graphs.app import parse_args
from graphs.launch import read_config
from graphs.pipeline.cluster_graph import ClusterGraph

GPU_MODELS = {"whisper_stt", "hf_llm", "onnx_llm", "piper_tts", "faiss_rag"}


def test_default_config_is_cpu_only_and_fits_two_cores():
    (app,) = read_config("serve_config.yaml")["applications"]
    args = parse_args(app["args"])
    config = args.clusters()
    models = config.models_for(args.enabled_clusters)
    for override in app["deployments"]:
        assert set(override) == {"name", "autoscaling_config"}, "the default config keeps each model's CPU settings"
        assert override["name"] in models
    llm = next(d for d in app["deployments"] if d["name"] == "qwen2.5-coder-1.5b-int4")
    assert llm["autoscaling_config"]["max_replicas"] == 1, "a second LLM would only share the two cores"
    assert all(config.models[m].ray_actor_options.num_gpus == 0 for m in models)
    graphs_and_ingress = (
        ClusterGraph.ray_actor_options["num_cpus"] * len(args.enabled_clusters)
        + OmniServeIngress.ray_actor_options["num_cpus"]
    )
    assert sum(config.models[m].ray_actor_options.num_cpus for m in models) + graphs_and_ingress <= 2


def test_gpu_config_gives_every_neural_model_a_fractional_gpu():
    default = read_config("serve_config.yaml")["applications"][0]
    (app,) = read_config("configs/serve_gpu.yaml")["applications"]
    mine = {"model_options", "admission"}
    gpu_args = {k: v for k, v in app["args"].items() if k not in mine}
    assert gpu_args == {k: v for k, v in default["args"].items() if k not in mine}
    assert app["import_path"] == default["import_path"]
    args = parse_args(app["args"])
    config = args.clusters()
    assert config.models["qwen2.5-coder-1.5b-int4"].options["provider"] == "cuda"
    overrides = {d["name"]: d["ray_actor_options"] for d in app["deployments"]}
    models = set(config.models_for(parse_args(app["args"]).enabled_clusters))
    assert set(overrides) <= models, "overrides name deployments the app really starts"
    for name in models:
        if config.models[name].component in GPU_MODELS:
            options = overrides[name]
            assert 0.1 <= options["num_gpus"] <= 0.5, name
            assert options["num_cpus"] > 0, f"{name}: Serve replaces the whole dict, so num_cpus is repeated"
    assert sum(o["num_gpus"] for o in overrides.values()) <= 1, "all of it fits on one GPU"


def test_both_serve_configs_scale_every_speech_and_llm_model_with_serves_own_schema():
    from ray.serve.schema import ServeDeploySchema

    for path in ("serve_config.yaml", "configs/serve_gpu.yaml"):
        config = read_config(path)
        ServeDeploySchema.model_validate(config)
        (app,) = config["applications"]
        scaled = {d["name"]: d["autoscaling_config"] for d in app["deployments"] if "autoscaling_config" in d}
        assert {"whisper-tiny-en", "qwen2.5-coder-1.5b-int4", "piper-joe"} <= set(scaled), path
        for name, autoscaling in scaled.items():
            assert 1 <= autoscaling["min_replicas"] <= autoscaling["max_replicas"], (path, name)
            assert autoscaling.get("upscale_delay_s", 3) <= 5, "a burst of voices cannot wait Serve's 30 s"
