"""Real tiny bases and real PEFT adapters for the adapter-check tests and bench.

Bases are random Llama-family (or GPT-2) models built from configs, saved as
safetensors; the SmolLM2 tokenizer is copied in when a behavioral check needs one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def tiny_llama(
    out: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = 49152,
    seed: int = 0,
    tokenizer_from: Path | None = None,
    init_range: float = 0.2,
) -> Path:
    """A random LlamaForCausalLM saved to ``out`` (safetensors, fp32)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        initializer_range=init_range,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer_from is not None:
        copy_tokenizer(tokenizer_from, out)
    return out


def tiny_gpt2(out: Path, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=1000, n_embd=hidden, n_layer=layers, n_head=4, n_positions=128)
    GPT2LMHeadModel(cfg).save_pretrained(out, safe_serialization=True)
    return out


def copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copy(Path(src) / name, Path(dst) / name)


def make_adapter(
    base: Path, out: Path, *, seed: int = 1, zero_b: bool = False, resize_vocab: int | None = None, **lora
) -> Path:
    """A real PEFT LoRA adapter on ``base`` (random, non-trivial unless ``zero_b``)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if resize_vocab:
        model.resize_token_embeddings(resize_vocab)
    opts = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "init_lora_weights": False, **lora}
    peft_model = get_peft_model(model, LoraConfig(**opts))
    if zero_b:
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.zero_()
    peft_model.save_pretrained(out)
    return out


def perturbed_base(base: Path, out: Path, *, noise: float = 0.0, rescale: float = 1.0, seed: int = 2) -> Path:
    """A new base of the same shapes as ``base``.

    ``noise``: relative Gaussian noise on every weight (a provider fine-tune).
    ``rescale``: multiply each attention input norm by ``rescale`` and divide q/k/v by
    it. The base computes the same function, but a LoRA on q/v now sees inputs scaled by
    ``rescale``: its delta is scaled too (the re-parametrization that silently breaks
    an adapter while the base's own outputs barely move).
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with torch.no_grad():
        if noise:
            for p in model.parameters():
                p.add_(torch.randn_like(p) * noise * p.abs().mean())
        if rescale != 1.0:
            for layer in model.model.layers:
                layer.input_layernorm.weight.mul_(rescale)
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.weight.div_(rescale)
    model.save_pretrained(out, safe_serialization=True)
    copy_tokenizer(base, out)
    return out
