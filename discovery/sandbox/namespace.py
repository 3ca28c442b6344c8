"""The allow-list: the only names candidate loss code can see, as data and as runtime objects.

Candidate code runs with globals holding ``torch``, ``F`` and ``math`` *facades* (read-only
objects exposing only the tensor operations a loss needs), a small set of builtins and an
``__import__`` that hands out the same facades. No module object is ever reachable, so there
is no attribute chain to walk (``torch.os``, ``F.warnings``, ``torch.functional.operator``...).

``validation.py`` checks source against the same tables, so the static check and the runtime
namespace agree: what passes validation finds every name it uses at run time, and nothing else
is there to find. Tensor methods cannot be wrapped cheaply, so attribute names on other values
(tensors, Python numbers, lists) are checked statically against ``VALUE_ATTRIBUTES``.
"""

from __future__ import annotations

import builtins
from types import MappingProxyType
from typing import Any

# ---- the tables (plain names: validation reads them without importing torch) ----------------

# Element-wise and reduction maths, shape plumbing and constructors of new tensors. Nothing that
# touches files, processes, global state (seeds, default dtype, grad mode switches), storages,
# hooks, autograd internals, JIT/compile, or uninitialised memory.
TORCH_FUNCTIONS: frozenset[str] = frozenset("""
abs absolute acos acosh add addcdiv addcmul all allclose amax amin aminmax angle any arange
arccos arccosh arcsin arcsinh arctan arctan2 arctanh argmax argmin argsort as_tensor asin asinh
atan atan2 atanh bernoulli broadcast_tensors broadcast_to bucketize cartesian_prod cat cdist ceil
chunk clamp clamp_max clamp_min clip clone column_stack concat concatenate corrcoef cos cosh
count_nonzero cov cross cummax cummin cumprod cumsum deg2rad detach diag diag_embed diagonal diff
digamma dist div divide dot dstack einsum eq equal erf erfc erfinv exp exp2 expm1 eye flatten flip
fliplr flipud float_power floor floor_divide fmax fmin fmod frac full full_like gather gcd ge
greater greater_equal gt heaviside hstack hypot i0 igamma igammac index_select inner is_floating_point
is_nonzero is_tensor isclose isfinite isin isinf isnan isneginf isposinf isreal kron kthvalue lcm
ldexp le lerp less less_equal lgamma linspace log log10 log1p log2 log_softmax logaddexp logaddexp2
logcumsumexp logdet logical_and logical_not logical_or logical_xor logit logspace logsumexp lt
masked_fill masked_select matmul max maximum mean median meshgrid min minimum mm moveaxis movedim
msort mul multinomial multiply mv mvlgamma nan_to_num nanmean nanmedian nanquantile nansum narrow
ne neg negative nextafter no_grad enable_grad nonzero norm normal not_equal numel ones ones_like
outer permute polygamma positive pow prod quantile rad2deg rand rand_like randint randint_like
randn randn_like randperm ravel reciprocal relu remainder repeat_interleave reshape roll rot90
round rsqrt scatter scatter_add searchsorted select sgn sigmoid sign signbit sin sinc sinh
slogdet softmax sort split sqrt square squeeze stack std std_mean sub subtract sum swapaxes
swapdims t take take_along_dim tan tanh tensor tensor_split tile topk trace transpose trapezoid
tril triu true_divide trunc unbind unflatten unique unique_consecutive unsqueeze vander var var_mean
vstack where xlogy zeros zeros_like
""".split())

# Constants and type objects: dtypes for ``dtype=`` arguments, finfo for eps, Tensor for hints.
TORCH_CONSTANTS: frozenset[str] = frozenset("""
bfloat16 bool double e finfo float float16 float32 float64 half iinfo inf int int16 int32 int64
int8 long nan pi uint8 Size Tensor dtype device
""".split())

# torch.nn.functional: activations and classic losses (all pure functions of tensors).
F_FUNCTIONS: frozenset[str] = frozenset("""
binary_cross_entropy binary_cross_entropy_with_logits celu cosine_similarity cross_entropy elu
gaussian_nll_loss gelu glu hardshrink hardsigmoid hardswish hardtanh hinge_embedding_loss
huber_loss kl_div l1_loss leaky_relu log_softmax logsigmoid margin_ranking_loss mish mse_loss
nll_loss normalize one_hot pad pairwise_distance poisson_nll_loss relu relu6 rrelu selu sigmoid
silu smooth_l1_loss soft_margin_loss softmax softmin softplus softshrink softsign tanh tanhshrink
threshold
""".split())

# The math module is pure: every public function and constant of it.
MATH_NAMES: frozenset[str] = frozenset("""
acos acosh asin asinh atan atan2 atanh cbrt ceil comb copysign cos cosh degrees dist e erf erfc
exp exp2 expm1 fabs factorial floor fmod frexp fsum gamma gcd hypot inf isclose isfinite isinf
isnan isqrt lcm ldexp lgamma log log10 log1p log2 modf nan nextafter perm pi pow prod radians
remainder sin sinh sqrt tan tanh tau trunc ulp
""".split())

