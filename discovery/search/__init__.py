"""The search loop: a campaign proposes candidates, runs each through the cascade of stages, records them."""
