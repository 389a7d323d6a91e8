"""The turn being answered, and the messages each kind of model answer is given.

A dispatch carries OpenAI-style messages; the last must be the user's turn,
or an agent's tool results (`role: "tool"`) answering an assistant turn's
`tool_calls`. When memory_svc assembled the session's context, that context
(its summary, memories and recent turns) replaces the request's own history;
otherwise the request's messages are the conversation. An agent's
conversation (tool calls and results) reaches the model as it was sent, with
the session's stored summary and memories as system context: the stored turns
have lost the calls' structure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from common.contracts.memory import ContextMessage
from common.contracts.router import DispatchMessage, DispatchRequest, PipelineImage
from common.errors import BadRequest, PayloadTooLarge
from router_svc.settings import RouterSettings

__all__ = [
    "ANSWER_ENDINGS",
    "AnswerMode",
    "Conversation",
    "agent_messages",
    "compose_ideas",
    "model_messages",
    "parse_conversation",
    "reasoning_context",
]

Message = dict[str, Any]
AnswerMode = Literal["chat", "general", "creative", "unsourced", "direct", "describe", "see"]

INSTRUCTIONS: dict[AnswerMode, str] = {
    "chat": "You are a helpful, friendly assistant. Answer briefly and naturally.",
    "general": "You are a helpful assistant. Answer as well as you can; if the request is "
    "unclear, say what you understood and ask what the user needs.",
    "creative": "You are a creative writer. Be original and vivid, and keep to the form asked "
    "for (a poem, a story, a slogan...).",
    "unsourced": "Answer from general knowledge, briefly. Say so when you are not sure.",
    "direct": "Think it through briefly, then give the answer.",
    "describe": "Describe in words the picture the user asks for: subject, composition, "
    "colours and style.",
    # the vision path answers as it was trained: the user's turn alone, no instruction
    "see": "",
}
TEMPERATURES: dict[AnswerMode, float] = {
    "chat": 0.7,
    "general": 0.7,
    "creative": 0.9,
    "unsourced": 0.2,
    "direct": 0.2,
    "describe": 0.8,
    "see": 0.0,
}
# Said after the model's answer in that mode.
ANSWER_ENDINGS: dict[AnswerMode, str] = {
    "unsourced": "\n\n(Not from the document base: retrieval was unavailable, so this answer "
    "has no sources.)",
}


@dataclass(frozen=True)
class Conversation:
    # The latest user turn's text (what is classified and answered).
    text: str
    # Earlier messages of the request (no system messages), oldest first.
    history: list[DispatchMessage]
    system: str | None
    # An agent's turns after the user's: the assistant's tool calls and their results
    # (empty when the user's turn is last).
    agent_turns: list[DispatchMessage] = field(default_factory=list)
    # The user's turn as content parts when the model is to see images: its own, or,
    # for a question about an earlier picture ("what did you draw?"), that picture
    # followed by the text. Empty: a text-only turn.
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_agent(self) -> bool:
        """The conversation holds tool calls or their results (their structure matters)."""
        return any(m.role == "tool" or m.tool_calls for m in [*self.history, *self.agent_turns])


def parse_conversation(request: DispatchRequest, settings: RouterSettings) -> Conversation:
    """The latest user turn and what came before it; 400/413 for what cannot be answered."""
    messages = request.messages
    if len(messages) > settings.max_messages:
        raise PayloadTooLarge(
            f"{len(messages)} messages; the limit is {settings.max_messages}.",
            param="messages",
            code="too_many_messages",
        )
    total = sum(len(m.text()) for m in messages)
    if total > settings.max_total_chars:
        raise PayloadTooLarge(
            f"The messages hold {total} characters; the limit is {settings.max_total_chars}.",
            param="messages",
            code="messages_too_long",
        )
    # An agent's follow-up ends in tool results after the assistant turn that called them.
    ending = len(messages)
    while ending > 0 and messages[ending - 1].role == "tool":
        ending -= 1
    results = messages[ending:]
    if results and not (ending > 0 and messages[ending - 1].tool_calls):
        raise BadRequest(
            "Tool results must follow the assistant turn whose tool_calls they answer.",
            param=f"messages.{ending}",
            code="no_tool_call",
        )
    users = [i for i in range(ending) if messages[i].role == "user"]
    last = users[-1] if users else -1
    said = users and (messages[last].text().strip() or messages[last].images())
    if not said or (not results and last != ending - 1):
        raise BadRequest(
            "The last message must be the user's turn with text or an image, or tool results "
            "after the "
            "assistant turn that called them.",
            param=f"messages.{len(messages) - 1}",
            code="no_user_turn",
        )
    text = messages[last].text()
    if len(text) > settings.max_text_chars:
        raise PayloadTooLarge(
            f"The user's message has {len(text)} characters; the limit is "
            f"{settings.max_text_chars}.",
            param=f"messages.{last}.content",
            code="text_too_long",
        )
    systems = [m.text() for m in messages if m.role == "system" and m.text().strip()]
    history = [m for m in messages[:last] if m.role != "system"]
    return Conversation(
        text=text,
        history=history,
        system="\n\n".join(systems) or None,
        agent_turns=[m for m in messages[last + 1 :] if m.role != "system"],
        seen=_seen(messages[last], history),
    )


# "What did you draw?", "Describe the picture.", "What is in this image?": a question
# about a picture shown earlier in the conversation.
_ABOUT_A_PICTURE = re.compile(
    r"(?i)\b(?:(?:you|u)\s+(?:just\s+)?(?:drew|draw|drawn|made|painted|generated|sketched)"
    r"|(?:the|this|that|your|my)\s+(?:picture|image|drawing|photo|sketch|painting)"
    r"|what\s+is\s+(?:it|in\s+it)\b)"
)


def _seen(turn: DispatchMessage, history: list[DispatchMessage]) -> list[dict[str, Any]]:
    if turn.images():
        assert isinstance(turn.content, list)
        return [p for p in turn.content if p.get("type") in ("text", "image_url")]
    if not _ABOUT_A_PICTURE.search(turn.text()):
        return []
    earlier = next((m.images() for m in reversed(history) if m.images()), [])
    if not earlier:
        return []
    return [earlier[-1], {"type": "text", "text": turn.text()}]


def _as_chat(role: str, content: str) -> Message:
    # Tool results read as part of the conversation for models without a tool role.
    if role == "tool":
        return {"role": "user", "content": f"Tool result: {content}"}
    return {"role": role, "content": content}


def model_messages(
    mode: AnswerMode, conversation: Conversation, context: list[ContextMessage] | None
) -> list[Message]:
    """The system instruction of `mode`, then the conversation ending in the user's turn.

    "see": the user's turn alone, as content parts with its picture, as the vision
    path was trained (earlier turns and instructions are not in what it learned)."""
    if mode == "see":
        return [{"role": "user", "content": conversation.seen}]
    stored_system: list[str] = []
    turns: list[Message] = []
    if context is not None:
        for m in context:
            if m.role == "system":
                stored_system.append(m.content)
            else:
                turns.append(_as_chat(m.role, m.content))
        if not turns or turns[-1] != {"role": "user", "content": conversation.text}:
            turns.append({"role": "user", "content": conversation.text})
    else:
        turns = [_as_chat(m.role, m.text()) for m in conversation.history]
        turns.append({"role": "user", "content": conversation.text})
    system = "\n\n".join(s for s in (INSTRUCTIONS[mode], conversation.system, *stored_system) if s)
    return [{"role": "system", "content": system}, *turns]


def _openai(message: DispatchMessage) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": message.role, "content": message.text()}
    if message.tool_calls:
        turn["tool_calls"] = [call.model_dump(mode="json") for call in message.tool_calls]
    if message.tool_call_id is not None:
        turn["tool_call_id"] = message.tool_call_id
    return turn


def agent_messages(
    mode: AnswerMode, conversation: Conversation, context: list[ContextMessage] | None
) -> list[dict[str, Any]]:
    """An agent's conversation for the model as it was sent, tool calls and results included;
    the session's stored summary and memories (its system context) join the instruction."""
    stored = [m.content for m in context or [] if m.role == "system"]
    system = "\n\n".join(s for s in (INSTRUCTIONS[mode], conversation.system, *stored) if s)
    user = {"role": "user", "content": conversation.text}
    turns = [_openai(m) for m in conversation.history] + [user]
    turns += [_openai(m) for m in conversation.agent_turns]
    return [{"role": "system", "content": system}, *turns]


