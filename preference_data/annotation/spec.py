"""Project spec: YAML -> typed dataclasses, validated once, printable fully resolved."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


from evaluators.typed_config import read_yaml_file

SCALES = ("pairwise", "ranking", "likert", "text")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


class SpecError(ValueError):
    """The project YAML is invalid; the message names the field and the fix."""


@dataclass
class DimensionSpec:
    name: str                      # short key used in exports, e.g. "politeness"
    description: str = ""          # the question shown to annotators
    scale: str = "pairwise"        # pairwise (pick the best) | ranking (order all) | likert | text
    min: int = 1                   # likert only: lowest rating
    max: int = 5                   # likert only: highest rating
    required: bool = True          # text answers may be made optional


@dataclass
class AttributeSpec:
    name: str                      # e.g. "region"; annotators self-describe (or the researcher sets it)
    values: list[str] = field(default_factory=list)  # allowed values; empty = free text
    description: str = ""


@dataclass
class QuotaSpec:
    """Per item, reserve at least `per_item[value]` of the k slots for annotators of that group."""

    attribute: str = ""
    per_item: dict[str, int] = field(default_factory=dict)


@dataclass
class ProjectSpec:
    name: str
    title: str = ""
    guidelines: str = ""           # shown before the first item (plain text, paragraphs kept)
    overlap: int = 3               # k: submitted judgments per item before it leaves the queue
    dimensions: list[DimensionSpec] = field(default_factory=list)
    attributes: list[AttributeSpec] = field(default_factory=list)
    population_shares: dict[str, dict[str, float]] = field(default_factory=dict)
    quotas: QuotaSpec = field(default_factory=QuotaSpec)
    lease_minutes: float = 30.0    # an opened but unanswered item is freed for others after this
    token_ttl_days: float | None = None  # annotator links expire after this many days (None: never)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise SpecError(msg)


def spec_from_dict(raw: dict[str, Any]) -> ProjectSpec:
    _check(isinstance(raw, dict), "project spec must be a YAML mapping")
    known = set(ProjectSpec.__dataclass_fields__)
    unknown = set(raw) - known
    _check(not unknown, f"unknown project spec keys {sorted(unknown)}; allowed: {sorted(known)}")
    _check(isinstance(raw.get("name"), str) and bool(_NAME.match(raw["name"])),
           "spec 'name' must be a short identifier (letters, digits, _ . -)")
    dims = []
    for d in raw.get("dimensions") or []:
        _check(isinstance(d, dict) and "name" in d, "each dimension needs a 'name'")
        bad = set(d) - set(DimensionSpec.__dataclass_fields__)
        _check(not bad, f"dimension {d.get('name')!r}: unknown keys {sorted(bad)}")
        dim = DimensionSpec(**d)
        _check(bool(_NAME.match(str(dim.name))), f"dimension name {dim.name!r} must be an identifier")
        _check(dim.scale in SCALES, f"dimension {dim.name!r}: scale must be one of {SCALES}")
        if dim.scale == "likert":
            _check(isinstance(dim.min, int) and isinstance(dim.max, int) and dim.min < dim.max,
                   f"dimension {dim.name!r}: likert needs integer min < max")
        dims.append(dim)
    _check(bool(dims), "spec needs at least one dimension")
    names = [d.name for d in dims]
    _check(len(set(names)) == len(names), "dimension names must be unique")
    attrs = []
    for a in raw.get("attributes") or []:
        _check(isinstance(a, dict) and "name" in a, "each attribute needs a 'name'")
        attrs.append(AttributeSpec(name=str(a["name"]), values=[str(v) for v in a.get("values") or []],
                                   description=str(a.get("description", ""))))
    attr_by_name = {a.name: a for a in attrs}
    shares = raw.get("population_shares") or {}
    for attr, dist in shares.items():
        _check(attr in attr_by_name, f"population_shares names unknown attribute {attr!r}")
        _check(isinstance(dist, dict) and all(float(v) >= 0 for v in dist.values()),
               f"population_shares.{attr} must map values to non-negative shares")
        total = sum(float(v) for v in dist.values())
        _check(abs(total - 1.0) < 1e-6, f"population_shares.{attr} must sum to 1 (got {total:g})")
    q = raw.get("quotas") or {}
    quotas = QuotaSpec(attribute=str(q.get("attribute", "")),
                       per_item={str(k): int(v) for k, v in (q.get("per_item") or {}).items()})
    overlap = int(raw.get("overlap", 3))
    _check(overlap >= 1, "overlap (k) must be >= 1")
    if quotas.per_item:
        _check(quotas.attribute in attr_by_name, "quotas.attribute must name a declared attribute")
        _check(sum(quotas.per_item.values()) <= overlap,
               "quotas.per_item must not reserve more slots than overlap k")
    ttl = raw.get("token_ttl_days")
    return ProjectSpec(
        name=raw["name"], title=str(raw.get("title", "")), guidelines=str(raw.get("guidelines", "")),
        overlap=overlap, dimensions=dims, attributes=attrs,
        population_shares={k: {str(a): float(b) for a, b in v.items()} for k, v in shares.items()},
        quotas=quotas, lease_minutes=float(raw.get("lease_minutes", 30.0)),
        token_ttl_days=None if ttl is None else float(ttl))


def load_spec(path: str | Path) -> ProjectSpec:
    raw = read_yaml_file(path, what="project spec", example="configs/annotation/example_project.yaml",
                         error=SpecError)
    return spec_from_dict(raw)
