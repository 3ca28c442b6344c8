"""Annotation app: collect per-dimension human judgments on LLM outputs, with who-said-what.

Modules: `spec` (project YAML), `models`/`db` (ORM + versioned migrations), `store` (projects,
annotators, item import, export formats), `assignment` (who sees which item next: overlap, quotas,
caps, gold/attention items, qualification), `judging` (validate and record one submission, with
the annotator's attributes frozen into it), `agreement` (the admin page's alpha, computed by
`preference_data.aggregation.agreement`), `render` (safe markdown), `app` (FastAPI web app),
`demo` (synthetic project + loopback server for tests and the load benchmark).

Quick start (SQLite file ./annotation.db; --db takes a path or a PostgreSQL URL):

    prefdisco annotate create --spec configs/annotation/example_project.yaml   # prints admin link
    prefdisco annotate import configs/annotation/example_items.jsonl -p example
    prefdisco annotate add-annotators -p example -n 5                          # prints their links
    prefdisco annotate serve --port 8765                   # every project in the DB; links use this port
    prefdisco annotate join-link -p example                                    # one study link for Prolific
    prefdisco annotate status -p example
    prefdisco annotate export -p example --out judgments.jsonl                 # .parquet, .csv, or a dir (HF dataset)
    prefdisco annotate train -p example --model DIR --out runs/train           # -> model + per-group report
"""