# What ``from typing import ...`` may bring in (LLMs annotate their losses).
TYPING_NAMES: frozenset[str] = frozenset(
    "Any Callable Dict Iterable List Optional Sequence Tuple Union".split())

# ``from __future__ import annotations`` and friends: compiler flags, harmless.
FUTURE_NAMES: frozenset[str] = frozenset("annotations division generator_stop".split())

# Methods and properties of tensors (and of the torch.return_types tuples sort/max/topk return),
# plus the handful of list/dict/str methods plain Python code uses.
TENSOR_ATTRIBUTES: frozenset[str] = frozenset("""
T abs absolute acos acosh add addcdiv addcmul all amax amin aminmax any argmax argmin argsort
asin asinh atan atan2 atanh bool ceil chunk clamp clamp_max clamp_min clip clone cos cosh
count_nonzero cpu cummax cummin cumprod cumsum detach device diag diagonal diff digamma
dim div divide dot double dtype eq equal erf erfc erfinv exp exp2 expand expand_as expm1 flatten
flip float floor floor_divide fmax fmin fmod frac gather ge grad greater gt half indices int
is_floating_point isclose isfinite isinf isnan isneginf isposinf item kthvalue le lerp lgamma log
log10 log1p log2 log_softmax logaddexp logcumsumexp logical_and logical_not logical_or logical_xor
logit logsumexp long lt masked_fill matmul max maximum mean median min minimum mm mul multiply
nan_to_num nanmean nanmedian nansum narrow ndim ne neg negative new_full new_ones new_tensor
new_zeros norm numel permute pow prod quantile reciprocal relu remainder repeat repeat_interleave
requires_grad reshape reshape_as roll round rsqrt shape sigmoid sign sin sinh size softmax sort
split sqrt square squeeze std sub subtract sum t tan tanh tile to tolist topk transpose tril triu
true_divide trunc type_as unbind unique unsqueeze values var view view_as where xlogy
append copy count endswith extend get index insert items join keys lower pop replace startswith
strip update upper real imag eps tiny resolution
""".split())

# In-place variants (the probe rejects a loss that mutates its inputs; on its own intermediates
# they are ordinary arithmetic).
TENSOR_ATTRIBUTES |= frozenset("""
abs_ absolute_ acos_ acosh_ add_ addcdiv_ addcmul_ asin_ asinh_ atan2_ atan_ atanh_ ceil_ clamp_
clamp_max_ clamp_min_ clip_ copy_ cos_ cosh_ cumprod_ cumsum_ detach_ digamma_ div_ divide_ eq_
erf_ erfc_ erfinv_ exp2_ exp_ expm1_ fill_ floor_ floor_divide_ fmod_ frac_ ge_ greater_ gt_ le_
lerp_ lgamma_ log10_ log1p_ log2_ log_ logical_and_ logical_not_ logical_or_ logical_xor_ logit_
lt_ masked_fill_ mul_ multiply_ nan_to_num_ ne_ neg_ negative_ pow_ reciprocal_ relu_ remainder_
requires_grad_ round_ rsqrt_ sigmoid_ sign_ sin_ sinh_ sqrt_ square_ squeeze_ sub_ subtract_ t_
tan_ tanh_ transpose_ tril_ triu_ true_divide_ trunc_ unsqueeze_ xlogy_ zero_
""".split())

# Builtins a loss may call; everything else (open, getattr, type, object, eval...) is absent.
SAFE_BUILTINS: frozenset[str] = frozenset("""
abs all any bool dict divmod enumerate filter float format frozenset int isinstance iter len list
map max min next pow print range repr reversed round set slice sorted str sum tuple zip
ArithmeticError AssertionError Exception IndexError KeyError NotImplementedError OverflowError
RuntimeError StopIteration SystemExit TypeError ValueError ZeroDivisionError
""".split())

# Importable module paths and the facade each binds to.
IMPORTABLE: dict[str, str] = {
    "torch": "torch", "torch.nn": "torch", "torch.nn.functional": "torch", "math": "math",
    "typing": "typing", "__future__": "__future__",
}
# ``import X as alias``: the facade the alias names.
ALIAS_FACADE: dict[str, str] = {
    "torch": "torch", "torch.nn": "torch.nn", "torch.nn.functional": "F", "math": "math",
    "typing": "typing",
}
# ``from X import name``: the facade whose members are importable from module X.
FROM_IMPORTABLE: dict[str, str] = {
    "torch": "torch", "torch.nn": "torch.nn", "torch.nn.functional": "F", "math": "math",
    "typing": "typing", "__future__": "__future__",
}

# Facade name -> members (the nested ones are facades themselves).
FACADE_MEMBERS: dict[str, frozenset[str]] = {
    "torch": TORCH_FUNCTIONS | TORCH_CONSTANTS | {"nn"},
    "torch.nn": frozenset({"functional"}),
    "F": F_FUNCTIONS,
    "math": MATH_NAMES,
    "typing": TYPING_NAMES,
    "__future__": FUTURE_NAMES,
}
# Every attribute name candidate code may write: facade members and value attributes.
VALUE_ATTRIBUTES: frozenset[str] = TENSOR_ATTRIBUTES
ALL_ATTRIBUTES: frozenset[str] = frozenset().union(*FACADE_MEMBERS.values(), VALUE_ATTRIBUTES)
# Globals every candidate starts with (the loss contract promises these three).
PRELOADED: dict[str, str] = {"torch": "torch", "F": "F", "math": "math"}


# ---- runtime objects (built inside the sandbox, where torch is imported) ----------------------

class NotInSandbox(AttributeError):
    """An attribute or import outside the allow-list (classified as 'unsafe')."""


class SandboxImportError(ImportError):
    """An import outside the allow-list (classified as 'unsafe')."""


class Facade:
    """A read-only bag of allowed functions and constants; never a module."""

    __slots__ = ("_facade_name", "_members")

    def __init__(self, name: str, members: dict[str, Any]) -> None:
        object.__setattr__(self, "_facade_name", name)
        object.__setattr__(self, "_members", MappingProxyType(dict(members)))

    def __getattr__(self, attr: str) -> Any:  # only reached for names not on the instance
        members = object.__getattribute__(self, "_members")
        if attr in members:
            return members[attr]
        name = object.__getattribute__(self, "_facade_name")
        raise NotInSandbox(f"{name}.{attr} is not available to loss code (only tensor operations "
                           "are: see discovery/sandbox/namespace.py)")

    def __setattr__(self, attr: str, value: Any) -> None:
        raise NotInSandbox(f"cannot assign {object.__getattribute__(self, '_facade_name')}.{attr}: "
                           "shared modules are read-only; use a local variable")

    def __delattr__(self, attr: str) -> None:
        raise NotInSandbox("shared modules are read-only")

    def __dir__(self) -> list[str]:
        return sorted(object.__getattribute__(self, "_members"))

    def __repr__(self) -> str:
        return f"<loss namespace {object.__getattribute__(self, '_facade_name')}>"


def _pick(module: Any, names: frozenset[str]) -> dict[str, Any]:
    return {n: getattr(module, n) for n in sorted(names) if hasattr(module, n)}


def build_facades() -> dict[str, Facade]:
    """The facades, built from the real modules (inside the sandbox only)."""
    import __future__
    import math
    import typing

    import torch
    import torch.nn.functional as F

    fn = Facade("F", _pick(F, F_FUNCTIONS))
    nn = Facade("torch.nn", {"functional": fn})
    torch_members = _pick(torch, TORCH_FUNCTIONS | TORCH_CONSTANTS)
    torch_members["nn"] = nn
    return {
        "torch": Facade("torch", torch_members),
        "torch.nn": nn,
        "F": fn,
        "math": Facade("math", _pick(math, MATH_NAMES)),
        "typing": Facade("typing", _pick(typing, TYPING_NAMES)),
        "__future__": Facade("__future__", _pick(__future__, FUTURE_NAMES)),
    }


def _importer(facades: dict[str, Facade]) -> Any:
    def restricted_import(name: str, globals: Any = None, locals: Any = None,  # noqa: A002
                          fromlist: Any = (), level: int = 0) -> Facade:
        if level or name not in IMPORTABLE:
            raise SandboxImportError(f"import of {name!r} is not allowed; loss code may import "
                                     "only torch, torch.nn.functional and math")
        if fromlist:
            return facades[FROM_IMPORTABLE[name]]
        return facades[IMPORTABLE[name]]

    return restricted_import


def candidate_globals(facades: dict[str, Facade] | None = None) -> dict[str, Any]:
    """Fresh globals for one candidate: facades, safe builtins, the restricted importer."""
    facades = facades or build_facades()
    safe = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    safe["__import__"] = _importer(facades)
    namespace: dict[str, Any] = {"__builtins__": safe, "__name__": "candidate"}
    namespace.update({alias: facades[target] for alias, target in PRELOADED.items()})
    return namespace


def load_candidate(code: str, facades: dict[str, Facade] | None = None) -> Any:
    """Execute candidate source in the curated namespace; return its single top-level function.

    Run only inside a sandbox child, after ``validate_source`` accepted ``code``.
    """
    import inspect

    namespace = candidate_globals(facades)
    exec(compile(code, "<candidate>", "exec"), namespace)  # noqa: S102 - sandbox child only
    functions = [v for k, v in namespace.items()
                 if inspect.isfunction(v) and v.__module__ == "candidate" and v.__name__ != "<lambda>"]
    if len(functions) != 1:
        raise ValueError(f"expected exactly one top-level function, found {len(functions)}")
    return functions[0]
