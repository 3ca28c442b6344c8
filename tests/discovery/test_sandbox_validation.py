"""Static validation: the AST filter accepts every baseline and rejects the hostile corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from candidate_losses import list_losses
from discovery.sandbox import ValidationError, validate_source
from discovery.sandbox.limits import SandboxLimits, worker_environment
from discovery.sandbox.validation import first_error

HOSTILE = sorted((Path(__file__).parent / "hostile").glob("*.py"))
HEAD = ("def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,"
        " reference_rejected_logps, beta{extra}):\n")


def expected(path: Path, which: str) -> str:
    return re.search(rf"^# {which}: (\w+)", path.read_text(), re.M).group(1)


def verdict(code: str) -> str:
    error = first_error(validate_source(code))
    return error.kind if error else "ok"


def candidate(body: str, extra: str = "", prefix: str = "") -> str:
    return prefix + HEAD.format(extra=extra) + "".join(f"    {line}\n" for line in body.splitlines())


@pytest.mark.parametrize("spec", list_losses(), ids=lambda s: s.name)
def test_every_registered_loss_passes_validation(spec):
    assert validate_source(spec.source) == []


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.stem)
def test_hostile_corpus_static_classification(path):
    assert verdict(path.read_text()) == expected(path, "static")


def test_errors_are_structured_with_line_numbers():
    errors = validate_source(candidate("x = eval('1')\nreturn policy_chosen_logps * x"))
    assert errors and all(isinstance(e, ValidationError) for e in errors)
    assert errors[0].kind == "unsafe" and errors[0].line == 2 and "eval" in errors[0].message


@pytest.mark.parametrize("code, kind", [
    (candidate("return policy_chosen_logps", extra=", tau"), "contract"),
    (candidate("return policy_chosen_logps", extra=", *, tau"), "contract"),
    (candidate("return policy_chosen_logps", extra=", *args"), "contract"),
    (candidate("return policy_chosen_logps", extra=", tau=0.1, *, gamma=2.0"), "ok"),
    (candidate("return policy_chosen_logps", extra=", **hyper"), "ok"),
    ("def loss(a, b, c, d, beta):\n    return a\n", "contract"),
    ("x = 1\n", "contract"),
    (candidate("return policy_chosen_logps") + "print('import-time side effect')\n", "contract"),
    (candidate("return F.logsigmoid(policy_chosen_logps)",
               prefix="import torch.nn.functional as F\nimport math\n"), "ok"),
    (candidate("return functional.logsigmoid(policy_chosen_logps)",
               prefix="from torch.nn import functional\n"), "ok"),
    (candidate("return policy_chosen_logps", prefix="from torch import load\n"), "unsafe"),
    (candidate("return policy_chosen_logps", prefix="import torch.utils\n"), "unsafe"),
    (candidate("return policy_chosen_logps", prefix="from . import x\n"), "unsafe"),
    (candidate("torch.save(policy_chosen_logps, 'x.pt')\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("t = torch.from_file('/etc/passwd')\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("torch.hub.load('x', 'y')\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("torch.ops.load_library('x.so')\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("s = torch.UntypedStorage.from_file('x', True, 10)\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("x = torch._C\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("x = policy_chosen_logps.__class__\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("torch.set_default_dtype(torch.float64)\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("F.logsigmoid = None\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("x = vars()\nreturn policy_chosen_logps"), "unsafe"),
    (candidate("breakpoint()\nreturn policy_chosen_logps"), "unsafe"),
    ("@torch.no_grad()\n" + candidate("return policy_chosen_logps"), "unsafe"),
    ("def loss(:\n", "syntax"),
    ("", "contract"),
    ("x" * 30_000, "contract"),
])
def test_rules(code, kind):
    assert verdict(code) == kind


def test_worker_environment_is_an_allowlist(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-secret")
    monkeypatch.setenv("SOME_RANDOM_SETTING", "x")
    env = worker_environment(SandboxLimits(extra_env={"PREFDISCO_CACHE": "/c"}), "/home/w")
    assert "OPENAI_API_KEY" not in env and "SOME_RANDOM_SETTING" not in env
    assert env["HOME"] == "/home/w" and env["PREFDISCO_CACHE"] == "/c"
    with pytest.raises(ValueError):
        worker_environment(SandboxLimits(extra_env={"HF_TOKEN": "x"}), "/home/w")
