"""The outer loop: an LLM (or the offline mutation proposer) writes loss code; it is checked, run in a
sandbox, scored, archived and shown back.

Sub-packages, top to bottom (an import contract keeps them in this order, see pyproject.toml):
``commands`` (the CLI), ``review`` (report, plots, export), ``tuning`` (``prefdisco tune``),
``search`` (campaign runner and cascade), ``proposers`` and ``executors``, ``archive`` (the typed
candidate records and their database) and ``sandbox``; ``config``, ``crashpoints`` and ``errors``
are shared by all of them.
"""
