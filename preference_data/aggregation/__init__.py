"""Aggregate many annotators' judgments into weighted, auditable TRL-format preference pairs.

Public API::

    from preference_data.aggregation import (AggregationConfig, aggregate, write_pairs, read_pairs,
                                             METHODS, WEIGHTINGS)
    from preference_data.annotation.sources import load_judgments  # export file or DB + project
    judgments = load_judgments("judgments.jsonl")
    result = aggregate(judgments, AggregationConfig(method="dawid-skene", by_dimension=True))
    write_pairs(result.pairs, "pairs.jsonl"); result.report  # agreement, clusters, weights...
"""

from preference_data.aggregation.judgments import (Comparison, Judgment, JudgmentError, Response,
                                                   comparisons, parse_judgment, parse_judgments)
from preference_data.aggregation.methods import METHODS
from preference_data.aggregation.pipeline import (AggregationConfig, AggregationResult, aggregate,
                                                  read_pairs, write_pairs)
from preference_data.aggregation.weights import WEIGHTINGS, compute_weights

__all__ = ["AggregationConfig", "AggregationResult", "Comparison", "Judgment", "JudgmentError", "METHODS",
           "Response", "WEIGHTINGS", "aggregate", "comparisons", "compute_weights", "parse_judgment", "parse_judgments",
           "read_pairs", "write_pairs"]
