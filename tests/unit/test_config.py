import textwrap
import warnings

import pytest

from graphs.api.openai_routes import OpenAIAPIArgs
from graphs.app import AppArgs, catalog, check_enabled, environment_reason, parse_args
from graphs.config import ConfigError, load_clusters, with_model_options

ORIGINAL_CLUSTERS = {
    "CLUSTER_Q_ETE_CONVERSATION",
    "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION",
    "CLUSTER_HF_ETE_CONVERSATION",
    "CLUSTER_GPT_4O_ETE_CONVERSATION",
    "CLUSTER_GPT_4O_TEXT_ETE_CONVERSATION",
    "CLUSTER_GPT_35_ETE_CONVERSATION",
    "CLUSTER_GPT_35_RAG_ETE_CONVERSATION",
}

MODELS = """\
models:
  stt: {component: whisper_stt}
  emo: {component: text_emotion}
  llm: {component: hf_llm}
  tts: {component: piper_tts}
"""


def write(tmp_path, text):
    path = tmp_path / "clusters.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path, text) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_clusters(path)
    message = str(info.value)
    assert str(path) in message, "every error names the file"
    return message


def test_default_config_declares_all_original_clusters():
    config = load_clusters()
    assert ORIGINAL_CLUSTERS <= set(config.clusters)
    hf = config.clusters["CLUSTER_HF_ETE_CONVERSATION"]
    assert [config.stage_component(s) for s in hf.flat()] == [
        "whisper_stt",
        "multimodal_emotion",
        "quantized_llm",  # transformers, int8 on the CPU and NF4 on CUDA
        "piper_tts",
    ]
    no_emotion = config.clusters["CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"]
    assert [config.stage_component(s) for s in no_emotion.flat()] == ["whisper_stt", "onnx_llm", "piper_tts"]


def test_models_shared_between_clusters_are_listed_once():
    config = load_clusters()
    names = config.models_for(["CLUSTER_Q_ETE_CONVERSATION", "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"])
    assert names == ["whisper-tiny-en", "multimodal-emotion", "qwen2.5-coder-1.5b-int4", "piper-joe"]


def test_unknown_component_names_model_and_key(tmp_path):
    message = load_error(
        tmp_path,
        """
        models:
          stt: {component: whisper_sst}
        clusters:
          C: {stages: [{name: speech_to_text, model: stt}]}
    """,
    )
    assert "models.stt.component: unknown component 'whisper_sst'" in message


def test_bad_param_names_cluster_stage_and_key(tmp_path):
    message = load_error(
        tmp_path,
        MODELS
        + textwrap.dedent("""
        clusters:
          MY_CLUSTER:
            stages:
              - {name: speech_to_text, model: stt}
              - {name: llm, model: llm, params: {max_new_tokens: many}}
    """),
    )
    assert "clusters.MY_CLUSTER.stages[1].params.max_new_tokens: Input should be a valid integer" in message


def test_duplicate_cluster_is_an_error_not_a_silent_override(tmp_path):
    message = load_error(
        tmp_path,
        MODELS
        + textwrap.dedent("""
        clusters:
          A: {stages: [{name: speech_to_text, model: stt}]}
          A: {stages: [{name: speech_to_text, model: stt}]}
    """),
    )
    assert "duplicate key 'A'" in message


def test_duplicate_stage_name(tmp_path):
    message = load_error(
        tmp_path,
        MODELS
        + textwrap.dedent("""
        clusters:
          A:
            stages:
              - {name: stt, model: stt}
              - {name: stt, model: emo}
    """),
    )
    assert "clusters.A.stages[1].name: duplicate stage name 'stt'" in message


def test_unknown_option_and_param_keys(tmp_path):
    message = load_error(
        tmp_path,
        """
        models:
          stt: {component: whisper_stt, options: {modle: tiny.en}}
        clusters:
          A: {stages: [{name: speech_to_text, model: stt, params: {beam: 5}}]}
    """,
    )
    assert "models.stt.options.modle: Extra inputs are not permitted" in message
    assert "clusters.A.stages[0].params.beam: Extra inputs are not permitted" in message


