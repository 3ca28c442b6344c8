"""Project spec: YAML -> typed dataclasses, validated once, printable fully resolved.

Types are checked by the shared typed-config loader (`overlap: three` is refused by name); the
checks below cover what types cannot say: ranges, uniqueness, cross-references.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from preference_data.aggregation.weights import check_population_shares as check_shares
from evaluators.typed_config import build_dataclass, read_yaml_file

SCALES = ("pairwise", "ranking", "likert", "text")
ITEM_KINDS = ("regular", "gold", "attention")
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
    name: str                      # e.g. "region"
    values: list[str] = field(default_factory=list)  # allowed values; empty = free text
    description: str = ""
    # May annotators describe themselves on this attribute? A value the researcher preset
    # (`add-annotators --attr`) is never overwritten either way.
    self_report: bool = True


@dataclass
class QuotaSpec:
    """Per item, reserve at least `per_item[value]` of the k slots for annotators of that group."""

    attribute: str = ""
    per_item: dict[str, int] = field(default_factory=dict)


@dataclass
class QualitySpec:
    """Gold and attention-check items (imported with `kind: gold|attention` and a `gold` answer).

    Every annotator sees every such "control" item once, interleaved with regular items; the share
    they answer as expected is their quality score (exported, and a prior for Dawid-Skene).
    """

    control_every: int = 5           # one control item per this many regular items
    qualification_items: int = 0     # the first N items are control items: a qualification step
    qualification_min_score: float = 0.0  # share of those N answered correctly to go on


@dataclass
class CrowdSpec:
    """Crowd platforms (e.g. Prolific): one shared join link, and a completion code at the end."""

    id_param: str = "PROLIFIC_PID"   # query parameter of the join link naming the participant
    completion_code: str = ""        # shown when the participant is done (empty: none)
    completion_url: str = ""         # e.g. https://app.prolific.com/submissions/complete?cc={code}


@dataclass
class ProjectSpec:
    name: str
    title: str = ""
    guidelines: str = ""           # shown before the first item (markdown)
    overlap: int = 3               # k: submitted judgments per item before it leaves the queue
    dimensions: list[DimensionSpec] = field(default_factory=list)
    attributes: list[AttributeSpec] = field(default_factory=list)
    population_shares: dict[str, dict[str, float]] = field(default_factory=dict)
    quotas: QuotaSpec = field(default_factory=QuotaSpec)
    lease_minutes: float = 30.0    # an opened but unanswered item is freed for others after this
    token_ttl_days: float | None = None  # annotator links expire after this many days (None: never)
    max_items_per_annotator: int | None = None  # cap on regular items one person answers
    quality: QualitySpec = field(default_factory=QualitySpec)
    crowd: CrowdSpec = field(default_factory=CrowdSpec)
    markdown: bool = True          # render prompts and responses as markdown (raw HTML is shown as text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise SpecError(msg)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_population_shares(shares: Any, where: str = "population_shares",
                            attributes: dict[str, AttributeSpec] | None = None) -> dict[str, dict[str, float]]:
    """The aggregation rule (`aggregation.weights.check_population_shares`), with the spec's declared
    attributes and values, raising SpecError."""
    declared = None if attributes is None else {name: a.values for name, a in attributes.items()}
    try:
        return check_shares(shares, where, declared)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def spec_from_dict(raw: dict[str, Any]) -> ProjectSpec:
    _check(isinstance(raw, dict), "project spec must be a YAML mapping")
    raw = dict(raw)
    if isinstance(raw.get("attributes"), list):  # YAML may read `values: [1, 2]` as numbers
        raw["attributes"] = [{**a, "values": [str(v) for v in a["values"]]}
                             if isinstance(a, dict) and isinstance(a.get("values"), list) else a
                             for a in raw["attributes"]]
    spec: ProjectSpec = build_dataclass(ProjectSpec, raw, "spec", SpecError)
    _check(bool(_NAME.match(spec.name)), "spec 'name' must be a short identifier (letters, digits, _ . -)")
    _check(bool(spec.dimensions), "spec needs at least one dimension")
    for dim in spec.dimensions:
        _check(bool(_NAME.match(str(dim.name))), f"dimension name {dim.name!r} must be an identifier")
        _check(dim.scale in SCALES, f"dimension {dim.name!r}: scale must be one of {SCALES}")
        if dim.scale == "likert":
            _check(dim.min < dim.max, f"dimension {dim.name!r}: likert needs integer min < max")
    names = [d.name for d in spec.dimensions]
    _check(len(set(names)) == len(names), "dimension names must be unique")
    attr_names = [a.name for a in spec.attributes]
    _check(len(set(attr_names)) == len(attr_names), "attribute names must be unique")
    for a in spec.attributes:
        _check(bool(_NAME.match(a.name)), f"attribute name {a.name!r} must be an identifier")
        a.values = [str(v) for v in a.values]
        dup = sorted({v for v in a.values if a.values.count(v) > 1})
        _check(not dup, f"attribute {a.name!r} lists values {dup} more than once")
    attrs = {a.name: a for a in spec.attributes}
    spec.population_shares = check_population_shares(raw.get("population_shares") or {}, attributes=attrs)
    _check(spec.overlap >= 1, "overlap (k) must be >= 1")
    _check(spec.lease_minutes > 0, f"lease_minutes must be > 0 (got {spec.lease_minutes:g})")
    _check(spec.token_ttl_days is None or spec.token_ttl_days > 0,
           f"token_ttl_days must be > 0 or null (got {spec.token_ttl_days})")
    _check(spec.max_items_per_annotator is None or spec.max_items_per_annotator >= 1,
           "max_items_per_annotator must be >= 1 or null")
    q = spec.quotas
    q.per_item = {str(k): v for k, v in q.per_item.items()}
    _check(all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in q.per_item.values()),
           "quotas.per_item must map values to whole numbers >= 0")
    if q.per_item:
        _check(q.attribute in attrs, "quotas.attribute must name a declared attribute")
        if attrs[q.attribute].values:
            unknown = sorted(set(q.per_item) - set(attrs[q.attribute].values))
            _check(not unknown, f"quotas.per_item names values {unknown} not declared for {q.attribute!r}")
        _check(sum(q.per_item.values()) <= spec.overlap,
               "quotas.per_item must not reserve more slots than overlap k")
    qs = spec.quality
    _check(qs.control_every >= 1, "quality.control_every must be >= 1")
    _check(qs.qualification_items >= 0, "quality.qualification_items must be >= 0")
    _check(0.0 <= qs.qualification_min_score <= 1.0, "quality.qualification_min_score must be in [0, 1]")
    _check(bool(_NAME.match(spec.crowd.id_param)), "crowd.id_param must be a query parameter name")
    _check(not spec.crowd.completion_url or spec.crowd.completion_url.startswith(("https://", "http://")),
           "crowd.completion_url must be an http(s) URL")
    return spec


def load_spec(path: str | Path) -> ProjectSpec:
    raw = read_yaml_file(path, what="project spec", example="configs/annotation/example_project.yaml",
                         error=SpecError)
    return spec_from_dict(raw)
