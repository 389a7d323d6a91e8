"""Reading ideas out of a small model's free text, and the fallback when there are none."""

from __future__ import annotations

from creative_svc.ideation import fallback_ideas, parse_ideas


def test_labelled_lines_make_one_idea_per_group() -> None:
    text = (
        "Here are my ideas:\n"
        "1. Idea: A raincoat that folds into its own pocket\n"
        "Visual: a yellow coat\n"
        "Why: nobody forgets it at home\n\n"
        "2. **Idea:** Sneakers with swappable soles\n"
        "**Visual:** a red sneaker\n"
        "**Why:** one pair for every sport\n"
    )
    ideas = parse_ideas(text, 3)
    assert [i.visual_concept for i in ideas] == ["a yellow coat", "a red sneaker"]
    assert ideas[0].description == "A raincoat that folds into its own pocket"
    assert ideas[1].why == "one pair for every sport"


def test_at_most_n_ideas_are_kept() -> None:
    text = "\n".join(f"Idea: idea {i}\nVisual: a bag\nWhy: because" for i in range(5))
    assert len(parse_ideas(text, 2)) == 2


def test_a_numbered_list_without_labels_still_gives_ideas() -> None:
    text = "Sure!\n1. A pastel dress for spring picnics\n2. A black ankle boot with a hidden heel"
    ideas = parse_ideas(text, 3)
    assert [i.description for i in ideas] == [
        "A pastel dress for spring picnics",
        "A black ankle boot with a hidden heel",
    ]
    assert ideas[0].visual_concept == ideas[0].description


def test_rambling_without_any_structure_gives_no_ideas() -> None:
    assert parse_ideas("I think fashion is very nice and so on.", 3) == []
    assert parse_ideas("", 3) == []


def test_fallback_ideas_cycle_garments_and_colours() -> None:
    ideas = fallback_ideas("a capsule wardrobe", ["coat", "dress"], 3)
    assert [i.visual_concept for i in ideas] == [
        "a red coat",
        "a pastel blue dress",
        "a black coat",
    ]
    assert all("capsule wardrobe" in i.description for i in ideas)
