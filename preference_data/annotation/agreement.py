"""Per-dimension agreement for the admin page and `annotate status`, from export rows.

A thin adapter: the alpha itself (units, level of measurement per scale) is computed by
`preference_data.aggregation.agreement.alpha_entry`, the same code `prefdisco aggregate` reports,
so both show the same number on the same data.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from preference_data.aggregation.agreement import alpha_entry
from preference_data.aggregation.judgments import parse_judgment


def agreement_by_dimension(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{dimension: {"alpha": float|None, "level": str, "units": n, "annotators": n, "note": str}}."""
    by_dim: dict[str, list] = defaultdict(list)
    for r in rows:
        by_dim[r["dimension"]].append(parse_judgment(r))
    return {dim: alpha_entry(js) for dim, js in by_dim.items()}
