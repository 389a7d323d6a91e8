"""Collections on disk: commits, replacement, duplicates, deletion, reopening, crashes, segments."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from rag_svc.collection import Collection, IndexConfig, PreparedDocument
from rag_svc.dedup import MinHasher
from rag_svc.indexes import bm25_tokens
from rag_svc.store import StoredChunk

DIM = 16
HASHER = MinHasher()
CONFIG = IndexConfig(
    dimensions=DIM,
    signature_size=HASHER.permutations,
    dedup_threshold=0.9,
    hnsw_threshold=1000,
    hnsw_m=8,
    hnsw_ef_search=32,
)


def vector(seed: str) -> np.ndarray:
    """A fake embedding: a unit vector derived from a string (fakes are fine in unit tests)."""
    rng = np.random.default_rng(abs(hash(seed)) % 2**32)
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def prepared(doc_id: str, *sentences: str, **metadata: object) -> PreparedDocument:
    chunks = [
        StoredChunk(f"{doc_id}#{i}", doc_id, s, {**metadata, "doc_id": doc_id, "position": i}, s)
        for i, s in enumerate(sentences)
    ]
    text = " ".join(sentences)
    return PreparedDocument(
        doc_id,
        text,
        dict(metadata),
        HASHER.signature(text),
        chunks,
        np.stack([vector(s) for s in sentences]),
        bm25_tokens(list(sentences)),
    )


def bm25_ids(collection: Collection, query: str) -> list[str]:
    snapshot = collection.snapshot
    hits = snapshot.sparse.search(bm25_tokens([query])[0], 10, snapshot.alive)
    return [snapshot.chunks[row].chunk_id for row, _ in hits]


def dense_ids(collection: Collection, sentence: str) -> list[str]:
    snapshot = collection.snapshot
    hits = snapshot.dense.search(vector(sentence), 3, snapshot.alive)
    return [snapshot.chunks[row].chunk_id for row, _ in hits]


@pytest.fixture
def collection(tmp_path: Path) -> Collection:
    return Collection.create(tmp_path, "notes", CONFIG, {"owner": "tests"})


def test_commit_indexes_documents_in_both_indexes(collection: Collection) -> None:
    result = collection.commit(
        [prepared("a", "Red foxes hunt voles.", "Foxes live in dens."), prepared("b", "Owls fly.")]
    )
    assert (result.ids, result.chunks, result.duplicates) == (["a", "b"], 3, [])
    assert sorted(bm25_ids(collection, "fox")) == ["a#0", "a#1"]
    assert dense_ids(collection, "Owls fly.")[0] == "b#0"
    assert collection.info() | {"created_at": 0} == {
        "name": "notes",
        "documents": 2,
        "chunks": 3,
        "index": "flat",
        "created_at": 0,
        "metadata": {"owner": "tests"},
    }


def test_duplicates_are_reported_and_not_indexed(collection: Collection) -> None:
    text = "The same long text about harbours and boats and sailors and the sea at night."
    collection.commit([prepared("a", text)])
    result = collection.commit([prepared("b", text), prepared("c", "Something else entirely.")])

    assert result.ids == ["c"]
    assert [(d.id, d.duplicate_of) for d in result.duplicates] == [("b", "a")]
    assert set(collection.snapshot.documents) == {"a", "c"}
    # Within one batch too.
    twins = [prepared("d", "Twin text here and there."), prepared("e", "Twin text here and there.")]
    result = collection.commit(twins)
    assert (result.ids, [d.duplicate_of for d in result.duplicates]) == (["d"], ["d"])


def test_duplicates_are_found_against_live_documents_only_and_after_a_reopen(
    tmp_path: Path, collection: Collection
) -> None:
    text = "A long note on tides, moorings, ferries and the lighthouse keeper's logbook."
    collection.commit([prepared("a", text)])
    collection.delete_document("a")
    assert collection.commit([prepared("b", text)]).ids == ["b"]  # a is gone: no duplicate

    reopened = Collection.open(tmp_path / "notes", CONFIG)
    result = reopened.commit([prepared("c", text)])
    assert [(d.id, d.duplicate_of) for d in result.duplicates] == [("c", "b")]
    # An older snapshot still answers for the rows it holds, not for later ones.
    before = reopened.snapshot
    reopened.commit([prepared("d", "Something unrelated about mountains.")])
    assert before.nearest_document(HASHER.signature(text), set())[0] == "b"
    assert before.nearest_document(
        HASHER.signature("Something unrelated about mountains."), set()
    ) == ("", 0.0)


def test_same_id_replaces_not_duplicates(collection: Collection) -> None:
    collection.commit([prepared("a", "Old text about cats.", "More about cats.")])
    result = collection.commit([prepared("a", "Old text about cats.", "More about cats.")])
    assert (result.ids, result.duplicates) == (["a"], [])
    collection.commit([prepared("a", "New text about dogs.")])

    snapshot = collection.snapshot
    assert [
        c.chunk_id for c, live in zip(snapshot.chunks, snapshot.alive, strict=True) if live
    ] == ["a#0"]
    assert bm25_ids(collection, "cats") == []
    assert bm25_ids(collection, "dogs") == ["a#0"]
    assert collection.info()["chunks"] == 1
    # The replaced version is gone after a restart too.
    reopened = Collection.open(collection.directory, CONFIG)
    assert [c.text for c in reopened.snapshot.chunks] == ["New text about dogs."]


def test_delete_removes_from_every_index(collection: Collection) -> None:
    collection.commit([prepared("a", "Alpha apples."), prepared("b", "Beta bananas.")])
    assert collection.delete_document("a") is True
    assert collection.delete_document("a") is False

    assert bm25_ids(collection, "apples") == []
    assert dense_ids(collection, "Alpha apples.") == ["b#0"]
    assert list(collection.snapshot.documents) == ["b"]


def test_reopen_restores_everything(tmp_path: Path, collection: Collection) -> None:
    collection.commit([prepared("a", "Alpha apples.", lang="en"), prepared("b", "Beta bananas.")])
    collection.delete_document("b")
    collection.commit([prepared("c", "Gamma grapes.")])

    reopened = Collection.open(tmp_path / "notes", CONFIG)

    assert reopened.info() == collection.info()
    assert bm25_ids(reopened, "grapes") == ["c#0"]
    assert dense_ids(reopened, "Alpha apples.") == dense_ids(collection, "Alpha apples.")
    assert reopened.snapshot.documents["a"].metadata == {"lang": "en"}
    # The reopened collection keeps working (BM25 is rebuilt from the stored chunks).
    reopened.commit([prepared("d", "Delta dates.")])
    assert sorted(bm25_ids(reopened, "apples grapes dates")) == ["a#0", "c#0", "d#0"]


def test_a_crash_mid_commit_leaves_the_last_good_state(
    tmp_path: Path, collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection.commit([prepared("a", "Alpha apples.")])

    def crash(path: Path, array: object) -> None:
        path.write_bytes(b"\x93NUMPY half")
        raise OSError("disk full")

    monkeypatch.setattr("rag_svc.store.np.save", crash)
    with pytest.raises(OSError, match="disk full"):
        collection.commit([prepared("b", "Beta bananas.")])
    monkeypatch.undo()

    # Nothing was published in memory, and disk still holds the last commit.
    assert list(collection.snapshot.documents) == ["a"]
    reopened = Collection.open(tmp_path / "notes", CONFIG)
    assert list(reopened.snapshot.documents) == ["a"]
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["MANIFEST", "seg-00000001"]


def test_hnsw_beyond_the_threshold(tmp_path: Path) -> None:
    config = IndexConfig(DIM, HASHER.permutations, 0.9, 5, 8, 32)
    collection = Collection.create(tmp_path, "big", config, {})
    collection.commit([prepared(f"d{i}", f"Document number {i} of many.") for i in range(4)])
    assert collection.snapshot.dense.kind == "flat"
    collection.commit([prepared(f"e{i}", f"Entry {i} about other things.") for i in range(4)])
    assert collection.snapshot.dense.kind == "hnsw"
    assert dense_ids(collection, "Entry 2 about other things.")[0] == "e2#0"
    assert Collection.open(tmp_path / "big", config).snapshot.dense.kind == "hnsw"


def test_concurrent_commits_and_reads(collection: Collection) -> None:
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(5):
                collection.commit([prepared(f"w{worker}-{i}", f"Worker {worker} item {i} x{i}.")])
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(50):
                snapshot = collection.snapshot
                assert snapshot.dense.vectors.shape[0] == len(snapshot.chunks)
                assert snapshot.sparse.size == len(snapshot.chunks) == snapshot.alive.size
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(collection.snapshot.documents) == 20
    assert collection.snapshot.generation == 20


def test_create_refuses_an_existing_name(tmp_path: Path, collection: Collection) -> None:
    with pytest.raises(FileExistsError):
        Collection.create(tmp_path, "notes", CONFIG, {})
    assert [p.name for p in tmp_path.iterdir()] == ["notes"]


def test_an_ingest_writes_only_its_own_segment(tmp_path: Path, collection: Collection) -> None:
    collection.commit([prepared("a", "Alpha apples.")])
    first = tmp_path / "notes" / "seg-00000001"
    written = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    collection.commit([prepared("b", "Beta bananas.")])
    collection.delete_document("a")

    # Earlier segments are never rewritten; a segment whose documents are all gone is dropped.
    assert not first.exists()
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["MANIFEST", "seg-00000002"]
    collection.commit([prepared("c", "Gamma grapes.")])
    second = tmp_path / "notes" / "seg-00000002"
    assert {p.name for p in second.iterdir()} == set(written)
    assert sorted(Collection.open(tmp_path / "notes", CONFIG).snapshot.documents) == ["b", "c"]


def test_the_first_on_disk_format_is_converted(tmp_path: Path, collection: Collection) -> None:
    """A collection written as one generation (`CURRENT` + `gen-N/`) opens and keeps working."""
    collection.commit([prepared("a", "Alpha apples."), prepared("b", "Beta bananas.")])
    directory = tmp_path / "notes"
    generation = directory / "gen-00000003"
    (directory / "seg-00000001").rename(generation)
    (directory / "MANIFEST").unlink()
    (generation / "manifest.json").write_text(
        '{"name": "notes", "created_at": 5, "metadata": {"owner": "tests"}}'
    )
    (directory / "CURRENT").write_text("gen-00000003")

    reopened = Collection.open(directory, CONFIG)
    assert sorted(reopened.snapshot.documents) == ["a", "b"]
    assert bm25_ids(reopened, "bananas") == ["b#0"]
    reopened.commit([prepared("c", "Gamma grapes.")])
    assert sorted(p.name for p in directory.iterdir()) == [
        "MANIFEST",
        "seg-00000001",
        "seg-00000002",
    ]
    assert sorted(Collection.open(directory, CONFIG).snapshot.documents) == ["a", "b", "c"]


def test_bm25_scores_match_bm25s_after_appends_and_deletes(collection: Collection) -> None:
    """The in-place index scores as bm25s would over the live chunks, rebuilt from scratch."""
    import bm25s

    texts = [f"River {w} boats and {w} harbours near the sea." for w in ("red", "blue", "green")]
    texts += ["Mountains and snow.", "Boats on the river at night, boats everywhere."]
    for i, text in enumerate(texts):
        collection.commit([prepared(f"d{i}", text)])
    collection.delete_document("d1")
    live = [t for i, t in enumerate(texts) if i != 1]
    reference = bm25s.BM25()
    reference.index(bm25_tokens(live), show_progress=False)
    expected = reference.get_scores(bm25_tokens(["river boats"])[0])

    snapshot = collection.snapshot
    hits = dict(snapshot.sparse.search(bm25_tokens(["river boats"])[0], 10, snapshot.alive))
    got = [hits.get(row, 0.0) for row in (0, 2, 3, 4)]
    assert np.allclose(got, expected, atol=1e-5)
