"""Review: reading a finished (or running) campaign: HTML report, plots, export of winners."""
