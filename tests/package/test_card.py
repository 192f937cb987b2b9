"""The model card's sections that training puts in: replaced where they are, placed before the config."""

from __future__ import annotations

from adinspect.package.card import put_section

CARD = "# Model card: widget\n\n## Threshold\n- threshold = **3**\n\n## Config\n```json\n{}\n```\n"


def test_a_new_section_goes_before_the_config_and_a_second_replaces_it() -> None:
    once = put_section(CARD, "## Seg", ["- served: yes"])
    assert once.index("## Threshold") < once.index("## Seg") < once.index("## Config")
    assert "- served: yes\n\n## Config" in once
    twice = put_section(once, "## Seg", ["- served: no", "- why: the bound"])
    assert twice.count("## Seg") == 1 and "served: yes" not in twice
    assert "- served: no\n- why: the bound\n\n## Config" in twice
    assert twice.replace("## Seg\n- served: no\n- why: the bound\n\n", "") == CARD


def test_a_card_without_a_config_section_gets_it_at_the_end() -> None:
    card = "# Model card: widget\n\n## Threshold\n- threshold = **3**\n"
    out = put_section(card, "## Seg", ["- served: yes"])
    assert out.startswith(card) and out.rstrip().endswith("## Seg\n- served: yes")
    assert put_section(out, "## Seg", ["- served: no"]).count("## Seg") == 1
