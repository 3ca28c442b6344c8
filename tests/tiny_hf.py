"""Tiny Hugging Face models built offline for tests: a word-level tokenizer trained with `tokenizers`
and random-init GPT-2 language / reward models saved with `save_pretrained` to a directory.
"""

from __future__ import annotations

import json
from pathlib import Path

REVIEW_WORDS = (
    "review : the film was is it and very good great fun lovely bad awful dull boring".split()
)
POSITIVE = frozenset({"good", "great", "fun", "lovely"})
NEGATIVE = frozenset({"bad", "awful", "dull", "boring"})


def build_tokenizer(words: tuple[str, ...] | list[str] = REVIEW_WORDS):
    """A whitespace word-level tokenizer over `words` plus <unk>, <pad>, <eos>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=max(30000, len(set(words)) + 3), special_tokens=["<unk>", "<pad>", "<eos>"])
    tokenizer.train_from_iterator([" ".join(words)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def _config(tokenizer, **overrides):
    from transformers import GPT2Config

    settings = dict(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                    bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id)
    settings.update(overrides)
    return GPT2Config(**settings)


def _readable(directory: Path) -> Path:
    """safetensors writes 0600 files; as root the sandbox runs as another uid, which must read them
    (what `chmod -R o+rX` does for a real model directory)."""
    for path in Path(directory).iterdir():
        path.chmod(0o644)
    return Path(directory)


def build_tiny_gpt2(directory: Path, seed: int = 0, **config) -> Path:
    """Random-init 1-layer GPT-2 + tokenizer saved to `directory`; returns the directory."""
    import torch
    from transformers import GPT2LMHeadModel

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    GPT2LMHeadModel(_config(tokenizer, **config)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return _readable(directory)


def build_tiny_reward_model(directory: Path, seed: int = 1) -> Path:
    """Random-init GPT-2 sequence classifier (one logit) + tokenizer saved to `directory`."""
    import torch
    from transformers import GPT2ForSequenceClassification

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    GPT2ForSequenceClassification(_config(tokenizer, num_labels=1)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return _readable(directory)


def review_pairs(n: int) -> list[dict[str, str]]:
    """Preference pairs: positive continuations chosen over negative ones (standard TRL format)."""
    positive, negative = sorted(POSITIVE), sorted(NEGATIVE)
    subjects = [f"{who} {verb}{very}" for very in ("", " very") for who in ("the film", "it") for verb in ("was", "is")]
    return [
        {
            "prompt": f"review : {subjects[i % len(subjects)]}",
            "chosen": f" {positive[i % 4]} and {positive[(i + 1) % 4]}",
            "rejected": f" {negative[i % 4]} and {negative[(i + 2) % 4]}",
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sentiment(text: str) -> int:
    """Positive minus negative words: the rule the judge test double applies."""
    words = text.split()
    return sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)


def build_tiny_classifier(directory: Path, seed: int = 2) -> Path:
    """Random-init two-class GPT-2 sequence classifier (class 1 = "positive") + tokenizer, saved to
    `directory`: the stand-in for a sentiment classifier used as reward."""
    import torch
    from transformers import GPT2ForSequenceClassification

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    GPT2ForSequenceClassification(_config(tokenizer, num_labels=2)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return _readable(directory)


def review_texts(n: int, seed: int = 0) -> list[dict[str, str]]:
    """IMDb-like rows ({"text": ...}) over the tokenizer's words: the source prompts are cut from."""
    import random

    rng = random.Random(seed)
    words = [w for w in REVIEW_WORDS if w not in ("review", ":")]
    return [{"text": "review : " + " ".join(rng.choice(words) for _ in range(8))} for _ in range(n)]


def judged_responses(request: dict) -> tuple[str, str]:
    """(response A, response B) of a pairwise-judge request received by the OpenAI test double."""
    text = request["messages"][-1]["content"]
    a = text.split("[Response A]")[1].split("[Response B]")[0]
    b = text.split("[Response B]")[1].split("Which response")[0]
    return a.strip(), b.strip()


def sentiment_judge(request: dict) -> str:
    """A judge rule for the test double: the response with more positive-minus-negative words wins."""
    a, b = judged_responses(request)
    sa, sb = sentiment(a), sentiment(b)
    return "A" if sa > sb else "B" if sb > sa else "TIE"
