"""Annotator clustering by judgment vectors: distinct preference profiles, found without demographics.

Each annotator becomes a vector over (item, dimension, response pair) features: +1 when they
preferred the pair's first (sorted) response, -1 for the second, 0 when not judged; rows are
L2-normalised (so annotators with few judgments are comparable) and clustered with scikit-learn's
KMeans, k chosen by silhouette. Declared attributes are used only afterwards, to describe clusters.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from preference_data.aggregation.judgments import Judgment, comparisons


def judgment_vectors(judgments: Sequence[Judgment], min_annotators: int = 2
                     ) -> tuple[np.ndarray, list[str], list[tuple]]:
    votes: dict[tuple[str, tuple], list[int]] = defaultdict(list)
    for j in judgments:
        for c in comparisons(j):
            a, b = sorted((c.winner, c.loser))
            votes[(j.annotator_id, (j.item_id, j.dimension, a, b))].append(1 if c.winner == a else -1)
    per_feature = Counter(f for _, f in votes)
    features = sorted((f for f, n in per_feature.items() if n >= min_annotators), key=str)
    annotators = sorted({a for a, _ in votes})
    f_pos, a_pos = {f: i for i, f in enumerate(features)}, {a: i for i, a in enumerate(annotators)}
    x = np.zeros((len(annotators), len(features)))
    for (a, f), v in votes.items():
        if f in f_pos:
            x[a_pos[a], f_pos[f]] = float(np.mean(v))
    return x, annotators, features


def _describe(members: list[str], judgments: Sequence[Judgment]) -> dict:
    """What a cluster prefers, in readable terms: longer/shorter, which models, per dimension."""
    mset = set(members)
    longer, decided = Counter(), Counter()
    model_wins, model_seen = Counter(), Counter()
    attrs: dict[str, Counter] = defaultdict(Counter)
    seen_annotators = set()
    for j in judgments:
        if j.annotator_id not in mset:
            continue
        if j.annotator_id not in seen_annotators:
            seen_annotators.add(j.annotator_id)
            for k, v in j.annotator_attributes.items():
                attrs[k][v] += 1
        for c in comparisons(j):
            w, l = j.response(c.winner), j.response(c.loser)
            if len(w.text) != len(l.text):
                decided[j.dimension] += 1
                longer[j.dimension] += len(w.text) > len(l.text)
            if w.model != l.model:
                model_wins[w.model] += 1
                model_seen[w.model] += 1
                model_seen[l.model] += 1
    return {"longer_response_chosen_rate": {d: round(longer[d] / n, 3) for d, n in sorted(decided.items())},
            "model_win_rate": {m: round(model_wins[m] / n, 3) for m, n in sorted(model_seen.items())},
            "declared_attributes": {k: dict(sorted(v.items())) for k, v in sorted(attrs.items())}}


def cluster_annotators(judgments: Sequence[Judgment], max_clusters: int = 6, seed: int = 0,
                       top_features: int = 3) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score
    x, annotators, features = judgment_vectors(judgments)
    active = np.abs(x).sum(axis=1) > 0
    if active.sum() < 3 or not features:
        return {"k": 1, "note": "fewer than 3 annotators with overlapping judgments; no clustering",
                "clusters": []}
    xa = x[active] / np.linalg.norm(x[active], axis=1, keepdims=True)
    names = [a for a, ok in zip(annotators, active) if ok]
    silhouettes, fits = {}, {}
    distinct = len(np.unique(np.round(xa, 9), axis=0))
    for k in range(2, min(max_clusters, len(names) - 1, distinct) + 1):
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(xa)
        if len(set(km.labels_)) < 2:
            continue
        silhouettes[k] = round(float(silhouette_score(xa, km.labels_)), 4)
        fits[k] = km.labels_
    if not fits:
        return {"k": 1, "note": "all annotators share one profile", "clusters": []}
    best = max(silhouettes, key=lambda k: (silhouettes[k], -k))
    labels = fits[best]
    attr_ari = {}
    by_annotator = {j.annotator_id: j.annotator_attributes for j in judgments}
    for attr in sorted({k for a in by_annotator.values() for k in a}):
        declared = [by_annotator[n].get(attr, "(missing)") for n in names]
        attr_ari[attr] = round(float(adjusted_rand_score(declared, labels)), 4)
    prompts = {j.item_id: j.prompt for j in judgments}
    texts = {r.response_id: r.text for j in judgments for r in j.responses}
    clusters = []
    for c in sorted(set(labels), key=lambda c: -int((labels == c).sum())):
        members = [n for n, lab in zip(names, labels) if lab == c]
        inside = xa[labels == c].mean(axis=0)
        outside = xa[labels != c].mean(axis=0)
        order = np.argsort(-np.abs(inside - outside))[:top_features]
        distinctive = []
        for f in order:
            item, dim, a, b = features[f]
            pref = a if inside[f] > 0 else b
            distinctive.append({"item_id": item, "dimension": dim, "prompt": prompts[item][:80],
                                "prefers": texts.get(pref, pref)[:80],
                                "cluster_lean": round(float(inside[f]), 3),
                                "others_lean": round(float(outside[f]), 3)})
        clusters.append({"cluster": len(clusters), "size": len(members), "annotators": members,
                         **_describe(members, judgments), "distinctive_choices": distinctive})
    return {"k": best, "silhouette_by_k": silhouettes, "features": len(features),
            "adjusted_rand_vs_declared": attr_ari, "clusters": clusters}
