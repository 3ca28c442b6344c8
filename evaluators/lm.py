"""The tiny causal LM used by the tinylm tier: a word vocabulary, a random-init GPT-2 built from
a config with ``transformers``, summed response log-probs, and ancestral sampling.

Sequences are ``<bos> prompt <sep> response <eos> <pad>...``. Every prompt of a task has the
same length, so a batch is a prefix tensor [B, P] plus a response tensor [B, L] and response
lengths (EOS included when one was produced); padding only ever follows the response, and a
causal model never attends forward, so no attention mask is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evaluators.typed_config import Config

SPECIALS = ("<pad>", "<bos>", "<sep>", "<eos>")
PAD, BOS, SEP, EOS = range(4)


@dataclass(frozen=True)
class ModelConfig(Config):
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4


class Vocab:
    def __init__(self, words: list[str]) -> None:
        self.tokens = list(SPECIALS) + list(words)
        self.index = {w: i for i, w in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def prefix(self, prompt: list[str]) -> list[int]:
        return [BOS] + [self.index[w] for w in prompt] + [SEP]

    def encode_response(self, response: list[str], width: int) -> tuple[list[int], int]:
        """Padded ids (EOS appended) and the number of scored tokens."""
        ids = [self.index[w] for w in response][: width - 1] + [EOS]
        return ids + [PAD] * (width - len(ids)), len(ids)

    def decode_response(self, ids: list[int], length: int) -> list[str]:
        return [self.tokens[i] for i in ids[:length] if i != EOS]


def build_model(vocab_size: int, n_positions: int, cfg: ModelConfig, seed: int) -> torch.nn.Module:
    """A random-init GPT-2 (no dropout: policy and reference must agree exactly at step 0)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return model


def response_logps(
    model: torch.nn.Module, prefix: torch.Tensor, response: torch.Tensor, length: torch.Tensor,
) -> torch.Tensor:
    """[B] summed log-probs of the response tokens (EOS included) given the prefix."""
    ids = torch.cat([prefix, response], dim=1)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    logits = logits[:, prefix.shape[1] - 1: -1].float()
    token_logp = torch.log_softmax(logits, dim=-1).gather(2, response.unsqueeze(2)).squeeze(2)
    mask = torch.arange(response.shape[1], device=ids.device)[None, :] < length[:, None]
    return (token_logp * mask).sum(dim=1)


@torch.no_grad()
def sample(
    model: torch.nn.Module, prefix: torch.Tensor, width: int, generator: torch.Generator,
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral samples at temperature 1: (responses [B, width], lengths [B])."""
    out_resp, out_len = [], []
    for start in range(0, prefix.shape[0], batch_size):
        ids = prefix[start:start + batch_size]
        n = ids.shape[0]
        length = torch.full((n,), width, dtype=torch.long, device=ids.device)
        done = torch.zeros(n, dtype=torch.bool, device=ids.device)
        for t in range(width):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1].float()
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(ids.device)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            newly = (~done) & (nxt == EOS)
            length = torch.where(newly, torch.full_like(length, t + 1), length)
            done = done | newly
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            if bool(done.all()):
                ids = torch.cat([ids, torch.full((n, width - t - 1), PAD, device=ids.device,
                                                 dtype=ids.dtype)], dim=1)
                break
        out_resp.append(ids[:, prefix.shape[1]:])
        out_len.append(length)
    return torch.cat(out_resp), torch.cat(out_len)