def test_stage_reading_a_slot_nobody_fills(tmp_path):
    message = load_error(
        tmp_path,
        MODELS
        + textwrap.dedent("""
        clusters:
          A:
            stages:
              - {name: speech_to_text, model: stt}
              - {name: tts, model: tts}
    """),
    )
    assert "clusters.A.stages[1]: a text_to_speech stage needs 'reply_text'" in message


def test_prompt_placeholder_without_a_producing_stage(tmp_path):
    message = load_error(
        tmp_path,
        MODELS
        + textwrap.dedent("""
        clusters:
          A:
            stages:
              - {name: speech_to_text, model: stt}
              - name: llm
                model: llm
                params: {context_template: "{context} {mood}", prompt_template: "{transcript} ({emotion})"}
    """),
    )
    assert "params.context_template: placeholder {context} has no earlier stage that fills it" in message
    assert "params.context_template: placeholder {mood} does not belong here" in message
    assert "params.prompt_template: placeholder {emotion} does not belong here" in message
    assert "findings such as {emotion} go in context_template, into the system message" in message


def test_unknown_model_reference_and_bad_cluster_name(tmp_path):
    message = load_error(
        tmp_path,
        MODELS
        + textwrap.dedent("""
        clusters:
          BAD-NAME: {stages: [{name: speech_to_text, model: whisper}]}
    """),
    )
    assert "clusters.BAD-NAME: cluster names are letters" in message
    assert "clusters.BAD-NAME.stages[0].model: unknown model 'whisper'" in message


def test_custom_ray_resources_place_a_model_and_are_checked(tmp_path):
    config = load_clusters(
        write(
            tmp_path,
            """
            models:
              stt: {component: whisper_stt, ray_actor_options: {num_cpus: 0.5, resources: {models: 0.1}}}
              tts: {component: piper_tts}
            clusters:
              A: {stages: [{name: speech_to_text, model: stt}]}
            """,
        )
    )
    assert config.models["stt"].ray_actor_options.for_serve() == {"num_cpus": 0.5, "resources": {"models": 0.1}}
    assert config.models["tts"].ray_actor_options.for_serve() == {"num_cpus": 0.2}, "none asked, none passed"
    message = load_error(
        tmp_path,
        """
        models:
          stt: {component: whisper_stt, ray_actor_options: {resources: {models: -1}}}
        clusters:
          A: {stages: [{name: speech_to_text, model: stt}]}
        """,
    )
    assert "models.stt.ray_actor_options.resources.models: Input should be greater than or equal to 0" in message


def test_invalid_yaml_and_missing_file(tmp_path):
    assert "invalid YAML" in load_error(tmp_path, "models: [unclosed")
    with pytest.raises(ConfigError, match="cannot read cluster config"):
        load_clusters(tmp_path / "absent.yaml")


def test_enabling_clusters():
    config = load_clusters()
    check_enabled(config, ["CLUSTER_HF_ETE_CONVERSATION", "CLUSTER_GPT_35_ETE_CONVERSATION"])
    with pytest.raises(ConfigError, match="unknown cluster 'CLUSTER_NOPE'"):
        check_enabled(config, ["CLUSTER_NOPE"])
    with pytest.raises(ConfigError, match="a cluster is listed twice"):
        check_enabled(config, ["CLUSTER_HF_ETE_CONVERSATION"] * 2)


