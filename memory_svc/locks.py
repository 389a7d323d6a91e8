"""Per-key asyncio locks: writers of one key in this process take turns.

The optimistic Redis transactions (WATCH/MULTI/EXEC) stay what makes writes
correct across processes; taking turns here only spares writers in the same
process from failing each other's transactions and retrying in a storm.
"""

from __future__ import annotations

import asyncio
import weakref

__all__ = ["KeyedLocks"]


class KeyedLocks:
    def __init__(self) -> None:
        # Weak values: a lock nobody holds or waits for is dropped with its entry.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock
