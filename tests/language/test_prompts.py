"""Prompt files and the template generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from adinspect.config import DefectType, ProductSpec
from adinspect.language.prompts import (
    PromptError,
    defect_phrase,
    load_prompt_file,
    product_with_prompts,
    resolve_prompts,
    template_prompts,
)


def test_templates_are_deterministic_by_seed_and_distinct() -> None:
    a = template_prompts("glass bottle", "broken_large", 40, seed=3)
    b = template_prompts("glass bottle", "broken_large", 40, seed=3)
    c = template_prompts("glass bottle", "broken_large", 40, seed=4)
    assert a == b
    assert a != c
    assert len(a) == 40 and len(set(a)) == 40
    assert all("glass bottle" in p and "large broken area" in p for p in a)


def test_defect_phrase_reads_as_a_noun_phrase() -> None:
    assert defect_phrase("broken_large") == "large broken area"
    assert defect_phrase("contamination") == "contamination"
    assert defect_phrase("faulty_imprint") == "faulty imprint"
    assert defect_phrase("oil") == "oil stain"


def test_articles_follow_the_next_word() -> None:
    prompts = template_prompts("bottle", "oil", 40, seed=0)
    assert not any(" a oil" in p or " a irregular" in p or p.startswith("a oil") for p in prompts)


def test_prompt_file_mapping_and_list_forms(tmp_path: Path) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "object_name: glass bottle\ndefect_types:\n  crack: [a crack, a thin crack]\n  stain:\n"
    )
    obj, prompts = load_prompt_file(mapping)
    assert obj == "glass bottle"
    assert prompts == {"crack": ["a crack", "a thin crack"], "stain": []}
    listed = tmp_path / "l.yaml"
    listed.write_text("defect_types:\n  - name: crack\n    prompts: [a crack]\n")
    assert load_prompt_file(listed) == (None, {"crack": ["a crack"]})


def test_empty_prompt_list_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("defect_types:\n  crack: []\n")
    with pytest.raises(PromptError, match="empty prompt list"):
        load_prompt_file(path)


def test_duplicate_and_bad_names_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("defect_types:\n  - name: crack\n  - name: crack\n")
    with pytest.raises(PromptError, match="twice"):
        load_prompt_file(path)
    path.write_text("defect_types:\n  Bad Name: [x]\n")
    with pytest.raises(ValueError, match="must match"):
        load_prompt_file(path)


def test_resolve_uses_spec_prompts_or_templates() -> None:
    spec = ProductSpec(
        name="bottle",
        object_name="glass bottle",
        defect_types=[DefectType(name="crack", prompts=["a crack on a bottle"]), DefectType(name="stain")],
    )
    out = resolve_prompts(spec, num=7, seed=1)
    assert list(out) == ["crack", "stain"]
    assert out["crack"] == ["a crack on a bottle"]
    assert out["stain"] == template_prompts("glass bottle", "stain", 7, seed=1)


def test_unknown_type_and_no_types_are_errors() -> None:
    spec = ProductSpec(name="bottle", defect_types=[DefectType(name="crack")])
    with pytest.raises(PromptError, match="unknown defect type"):
        resolve_prompts(spec, types=["scratch"])
    with pytest.raises(PromptError, match="no defect types"):
        resolve_prompts(ProductSpec(name="bottle"))


def test_single_defect_type_is_allowed() -> None:
    spec = ProductSpec(name="bottle", defect_types=[DefectType(name="crack")])
    out = resolve_prompts(spec, num=5)
    assert list(out) == ["crack"] and len(out["crack"]) == 5


def test_product_with_prompts_fills_object_name(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("object_name: glass bottle\ndefect_types:\n  crack:\n")
    spec = product_with_prompts(ProductSpec(name="bottle"), path)
    assert spec.object_name == "glass bottle"
    assert [d.name for d in spec.defect_types] == ["crack"]
