"""Fact extraction for long-term memory: free text, a JSON schema, chosen statements.

    .venv/bin/python -m bench.memory_extract

memory_svc's `POST /v1/users/{uid}/memories/extract` finds the facts a user's message
states about them. The three forms of `memory_svc.facts.MoeFactExtractor` run here
against one moe_svc on the set below, written for this benchmark: messages that state
facts (each with the facts a careful reader would keep, as keywords a fact must
contain to match) and messages that state none.

- lines: the model writes one fact a line in free text (the form before constrained
  decoding);
- schema: the model writes the facts under the facts' JSON schema;
- statements: the message's first-person clauses, in the third person by rule, and
  the model keeping the lasting ones under a JSON-schema enum.

Each model form is measured raw (whatever the reply holds) and as stored (after
memory_svc's checks: first person, about the user, grounded in the message, no
repeats). A reference row applies no model: every first-person statement, stored.

- precision: the share of facts that match a gold fact;
- recall: the share of gold facts some fact matches;
- invented: facts stored for messages that state none (false memories);
- unreadable: replies the form could not read.

The keyword match is lenient ("The user is a sushi chef" matches "sushi"): precision
counts facts on the right subject, not facts that are right.

A second table (no model: the MiniLM embedder memory_svc searches with) asks whether
stored facts come back: for questions a user might ask later, each labelled with the
facts that should inform the answer, how many the context's search (top 3 at or above
`MEMORY_MEMORY_MIN_SCORE`) returns at each threshold, and how many others it adds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.chat import ChatClient
from common.http_client import ServiceClient
from memory_svc.facts import (
    ExtractForm,
    ExtractionUnavailable,
    MoeFactExtractor,
    first_person_statements,
    grounded_facts,
    speaks_of_self,
)
from moe_svc.loader import ensure_default_model
from tests.helpers.servers import REPO_ROOT, start_service, wait_ready

# (message, gold facts as keyword tuples: a fact matches when it holds every keyword)
CASES: list[tuple[str, list[tuple[str, ...]]]] = [
    ("Hi, I'm Maria and I work as a nurse in Porto.", [("maria",), ("nurse",), ("porto",)]),
    ("I'm vegetarian, so please suggest dinners without meat.", [("vegetarian",)]),
    ("My daughter Ana turns five next week.", [("daughter",)]),
    ("I just moved to Berlin from Toronto and I'm learning German.", [("berlin",), ("german",)]),
    ("I am allergic to peanuts.", [("peanut",)]),
    ("My name is Kenji and I study physics at Kyoto University.", [("kenji",), ("physics",)]),
    ("I have two cats called Miso and Tofu.", [("cat",)]),
    ("We are planning a trip to Iceland in March.", [("iceland",)]),
    ("I prefer short answers, please.", [("short",)]),
    ("I'm a software engineer and I mostly write Rust.", [("engineer",), ("rust",)]),
    ("I play the violin in a community orchestra.", [("violin",)]),
    ("My favourite food is sushi.", [("sushi",)]),
    ("I live in Nairobi with my husband.", [("nairobi",), ("husband",)]),
    ("I run a small bakery in Lyon.", [("bakery",), ("lyon",)]),
    ("I'm training for my first marathon in October.", [("marathon",)]),
    ("I'm diabetic, so I watch my sugar.", [("diabetic",)]),
    ("My son is learning to swim.", [("son",)]),
    ("I drive an electric car, a Nissan Leaf.", [("car",)]),
    ("I speak Portuguese and Spanish.", [("portuguese",), ("spanish",)]),
    ("I'm 34 years old and I work night shifts.", [("34",), ("night",)]),
    ("I hate spicy food.", [("spicy",)]),
    ("I'm retired; I used to be a pilot.", [("retired",), ("pilot",)]),
    ("I grow tomatoes on my balcony.", [("tomato",)]),
    ("I'm Priya, a data analyst in Mumbai.", [("priya",), ("analyst",), ("mumbai",)]),
    ("My birthday is on the 3rd of May.", [("may",)]),
    ("What is the capital of Angola?", []),
    ("Can you explain how photosynthesis works?", []),
    ("Write a poem about the sea.", []),
    ("How many legs does a spider have?", []),
    ("Summarise the plot of Hamlet.", []),
    ("Give me a recipe for pancakes.", []),
    ("Tell me a joke about computers.", []),
    ("Who wrote Animal Farm?", []),
    ("Can you help me write an email to my landlord about the heating?", []),
    ("I wonder why the sky is blue.", []),
    ("What should I cook tonight?", []),
    ("Could you explain recursion to me?", []),
    # Passing remarks with a first-person subject: no lasting fact (added after the first
    # run, whose no-fact messages were nearly all questions about the world).
    ("I think that's a good idea.", []),
    ("I'm not sure I understand.", []),
    ("I was wondering how tides work.", []),
    ("I need help with this homework question.", []),
    ("I'm looking for a birthday gift for a friend.", []),
    ("Thanks, I get it now.", []),
    ("I'm confused by this error message.", []),
    ("I'd like a shorter version of that.", []),
    ("I agree with you.", []),
    ("I guess that makes sense.", []),
    ("I'm bored.", []),
    ("My question is about taxes.", []),
]


RECALL_FACTS = [
    "The user is Maria.",
    "The user works as a nurse in Porto.",
    "The user is vegetarian.",
    "The user is allergic to peanuts.",
    "The user has two cats called Miso and Tofu.",
    "The user speaks Portuguese and Spanish.",
    "The user is training for the user's first marathon in October.",
    "The user's daughter Ana turns five next week.",
    "The user drives an electric car, a Nissan Leaf.",
    "The user is diabetic.",
]
# a later question -> the facts (indexes above) that should inform its answer
RECALL_QUERIES: dict[str, list[int]] = {
    "What should I cook for dinner tonight?": [2, 3, 9],
    "Suggest a snack for me.": [2, 3, 9],
    "What is my name?": [0],
    "Any tips for a long shift at work?": [1],
    "Plan a birthday party for my kid.": [7],
    "How should I train this week?": [6],
    "Which language should I use on holiday in Madrid?": [5],
    "My pets keep scratching the sofa, what can I do?": [4],
    "Where can I charge my car?": [8],
    "Is this chocolate safe for me to eat?": [3, 9],
    "What is the capital of Angola?": [],
    "Explain how photosynthesis works.": [],
    "Write a poem about the sea.": [],
    "Who wrote Animal Farm?": [],
    "Tell me a joke about computers.": [],
    "How many legs does a spider have?": [],
}


def recall_table(k: int = 3) -> None:
    from common.minilm import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    similarity = embedder.encode(list(RECALL_QUERIES)) @ embedder.encode(RECALL_FACTS).T
    relevant = sum(len(v) for v in RECALL_QUERIES.values())
    print(f"\n## Facts back in context: {len(RECALL_QUERIES)} questions, top {k} at or above\n")
    print("| min_score | relevant facts returned | other facts added |")
    print("|---|---|---|")
    for threshold in (0.0, 0.1, 0.15, 0.2, 0.25, 0.3):
        found = added = 0
        for row, wanted in zip(similarity, RECALL_QUERIES.values(), strict=True):
            chosen = [j for j in row.argsort()[::-1][:k] if row[j] >= threshold]
            found += sum(j in wanted for j in chosen)
            added += sum(j not in wanted for j in chosen)
        print(f"| {threshold:.2f} | {found}/{relevant} | {added} |")


@dataclass
class Score:
    facts: int = 0
    matched_facts: int = 0
    gold: int = 0
    recalled: int = 0
    invented: int = 0
    unreadable: int = 0
    seconds: float = 0.0

    def add(self, facts: list[str], gold: list[tuple[str, ...]]) -> None:
        lower = [f.lower() for f in facts]
        self.facts += len(facts)
        self.matched_facts += sum(any(all(k in f for k in g) for g in gold) for f in lower)
        self.gold += len(gold)
        self.recalled += sum(any(all(k in f for k in g) for f in lower) for g in gold)
        if not gold:
            self.invented += len(facts)

    def row(self, name: str, cases: int) -> str:
        precision = self.matched_facts / self.facts if self.facts else float("nan")
        return (
            f"| {name} | {precision:.2f} | {self.recalled / max(self.gold, 1):.2f} | "
            f"{self.invented} | {self.unreadable} | {self.facts} | {self.seconds / cases:.2f} |"
        )


async def run_form(extractor: MoeFactExtractor) -> tuple[Score, Score]:
    """(raw, stored) scores of one form over every case."""
    raw, stored = Score(), Score()
    for message, gold in CASES:
        started = time.perf_counter()
        unreadable = False
        try:
            found = await extractor.read([message])
        except ExtractionUnavailable:
            found, unreadable = [], True
        elapsed = time.perf_counter() - started
        raw.add(found, gold)
        raw.unreadable += unreadable
        raw.seconds += elapsed
        # What `extract` stores: the model is not asked without a first-person word.
        asked = speaks_of_self(message)
        kept = grounded_facts(found, message)[0] if asked else []
        stored.add(kept, gold)
        stored.seconds += elapsed if asked else 0.0
        stored.unreadable += asked and unreadable
        print(f"{extractor.form}: {message!r} -> {found} -> {kept}", file=sys.stderr, flush=True)
    return raw, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args()
    model_dir = ensure_default_model(REPO_ROOT / "var" / "models")
    with tempfile.TemporaryDirectory(prefix="memory-extract-") as tmp:
        env = {"MOE_MODEL_DIR": str(model_dir), "MOE_DATA_DIR": tmp, "MOE_LOG_LEVEL": "WARNING"}
        server = start_service("moe_svc", Path(tmp), env=env)
        try:
            wait_ready(server, timeout_s=600)

            async def every_form() -> dict[str, tuple[Score, Score]]:
                upstream = ServiceClient("moe_svc", server.url)
                try:
                    chat = ChatClient(upstream, timeout_s=300)
                    forms: tuple[ExtractForm, ...] = ("lines", "schema", "statements")
                    return {
                        form: await run_form(MoeFactExtractor(chat, form=form)) for form in forms
                    }
                finally:
                    await upstream.aclose()

            model = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"][0]["id"]
            results = asyncio.run(every_form())
        finally:
            server.stop()
    reference = Score()
    for message, gold in CASES:
        reference.add(first_person_statements(message), gold)
    stating = sum(bool(g) for _, g in CASES)
    print(f"\n## Fact extraction, {model}: {len(CASES)} messages ({stating} state facts)\n")
    print("| form | precision | recall | invented | unreadable | facts | s/message |")
    print("|---|---|---|---|---|---|---|")
    for form, (raw, stored) in results.items():
        print(raw.row(f"{form}, raw", len(CASES)))
        print(stored.row(f"{form}, stored", len(CASES)))
    print(reference.row("every first-person statement (no model)", len(CASES)))
    recall_table()


if __name__ == "__main__":
    main()
