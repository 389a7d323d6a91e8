"""One contract, two storage backends: the embedded segments and Milvus (real milvus-lite).

Every test runs against both through the library, with the real embedder and
cross-encoder: what a user of rag_svc sees must not depend on the backend.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.contracts.rag import DocumentIn, SearchMode, SearchRequest
from common.errors import NotFound
from rag_svc.layout import CollectionRef
from rag_svc.library import Library
from rag_svc.settings import RagSettings

pytestmark = pytest.mark.integration

BACKENDS = ["embedded", "milvus"]

NOTES = [
    DocumentIn(
        id="kiwi",
        text="The kiwi is a flightless bird endemic to New Zealand; it lays a very large egg.",
        metadata={"kind": "bird"},
    ),
    DocumentIn(
        id="salmon",
        text="Salmon swim upstream from the ocean to spawn in the rivers where they hatched.",
        metadata={"kind": "fish"},
    ),
    DocumentIn(
        id="sourdough",
        text="Sourdough bread rises thanks to wild yeast and lactic acid bacteria in a starter.",
        metadata={"kind": "food"},
    ),
    DocumentIn(
        id="valve",
        text="Replacement part QX-7731 is the pressure relief valve of the boiler in hall three.",
        metadata={"kind": "part"},
    ),
]


def _close(library: Library) -> None:
    close = getattr(library.backend, "close", None)
    if close is not None:
        close()  # milvus-lite's process on the file stops; its data stays


def _library(data_dir: Path, backend: str) -> Library:
    settings = RagSettings(data_dir=data_dir, wiki_enabled=False, storage_backend=backend)
    library = Library(settings)
    library.load()
    return library


@pytest.fixture(scope="module", params=BACKENDS)
def library(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Library]:
    """One library per backend for the module; each test uses collections of its own."""
    backend = str(request.param)
    library = _library(tmp_path_factory.mktemp(backend), backend)
    yield library
    _close(library)


def _collection(library: Library, name: str, tenant: str = "acme") -> CollectionRef:
    ref = CollectionRef(name, tenant)
    library.create_collection(ref, {"owner": "contract test"})
    return ref


def _top(library: Library, ref: CollectionRef, query: str, **options: object) -> list[str]:
    request = SearchRequest.model_validate({"query": query, "k": 3, **options})
    return [r.doc_id for r in library.search(ref, request).results]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_mode_ranks_the_right_document_first(library: Library, mode: SearchMode) -> None:
    ref = _collection(library, f"ranking-{mode}")
    assert library.ingest(ref, NOTES).ids == [d.id for d in NOTES]
    for query, expected in [
        ("which bird cannot fly", "kiwi"),
        ("fish swimming upstream to spawn", "salmon"),
        ("wild yeast starter", "sourdough"),
    ]:
        assert _top(library, ref, query, mode=mode, rerank=False)[0] == expected
        assert _top(library, ref, query, mode=mode, rerank=True)[0] == expected
    # A part number: the keyword side finds it by its exact token.
    if mode != "dense":
        assert _top(library, ref, "QX-7731", mode=mode, rerank=False)[0] == "valve"


def test_filters_and_documents_read_back(library: Library) -> None:
    ref = _collection(library, "reading")
    library.ingest(ref, NOTES)
    hits = _top(library, ref, "an animal", mode="hybrid", filter={"kind": {"$in": ["fish"]}})
    assert hits == ["salmon"]
    assert _top(library, ref, "bird", filter={"kind": "nothing"}) == []
    document = library.get_document(ref, "kiwi")
    assert (document.text, document.metadata, document.chunks) == (
        NOTES[0].text,
        {"kind": "bird"},
        1,
    )
    first = library.list_documents(ref, None, 2)
    rest = library.list_documents(ref, first.next_after, 10)
    assert [d.id for d in first.documents + rest.documents] == sorted(str(d.id) for d in NOTES)
    info = library.info(ref)
    assert (info["documents"], info["chunks"], info["index"]) == (4, 4, "flat")


def test_a_long_document_reads_back_whole(library: Library) -> None:
    ref = _collection(library, "long")
    text = " ".join(f"Sentence {i} is about the harbour crane number {i}." for i in range(1500))
    result = library.ingest(ref, [DocumentIn(id="manual", text=text)])
    assert result.chunks > 10
    assert library.get_document(ref, "manual").text == text
    assert _top(library, ref, "harbour crane number 1234", mode="bm25")[0] == "manual"


def test_tenants_and_collections_are_isolated(library: Library) -> None:
    mine = _collection(library, "shelf", tenant="acme")
    theirs = _collection(library, "shelf", tenant="globex")
    other = _collection(library, "other-shelf", tenant="acme")
    library.ingest(mine, NOTES[:2])
    library.ingest(theirs, NOTES[2:])
    assert set(_top(library, mine, "bread yeast bird fish part")) == {"kiwi", "salmon"}
    assert set(_top(library, theirs, "bread yeast bird fish part")) == {"sourdough", "valve"}
    assert _top(library, other, "bird") == []
    with pytest.raises(NotFound):
        library.get_document(theirs, "kiwi")


def test_delete_removes_a_document_everywhere(library: Library) -> None:
    ref = _collection(library, "deleting")
    library.ingest(ref, NOTES)
    library.delete_document(ref, "kiwi")
    for mode in ("dense", "bm25", "hybrid"):
        assert "kiwi" not in _top(library, ref, "flightless bird New Zealand", mode=mode)
    with pytest.raises(NotFound):
        library.get_document(ref, "kiwi")
    with pytest.raises(NotFound):
        library.delete_document(ref, "kiwi")
    assert library.info(ref)["documents"] == 3
    library.delete_collection(ref)
    with pytest.raises(NotFound):
        library.info(ref)


def test_duplicates_are_skipped_and_same_ids_replace(library: Library) -> None:
    ref = _collection(library, "dedup")
    library.ingest(ref, NOTES)
    copy = DocumentIn(id="kiwi-copy", text=NOTES[0].text)
    result = library.ingest(ref, [copy])
    assert result.ids == []
    assert [(d.id, d.duplicate_of) for d in result.duplicates] == [("kiwi-copy", "kiwi")]
    replaced = DocumentIn(id="salmon", text="Salmon recipe: bake the fillet with dill and lemon.")
    assert library.ingest(ref, [replaced]).ids == ["salmon"]
    assert library.get_document(ref, "salmon").text == replaced.text
    assert _top(library, ref, "dill lemon fillet", mode="bm25") == ["salmon"]
    assert _top(library, ref, "upstream spawn rivers hatched", mode="bm25") == []
    assert library.info(ref)["documents"] == 4


def test_a_restart_keeps_documents_and_results(library: Library) -> None:
    ref = _collection(library, "durable")
    library.ingest(ref, NOTES)
    library.delete_document(ref, "valve")
    queries = ["flightless bird", "wild yeast", "QX-7731"]
    # Document order, not scores: reopening compacts deleted rows out of BM25's statistics.
    before = [_top(library, ref, q) for q in queries]
    _close(library)
    reopened = _library(library.settings.data_dir, library.settings.storage_backend)
    try:
        assert reopened.info(ref) == library.info(ref)
        assert [d.id for d in reopened.list_documents(ref, None, 10).documents] == [
            "kiwi",
            "salmon",
            "sourdough",
        ]
        after = [_top(reopened, ref, q) for q in queries]
        assert after == before
    finally:
        _close(reopened)


def test_searches_during_ingest_see_whole_documents(library: Library) -> None:
    ref = _collection(library, "busy")
    library.ingest(ref, NOTES[:1])
    batches = [
        [
            DocumentIn(
                id=f"log-{b}-{i}", text=f"Shift {b} log {i}: crane {b * 10 + i} lifted {i} tons."
            )
            for i in range(8)
        ]
        for b in range(4)
    ]
    errors: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()

    def search() -> None:
        try:
            while not done.is_set():
                results = library.search(ref, SearchRequest(query="crane log tons", k=50)).results
                # A chunk that a search returns belongs to a document that exists.
                for r in results:
                    library.get_document(ref, r.doc_id)
                seen.append(len(results))
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    searchers = [threading.Thread(target=search) for _ in range(2)]
    for thread in searchers:
        thread.start()
    try:
        writers = [threading.Thread(target=library.ingest, args=(ref, batch)) for batch in batches]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(timeout=120)
    finally:
        done.set()
        for thread in searchers:
            thread.join(timeout=60)
    assert errors == []
    assert seen
    assert library.info(ref)["documents"] == 1 + 32
    final = library.search(ref, SearchRequest(query="crane log tons", k=50)).results
    assert {r.doc_id for r in final if r.doc_id.startswith("log-")} == {
        d.id for batch in batches for d in batch
    }
