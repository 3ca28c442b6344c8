"""Annotation app: collect per-dimension human judgments on LLM outputs, with who-said-what.

Modules: `spec` (project YAML), `models`/`db` (ORM + versioned migrations), `store` (projects,
annotators, item import, export), `assignment` (who sees which item next), `judging` (validate
and record one submission), `agreement` (Krippendorff's alpha), `app` (FastAPI web app).
"""
