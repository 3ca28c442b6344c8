"""Discovered losses promoted from campaigns by `prefdisco promote DIR ID` (one module each)."""
