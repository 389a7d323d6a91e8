"""The default `wiki` collection, built on first start from gensim's Wikipedia pages.

`wiki` is a shared collection: every tenant searches it; admins alone change it.

The build runs after the models load, in the background; readiness reports
`wiki` down until it is done. A marker file records a finished build, so a
restart reuses the stored collection and a user who deletes it is not
overruled. An interrupted build resumes: pages keep stable ids, so pages
ingested again replace themselves.
"""

from __future__ import annotations

import logging
import threading
import time

from common.contracts.rag import DocumentIn
from common.files import atomic_write_bytes
from rag_svc.layout import CollectionRef
from rag_svc.library import Library
from rag_svc.wikitext import iter_wiki_pages

__all__ = ["WIKI_COLLECTION", "WikiKnowledgeBase"]

logger = logging.getLogger("rag_svc.wiki")

# Shared: every tenant reads it, admins alone change it.
WIKI_COLLECTION = CollectionRef("wiki", None)
PAGES_PER_BATCH = 8


class WikiKnowledgeBase:
    def __init__(self, library: Library, max_pages: int = 0, max_chars: int = 0) -> None:
        self.library = library
        self.max_pages = max_pages
        self.max_chars = max_chars
        self.marker = library.root / "wiki.built"
        self.ready = False
        self.progress = "waiting for the models"
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask a running build to stop after its current batch."""
        self._stop.set()

    def ensure(self) -> None:
        """Build the collection unless a finished build is recorded (blocking)."""
        if self.marker.is_file():
            self.ready = True
            self.progress = "built"
            return
        started = time.perf_counter()
        pages = list(iter_wiki_pages(self.max_pages, self.max_chars))
        if not self.library.has_collection(WIKI_COLLECTION):
            self.library.create_collection(
                WIKI_COLLECTION, {"source": "gensim test data: English Wikipedia pages"}
            )
        chunks = 0
        for start in range(0, len(pages), PAGES_PER_BATCH):
            if self._stop.is_set():
                logger.info("wiki build interrupted", extra={"pages_done": start})
                return
            batch = pages[start : start + PAGES_PER_BATCH]
            result = self.library.ingest(
                WIKI_COLLECTION,
                [
                    DocumentIn(
                        id=f"wiki-{page.page_id}",
                        text=page.text,
                        metadata={
                            "title": page.title,
                            "source": "wikipedia",
                            "url": "https://en.wikipedia.org/wiki/" + page.title.replace(" ", "_"),
                        },
                    )
                    for page in batch
                ],
                redact=False,
            )
            chunks += result.chunks
            done = start + len(batch)
            self.progress = f"{done}/{len(pages)} pages"
            logger.info(
                "wiki build progress",
                extra={"pages_done": done, "pages_total": len(pages), "chunks": chunks},
            )
        atomic_write_bytes(self.marker, f"{len(pages)} pages\n".encode())
        self.ready = True
        self.progress = "built"
        logger.info(
            "wiki built",
            extra={
                "pages": len(pages),
                "chunks": chunks,
                "seconds": round(time.perf_counter() - started, 1),
            },
        )
