"""The route decision (`POST /v1/route`'s logic): size checks, the classifier, the threshold,
the plan."""

from __future__ import annotations

import re
from collections.abc import Sequence

from common.contracts.router import DispatchMessage, Intent, RouteResponse
from common.errors import PayloadTooLarge
from router_svc.classifier import IntentClassifier
from router_svc.plans import core_model_plan, make_plan
from router_svc.settings import RouterSettings

__all__ = ["Router", "asks_about_the_user", "check_sizes"]

# "What is my dog called?", "Who is my manager?", "What did I tell you?", "Do you remember
# my name?": questions whose answer is in what the user said, not in the knowledge base.
_ABOUT_THE_USER = re.compile(
    r"^\W*(?:(?:what|who|where|when|which|how\s+old|how\s+many)\b[^?]*\bmy\b"
    r"|(?:what|when|where)\s+(?:did|do|have)\s+i\s+(?:say|said|tell|told|mention|write)"
    r"|do\s+you\s+(?:remember|recall|know)\b[^?]*\b(?:my|me|i)\b)",
    re.IGNORECASE,
)


def asks_about_the_user(text: str) -> bool:
    """Whether `text` asks about what the user said of themselves (answered from the
    conversation, not from the knowledge base)."""
    return _ABOUT_THE_USER.search(text) is not None


def check_sizes(settings: RouterSettings, text: str, history: Sequence[DispatchMessage]) -> None:
    """413 naming the parameter when the text or the history is too large."""
    if len(text) > settings.max_text_chars:
        raise PayloadTooLarge(
            f"The text has {len(text)} characters; the limit is {settings.max_text_chars}.",
            param="text",
            code="text_too_long",
        )
    if len(history) > settings.max_history_messages:
        raise PayloadTooLarge(
            f"The history has {len(history)} messages; the limit is "
            f"{settings.max_history_messages}.",
            param="history",
            code="history_too_long",
        )
    total = len(text) + sum(len(m.text()) for m in history)
    if total > settings.max_total_chars:
        raise PayloadTooLarge(
            f"The request has {total} characters of text; the limit is {settings.max_total_chars}.",
            param="history",
            code="history_too_long",
        )


class Router:
    """Decides a turn's intent and plan: the classifier's guess, or the safe plan below
    the confidence threshold."""

    def __init__(self, settings: RouterSettings, classifier: IntentClassifier) -> None:
        self.settings = settings
        self.classifier = classifier

    def route(
        self,
        text: str,
        history: Sequence[DispatchMessage] = (),
        *,
        forced_intent: Intent | None = None,
        strategy: str | None = None,
        core_model: str | None = None,
        sees: bool = False,
    ) -> RouteResponse:
        """The route of `text`; with `core_model` (why only the core model can answer), the
        core-model plan, unclassified (the intent is the forced one, else chat); `sees`:
        that plan looks at the turn's picture."""
        threshold = self.settings.confidence_threshold
        if core_model is not None:
            intent = forced_intent or "chat"
            return RouteResponse(
                intent=intent,
                confidence=1.0,
                scores={intent: 1.0},
                plan=core_model_plan(intent, core_model, sees=sees),
                fallback=False,
                threshold=threshold,
                reason=core_model,
            )
        if forced_intent is not None:
            # The caller chose the intent: nothing was classified, nothing to fall back from.
            scores = {forced_intent: 1.0}
            plan = make_plan(forced_intent, text, fallback=False, strategy=strategy)
            return RouteResponse(
                intent=forced_intent,
                confidence=1.0,
                scores=scores,
                plan=plan,
                fallback=False,
                threshold=threshold,
                reason="intent given in the request",
            )
        pairs = [(m.role, m.text()) for m in history]
        prediction = self.classifier.classify(text, pairs)
        fallback = prediction.confidence < threshold
        intent, reason = prediction.intent, None
        if intent == "factual" and not fallback and asks_about_the_user(text):
            intent = "chat"
            reason = (
                "A question about what the user said of themselves: answered from the "
                "conversation (memory), not the knowledge base."
            )
        if fallback:
            reason = (
                f"Confidence {prediction.confidence:.2f} for '{prediction.intent}' is below the "
                f"threshold {threshold:.2f}: the general model answers instead."
            )
        return RouteResponse(
            intent=intent,
            confidence=round(prediction.confidence, 4),
            scores=prediction.scores,
            plan=make_plan(intent, text, fallback=fallback, strategy=strategy),
            fallback=fallback,
            threshold=threshold,
            context_used=prediction.context_used,
            reason=reason,
        )
