"""Where collections live on disk: one directory per tenant, one for the shared collections.

    <data_dir>/rag/
        shared/<name>/             shared collections (`wiki`): every tenant reads them
        tenants/<tenant>/<name>/   a tenant's own collections, seen by that tenant only
        wiki.built                 the record of a finished wiki build

Two tenants may each own a collection of the same name: the directory, not
the name, says whose it is, so ownership survives a restart with the data.
The first version kept every collection in `rag/collections/<name>/`;
`migrate_first_version` moves them on start (one rename each): `wiki` to
`shared/`, every other collection to tenant `default`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.caller import DEFAULT_TENANT, valid_tenant

__all__ = ["FIRST_VERSION_SHARED", "CollectionRef", "Layout"]

logger = logging.getLogger("rag_svc.layout")

# Collections of the first version's layout that stay readable by every tenant.
FIRST_VERSION_SHARED = frozenset({"wiki"})


@dataclass(frozen=True)
class CollectionRef:
    """One collection: its name and its owner (`tenant` None: shared by every tenant)."""

    name: str
    tenant: str | None

    @property
    def shared(self) -> bool:
        return self.tenant is None


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.shared_dir = root / "shared"
        self.tenants_dir = root / "tenants"
        self.first_version_dir = root / "collections"

    def namespace(self, tenant: str | None) -> Path:
        """The directory that holds the collections of `tenant` (None: the shared ones)."""
        if tenant is None:
            return self.shared_dir
        # Tenant names never hold '/' or '.'; checked again because this is a path.
        if not valid_tenant(tenant):
            raise ValueError(f"invalid tenant name {tenant!r}")
        return self.tenants_dir / tenant

    def directory(self, ref: CollectionRef) -> Path:
        return self.namespace(ref.tenant) / ref.name

    def namespaces(self) -> Iterator[tuple[str | None, Path]]:
        """Every namespace directory on disk: the shared one, then each tenant's."""
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        self.tenants_dir.mkdir(parents=True, exist_ok=True)
        yield None, self.shared_dir
        for entry in sorted(self.tenants_dir.iterdir()):
            if entry.is_dir() and valid_tenant(entry.name):
                yield entry.name, entry
            else:
                logger.error("not a tenant directory", extra={"path": str(entry)})

    def migrate_first_version(self) -> int:
        """Move the first version's collections into namespaces; returns how many moved."""
        old = self.first_version_dir
        if not old.is_dir():
            return 0
        moved = 0
        for entry in sorted(old.iterdir()):
            if entry.name.startswith("."):
                # Leftovers of an interrupted create or delete.
                shutil.rmtree(entry, ignore_errors=True)
                continue
            tenant = None if entry.name in FIRST_VERSION_SHARED else DEFAULT_TENANT
            target = self.namespace(tenant) / entry.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                logger.error(
                    "collection not migrated: the target exists",
                    extra={"path": str(entry), "target": str(target)},
                )
                continue
            entry.rename(target)
            moved += 1
            logger.info(
                "collection migrated",
                extra={"collection": entry.name, "owner": tenant or "shared"},
            )
        # Anything left behind (logged above) stays for an operator.
        with contextlib.suppress(OSError):
            old.rmdir()
        return moved