def reasoning_context(
    conversation: Conversation,
    context: list[ContextMessage] | None,
    max_messages: int = 10,
    max_chars: int = 8000,
) -> list[ContextMessage]:
    """The earlier turns for reasoning_svc: recent first kept, the latest turn left out."""
    turns: list[tuple[str, str]]
    if context is not None:
        turns = [(m.role, m.content) for m in context if m.role != "system"]
        if turns and turns[-1] == ("user", conversation.text):
            turns = turns[:-1]
    else:
        turns = [(m.role, m.text()) for m in conversation.history]
    kept: list[ContextMessage] = []
    used = 0
    for role, content in reversed(turns[-max_messages:]):
        if used + len(content) > max_chars:
            break
        kept.insert(0, ContextMessage(role=role, content=content))
        used += len(content)
    return kept


def compose_ideas(body: dict[str, Any]) -> tuple[str, list[PipelineImage]]:
    """(reply text, images) from creative_svc's ideation answer."""
    lines: list[str] = []
    images: list[PipelineImage] = []
    ideas = body.get("ideas") or []
    for number, idea in enumerate(ideas, 1):
        description = str(idea.get("description") or "").strip()
        head = f"{number}. {description}" if len(ideas) > 1 else description
        lines.append(head)
        if idea.get("visual_concept"):
            lines.append(f"   Visual: {idea['visual_concept']}")
        if idea.get("image"):
            images.append(PipelineImage(b64_json=idea["image"], description=description))
    critique = body.get("critique")
    if critique:
        lines.append(f"\nCritique: {critique}")
    return "\n".join(lines).strip() or "(creative_svc returned no ideas)", images
