"""Where an image stands in a prompt, and the token positions its embeddings take.

A chat message's image part is rendered into the template's text as `IMAGE_MARK`
(a private-use character no tokenizer merges with its neighbours, and that is
removed from any text a user sends, so text alone never opens an image slot).
`encode` tokenizes the text between the marks and puts `tokens_per_image`
placeholder ids at each mark; the engine overwrites those positions' embeddings
with the image's projected features. Training (`moe_svc.vision.train`) builds its
prompts with the same two functions, so the model sees the layout it learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.contracts.openai import ChatMessageIn, ImagePart

__all__ = ["IMAGE_MARK", "PLACEHOLDER_ID", "ImagePrompt", "encode", "message_text"]

IMAGE_MARK = "\ue000"
PLACEHOLDER_ID = 0  # any id: its embedding is replaced


class _Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class ImagePrompt:
    ids: list[int]
    image_starts: list[int]  # the first position of each image's tokens, in order


def message_text(message: ChatMessageIn) -> str:
    """The message's text with IMAGE_MARK where each image part stands."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content.replace(IMAGE_MARK, "")
    return "".join(
        IMAGE_MARK if isinstance(part, ImagePart) else part.text.replace(IMAGE_MARK, "")
        for part in content
    )


def encode(tokenizer: _Tokenizer, text: str, tokens_per_image: int) -> ImagePrompt:
    """Token ids of a rendered prompt, each IMAGE_MARK becoming `tokens_per_image` slots."""
    ids: list[int] = []
    starts: list[int] = []
    for i, piece in enumerate(text.split(IMAGE_MARK)):
        if i:
            starts.append(len(ids))
            ids.extend([PLACEHOLDER_ID] * tokens_per_image)
        if piece:
            ids.extend(tokenizer.encode(piece))
    return ImagePrompt(ids, starts)
