"""Judgments -> weighted, auditable TRL-format pairs plus an aggregation report.

Steps: survey weights per judgment (weights.py) -> comparisons per unit (item x dimension x group)
-> a method decides each response pair (methods.py) -> a researcher's adjudication, where one
exists, overrides the decision -> one TRL row per decided pair, whose `weight` carries the group's
population mass when aggregating by group, and whose `provenance` lists the judgments, their
weights and the votes behind it.

Dimensions are kept apart by default (pooling "helpfulness" and "politeness" votes into one
decision mixes different questions); attention-check items only score annotators and never
become training pairs; gold items do, and their known answers anchor Dawid–Skene.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from evaluators.typed_config import Config

from preference_data.aggregation import methods as m
from preference_data.aggregation.agreement import agreement_report, hotspots
from preference_data.aggregation.clustering import cluster_annotators
from preference_data.aggregation.judgments import Judgment, comparisons
from preference_data.aggregation.weights import check_population_shares, compute_weights

MISSING_GROUP = "(missing)"


Method = Literal["majority", "dawid-skene", "bradley-terry", "plackett-luce"]
Weighting = Literal["none", "poststrat", "raking"]


@dataclass
class AggregationConfig(Config):
    """How judgments become one decision per unit (typed: a misspelt method is refused on construction)."""

    method: Method = "majority"
    weighting: Weighting = "none"       # poststrat / raking reweight groups to population_shares
    by_dimension: bool = True           # one decision per dimension (pairs carry `dimension`)
    by_group: bool = False              # one decision per annotator group (pairs carry `group`)
    group_attribute: str | None = None  # default: first attribute of population_shares
    population_shares: dict[str, dict[str, float]] = field(default_factory=dict)
    noise_threshold: float = 0.7        # Dawid-Skene: flag annotators with accuracy below this
    use_quality: bool = True            # Dawid-Skene: gold/attention answers count towards accuracy
    regularization: float = 0.1         # BT/PL: choix ILSR regulariser (keeps unanimous units finite)
    max_clusters: int = 6
    hotspots: int = 10
    seed: int = 0
    with_report: bool = True            # False: skip agreement/hot-spots/clusters (fast, for simulations)


@dataclass
class AggregationResult:
    pairs: list[dict[str, Any]]
    report: dict[str, Any]


def _group_attribute(judgments: Sequence[Judgment], cfg: AggregationConfig) -> str | None:
    if cfg.group_attribute:
        return cfg.group_attribute
    if cfg.population_shares:
        return next(iter(cfg.population_shares))
    for j in judgments:
        if j.annotator_attributes:
            return sorted(j.annotator_attributes)[0]
    return None


def _check_targets(scored: Sequence[Judgment], cfg: AggregationConfig) -> None:
    """Population shares must sum to 1 and name every group present, so no group is silently
    weighted 0; a group attribute must exist in the data."""
    known = sorted({k for j in scored for k in j.annotator_attributes})
    if cfg.group_attribute and cfg.group_attribute not in known:
        raise ValueError(f"--group-attribute {cfg.group_attribute!r}: no annotator has it; "
                         f"attributes in the data: {known or 'none'}")
    if cfg.weighting == "none":
        return
    check_population_shares(cfg.population_shares)
    for attr, dist in cfg.population_shares.items():
        if attr not in known:
            raise ValueError(f"population_shares names attribute {attr!r}, which no annotator has; "
                             f"attributes in the data: {known or 'none'}")
        present = Counter(j.annotator_attributes[attr] for j in scored if attr in j.annotator_attributes)
        missing = {v: n for v, n in sorted(present.items()) if v not in dist}
        if missing:
            raise ValueError(f"population_shares.{attr} gives no share to {sorted(missing)} "
                             f"({sum(missing.values())} judgments would be weighted 0); add them "
                             "(a share of 0 excludes a group on purpose)")


def _gold_tasks(scored: Sequence[Judgment], unit_of) -> dict:
    """(unit, a, b) -> the known winner, from gold items' expected answers."""
    out = {}
    for j in scored:
        if j.item_kind != "gold" or j.gold is None:
            continue
        order = j.gold if isinstance(j.gold, list) else None
        ids = [r.response_id for r in j.responses]
        unit = unit_of(j)
        for a in ids:
            for b in ids:
                if a < b:
                    if order is not None and a in order and b in order:
                        out[(unit, a, b)] = a if order.index(a) < order.index(b) else b
                    elif order is None and j.gold in (a, b):
                        out[(unit, a, b)] = j.gold
    return out


