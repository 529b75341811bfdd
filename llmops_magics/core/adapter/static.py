"""Static adapter check: will these LoRA tensors fit the new base, and will vLLM take them?

Reads only ``adapter_config.json``, the bases' ``config.json`` and safetensors headers
(never tensor data), so a 7B base is checked in milliseconds from well under 1 MB.
Findings about many layers that fail the same way are grouped (``layers.*``) so a
32-layer mismatch reads as one line, with the count.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...backends import safetensors_header as st
from ...errors import BadInput, ModelNotFound
from .report import Finding

_PREFIX = "base_model.model."
_LORA_RE = re.compile(
    r"^(?P<module>.+?)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)"
    r"(?:\.(?P<adapter>[^.]+))?(?:\.(?P<param>weight|bias))?$"
)
_LAYER_RE = re.compile(r"\.(layers|h|blocks|layer)\.(\d+)\.")
_EMBEDDING_HINTS = ("embed_tokens", "wte", "lm_head", "embed_out", "word_embeddings", "embeddings")
# Dtype pairs that lose range or precision when a backend casts one into the other.
_RISKY_DTYPES = {frozenset({"F16", "BF16"})}


@dataclass
class StaticResult:
    """Findings of the static check and what it cost."""

    findings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    adapter_config: dict = field(default_factory=dict)


def adapter_config(adapter_dir: str | Path) -> dict:
    """``adapter_config.json`` of a PEFT adapter folder, with one-line errors."""
    path = Path(adapter_dir)
    if not path.exists():
        raise BadInput(f"adapter folder {path} does not exist")
    if not path.is_dir():
        raise BadInput(f"{path} is a file: give the adapter's folder (the one with adapter_config.json)")
    cfg_file = path / "adapter_config.json"
    if not cfg_file.is_file():
        raise BadInput(
            f"{path} is not a PEFT adapter: it has no adapter_config.json (save one with PeftModel.save_pretrained)"
        )
    cfg = st.read_json(cfg_file)
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise BadInput(f"{path} is a {peft_type} adapter: %adapter_check checks LoRA adapters only")
    return cfg


def base_config(base_dir: str | Path, role: str = "base") -> dict:
    """``config.json`` of a base model folder (the text part of multimodal configs)."""
    path = Path(base_dir)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelNotFound(f"{role} {path} is not a model folder: it has no config.json")
    cfg = st.read_json(cfg_file)
    return {**cfg, **cfg.get("text_config", {})} if isinstance(cfg.get("text_config"), dict) else cfg


def _num_layers(cfg: dict) -> int | None:
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return None


def _pattern(name: str) -> str:
    return _LAYER_RE.sub(lambda m: f".{m.group(1)}.*.", name)


def _layer(name: str) -> int | None:
    m = _LAYER_RE.search(name)
    return int(m.group(2)) if m else None


def _shape(s) -> str:
    return "(" + ", ".join(str(d) for d in s) + ")"


class _Grouper:
    """Collects findings, merging those that differ only by layer index."""

    def __init__(self):
        self._groups: dict[tuple, list] = {}

    def add(self, severity, check, subject, expected="", found="", message=""):
        key = (severity, check, _pattern(subject), expected, found, message)
        self._groups.setdefault(key, []).append(subject)

    def findings(self) -> list[Finding]:
        out = []
        for (severity, check, pattern, expected, found, message), subjects in self._groups.items():
            subject = subjects[0] if len(subjects) == 1 else f"{pattern} ({len(subjects)} tensors)"
            out.append(Finding(severity, check, subject, expected, found, message))
        return out


def _base_module(module: str, base_modules: set[str]) -> str | None:
    # PEFT names follow the wrapped model (model.layers...); checkpoints sometimes drop or
    # add the outer prefix (transformer.h... vs h...).
    candidates = [module, f"model.{module}", f"transformer.{module}"]
    parts = module.split(".")
    candidates += [".".join(parts[i:]) for i in range(1, min(3, len(parts)))]
    return next((c for c in candidates if c in base_modules), None)


def _matches_target(module: str, targets) -> bool:
    if isinstance(targets, str):
        return targets == "all-linear" or re.fullmatch(targets, module) is not None
    return any(module == t or module.endswith(f".{t}") for t in targets)


def static_check(
    adapter_dir: str | Path,
    base_dir: str | Path,
    *,
    old_base_dir: str | Path | None = None,
    max_lora_rank: int = 16,
    base_label: str | None = None,
) -> StaticResult:
    """Check an adapter against a base from configs and safetensors headers only.

    Parameters
    ----------
    adapter_dir : path
        A PEFT LoRA adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``).
    base_dir : path
        The new base model folder (``config.json`` + safetensors, sharded or not).
    old_base_dir : path, optional
        The base the adapter was trained on, when known: its architecture and vocab
        are compared with the new base's.
    max_lora_rank : int
        The rank the vLLM server is started with (``--max-lora-rank``).
    base_label : str, optional
        How to name the new base in findings (the ref the user typed).

    Returns
    -------
    StaticResult
        ``findings`` and ``stats`` (tensors checked, bytes read, seconds).
    """
    if max_lora_rank < 1:
        raise BadInput(f"--max-lora-rank must be at least 1, got {max_lora_rank}")
    t0 = time.perf_counter()
    read0 = st.bytes_read
    adapter_dir, base_dir = Path(adapter_dir), Path(base_dir)
    acfg = adapter_config(adapter_dir)
    bcfg = base_config(base_dir)
    ocfg = base_config(old_base_dir, "old base") if old_base_dir else None
    g = _Grouper()

    _check_identity(g, acfg, bcfg, ocfg, base_label or str(base_dir))
    _check_features(g, acfg, max_lora_rank)
    base_tensors = st.model_tensors(base_dir)
    if not base_tensors:
        raise BadInput(f"base {base_dir} has no .safetensors weights: the static check reads safetensors headers")
    base_modules = {n[: -len(".weight")] for n in base_tensors if n.endswith(".weight")}
    n_layers = _num_layers(bcfg)
    _check_targets(g, acfg, base_modules, n_layers)
    checked = _check_tensors(g, adapter_dir, acfg, base_tensors, base_modules, n_layers, max_lora_rank)
    _check_vocab(g, acfg, bcfg, ocfg)
    stats = {
        "tensors_checked": checked,
        "base_tensors": len(base_tensors),
        "bytes_read": st.bytes_read - read0,
        "seconds": time.perf_counter() - t0,
    }
    return StaticResult(g.findings(), stats, acfg)


def _check_identity(g: _Grouper, acfg: dict, bcfg: dict, ocfg: dict | None, base_label: str) -> None:
    trained_on = acfg.get("base_model_name_or_path") or "unknown"
    revision = acfg.get("revision")
    g.add(
        "info",
        "base",
        "adapter",
        expected=str(trained_on) + (f"@{revision}" if revision else ""),
        found=base_label,
        message="the base the adapter was trained on vs the base checked now",
    )
    if revision:
        g.add(
            "info",
            "base",
            "adapter",
            expected=str(revision),
            found="(local folder: no revision)",
            message="the adapter records a hub revision; a local base folder carries none to compare",
        )
    if ocfg is None:
        g.add(
            "info",
            "architecture",
            "base",
            found=str(bcfg.get("model_type")),
            message="the training base is not available locally: architecture not compared (give --old-base)",
        )
        return
    for key in ("model_type", "architectures"):
        old, new = ocfg.get(key), bcfg.get(key)
        if old != new:
            g.add(
                "warning",
                "architecture",
                key,
                expected=str(old),
                found=str(new),
                message=f"the new base's {key} differs from the training base's",
            )
    for key in ("hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size"):
        old, new = ocfg.get(key), bcfg.get(key)
        if old is not None and new is not None and old != new:
            g.add(
                "info",
                "architecture",
                key,
                expected=str(old),
                found=str(new),
                message=f"{key} changed between the bases",
            )


def _check_features(g: _Grouper, acfg: dict, max_lora_rank: int) -> None:
    ranks = [int(acfg.get("r") or 0)] + [int(v) for v in (acfg.get("rank_pattern") or {}).values()]
    if max(ranks) > max_lora_rank:
        g.add(
            "warning",
            "rank",
            "adapter",
            expected=f"<= {max_lora_rank}",
            found=str(max(ranks)),
            message=f"vLLM refuses ranks above max_lora_rank: start it with max_lora_rank >= {max(ranks)}",
        )
    if str(acfg.get("bias", "none")) != "none" or acfg.get("lora_bias"):
        g.add(
            "warning",
            "vllm",
            "bias",
            expected="none",
            found=str(acfg.get("bias") if acfg.get("bias") != "none" else "lora_bias"),
            message="vLLM does not serve LoRA biases; merge them or retrain with bias='none'",
        )
    if acfg.get("use_dora"):
        g.add(
            "warning",
            "vllm",
            "use_dora",
            expected="false",
            found="true",
            message="vLLM does not serve DoRA adapters; use transformers or merge the adapter",
        )
    for module in acfg.get("modules_to_save") or []:
        g.add(
            "warning",
            "vllm",
            str(module),
            expected="LoRA deltas only",
            found="modules_to_save",
            message="vLLM ignores or refuses full-module copies (modules_to_save); serve with transformers or merge",
        )
    if acfg.get("trainable_token_indices"):
        g.add(
            "warning",
            "vllm",
            "trainable_token_indices",
            expected="none",
            found="trainable tokens",
            message="vLLM does not serve trainable-token deltas",
        )


def _check_targets(g: _Grouper, acfg: dict, base_modules: set[str], n_layers: int | None) -> None:
    targets = acfg.get("target_modules") or []
    if isinstance(targets, str):
        if not any(_matches_target(m, targets) for m in base_modules):
            g.add(
                "breaking",
                "target_modules",
                targets,
                expected="a matching module",
                found="none",
                message="the target_modules pattern matches no module of the new base",
            )
    else:
        for t in sorted(targets):
            if not any(m == t or m.endswith(f".{t}") for m in base_modules):
                g.add(
                    "breaking",
                    "target_modules",
                    str(t),
                    expected="a module named so",
                    found="not in the new base",
                    message="a target module does not exist in the new base (another architecture?)",
                )
    layers = acfg.get("layers_to_transform")
    if layers is not None and n_layers is not None:
        wanted = [layers] if isinstance(layers, int) else list(layers)
        beyond = [i for i in wanted if i >= n_layers]
        if beyond:
            g.add(
                "breaking",
                "layers",
                "layers_to_transform",
                expected=f"< {n_layers}",
                found=str(beyond),
                message="layers_to_transform names layers the new base does not have",
            )


def _adapter_weights(adapter_dir: Path):
    path = adapter_dir / "adapter_model.safetensors"
    if path.is_file():
        return path
    if (adapter_dir / "adapter_model.bin").is_file():
        return None
    raise BadInput(f"{adapter_dir} has no adapter_model.safetensors: the adapter's weights are missing")


def _check_tensors(g, adapter_dir, acfg, base_tensors, base_modules, n_layers, max_lora_rank) -> int:
    weights = _adapter_weights(adapter_dir)
    if weights is None:
        g.add(
            "warning",
            "shape",
            "adapter_model.bin",
            expected="adapter_model.safetensors",
            found="pickle",
            message="shapes not checked: re-save the adapter with safe_serialization=True",
        )
        return 0
    tensors, _ = st.read_header(weights)
    fan_in_fan_out = bool(acfg.get("fan_in_fan_out"))
    beyond_layers: set[int] = set()
    adapter_dtypes, base_dtypes = set(), set()
    for name, info in sorted(tensors.items()):
        key = name[len(_PREFIX) :] if name.startswith(_PREFIX) else name
        adapter_dtypes.add(info.dtype)
        m = _LORA_RE.match(key)
        if m is None:
            _check_full_module(g, key, info, base_tensors, base_modules)
            continue
        module, kind, param = m.group("module"), m.group("kind"), m.group("param")
        base_module = _base_module(module, base_modules)
        layer = _layer(module)
        if base_module is None:
            if layer is not None and n_layers is not None and layer >= n_layers:
                beyond_layers.add(layer)
                continue
            g.add(
                "breaking",
                "target_modules",
                key,
                expected=f"{module}.weight in the new base",
                found="missing",
                message="the adapter adapts a module the new base does not have",
            )
            continue
        base = base_tensors[f"{base_module}.weight"]
        base_dtypes.add(base.dtype)
        if kind == "lora_magnitude_vector" or param == "bias":
            continue
        _check_lora_shape(g, key, kind, info.shape, base.shape, fan_in_fan_out, max_lora_rank)
    if beyond_layers:
        g.add(
            "breaking",
            "layers",
            "adapter",
            expected=f"layers 0..{n_layers - 1}",
            found=f"layers up to {max(beyond_layers)}",
            message=f"the adapter adapts {len(beyond_layers)} layer(s) the new base does not have",
        )
    risky = [
        pair
        for pair in _RISKY_DTYPES
        if pair <= (adapter_dtypes | base_dtypes) and adapter_dtypes & pair and base_dtypes & pair
    ]
    if base_dtypes and adapter_dtypes != base_dtypes:
        g.add(
            "warning" if risky else "info",
            "dtype",
            "adapter",
            expected="/".join(sorted(base_dtypes)),
            found="/".join(sorted(adapter_dtypes)),
            message="backends cast the adapter to the base dtype"
            + (" (F16 and BF16 differ in range)" if risky else ""),
        )
    return len(tensors)


def _check_lora_shape(g, key, kind, shape, base_shape, fan_in_fan_out, max_lora_rank) -> None:
    if len(shape) != 2 or len(base_shape) != 2:
        return
    if kind.startswith("lora_embedding"):
        num, dim = base_shape
        want, got, what = (num, shape[1], "vocab rows") if kind.endswith("A") else (dim, shape[0], "embedding dim")
    else:
        out_f, in_f = (base_shape[1], base_shape[0]) if fan_in_fan_out else base_shape
        want, got, what = (in_f, shape[1], "in_features") if kind == "lora_A" else (out_f, shape[0], "out_features")
    if want != got:
        g.add(
            "breaking",
            "shape",
            key,
            expected=f"{what} {want}",
            found=f"{what} {got}",
            message=f"the LoRA tensor {_shape(shape)} does not fit the new base weight {_shape(base_shape)}",
        )
    rank = shape[0] if kind in ("lora_A", "lora_embedding_A") else shape[1]
    if rank > max_lora_rank:
        g.add(
            "warning",
            "rank",
            key,
            expected=f"<= {max_lora_rank}",
            found=str(rank),
            message="vLLM refuses this rank at the configured max_lora_rank",
        )


def _check_full_module(g, key, info, base_tensors, base_modules) -> None:
    if "trainable_tokens" in key:
        return
    module, _, param = key.rpartition(".")
    base_module = _base_module(module, base_modules)
    base = base_tensors.get(f"{base_module}.{param}") if base_module else None
    if base is None:
        g.add(
            "breaking",
            "target_modules",
            key,
            expected="a matching tensor in the new base",
            found="missing",
            message="the adapter saves a full module the new base does not have",
        )
        return
    if base.shape != info.shape:
        vocab = any(h in module for h in _EMBEDDING_HINTS) and base.shape[1:] == info.shape[1:]
        g.add(
            "breaking",
            "vocab" if vocab else "shape",
            key,
            expected=_shape(base.shape),
            found=_shape(info.shape),
            message="the adapter carries resized embeddings: its vocab does not match the new base"
            if vocab
            else "the saved module does not fit the new base's",
        )


def _check_vocab(g, acfg, bcfg, ocfg) -> None:
    new_vocab = bcfg.get("vocab_size")
    if ocfg is not None and ocfg.get("vocab_size") != new_vocab:
        g.add(
            "warning",
            "vocab",
            "vocab_size",
            expected=str(ocfg.get("vocab_size")),
            found=str(new_vocab),
            message="the vocab changed between the bases: token ids may mean other tokens",
        )
    indices = acfg.get("trainable_token_indices")
    if indices and isinstance(new_vocab, int):
        flat = indices if isinstance(indices, list) else [i for v in indices.values() for i in v]
        beyond = [i for i in flat if i >= new_vocab]
        if beyond:
            g.add(
                "breaking",
                "vocab",
                "trainable_token_indices",
                expected=f"< {new_vocab}",
                found=str(beyond[:5]),
                message="trainable tokens point past the new base's vocab",
            )
