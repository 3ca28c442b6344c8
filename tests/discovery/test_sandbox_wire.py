"""The parent's side of the boundary: replies are decoded and schema-checked, never trusted; the
allow-list tables and the runtime namespace agree."""

from __future__ import annotations

import json
import types

import pytest

from discovery.sandbox import SandboxLimits, SandboxPool, namespace, wire
from discovery.sandbox.results import SchemaError, job_result, probe_result

GOOD_PROBE = {"ok": True, "failure_class": None, "message": "accepted", "fingerprint": "a" * 64,
              "fingerprint_vector": [0.5, -1.0, 2], "shape": {"z": [0.0], "loss": [0.69],
                                                               "dloss_dz": [None], "beta": 0.1}}


@pytest.mark.parametrize("data", [
    b"[" * 50_000 + b"]" * 50_000,                       # nesting (RecursionError in json)
    b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}",           # deeper than MAX_DEPTH, still valid JSON
    b'{"fitness": ' + b"9" * 400 + b"}",                 # a 400-digit integer
    b'{"fitness": NaN}', b'{"fitness": Infinity}', b'{"fitness": 1e999}', b'{"fitness": 1e16}',
    b"[1, 2]", b'"text"', b"\xff\xfe", b"{", b"",
])
def test_decode_turns_anything_odd_into_wire_error(data):
    with pytest.raises(wire.WireError):
        wire.decode(data)


def test_sanitize_makes_any_value_decodable():
    value = {"nan": float("nan"), "inf": -float("inf"), "big": 10 ** 40, "huge": 1e300, "t": (1, 2.5),
             "obj": object(), "nested": [[[[1]]]], "ok": 0.25}
    decoded = wire.decode(wire.encode(wire.sanitize(value)))
    assert decoded["nan"] is None and decoded["inf"] is None and decoded["big"] is None
    assert decoded["huge"] is None and decoded["t"] == [1, 2.5] and decoded["ok"] == 0.25
    assert isinstance(decoded["obj"], str)


def test_probe_schema():
    assert probe_result(GOOD_PROBE, 0.1).ok
    for bad in ({"fingerprint": "0" * 63}, {"fingerprint": 7}, {"fingerprint_vector": ["x"]},
                {"fingerprint_vector": [1.0] * 5000}, {"shape": {"z": "no"}}, {"shape": {"evil": []}},
                {"ok": "yes"}):
        with pytest.raises(SchemaError):
            probe_result({**GOOD_PROBE, **bad}, 0.1)
    failed = probe_result({"ok": False, "failure_class": "made-up", "message": "x" * 5000}, 0.1)
    assert failed.failure_class == "crash" and len(failed.message) <= 600


def test_job_schema():
    assert job_result({"ok": True, "value": {"fitness": 0.1}}, 0.1).value == {"fitness": 0.1}
    with pytest.raises(SchemaError):
        job_result({"ok": True, "value": [1]}, 0.1)


@pytest.fixture
def parent() -> SandboxPool:
    """Only the reply-handling part of a pool (no zygote is started)."""
    pool = SandboxPool.__new__(SandboxPool)
    pool.limits = SandboxLimits()
    pool.fork_to_ready_s = []
    return pool


@pytest.mark.parametrize("reply", [
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps({**GOOD_PROBE, "fingerprint_vector": [0.0]}).replace("0.0]", "9" * 400 + "]").encode(),
    json.dumps({**GOOD_PROBE, "fingerprint": "forged"}).encode(),
    b"\x00\x00\x00\x10garbage",
])
def test_a_forged_probe_reply_is_a_classified_failure(parent, reply):
    result = parent._build_result("probe", {"t_start": 0.0}, reply, 0.1, 10.0)
    assert not result.ok and result.failure_class == "unsafe"


def test_how_a_child_ended_is_classified(parent):
    build = lambda status: parent._build_result("job", status, b"", 0.1, 5.0)  # noqa: E731
    assert build({"timed_out": True}).failure_class == "timeout"
    assert build({"quota_exceeded": True}).failure_class == "unsafe"
    assert build({"reply_truncated": True}).failure_class == "unsafe"
    assert build({"signal": 24}).failure_class == "timeout"       # SIGXCPU
    assert build({"signal": 9}).failure_class == "memory"         # the OOM killer
    assert build({"signal": 11}).failure_class == "crash"
    assert build({"exit_code": 70, "native_tail": "std::bad_alloc"}).failure_class == "memory"


# ---- the allow-list: tables and runtime objects agree -------------------------------------------

def test_every_allowed_name_exists_and_nothing_else_is_exposed():
    facades = namespace.build_facades()
    for name, members in namespace.FACADE_MEMBERS.items():
        assert set(dir(facades[name])) == set(members), name


def test_no_allowed_attribute_leads_to_a_module_or_frame():
    import torch

    facades = namespace.build_facades()
    x = torch.randn(2, 3, requires_grad=True)
    reachable = [getattr(facades[k], m) for k in facades for m in dir(facades[k])]
    reachable += [x, torch.sort(x), x.max(0), torch.finfo(torch.float32), x.dtype, x.device, x.shape]
    bad = (types.ModuleType, types.FrameType, types.CodeType, types.TracebackType)
    for obj in reachable:
        for attr in namespace.ALL_ATTRIBUTES:
            try:
                value = getattr(obj, attr)
            except Exception:  # noqa: BLE001 - absent or raising: unreachable
                continue
            assert not isinstance(value, bad), (obj, attr)


def test_the_runtime_namespace_refuses_modules_and_patching():
    g = namespace.candidate_globals()
    importer = g["__builtins__"]["__import__"]
    for name in ("os", "sys", "builtins", "importlib", "torch.functional", "warnings"):
        with pytest.raises(namespace.SandboxImportError):
            importer(name)
    assert importer("torch.nn.functional", fromlist=("logsigmoid",)) is g["F"]
    with pytest.raises(namespace.NotInSandbox):
        g["torch"].sigmoid = None
    with pytest.raises(AttributeError):
        g["torch"].os
    assert "open" not in g["__builtins__"] and "getattr" not in g["__builtins__"]
    assert not any(isinstance(v, types.ModuleType) for v in g["__builtins__"].values())
