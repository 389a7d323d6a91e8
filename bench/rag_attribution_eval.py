"""Which support score tells a sentence its source backs from one it does not: a labelled sample.

Each case is a sentence an answer could hold, a wiki passage (the paragraph of a
default-knowledge page that holds `anchor`), and whether the passage supports the
sentence. The negatives are what a small model writes wrong: a fact changed
(a date, a name, a number), a claim about another page, an unrelated invention,
and a true sentence set against the wrong passage (a marker pointing elsewhere).

Scores compared on the same pairs:
- the reference: the citation check rag_svc had (share of content words found,
  or best sentence cosine of MiniLM embeddings, RAG_SUPPORT_*_THRESHOLD);
- the cross-encoder's logit (ms-marco-MiniLM-L-12-v2), swept over thresholds;
- the same gated by the sentence's key terms (a number or a name the passage lacks
  is not supported), as `rag_svc.attribution` scores it.

    python bench/rag_attribution_eval.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common.contracts.rag import AnswerSource
from common.minilm import MiniLMEmbedder
from rag_svc.attribution import support_matrix
from rag_svc.reranker import Reranker
from rag_svc.settings import RagSettings
from rag_svc.verification import _lexical_support
from rag_svc.wikitext import iter_wiki_pages

# One case a line: + (supported) or - (not), the page title, text the passage holds, the
# sentence. Lines starting with # group the kinds of negative.
_TABLE = """
+ Apollo 11 | landed humans | Apollo 11 landed on the Moon on July 20, 1969.
+ Apollo 11 | landed humans | Neil Armstrong and Buzz Aldrin landed on the Moon.
+ Apollo 11 | landed humans | Michael Collins stayed in lunar orbit.
- Apollo 11 | landed humans | Apollo 11 landed on the Moon on July 16, 1972.
- Apollo 11 | landed humans | Yuri Gagarin was the first man to walk on the Moon.
+ Apollo 11 | Saturn V rocket | A Saturn V rocket launched Apollo 11 from Kennedy Space Center.
+ Apollo 11 | Saturn V rocket | The crew landed in the Pacific Ocean on July 24.
- Apollo 11 | Saturn V rocket | Apollo 11 was launched from Baikonur in Kazakhstan.
+ Animal Farm | allegorical | Animal Farm was written by George Orwell.
+ Animal Farm | allegorical | Animal Farm was first published in England in 1945.
- Animal Farm | allegorical | Animal Farm was written by Aldous Huxley.
- Animal Farm | allegorical | Animal Farm was first published in 1984.
- Animal Farm | allegorical | The farm animals are led by a horse called Boxer who becomes king.
+ Angola | Republic of Angola | The capital of Angola is Luanda.
+ Angola | Republic of Angola | Angola is bordered by Namibia to the south.
- Angola | Republic of Angola | The capital of Angola is Lisbon.
- Angola | Republic of Angola | Angola is a country in South America.
+ Angola | Independence was achieved | Angola became independent in 1975.
+ Angola | Independence was achieved | The civil war in Angola lasted until 2002.
- Angola | Independence was achieved | Angola became independent in 1960.
+ Albert Einstein | German-born | Einstein received the Nobel Prize in Physics in 1921.
+ Albert Einstein | German-born | Albert Einstein developed the general theory of relativity.
- Albert Einstein | German-born | Einstein received the Nobel Prize in Chemistry in 1930.
- Albert Einstein | German-born | Einstein was born in Paris in 1901.
+ Alabama | Yellowhammer State | The capital of Alabama is Montgomery.
+ Alabama | Yellowhammer State | Alabama is nicknamed the Yellowhammer State.
- Alabama | Yellowhammer State | The capital of Alabama is Birmingham.
- Alabama | Yellowhammer State | The state flower of Alabama is the tulip.
+ Abraham Lincoln | 16th President | Abraham Lincoln was the 16th President of the United States.
+ Abraham Lincoln | 16th President | Lincoln was born in 1809.
- Abraham Lincoln | 16th President | Abraham Lincoln was the 3rd President of the United States.
- Abraham Lincoln | 16th President | Lincoln served as president until 1875.
+ Andorra | sixth-smallest nation | The capital of Andorra is Andorra la Vella.
+ Andorra | sixth-smallest nation | Catalan is the official language of Andorra.
- Andorra | sixth-smallest nation | The official language of Andorra is German.
+ Alaska | purchased Alaska | The United States bought Alaska from the Russian Empire in 1867.
+ Alaska | purchased Alaska | Alaska became the 49th state in 1959.
- Alaska | purchased Alaska | The United States bought Alaska from Britain in 1901.
+ Aldous Huxley | Brave New World | Aldous Huxley wrote Brave New World.
- Aldous Huxley | Brave New World | Aldous Huxley wrote War and Peace.
+ Andre Agassi | born April 29, 1970 | Andre Agassi is a retired American tennis player.
- Andre Agassi | born April 29, 1970 | Andre Agassi is a retired American golfer.
+ Aardvark | burrowing, nocturnal mammal | The aardvark is a nocturnal mammal native to Africa.
+ Aardvark | burrowing, nocturnal mammal | Aardvarks feed on ants and termites.
- Aardvark | burrowing, nocturnal mammal | The aardvark is a bird that lives in Australia.
+ Ampere | SI unit of electric current | The ampere is the SI unit of electric current.
- Ampere | SI unit of electric current | The ampere is the SI unit of temperature.
+ Alberta | Rachel Notley | Alberta became a province on September 1, 1905.
- Alberta | Rachel Notley | Alberta became a province in 1867.
+ Aruba | Its capital is Oranjestad | The capital of Aruba is Oranjestad.
+ Aruba | Its capital is Oranjestad | Aruba is part of the Kingdom of the Netherlands.
- Aruba | Its capital is Oranjestad | The capital of Aruba is Willemstad.
# True sentences against another page's passage: a marker that points elsewhere.
- Alaska | purchased Alaska | The capital of Angola is Luanda.
- Angola | Republic of Angola | Animal Farm was written by George Orwell.
- Alabama | Yellowhammer State | Abraham Lincoln was the 16th President of the United States.
- Apollo 11 | landed humans | Albert Einstein developed the general theory of relativity.
- Aruba | Its capital is Oranjestad | The capital of Andorra is Andorra la Vella.
# Sentences a model adds that say nothing any passage backs.
- Animal Farm | allegorical | I hope this helps you with your homework.
- Apollo 11 | landed humans | It was a very exciting time for everyone.
- Angola | Republic of Angola | Many people enjoy visiting it every summer.
"""
# (page title, text the passage holds, sentence, supported)
CASES: list[tuple[str, str, str, bool]] = [
    (title.strip(), anchor.strip(), sentence.strip(), line[0] == "+")
    for line in _TABLE.strip().splitlines()
    if not line.startswith("#")
    for title, anchor, sentence in [line[1:].split(" | ")]
]


def passages() -> dict[tuple[str, str], str]:
    """The paragraph of each (title, anchor), with the next one while under ~150 words."""
    pages = {p.title: p for p in iter_wiki_pages(0, 0)}
    found: dict[tuple[str, str], str] = {}
    for title, anchor, _, _ in CASES:
        if (title, anchor) in found:
            continue
        paragraphs = pages[title].text.split("\n\n")
        at = next(i for i, p in enumerate(paragraphs) if anchor in p)
        text = paragraphs[at]
        for extra in paragraphs[at + 1 :]:
            if len(text.split()) > 150:
                break
            text += "\n\n" + extra
        found[(title, anchor)] = " ".join(text.split()[:220])
    return found


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) with the highest accuracy; ties keep the lowest threshold."""
    best = (0.5, 0.0)
    for threshold in np.unique(np.round(scores, 2)):
        accuracy = float(((scores >= threshold) == labels).mean())
        if accuracy > best[1]:
            best = (float(threshold), accuracy)
    return best


