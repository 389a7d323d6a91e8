"""Answer accuracy of cited answers from the default knowledge (`wiki`), before and after.

    .venv/bin/python -m bench.rag_answer_eval                 # starts moe_svc and rag_svc
    .venv/bin/python -m bench.rag_answer_eval --limit 8 --max-tokens 40
    .venv/bin/python -m bench.rag_answer_eval --moe-url http://127.0.0.1:8002 --data-dir var

Held-out questions written for this project about the default wiki's pages,
most about facts past a page's first sentence, each with the strings a right
answer contains (any of them). The bench starts moe_svc (the default model) and
rag_svc with the whole wiki built in a temporary directory, and asks every
question two ways over the same retrieval:

- reference (before): the five retrieved chunks whole, numbered, under the
  instruction rag_svc used to give ("answer using only the numbered sources,
  cite after each sentence"), sent to moe_svc as one chat completion;
- now: `POST /v1/answer` (excerpts of the top three sources, the question
  restated, answer first, then attribution).

Per way: accuracy (a right string in the final answer), answers that cite,
answers whose citations are all verified (now only), the right page among the
sources, and seconds per question. Costs: the default model writes about 8
tokens/s on two CPU cores; a full run takes several minutes there.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready


@dataclass(frozen=True)
class Question:
    text: str
    title: str  # the wiki page that answers it
    answers: tuple[str, ...]  # a right answer contains one (case-insensitive)


QUESTIONS = [
    Question("Who wrote Animal Farm?", "Animal Farm", ("Orwell",)),
    Question("When was Animal Farm first published?", "Animal Farm", ("1945",)),
    Question("What is the capital of Angola?", "Angola", ("Luanda",)),
    Question("When did Angola become independent?", "Angola", ("1975",)),
    Question("When did Apollo 11 land on the Moon?", "Apollo 11", ("1969", "July 20")),
    Question("Who piloted the Apollo 11 command module?", "Apollo 11", ("Collins",)),
    Question("What is the capital of Alabama?", "Alabama", ("Montgomery",)),
    Question("What is the state bird nickname of Alabama?", "Alabama", ("Yellowhammer",)),
    Question("Where was Abraham Lincoln born?", "Abraham Lincoln", ("Hodgenville", "Kentucky")),
    Question(
        "Which number president of the United States was Abraham Lincoln?",
        "Abraham Lincoln",
        ("16th", "sixteenth"),
    ),
    Question("Who did Aristotle tutor?", "Aristotle", ("Alexander",)),
    Question("In which year did Ayn Rand publish Atlas Shrugged?", "Ayn Rand", ("1957",)),
    Question("What is the capital of Andorra?", "Andorra", ("Andorra la Vella",)),
    Question("What is the official language of Andorra?", "Andorra", ("Catalan",)),
    Question("From which country did the United States buy Alaska?", "Alaska", ("Russia",)),
    Question("What is the capital of Alaska?", "Alaska", ("Juneau",)),
    Question(
        "Which dystopian novel did Aldous Huxley write?", "Aldous Huxley", ("Brave New World",)
    ),
    Question("When did Andre Agassi win the Olympic gold medal?", "Andre Agassi", ("1996",)),
    Question("What does the aardvark eat?", "Aardvark", ("ants", "termites")),
    Question("What does the name aardvark mean?", "Aardvark", ("earth pig", "ground pig")),
    Question("Who is the ampere named after?", "Ampere", ("Ampère", "Ampere")),
    Question("What is the capital of Aruba?", "Aruba", ("Oranjestad",)),
    Question("In which year did Einstein receive the Nobel Prize?", "Albert Einstein", ("1921",)),
    Question("What is the largest city in Alberta?", "Alberta", ("Calgary",)),
    Question("What is the capital of Algeria?", "Algeria", ("Algiers",)),
    Question(
        "Which films did Andrei Tarkovsky direct?", "Andrei Tarkovsky", ("Solaris", "Stalker")
    ),
]

REFERENCE_SYSTEM = (
    "You answer questions using only the numbered sources below. After each sentence, "
    "cite the sources that support it with their numbers in square brackets, like [1] or "
    "[2][3]. Cite only numbers that appear below. If the sources do not contain the "
    "answer, say that you do not know."
)


@dataclass
class Outcome:
    right: bool
    cites: bool
    verified: bool
    page_found: bool
    seconds: float


def _right(answer: str, question: Question) -> bool:
    return any(a.lower() in answer.lower() for a in question.answers)


def _titles(sources: list[dict[str, Any]]) -> set[str]:
    return {str(s["metadata"].get("title")) for s in sources}


def ask_reference(
    client: httpx.Client, rag: str, moe: str, question: Question, max_tokens: int
) -> Outcome:
    started = time.perf_counter()
    body = {"query": question.text, "k": 5, "collections": ["wiki"]}
    results = client.post(f"{rag}/v1/search", json=body).json()["results"]
    context = "\n\n".join(
        f"[{i}] {r['metadata'].get('title', '')}\n{r['text']}" for i, r in enumerate(results, 1)
    )
    messages = [
        {"role": "system", "content": REFERENCE_SYSTEM},
        {"role": "user", "content": f"Sources:\n\n{context}\n\nQuestion: {question.text}"},
    ]
    model = client.get(f"{moe}/v1/models").json()["data"][0]["id"]
    request = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
    reply = client.post(f"{moe}/v1/chat/completions", json=request)
    reply.raise_for_status()
    answer = reply.json()["choices"][0]["message"]["content"]
    return Outcome(
        right=_right(answer, question),
        cites="[" in answer,
        verified=False,
        page_found=question.title in _titles(results),
        seconds=time.perf_counter() - started,
    )


def ask_now(client: httpx.Client, rag: str, question: Question, max_tokens: int) -> Outcome:
    started = time.perf_counter()
    body = {"question": question.text, "k": 5, "max_tokens": max_tokens, "collections": ["wiki"]}
    response = client.post(f"{rag}/v1/answer", json=body)
    response.raise_for_status()
    result = response.json()
    return Outcome(
        right=_right(result["answer"], question),
        cites=bool(result["citations"]),
        verified=bool(result["verified"]),
        page_found=question.title in _titles(result["sources"]),
        seconds=time.perf_counter() - started,
    )


def summary(name: str, outcomes: list[Outcome]) -> float:
    n = len(outcomes)
    accuracy = sum(o.right for o in outcomes) / n
    print(
        f"{name:<28} accuracy {accuracy:6.1%}  cited {sum(o.cites for o in outcomes) / n:6.1%}  "
        f"verified {sum(o.verified for o in outcomes) / n:6.1%}  "
        f"page in sources {sum(o.page_found for o in outcomes) / n:6.1%}  "
        f"{statistics.mean(o.seconds for o in outcomes):5.1f} s/question"
    )
    return accuracy


def start(log_dir: Path, moe_url: str, data_dir: Path) -> list[RunningServer]:
    """moe_svc (unless `moe_url`) and rag_svc over `data_dir` (its wiki built if missing)."""
    started: list[RunningServer] = []
    if not moe_url:
        moe = start_service("moe_svc", log_dir, env={"MOE_DATA_DIR": str(REPO_ROOT / "var")})
        started.append(moe)
        wait_ready(moe, timeout_s=900)
        moe_url = moe.url
    rag = start_service(
        "rag_svc",
        log_dir,
        upstreams={"moe_svc": moe_url},
        env={"RAG_DATA_DIR": str(data_dir), "RAG_WIKI_ENABLED": "true"},
    )
    started.append(rag)
    wait_ready(rag, timeout_s=1800)  # ready once the wiki is built
    return started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=len(QUESTIONS))
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--moe-url", default="", help="a running moe_svc (default: start one)")
    parser.add_argument(
        "--data-dir", type=Path, help="rag_svc's data dir, kept (a built wiki is reused)"
    )
    args = parser.parse_args()
    questions = QUESTIONS[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        servers = start(Path(tmp), args.moe_url, args.data_dir or Path(tmp) / "data")
        rag = servers[-1]
        moe_url = args.moe_url or servers[0].url
        print(f"moe_svc and rag_svc (whole wiki) ready in {time.perf_counter() - started:.0f} s")
        try:
            with httpx.Client(timeout=1200) as client, ThreadPoolExecutor(4) as pool:
                # Four at once: moe_svc batches concurrent requests.
                reference = list(
                    pool.map(
                        lambda q: ask_reference(client, rag.url, moe_url, q, args.max_tokens),
                        questions,
                    )
                )
                now = list(
                    pool.map(lambda q: ask_now(client, rag.url, q, args.max_tokens), questions)
                )
        finally:
            for server in servers:
                server.stop()
    for q, before, after in zip(questions, reference, now, strict=True):
        print(
            f"  {q.text:<66} before {'right' if before.right else 'wrong':<5}"
            f"  now {'right' if after.right else 'wrong'}{' cited' if after.cites else ''}"
        )
    print(
        f"\n{len(questions)} held-out questions on the default wiki; max_tokens {args.max_tokens}"
    )
    accuracy_before = summary("reference (before)", reference)
    accuracy_now = summary("now: POST /v1/answer", now)
    if accuracy_before:
        print(f"accuracy now / before: {accuracy_now / accuracy_before:.2f}x")


if __name__ == "__main__":
    main()
