"""Jinja2 templates only (LLM prompts, the HTML report, export modules); no logic lives here."""
