"""Wikitext to plain text, and the gensim Wikipedia pages behind the `wiki` collection."""

from __future__ import annotations

from rag_svc.wikitext import iter_wiki_pages, wikitext_to_text

WIKITEXT = """{{Infobox person|name=Ada|birth_date={{birth date|1815|12|10}}}}
'''Ada Lovelace''' (; 10 December 1815 – 27 November 1852) was an English [[mathematician]] \
and [[writer|author]].<ref>{{cite book|title=X}}</ref> She worked on the \
[[Analytical Engine]].<ref name="a"/>
[[File:Ada.jpg|thumb|Ada in [[1840]]]]
{| class="wikitable"
|-
| cell || cell
|}
== Early life ==
* Born in [[London]]&nbsp;to [http://example.org Lord Byron]'s wife.
<!-- a comment -->
== References ==
{{reflist}}
"""


def test_markup_is_stripped_text_and_labels_kept() -> None:
    assert wikitext_to_text(WIKITEXT) == (
        "Ada Lovelace (10 December 1815 – 27 November 1852) was an English mathematician and "
        "author. She worked on the Analytical Engine.\n\n"
        "Early life\n\n"
        "Born in London to Lord Byron's wife."
    )


def test_gensim_pages_are_articles_in_plain_text() -> None:
    pages = list(iter_wiki_pages(max_pages=3, max_chars=2000))

    assert [(p.page_id, p.title) for p in pages] == [
        ("12", "Anarchism"),
        ("25", "Autism"),
        ("39", "Albedo"),
    ]
    for page in pages:
        assert 200 <= len(page.text) <= 2000
        assert "{{" not in page.text and "[[" not in page.text and "<ref" not in page.text
    assert pages[0].text.startswith("Anarchism is a political philosophy")


def test_every_page_appears_once_under_its_own_id() -> None:
    # Revisions and contributors carry ids too; two pages edited by one user once
    # collided on the contributor's id.
    ids = [page.page_id for page in iter_wiki_pages(max_chars=500)]
    assert len(ids) == len(set(ids)) > 100