def _adjudicate(decisions: list[m.PairDecision], adjudications: Sequence[Judgment]) -> int:
    """Override decisions with the researcher's adjudicated best response; returns how many."""
    best = {(a.item_id, a.dimension): a for a in adjudications}
    changed = 0
    for d in decisions:
        adj = best.get((d.unit[0], d.unit[1]))
        if adj is None or adj.value not in (d.chosen, d.rejected):
            continue
        if d.chosen != adj.value:
            d.chosen, d.rejected = d.rejected, d.chosen
            d.votes_chosen, d.votes_rejected = d.votes_rejected, d.votes_chosen
        d.confidence, d.adjudication = 1.0, adj.judgment_id
        changed += 1
    return changed


def aggregate(judgments: Sequence[Judgment], cfg: AggregationConfig) -> AggregationResult:
    if cfg.method not in m.METHODS:
        raise ValueError(f"method must be one of {m.METHODS}, got {cfg.method!r}")
    if cfg.method == "dawid-skene" and cfg.weighting != "none" and not cfg.by_group:
        raise ValueError("dawid-skene estimates one truth per task and ignores weights; combine "
                         "--weighting with --by-group, or use --method majority/bradley-terry")
    adjudications = [j for j in judgments if j.kind == "adjudication"]
    scored = [j for j in judgments if j.scale != "text" and j.kind != "adjudication"
              and j.item_kind != "attention"]
    _check_targets(scored, cfg)
    group_attr = _group_attribute(scored, cfg)
    if cfg.by_group and group_attr is None:
        raise ValueError("--by-group needs annotator attributes (or --group-attribute)")

    def group_of(j: Judgment) -> str | None:
        return None if group_attr is None else j.annotator_attributes.get(group_attr, MISSING_GROUP)

    weighting = compute_weights(cfg.weighting, [j.judgment_id for j in scored],
                                [j.annotator_attributes for j in scored], cfg.population_shares)
    jw = weighting.weights
    def unit_of(j: Judgment) -> m.UnitKey:
        return (j.item_id, j.dimension if cfg.by_dimension else None, group_of(j) if cfg.by_group else None)

    wcs, rankings = [], {}
    for j in scored:
        unit = unit_of(j)
        if j.scale == "ranking":
            rankings[j.judgment_id] = list(j.value)
        wcs.extend(m.WeightedComparison(c, unit, jw[j.judgment_id]) for c in comparisons(j))

    if cfg.method == "majority":
        result = m.majority_vote(wcs)
    elif cfg.method == "dawid-skene":
        quality = {j.annotator_id: j.quality for j in scored if j.quality is not None} if cfg.use_quality else {}
        result = m.dawid_skene(wcs, cfg.noise_threshold, quality=quality, gold=_gold_tasks(scored, unit_of))
    elif cfg.method == "bradley-terry":
        result = m.bradley_terry(wcs, cfg.regularization)
    else:
        result = m.plackett_luce(wcs, rankings, cfg.regularization)

    if adjudications and cfg.by_dimension:
        result.info["adjudicated_pairs"] = _adjudicate(result.decisions, adjudications)
    elif adjudications:
        result.info["adjudications_ignored"] = ("adjudications are per dimension; they apply only when "
                                                "dimensions are decided separately (--by-dimension)")
    pairs = _to_pairs(scored, result.decisions, jw, cfg, group_of)
    report = _report(scored, judgments, cfg, result, weighting, pairs, group_attr, group_of)
    return AggregationResult(pairs, report)


def _group_factors(scored: Sequence[Judgment], decisions: Sequence[m.PairDecision],
                   jw: dict[str, float], group_of) -> dict[str | None, float]:
    """Pair weight per group so each group's pairs together carry its weighted judgment mass."""
    mass: dict[str | None, float] = defaultdict(float)
    for j in scored:
        mass[group_of(j)] += jw[j.judgment_id]
    n_pairs = Counter(d.unit[2] for d in decisions)
    total_mass, total_pairs = sum(mass[g] for g in n_pairs), sum(n_pairs.values())
    if total_mass <= 0:
        return {g: 1.0 for g in n_pairs}
    return {g: (mass[g] / total_mass) / (n / total_pairs) for g, n in n_pairs.items()}


