"""M independent GPT-2 models trained in one pass: every parameter carries a leading model axis.

The calibrated LM tier trains all (seed x beta) runs of a suite group at once. On a CPU the cost
of a tiny transformer is dominated by per-op overhead, not FLOPs, so M models stacked into
batched matmuls (``bmm``) cost little more than one. The model is GPT-2 exactly (learned position
embeddings, pre-LayerNorm blocks, tanh-GELU MLP, tied LM head, no dropout): ``from_hf`` loads
``GPT2LMHeadModel`` state dicts (the cached references of ``evaluators.reference``) and the logits
agree with ``transformers`` to float32 rounding (tested).

Shapes: token ids are [M, B, T]; ``response_logps`` returns [M, B]; model m only ever sees row m.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from evaluators.lm import EOS, PAD


@dataclass(frozen=True)
class GPTShape:
    vocab_size: int
    n_positions: int
    n_layer: int
    n_embd: int
    n_head: int

    def n_params(self) -> int:
        """Parameters of ONE model (tied LM head counted once), as ``GPT2LMHeadModel`` counts them."""
        d, L = self.n_embd, self.n_layer
        per_layer = 4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
        return self.vocab_size * d + self.n_positions * d + L * per_layer + 2 * d


def _param_shapes(s: GPTShape) -> dict[str, tuple[int, ...]]:
    """HF GPT-2 parameter names (per layer stacked on a layer axis) -> shape of one model's tensor."""
    d, L = s.n_embd, s.n_layer
    return {
        "wte": (s.vocab_size, d), "wpe": (s.n_positions, d),
        "ln_1.weight": (L, d), "ln_1.bias": (L, d),
        "attn.c_attn.weight": (L, d, 3 * d), "attn.c_attn.bias": (L, 3 * d),
        "attn.c_proj.weight": (L, d, d), "attn.c_proj.bias": (L, d),
        "ln_2.weight": (L, d), "ln_2.bias": (L, d),
        "mlp.c_fc.weight": (L, d, 4 * d), "mlp.c_fc.bias": (L, 4 * d),
        "mlp.c_proj.weight": (L, 4 * d, d), "mlp.c_proj.bias": (L, d),
        "ln_f.weight": (d,), "ln_f.bias": (d,),
    }


