"""Shared fixtures for trainer tests: a tiny untrained model on disk, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Qwen2 model + character tokenizer (read-only: copy to modify)."""
    from trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path):
    """The tiny model's tokenizer, loaded through AutoTokenizer as the trainer does."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def arithmetic_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 arithmetic rows (seed 0) as a JSONL file."""
    from trainer.tasks import generate_arithmetic, write_jsonl

    return write_jsonl(generate_arithmetic(200, seed=0),
                       tmp_path_factory.mktemp("data") / "arith.jsonl")