def _to_pairs(scored: Sequence[Judgment], decisions: Sequence[m.PairDecision], jw: dict[str, float],
              cfg: AggregationConfig, group_of) -> list[dict[str, Any]]:
    by_id = {j.judgment_id: j for j in scored}
    factors = _group_factors(scored, decisions, jw, group_of) if cfg.by_group else {}
    pairs = []
    for d in sorted(decisions, key=lambda d: (d.unit[0], str(d.unit[1]), str(d.unit[2]), d.chosen, d.rejected)):
        j0 = by_id[d.judgment_ids[0]]
        chosen, rejected = j0.response(d.chosen), j0.response(d.rejected)
        weight = factors.get(d.unit[2], 1.0) if cfg.by_group else 1.0
        total = d.votes_chosen + d.votes_rejected
        if j0.messages:  # TRL's conversational format
            prompt: Any = [dict(msg) for msg in j0.messages]
            texts: tuple[Any, Any] = ([{"role": "assistant", "content": chosen.text}],
                                      [{"role": "assistant", "content": rejected.text}])
        else:
            prompt, texts = j0.prompt, (chosen.text, rejected.text)
        pairs.append({
            "prompt": prompt, "chosen": texts[0], "rejected": texts[1],
            "weight": round(weight, 6), "group": d.unit[2], "dimension": d.unit[1],
            "provenance": {
                "project": j0.project, "item_id": d.unit[0], "method": cfg.method,
                "weighting": cfg.weighting, "chosen_response_id": d.chosen,
                "rejected_response_id": d.rejected, "chosen_model": chosen.model,
                "rejected_model": rejected.model, "confidence": round(d.confidence, 6),
                "votes": {"chosen": round(d.votes_chosen, 6), "rejected": round(d.votes_rejected, 6)},
                "vote_share": round(d.votes_chosen / total, 6) if total > 0 else None,
                "adjudication": d.adjudication,
                "item_kind": j0.item_kind,
                "judgment_ids": d.judgment_ids,
                "judgment_weights": {i: round(jw[i], 6) for i in d.judgment_ids},
                "annotator_ids": sorted({by_id[i].annotator_id for i in d.judgment_ids}),
                "group_weight": round(weight, 6) if cfg.by_group else None,
                **({"scores": d.scores} if d.scores is not None else {}),
            }})
    return pairs


def _report(scored, judgments, cfg, result: m.MethodResult, weighting, pairs, group_attr, group_of) -> dict:
    """Counts, weights, method info, and (unless cfg.with_report is False) agreement/hot-spots/clusters."""
    groups: dict[str, dict[str, Any]] = {}
    if group_attr is not None:
        annot = defaultdict(set)
        counts = Counter()
        for j in scored:
            annot[group_of(j)].add(j.annotator_id)
            counts[group_of(j)] += 1
        pair_n, pair_w = Counter(), defaultdict(float)
        for p in pairs:
            pair_n[p["group"]] += 1
            pair_w[p["group"]] += p["weight"]
        for g in sorted(annot):
            groups[g] = {"annotators": len(annot[g]), "judgments": counts[g]}
            if cfg.by_group:  # without --by-group pairs have no group: no per-group pair counts
                groups[g].update(pairs=pair_n.get(g, 0), pair_weight_total=round(pair_w.get(g, 0.0), 4))
    return {
        "config": asdict(cfg), "n_judgments": len(judgments),
        "n_text_judgments": sum(1 for j in judgments if j.scale == "text"),
        "n_attention_judgments": sum(1 for j in judgments if j.item_kind == "attention" and j.scale != "text"),
        "n_adjudications": sum(1 for j in judgments if j.kind == "adjudication"),
        "n_annotators": len({j.annotator_id for j in scored}), "n_items": len({j.item_id for j in scored}),
        "scales": dict(Counter(j.scale for j in judgments)), "dimensions": sorted({j.dimension for j in scored}),
        "pairs": len(pairs), "ties_dropped": result.ties_dropped, "method_info": result.info,
        "weighting": weighting.to_dict(), "group_attribute": group_attr, "groups": groups,
        **({"agreement": agreement_report(scored, group_of),
            "hotspots": hotspots(scored, group_of, cfg.hotspots),
            "clusters": cluster_annotators(scored, cfg.max_clusters, cfg.seed)} if cfg.with_report else {}),
    }


def write_pairs(pairs: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """JSONL, written atomically; OSError (unwritable path) is left to the caller to word."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    tmp.replace(out)
    return out


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
