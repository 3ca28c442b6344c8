"""Equal-budget Optuna tuning of a campaign's finalists and baselines (``prefdisco tune``).

``tuner`` runs the studies, ``scaled_suite`` is the job each trial runs in the sandbox, ``results``
stores tuned scores and the claim against tuned DPO.
"""