def report(name: str, predicted: np.ndarray, labels: np.ndarray) -> float:
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    accuracy = float((predicted == labels).mean())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    print(
        f"{name:<44} accuracy {accuracy:.3f}  precision {precision:.3f}  "
        f"recall {recall:.3f}  false supports {fp}"
    )
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threshold",
        type=float,
        default=RagSettings().attribution_threshold,
        help="the logit cut (default: RAG_ATTRIBUTION_THRESHOLD)",
    )
    args = parser.parse_args()
    texts = passages()
    labels = np.array([label for *_, label in CASES])
    print(f"{len(CASES)} labelled pairs: {int(labels.sum())} supported, {int((~labels).sum())} not")

    embedder = MiniLMEmbedder()
    reranker = Reranker()
    started = time.perf_counter()
    plain = np.zeros(len(CASES))
    gated = np.zeros(len(CASES))
    for i, (title, anchor, sentence, _) in enumerate(CASES):
        source = AnswerSource(
            number=1,
            doc_id=title,
            chunk_id=title,
            text=texts[(title, anchor)],
            score=1.0,
            metadata={"title": title},
            title=title,
        )
        plain[i] = support_matrix([sentence], [source], reranker, gate=False)[0, 0]
        gated[i] = support_matrix([sentence], [source], reranker)[0, 0]
    per_pair_ms = (time.perf_counter() - started) * 1000 / (2 * len(CASES))

    lexical = np.array([_lexical_support(s, texts[(t, a)]) for t, a, s, _ in CASES])
    sentence_vectors = embedder.encode([s for *_, s, _ in CASES])
    cosine = np.zeros(len(CASES))
    for i, (title, anchor, _, _) in enumerate(CASES):
        sentences = [s for s in texts[(title, anchor)].split(". ") if s]
        cosine[i] = float((embedder.encode(sentences) @ sentence_vectors[i]).max())

    print("\nReference (the citation check before attribution): lexical >= 0.6 or cosine >= 0.65")
    reference = report("reference: lexical or cosine", (lexical >= 0.6) | (cosine >= 0.65), labels)
    threshold, _ = best_threshold(plain, labels)
    report(f"cross-encoder >= {threshold:.2f} (best on this sample)", plain >= threshold, labels)
    threshold, _ = best_threshold(gated, labels)
    report(f"cross-encoder, key terms gated >= {threshold:.2f} (best)", gated >= threshold, labels)
    chosen = report(
        f"cross-encoder, key terms gated >= {args.threshold} (setting)",
        gated >= args.threshold,
        labels,
    )
    print("\nthreshold sweep (key terms gated): ", end="")
    for cut in (0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
        print(f"{cut}: {float(((gated >= cut) == labels).mean()):.3f}  ", end="")
    print(
        f"\n\nsupported min {gated[labels].min():.3f}; unsupported max {gated[~labels].max():.3f}"
    )
    print(f"accuracy ratio setting / reference: {chosen / reference:.2f}x")
    print(f"cross-encoder: {per_pair_ms:.1f} ms per (sentence, passage) pair on this CPU")


if __name__ == "__main__":
    main()
