"""The on-disk layout: a directory per tenant and one for shared collections; the migration."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_svc.layout import CollectionRef, Layout


def make_collection(directory: Path) -> None:
    directory.mkdir(parents=True)
    (directory / "CURRENT").write_text("gen-00000001")


def test_each_owner_has_its_own_directory(tmp_path: Path) -> None:
    layout = Layout(tmp_path)

    assert layout.directory(CollectionRef("docs", "acme")) == tmp_path / "tenants/acme/docs"
    assert layout.directory(CollectionRef("docs", "globex")) == tmp_path / "tenants/globex/docs"
    assert layout.directory(CollectionRef("wiki", None)) == tmp_path / "shared/wiki"
    for tenant in ("../shared", "a/b", "..", "Acme"):
        with pytest.raises(ValueError):
            layout.namespace(tenant)


def test_the_first_versions_collections_are_migrated(tmp_path: Path) -> None:
    old = tmp_path / "collections"
    for name in ("wiki", "docs", "notes"):
        make_collection(old / name)
    (old / ".trash-notes-1234").mkdir()  # an interrupted delete
    layout = Layout(tmp_path)

    assert layout.migrate_first_version() == 3

    assert (tmp_path / "shared/wiki/CURRENT").is_file()
    assert sorted(p.name for p in (tmp_path / "tenants/default").iterdir()) == ["docs", "notes"]
    assert not old.exists()
    assert [(t, p.name) for t, p in layout.namespaces()] == [
        (None, "shared"),
        ("default", "default"),
    ]
    assert layout.migrate_first_version() == 0  # once only


def test_a_migration_never_overwrites(tmp_path: Path) -> None:
    make_collection(tmp_path / "collections/notes")
    make_collection(tmp_path / "tenants/default/notes")
    (tmp_path / "tenants/default/notes/keep").write_text("newer")

    assert Layout(tmp_path).migrate_first_version() == 0

    assert (tmp_path / "tenants/default/notes/keep").read_text() == "newer"
    assert (tmp_path / "collections/notes/CURRENT").is_file()  # left for an operator
