"""Annotation app: collect per-dimension human judgments on LLM outputs, with who-said-what.

Modules: `spec` (project YAML), `models`/`db` (ORM + versioned migrations), `store` (projects,
annotators, item import, export), `assignment` (who sees which item next), `judging` (validate
and record one submission), `agreement` (Krippendorff's alpha), `app` (FastAPI web app),
`demo` (synthetic project + loopback server for tests and the load benchmark).

Quick start (SQLite file ./annotation.db; --db takes a path or a PostgreSQL URL):

    prefdisco annotate create --spec configs/annotation/example_project.yaml   # prints admin link
    prefdisco annotate import configs/annotation/example_items.jsonl -p example
    prefdisco annotate add-annotators -p example -n 5                          # prints their links
    prefdisco annotate serve -p example --port 8765
    prefdisco annotate status -p example
    prefdisco annotate export -p example --out judgments.jsonl                 # or .parquet
"""
