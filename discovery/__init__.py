"""The outer loop: proposers, prompt rendering, program database, sandbox, campaign runner, CLI."""