class BatchedGPT(torch.nn.Module):
    """``n_models`` GPT-2 models with stacked weights; ``forward(ids [M, B, T]) -> logits [M, B, T, V]``."""

    def __init__(self, shape: GPTShape, n_models: int) -> None:
        super().__init__()
        if shape.n_embd % shape.n_head:
            raise ValueError("n_embd must be divisible by n_head")
        self.shape = shape
        self.n_models = n_models
        self.params = torch.nn.ParameterDict({
            name.replace(".", "__"): torch.nn.Parameter(torch.zeros(n_models, *dims))
            for name, dims in _param_shapes(shape).items()
        })

    def p(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "__")]

    # ------------------------------------------------------------------ weights in and out -----
    @classmethod
    def from_hf(cls, state_dicts: list[dict[str, torch.Tensor]], shape: GPTShape) -> "BatchedGPT":
        """Stack ``GPT2LMHeadModel`` state dicts (one per model) into one batched model."""
        model = cls(shape, len(state_dicts))
        with torch.no_grad():
            for name in _param_shapes(shape):
                stacked = torch.stack([_hf_tensor(sd, name, shape.n_layer) for sd in state_dicts])
                model.p(name).copy_(stacked)
        return model

    def to_hf(self, m: int) -> dict[str, torch.Tensor]:
        """Model ``m`` as a ``GPT2LMHeadModel`` state dict (for saving or inspection)."""
        out: dict[str, torch.Tensor] = {}
        for name in _param_shapes(self.shape):
            value = self.p(name).detach()[m].clone()
            if name in ("wte", "wpe"):
                out[f"transformer.{name}.weight"] = value
            elif name.startswith("ln_f"):
                out[f"transformer.{name}"] = value
            else:
                for layer in range(self.shape.n_layer):
                    out[f"transformer.h.{layer}.{name}"] = value[layer].clone()
        out["lm_head.weight"] = out["transformer.wte.weight"]
        return out

    # ------------------------------------------------------------------------------ forward -----
    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm hidden states [M, B, T, d] of token ids [M, B, T]."""
        M, B, T = ids.shape
        s = self.shape
        d, H = s.n_embd, s.n_head
        offsets = (torch.arange(M, device=ids.device) * s.vocab_size)[:, None, None]
        x = F.embedding(ids + offsets, self.p("wte").reshape(M * s.vocab_size, d))
        x = x + self.p("wpe")[:, None, :T]
        for layer in range(s.n_layer):
            h = _layer_norm(x, self.p("ln_1.weight")[:, layer], self.p("ln_1.bias")[:, layer])
            qkv = _linear(h, self.p("attn.c_attn.weight")[:, layer], self.p("attn.c_attn.bias")[:, layer])
            q, k, v = (t.reshape(M * B, T, H, d // H).transpose(1, 2) for t in qkv.split(d, dim=-1))
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            att = att.transpose(1, 2).reshape(M, B, T, d)
            x = x + _linear(att, self.p("attn.c_proj.weight")[:, layer], self.p("attn.c_proj.bias")[:, layer])
            h = _layer_norm(x, self.p("ln_2.weight")[:, layer], self.p("ln_2.bias")[:, layer])
            h = F.gelu(_linear(h, self.p("mlp.c_fc.weight")[:, layer], self.p("mlp.c_fc.bias")[:, layer]),
                       approximate="tanh")
            x = x + _linear(h, self.p("mlp.c_proj.weight")[:, layer], self.p("mlp.c_proj.bias")[:, layer])
        return _layer_norm(x, self.p("ln_f.weight"), self.p("ln_f.bias"))

    def logits_of(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied LM head: [M, B, T, d] -> [M, B, T, V]."""
        M, B, T, d = hidden.shape
        out = torch.bmm(hidden.reshape(M, B * T, d), self.p("wte").transpose(1, 2))
        return out.reshape(M, B, T, -1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits_of(self.hidden(ids))


def _hf_tensor(sd: dict[str, torch.Tensor], name: str, n_layer: int) -> torch.Tensor:
    if name in ("wte", "wpe"):
        return sd[f"transformer.{name}.weight"].float()
    if name.startswith("ln_f"):
        return sd[f"transformer.{name}"].float()
    return torch.stack([sd[f"transformer.h.{i}.{name}"].float() for i in range(n_layer)])


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last axis with per-model affine parameters [M, d] (GPT-2's eps 1e-5)."""
    y = F.layer_norm(x, x.shape[-1:], eps=1e-5)
    shape = (weight.shape[0],) + (1,) * (x.dim() - 2) + (weight.shape[-1],)
    return y * weight.reshape(shape) + bias.reshape(shape)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-model affine map: x [M, ..., i] @ weight [M, i, o] + bias [M, o] (GPT-2's Conv1D layout)."""
    M = x.shape[0]
    flat = x.reshape(M, -1, x.shape[-1])
    out = torch.baddbmm(bias[:, None, :], flat, weight)
    return out.reshape(*x.shape[:-1], weight.shape[-1])


# ------------------------------------------------------------------ log-probs and sampling -----
def response_logps(model: BatchedGPT, prefix: torch.Tensor, response: torch.Tensor,
                   length: torch.Tensor, banned: int | None = None) -> torch.Tensor:
    """[M, B] summed log-probs of the response tokens (EOS included) given the prefix.

    Only the positions that predict response tokens go through the LM head. ``banned``: a token
    the model may not emit (its logit is -inf, the rest renormalised), as in ``sample``."""
    P = prefix.shape[-1]
    ids = torch.cat([prefix, response], dim=-1)
    hidden = model.hidden(ids[..., :-1])[:, :, P - 1:]
    logits = model.logits_of(hidden).float()
    if banned is not None:
        logits = logits.index_fill(-1, torch.tensor([banned], device=logits.device), float("-inf"))
    token_logp = torch.log_softmax(logits, dim=-1).gather(-1, response.unsqueeze(-1)).squeeze(-1)
    mask = torch.arange(response.shape[-1], device=ids.device) < length.unsqueeze(-1)
    return (token_logp * mask).sum(dim=-1)


@torch.no_grad()
def sample(model: BatchedGPT, prefix: torch.Tensor, width: int, generators: list[torch.Generator],
           banned: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral samples at temperature 1 from each model: (responses [M, N, width], lengths [M, N]).

    Tokens are drawn by inverse CDF from uniforms of ``generators[m]`` (CPU), one uniform per
    prompt and position. Runs that share a generator seed therefore share their sampling noise
    (common random numbers): two nearly equal policies draw nearly the same responses.
    ``banned=EOS`` generates exactly ``width`` tokens (like ``min_new_tokens = max_new_tokens``)."""
    M, N, _ = prefix.shape
    device = prefix.device
    uniforms = torch.stack([torch.rand(N, width, generator=g, dtype=torch.float64) for g in generators])
    ids = prefix
    length = torch.full((M, N), width, dtype=torch.long, device=device)
    done = torch.zeros(M, N, dtype=torch.bool, device=device)
    for t in range(width):
        logits = model.logits_of(model.hidden(ids)[:, :, -1:]).squeeze(2).double()
        if banned is not None:
            logits[..., banned] = float("-inf")
        cdf = torch.softmax(logits, dim=-1).cumsum(-1)
        u = uniforms[:, :, t].to(device) * cdf[..., -1]
        nxt = torch.searchsorted(cdf, u.unsqueeze(-1)).squeeze(-1).clamp(max=cdf.shape[-1] - 1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        newly = (~done) & (nxt == EOS)
        length = torch.where(newly, torch.full_like(length, t + 1), length)
        done = done | newly
        ids = torch.cat([ids, nxt.unsqueeze(-1)], dim=-1)
        if bool(done.all()):
            pad = torch.full((M, N, width - t - 1), PAD, dtype=ids.dtype, device=device)
            ids = torch.cat([ids, pad], dim=-1)
            break
    return ids[..., prefix.shape[-1]:], length
