"""Defect-type prompts: loaded from a YAML file or generated from templates (DESIGN.md §1, Eq. 5).

A prompt file maps each defect type to its prompts, either as a mapping::

    object_name: glass bottle          # optional
    defect_types:
      broken_large: ["a large broken area on the rim of a glass bottle", ...]
      contamination: [...]

or as a list of ``{name: ..., prompts: [...]}`` entries (the `ProductSpec` layout). A defect type
whose prompts are left out (null) gets U template prompts; an explicit empty list is an error.
Nothing here calls a language model.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from adinspect.config import DefectType, ProductSpec
from adinspect.errors import InputError

DEFAULT_NUM_PROMPTS = 40  # U in the paper

# Words that describe size or severity: moved in front of the defect noun ("broken_large" ->
# "large broken area").
_SIZE_WORDS = {"large", "small", "big", "tiny", "long", "short", "thin", "thick", "wide", "minor", "major"}
# Defect-name words that read badly as nouns, mapped to noun phrases.
_NOUNS = {
    "broken": "broken area",
    "bent": "bent part",
    "color": "colour defect",
    "colour": "colour defect",
    "cut": "cut",
    "crack": "crack",
    "fold": "fold",
    "glue": "glue stain",
    "hole": "hole",
    "liquid": "liquid stain",
    "oil": "oil stain",
    "poke": "poke mark",
    "print": "misprint",
    "rough": "rough patch",
    "scratch": "scratch",
    "squeeze": "squeezed part",
    "contamination": "contamination",
    "faulty": "faulty part",
    "misplaced": "misplaced part",
    "missing": "missing part",
    "damaged": "damaged area",
    "defect": "defect",
    "stain": "stain",
    "dent": "dent",
}
_ADJECTIVES = ["", "visible", "clear", "noticeable", "faint", "distinct", "irregular", "obvious", "subtle"]
_PLACES = ["surface", "edge", "centre", "side", "border", "top", "bottom", "middle"]
_TEMPLATES = [
    "a {adj}{defect} on the {place} of a {obj}",
    "a photo of a {obj} with a {adj}{defect}",
    "a close-up photo of a {adj}{defect} on a {obj}",
    "an industrial inspection image of a {obj} showing a {adj}{defect}",
    "a {obj} that has a {adj}{defect} near the {place}",
    "a defective {obj} with a {adj}{defect}",
    "there is a {adj}{defect} on the {place} of the {obj}",
    "a cropped photo of a {obj} with a {adj}{defect} on its {place}",
]


class PromptError(InputError):
    """A prompt file or product spec whose prompts cannot be used; the message names the cause."""


def defect_phrase(defect_name: str) -> str:
    """Turn a defect-type identifier into a noun phrase: 'broken_large' -> 'large broken area'."""
    words = [w for w in defect_name.lower().split("_") if w]
    if not words:
        raise PromptError(f"defect type name {defect_name!r} has no words")
    sizes = [w for w in words if w in _SIZE_WORDS]
    rest = [w for w in words if w not in _SIZE_WORDS]
    if not rest:
        rest = ["defect"]
    if len(rest) == 1:
        noun = _NOUNS.get(rest[0], f"{rest[0]} defect")
    else:
        last = _NOUNS.get(rest[-1], rest[-1])
        noun = " ".join(rest[:-1] + [last])
    return " ".join(sizes + [noun])


def template_prompts(
    object_name: str, defect_name: str, num: int = DEFAULT_NUM_PROMPTS, seed: int = 0
) -> list[str]:
    """Write `num` distinct prompts describing `defect_name` on `object_name`, deterministic by seed.

    Args:
        object_name: noun used for the product, e.g. "glass bottle".
        defect_name: defect-type identifier, e.g. "broken_large".
        num: U, the number of prompts.
        seed: the same (object, defect, num, seed) always gives the same list.
    """
    if num < 1:
        raise PromptError(f"number of prompts must be >= 1, got {num}")
    obj = object_name.strip()
    if not obj:
        raise PromptError("object name for prompt templates is empty; set product.object_name")
    defect = defect_phrase(defect_name)
    combos = [(t, a, p) for t in _TEMPLATES for a in _ADJECTIVES for p in _PLACES]
    # Templates without {place} repeat across places; keep distinct texts only, in a stable order.
    texts = list(
        dict.fromkeys(
            t.format(adj=f"{a} " if a else "", defect=defect, place=p, obj=obj) for t, a, p in combos
        )
    )
    rng = random.Random(f"{seed}:{obj}:{defect_name}")
    rng.shuffle(texts)
    if num > len(texts):
        raise PromptError(f"templates give {len(texts)} distinct prompts, {num} were requested")
    return [_fix_article(t) for t in texts[:num]]


def _fix_article(text: str) -> str:
    """'a oil stain' -> 'an oil stain' (articles before vowels)."""
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i] in {"a", "an"}:
            words[i] = "an" if words[i + 1][:1] in set("aeiou") else "a"
    return " ".join(words)


def load_prompt_file(path: Path) -> tuple[str | None, dict[str, list[str]]]:
    """Read a prompt YAML file.

    Returns:
        (object_name or None, {defect type: prompts}) in file order; prompt lists may be empty,
        meaning "use templates".
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PromptError(f"{path}: cannot read prompt file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or "defect_types" not in raw:
        raise PromptError(f"{path}: expected a mapping with a 'defect_types' key")
    object_name = raw.get("object_name")
    entries = raw["defect_types"]
    out: dict[str, list[str]] = {}
    if isinstance(entries, dict):
        items = list(entries.items())
    elif isinstance(entries, list):
        items = []
        for e in entries:
            if not isinstance(e, dict) or "name" not in e:
                raise PromptError(f"{path}: each defect_types entry needs a 'name', got {e!r}")
            items.append((e["name"], e.get("prompts")))
    else:
        raise PromptError(f"{path}: 'defect_types' must be a mapping or a list, got {type(entries).__name__}")
    for name, prompts in items:
        DefectType(name=name)  # validates the identifier
        if prompts is None:  # omitted: use the built-in templates
            prompts = []
        elif prompts == []:
            raise PromptError(
                f"{path}: defect type {name!r} has an empty prompt list; give at least one prompt, or "
                f"leave the value empty (null) to use the built-in templates"
            )
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise PromptError(f"{path}: prompts of defect type {name!r} must be a list of strings")
        if name in out:
            raise PromptError(f"{path}: defect type {name!r} is listed twice")
        out[name] = [p.strip() for p in prompts]
    if not out:
        raise PromptError(f"{path}: no defect types listed")
    return object_name, out


def product_with_prompts(product: ProductSpec, prompt_file: Path) -> ProductSpec:
    """Return `product` with its defect types (and object name, if unset) taken from a prompt file."""
    object_name, prompts = load_prompt_file(prompt_file)
    return product.model_copy(
        update={
            "object_name": product.object_name or object_name,
            "defect_types": [DefectType(name=n, prompts=p) for n, p in prompts.items()],
        }
    )


def resolve_prompts(
    product: ProductSpec, num: int = DEFAULT_NUM_PROMPTS, seed: int = 0, types: list[str] | None = None
) -> dict[str, list[str]]:
    """Prompts per defect type: the spec's own prompts, or `num` template prompts where it has none.

    Args:
        product: the product spec; its defect types define the order of V_lang.
        num: U for template-generated types.
        seed: template seed.
        types: optional subset of defect-type names; unknown names are an error.

    A product with a single defect type is allowed: the max over types (Eq. 7) is then the map
    of that one type, and the reported defect type is always that type.
    """
    if not product.defect_types:
        raise PromptError(
            f"product {product.name!r} has no defect types; list them in the product spec or a prompt "
            f"file (e.g. defect_types: {{crack: [...]}})"
        )
    known = [d.name for d in product.defect_types]
    if types is not None:
        unknown = [t for t in types if t not in known]
        if unknown:
            raise PromptError(
                f"unknown defect type(s) {unknown} for product {product.name!r}; known: {known}"
            )
    out: dict[str, list[str]] = {}
    for d in product.defect_types:
        if types is not None and d.name not in types:
            continue
        prompts = [p.strip() for p in d.prompts]
        if any(not p for p in prompts):
            raise PromptError(f"defect type {d.name!r} of product {product.name!r} has an empty prompt")
        if not prompts:
            prompts = template_prompts(
                product.object_name or product.name.replace("_", " "), d.name, num, seed
            )
        out[d.name] = prompts
    return out
