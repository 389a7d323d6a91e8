"""Tiny random language models saved as Hugging Face directories, for fast serving tests.

A byte-level BPE tokenizer trained in milliseconds on a few sentences (so any
UTF-8 text round-trips, and multi-byte characters span several tokens), ChatML
special tokens and template, and a random Mixtral (or Llama) of a few hundred
thousand parameters: what moe_svc needs to serve, minus the minute-long build of
the real model. Its outputs are gibberish but deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["CHATML_TEMPLATE", "EOS_TOKEN", "make_tiny_llm"]

EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", EOS_TOKEN]
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "What is the capital of France? Tell me a story about a cat and a dog.",
    "Les élèves étudient à l'école. Grüße aus München, schön!",
    "Hello world, how are you today? I am fine, thank you.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and symbols + - * / = ( ) .",
]


def _tokenizer(path: Path, vocab_size: int) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer)
    tokenizer.save(str(path / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|im_start|>",
        "eos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "unk_token": "<|endoftext|>",
        "model_max_length": 512,
        "chat_template": CHATML_TEMPLATE,
        "clean_up_tokenization_spaces": False,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_id}))
    return int(tokenizer.get_vocab_size())


def make_tiny_llm(
    path: Path,
    *,
    model_type: str = "mixtral",
    seed: int = 0,
    vocab_size: int = 384,
    num_layers: int = 2,
    max_position_embeddings: int = 512,
    heads: tuple[int, int] = (6, 2),
    hidden_size: int = 48,
) -> Path:
    """Write a tiny random model directory at `path` (created) and return it.

    heads: (query heads, key/value heads) over the hidden size (48 unless given); (3, 1)
    gives a head size of 16, which moe_svc's native decode attention takes. int4
    products need the hidden size a multiple of 32 (64 with heads (4, 2)).
    """
    from moe_svc.modeling import CausalLM, ModelConfig, save_pretrained
    from tests.helpers.moe_blocks import moe_blocks

    path.mkdir(parents=True, exist_ok=True)
    vocab = _tokenizer(path, vocab_size)
    eos_id = json.loads((path / "generation_config.json").read_text())["eos_token_id"]
    config = ModelConfig(
        model_type=model_type,
        vocab_size=vocab,
        hidden_size=hidden_size,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=heads[0],
        num_key_value_heads=heads[1],
        max_position_embeddings=max_position_embeddings,
        num_local_experts=4,
        num_experts_per_tok=2,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        # larger than the 0.02 default: logits (and routing) far from ties
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    model = CausalLM(config).eval()
    if config.is_moe:
        for block in moe_blocks(model):
            torch.nn.init.normal_(block.gate.weight, std=1.0)  # decisive routing
    save_pretrained(model, path)
    return path