def test_openai_clusters_wait_for_their_key(monkeypatch):
    config = load_clusters()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    reason = environment_reason(config, "CLUSTER_GPT_4O_ETE_CONVERSATION")
    assert reason.startswith("stage 'speech_to_text' (openai-whisper-1): OPENAI_API_KEY is not set")
    assert environment_reason(config, "CLUSTER_HF_ETE_CONVERSATION") is None
    listed = {
        c["name"]: c
        for c in catalog(config, ["CLUSTER_HF_ETE_CONVERSATION"], {"CLUSTER_GPT_4O_ETE_CONVERSATION": reason})
    }
    assert listed["CLUSTER_GPT_4O_ETE_CONVERSATION"]["reason"] == reason
    assert not listed["CLUSTER_GPT_4O_ETE_CONVERSATION"]["enabled"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-anything")
    assert environment_reason(config, "CLUSTER_GPT_4O_ETE_CONVERSATION") is None


def test_openai_api_names_real_models_of_the_right_kind():
    config = load_clusters()
    good = OpenAIAPIArgs(aliases={"gpt-4o": "qwen2.5-coder-1.5b-int8"}, speech_to_text="whisper-tiny-en")
    check_enabled(config, [], good)
    bad = OpenAIAPIArgs(aliases={"gpt-4o": "no-such-model"}, speech_to_text="piper-joe")
    with pytest.raises(ConfigError) as info:
        check_enabled(config, [], bad)
    assert "args.openai_api.speech_to_text: 'piper-joe' is not a speech_to_text model" in str(info.value)
    assert "args.openai_api.aliases.gpt-4o: 'no-such-model' is not a model" in str(info.value)


def test_app_args_are_validated():
    assert parse_args({}) == AppArgs()
    with pytest.raises(ConfigError, match="args.enable_clusters: Extra inputs are not permitted"):
        parse_args({"enable_clusters": ["X"]})
    assert AppArgs().audio_retention_days is None, "recordings are kept unless a retention is set"
    assert parse_args({"audio_retention_days": 30}).audio_retention_days == 30
    with pytest.raises(ConfigError, match="args.audio_retention_days: Input should be greater than 0"):
        parse_args({"audio_retention_days": 0})


def test_parallel_steps_load_and_their_branches_are_checked(tmp_path):
    message = load_error(
        tmp_path,
        MODELS
        + textwrap.dedent("""
        clusters:
          SIDE_BY_SIDE:
            stages:
              - parallel:
                  - {name: speech_to_text, model: stt}
                  - {name: emotion, model: emo}
              - {name: tts, model: tts}
    """),
    )
    # emotion needs the transcript, which its sibling only makes at the same time
    assert "clusters.SIDE_BY_SIDE.stages[0].parallel[1]: a emotion stage needs 'transcript'" in message

    config = load_clusters()
    vision = config.clusters["CLUSTER_HF_VISION_ETE_CONVERSATION"]
    assert [[s.name for s in step] for step in vision.steps()][:2] == [
        ["speech_to_text", "image2text"],
        ["emotion_detection"],
    ]
    assert [s.name for s in vision.flat()][:3] == ["speech_to_text", "image2text", "emotion_detection"]


def test_a_parallel_step_needs_two_stages(tmp_path):
    message = load_error(
        tmp_path,
        MODELS
        + textwrap.dedent("""
        clusters:
          A:
            stages:
              - parallel: [{name: speech_to_text, model: stt}]
    """),
    )
    assert "clusters.A.stages[0].parallel: List should have at least 2 items" in message


def test_scaling_settings_are_checked_and_become_serve_deployment_options(tmp_path):
    message = load_error(
        tmp_path,
        """
        models:
          stt: {component: whisper_stt, num_replicas: 2, autoscaling_config: {max_replicas: 3}}
          tts: {component: piper_tts, autoscaling_config: {min_replicas: 3, max_replicas: 2, upscale_delai_s: 1}}
        clusters:
          A: {stages: [{name: speech_to_text, model: stt}]}
    """,
    )
    assert "models.stt: Value error, give num_replicas or autoscaling_config, not both" in message
    assert "models.tts.autoscaling_config.upscale_delai_s: Extra inputs are not permitted" in message

    from ray.serve.config import AutoscalingConfig

    config = load_clusters()
    whisper = config.models["whisper-tiny-en"].deployment_options()
    autoscaling = AutoscalingConfig(**whisper["autoscaling_config"])
    assert autoscaling.upscale_delay_s <= 5 and autoscaling.max_replicas >= 2 and "num_replicas" not in whisper
    assert whisper["max_queued_requests"] > 0, "queues in front of a model are bounded"
    fixed = config.models["qwen2.5-coder-1.5b-int8"].deployment_options()
    assert fixed["num_replicas"] == 1 and "user_config" not in fixed
    write(
        tmp_path,
        "models:\n  s: {component: whisper_stt, concurrency: 2}\nclusters:\n  A: {stages: [{name: s, model: s}]}\n",
    )
    assert load_clusters(tmp_path / "clusters.yaml").models["s"].deployment_options()["user_config"] == {
        "concurrency": 2
    }


def test_a_config_with_parallel_steps_survives_its_round_trip_through_model_options():
    config = load_clusters()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when it serializes a step as the wrong kind
        merged = with_model_options(config, {})
    assert merged == config
    assert any(len(step) > 1 for cluster in merged.clusters.values() for step in cluster.steps())
