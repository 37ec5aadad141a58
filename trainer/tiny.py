"""A tiny Qwen2-style model with a character tokenizer, written in Hugging Face format.

It makes every path of the trainer runnable on a laptop CPU with no downloads (DESIGN.md section 4).
Choices:
- Tokenizer: one token per byte, so one per character for ASCII (a byte-level BPE with no merges,
  built with the `tokenizers` library), plus specials `<pad> <unk> <bos> <eos> <|im_start|>
  <|im_end|>`; byte b has id 6 + b. Encoding prepends `<bos>`. A ChatML-style chat template makes
  chat-message prompts work. Why byte-level rather than a plain character vocabulary:
  transformers 5's AutoTokenizer ignores `tokenizer_class` for model_type qwen2 and rebuilds the
  pipeline as Qwen2Tokenizer (NFC, Qwen's split regex, ByteLevel); our tokenizer.json is exactly
  that pipeline, so AutoTokenizer (any version), PreTrainedTokenizerFast and vLLM all encode alike.
- `tokenizer_class` is written as `PreTrainedTokenizerFast` (not transformers 5's
  `TokenizersBackend`) so older transformers, such as a vLLM install may pin, load it too.
- Model: `Qwen2ForCausalLM`, float32, tied embeddings, vocabulary exactly the tokenizer's (no unused
  ids to sample), head_dim = hidden / heads >= 32 because vLLM's CPU attention needs it.
  `generation_config` stops on `<eos>` or `<|im_end|>`.
- Deterministic: weights come from `torch.manual_seed(seed)` and transformers' initialisation; the
  same seed gives byte-identical safetensors.
- The warm-started demo model (this shape + trainer/warmstart.py) is built by
  trainer/demo_model.py, which imports both; this module imports neither.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PAD, UNK, BOS, EOS, IM_START, IM_END = "<pad>", "<unk>", "<bos>", "<eos>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IM_START, IM_END)
QWEN2_SPLIT_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
                     r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The demo model is smaller than build_tiny_model's default: on a CPU, a 64-wide model learns the
# arithmetic faster per second than a 128-wide one (more steps in the same time; head_dim 32 is
# still what vLLM's CPU attention accepts). docs/benchmarks.md has the figures.
DEMO_SHAPE = {"hidden": 64, "layers": 2, "heads": 2, "intermediate": 256}
MIN_HEAD_DIM = 32


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode table: the printable stand-in character of each byte 0..255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def build_tokenizer():
    """A `PreTrainedTokenizerFast`, one token per byte (= per character for ASCII), not yet saved."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *_byte_symbols()])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, fuse_unk=False,
                                byte_fallback=False))
    # Exactly the pipeline transformers 5's Qwen2Tokenizer rebuilds around any qwen2 vocabulary
    # (AutoTokenizer forces that class for model_type qwen2), so both load paths encode alike.
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=[IM_START, IM_END], model_max_length=512)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tokenizer(out_dir: str | os.PathLike) -> Any:
    """Write the character tokenizer to `out_dir` in HF format and return it."""
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(out_dir)
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    # transformers 4 reads `extra_special_tokens` as a dict and fails on v5's list form; both
    # versions read the older `additional_special_tokens` list.
    config.pop("extra_special_tokens", None)
    config["additional_special_tokens"] = [IM_START, IM_END]
    config["chat_template"] = CHAT_TEMPLATE  # older transformers read it only from here
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return tokenizer


def build_tiny_model(out_dir: str | os.PathLike, *, seed: int = 0, hidden: int = 128,
                     layers: int = 4, heads: int = 2, kv_heads: int | None = None,
                     intermediate: int | None = None, max_positions: int = 512) -> Path:
    """Write a randomly initialised Qwen2ForCausalLM + character tokenizer + generation config.

    hidden / heads is the head dim and must be >= 32 (vLLM CPU attention); kv_heads defaults to
    heads, intermediate to 4 * hidden. Returns `out_dir`. Deterministic under `seed`.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    if hidden % heads or hidden // heads < MIN_HEAD_DIM:
        raise ValueError(f"hidden={hidden} / heads={heads} must be a whole head_dim >= {MIN_HEAD_DIM}")
    kv_heads = heads if kv_heads is None else kv_heads
    if heads % kv_heads:
        raise ValueError(f"heads={heads} must be a multiple of kv_heads={kv_heads}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = save_tokenizer(out_dir)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads,
        intermediate_size=intermediate or 4 * hidden, max_position_embeddings=max_positions,
        tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-6,
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD],
        torch_dtype="float32", use_cache=True)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    GenerationConfig(bos_token_id=ids[BOS], eos_token_id=[ids[EOS], ids[IM_END]],
                     pad_token_id=ids[PAD], do_sample=True, temperature=1.0, top_p=1.0,
                     top_k=0).save_pretrained(out_dir)
    return out_dir
