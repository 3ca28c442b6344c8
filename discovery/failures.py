"""Why a candidate was rejected: one vocabulary for the sandbox, the archive and the prompts.

It sits below both ``sandbox`` and ``archive`` (siblings that may not import each other), so the
class the sandbox reports is the class the archive stores. Values are the strings the database
keeps and the LLM is shown.
"""

from __future__ import annotations

from enum import StrEnum


class FailureClass(StrEnum):
    EXTRACTION = "extraction"  # the proposer's reply held no usable code (before the sandbox)
    SYNTAX = "syntax"
    CONTRACT = "contract"
    UNSAFE = "unsafe"
    NON_FINITE = "non_finite"
    WRONG_SHAPE = "wrong_shape"
    NO_GRADIENT = "no_gradient"
    MUTATES_INPUT = "mutates_input"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CRASH = "crash"
    # Not the candidate's doing: the sandbox could not start or confine a worker, a trusted job
    # failed to import or read what it needs, a worker died between jobs. A campaign stops on it.
    INFRASTRUCTURE = "infrastructure"
