"""Typed campaign configuration: YAML in, dataclasses out, fully resolved YAML back.

Every knob lives here once, with its default and a one-line reason. `load_config` rejects unknown
keys (a typo must not silently fall back to a default) and `dump_config` writes the resolved copy
that a campaign directory keeps, so `prefdisco run --resume DIR` needs nothing but DIR.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from discovery.errors import UserError
from evaluators.typed_config import Config, build_dataclass, read_yaml_file


@dataclass
class ModelEndpoint(Config):
    """One OpenAI-compatible model; several make a weighted ensemble."""

    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None: the openai client's default (api.openai.com)
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (never the key)
    weight: float = 1.0  # ensemble sampling weight
    input_cost_per_mtok: float = 0.0  # USD per million prompt tokens, for cost accounting
    output_cost_per_mtok: float = 0.0  # USD per million completion tokens


@dataclass
class PromptConfig(Config):
    """What the LLM is told besides the archive: each switch exists so its effect can be measured."""

    show_beta: bool = False  # state the fitness suite's beta sweep and how the sweep is combined
    monotonicity_rule: bool = True  # say "lower loss must mean the policy prefers the chosen response"
    example_loss: bool = False  # show a DPO reply as a worked example in the system prompt (as DiscoPOP did)
    literature_cue: bool = False  # tell the model to draw on the classification / preference-loss literature


@dataclass
class LLMConfig(Config):
    """LLMProposer settings; used when `proposer.kind` is "llm"."""

    models: list[ModelEndpoint] = field(default_factory=lambda: [ModelEndpoint()])
    # islands: each prompt is a fresh chat showing parents drawn from one island (the default);
    # conversation: one growing chat per island, every candidate's fitness or error appended (DiscoPOP)
    mode: Literal["islands", "conversation"] = "islands"
    conversation_turns: int = 20  # conversation: keep the system prompt, the first turn and the last N exchanges
    concurrency: int = 1  # LLM requests in flight at once (slots of a generation are asked in parallel)
    json_mode: Literal["auto", "on", "off"] = "auto"  # response_format json_object; auto: drop it if refused
    prompt: PromptConfig = field(default_factory=PromptConfig)
    temperature: float = 0.8
    max_tokens: int = 2048
    samples: int = 1  # completions per prompt (each becomes a candidate)
    max_retries: int = 5  # on 429 / 5xx / timeouts
    backoff_initial_s: float = 1.0  # exponential backoff start (Retry-After wins when given)
    backoff_max_s: float = 60.0
    request_timeout_s: float = 120.0
    repair: bool = True  # islands mode: one repair prompt for candidates failing validation or the probe
    record: bool = False  # store every prompt, reply and usage in <campaign dir>/transcript.jsonl
    replay: str | None = None  # answer every prompt from this recorded campaign dir (or transcript file); no endpoint

    def check(self) -> None:
        if self.concurrency < 1 or self.samples < 1 or self.conversation_turns < 1:
            raise ValueError("concurrency, samples and conversation_turns must be >= 1")
        if self.mode == "conversation" and self.samples != 1:
            raise ValueError("mode 'conversation' takes one reply per turn: set samples: 1")
        if self.record and self.replay:
            raise ValueError("record and replay exclude each other (a replay asks no endpoint)")


@dataclass
class MutationConfig(Config):
    """MutationProposer settings (offline, no LLM)."""

    crossover_rate: float = 0.3  # probability of gate-mixing two parents instead of mutating one
    max_edits: int = 2  # mutations applied per child (1..max_edits)
    constant_sigma: float = 0.4  # log-normal sigma for constant perturbation
    max_nodes: int = 400  # children with larger ASTs are discarded (bloat control)
    grammar_rate: float = 0.0  # probability of a typed structural move (proposers/grammar.py) instead of an edit


@dataclass
class ProposerConfig(Config):
    kind: Literal["mutation", "llm"] = "mutation"  # offline mutation (default), or an LLM over the openai client
    inspirations: int = 2  # extra archive programs shown besides the parent(s)
    llm: LLMConfig = field(default_factory=LLMConfig)
    mutation: MutationConfig = field(default_factory=MutationConfig)


@dataclass
class DatabaseConfig(Config):
    # None: sqlite:///<campaign dir>/campaign.db. A PostgreSQL URL (postgresql+psycopg://user@host:5432/db,
    # `pip install prefdisco[postgres]`) lets several drivers, `prefdisco tune` and dashboards share one archive.
    url: str | None = None
    islands: int = 2
    migration_interval: int = 4  # generations between ring migrations of each island's best
    selection_lambda: float = 1.0  # sharpness of sigmoid((score - median) / MAD) in parent choice
    fingerprint_dedupe: bool = True  # behaviour-identical candidates are recorded as duplicates
    # islands: parents drawn by fitness within an island (the default); map_elites: one elite per cell of
    # two probe descriptors (discovery/archive/map_elites.py), parents drawn from occupied cells
    kind: Literal["islands", "map_elites"] = "islands"
    # map_elites: bin edges of the descriptors; pull = signed dL/dz at z=+2 over max |dL/dz| (< 0: still pulls
    # a won pair apart, > 0: pushes it back), push = |dL/dz| at z=-4 over max |dL/dz| (how hard a lost pair pulls)
    pull_edges: list[float] = field(default_factory=lambda: [-0.5, -0.2, -0.05, -0.005, 0.005, 0.05, 0.2])
    push_edges: list[float] = field(default_factory=lambda: [0.05, 0.25, 0.5, 0.75, 0.95])

    def check(self) -> None:
        for edges in (self.pull_edges, self.push_edges):
            if list(edges) != sorted(set(edges)):
                raise ValueError("database.pull_edges / push_edges must be strictly increasing")


@dataclass
class CascadeConfig(Config):
    """Stages and their gates; thresholds are relative to DPO's score on the same suite."""

    screen_suite: str | None = "screen"  # None: no screen (keep one only where it predicts the fitness)
    fitness_suite: str = "fitness"
    heldout_suite: str = "heldout"
    screen_seeds: int | None = None  # None: the suite's own seed count
    fitness_seeds: int | None = None
    heldout_seeds: int | None = None
    screen_margin: float = 0.05  # pass the screen if its score >= dpo - margin * |dpo| (a fraction)
    heldout_top_k: int = 3  # finalists evaluated on the held-out suite at the end
    job_timeout_s: float = 600.0  # wall limit for one suite evaluation in the sandbox (one run with split_runs)
    split_runs: bool = False  # one sandbox job per training run, saved in <campaign>/run_checkpoints when done:
    # a killed campaign redoes only unfinished runs, and one candidate's runs spread over all workers/GPUs
    cache_dir: str | None = None  # reference-model cache (None: PREFDISCO_CACHE or ~/.cache)


@dataclass
class FitConfig(Config):
    """Per-candidate fitting of literal constants and a beta multiplier before the screen (search/fitting.py)."""

    trials: int = 0  # 0: off; else inner-search trials per proposal (trial 0: as proposed), one suite evaluation each
    suite: str | None = None  # None: the screen suite (the fitness suite where there is no screen)
    seeds: int | None = None  # None: the suite's own seed count
    max_constants: int = 4  # float literals fitted (the first ones in source order)
    beta_range: float = 3.0  # beta multiplier searched log-uniformly in [1/R, R]
    constant_range: float = 3.0  # a literal c searched in [c/R, c*R] (log)

    def check(self) -> None:
        if self.trials < 0 or self.max_constants < 0 or self.beta_range < 1 or self.constant_range < 1:
            raise ValueError("fit.trials and fit.max_constants must be >= 0, fit.beta_range and constant_range >= 1")


@dataclass
class BudgetConfig(Config):
    max_candidates: int = 40  # proposals (baselines excluded)
    max_evaluations: int | None = None  # suite evaluations of proposals (screen + fitness + fit trials), checked per generation
    max_wall_time_s: float | None = None
    max_tokens: int | None = None  # LLM prompt + completion tokens
    max_cost_usd: float | None = None


@dataclass
class CampaignConfig(Config):
    """A discovery campaign: what to search from, how to propose, how to evaluate, when to stop."""

    name: str = "campaign"
    seed: int = 0
    baselines: list[str] = field(default_factory=lambda: ["dpo", "ipo", "hinge", "lrml"])
    generation_size: int = 4  # proposals per generation
    pipeline_lag: int = 1  # generation g sees the archive up to g-1-lag: evaluate while proposing
    workers: int = 2  # sandboxed evaluation workers (local processes, or Ray actors)
    executor: Literal["local", "ray"] = "local"  # where evaluations run: this machine's sandbox pool, or Ray
    ray_address: str | None = None  # executor ray: None starts a local cluster; "auto" / "ray://host:10001" joins one
    num_gpus_per_worker: float = 0.0  # ray: each actor's num_gpus; local: > 0 means one worker per visible GPU
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    fit: FitConfig = field(default_factory=FitConfig)

    def check(self) -> None:
        if self.generation_size < 1 or self.workers < 1:
            raise ValueError("generation_size and workers must be >= 1")
        if "dpo" not in [b.lower() for b in self.baselines]:
            raise ValueError("baselines must include 'dpo' (every stage's gate is relative to DPO)")
        llm = self.proposer.llm
        if self.proposer.kind == "llm" and llm.mode == "conversation" and self.generation_size > self.database.islands:
            raise ValueError(f"proposer.llm.mode 'conversation' keeps one chat per island and asks each once per "
                             f"generation: set database.islands >= generation_size (now {self.database.islands} < "
                             f"{self.generation_size})")
        if (llm.record or llm.replay) and self.proposer.kind != "llm":
            raise ValueError("proposer.llm.record / replay need proposer.kind: llm")


def _build(cls: type, data: Any, where: str) -> Any:
    return build_dataclass(cls, data, where, UserError)


def config_from_dict(data: dict[str, Any] | None) -> CampaignConfig:
    return _build(CampaignConfig, data or {}, "")


def load_config(path: str | Path) -> CampaignConfig:
    data = read_yaml_file(path, what="config file", example="configs/quickstart.yaml", error=UserError)
    return resolve_paths(config_from_dict(data), Path(path).parent)  # suite files relative to the YAML


def config_to_dict(cfg: CampaignConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: CampaignConfig) -> str:
    """The fully resolved config as YAML (every default spelled out)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def resolve_paths(cfg: CampaignConfig, base: Path) -> CampaignConfig:
    """Make suite files and the cache dir absolute (sandbox workers run in a private temp cwd)."""
    c = cfg.cascade
    for owner, attr in ((c, "screen_suite"), (c, "fitness_suite"), (c, "heldout_suite"), (cfg.fit, "suite")):
        value = getattr(owner, attr)
        if value is None:
            continue
        if value.endswith((".yaml", ".yml")) or "/" in value:
            path = Path(value).expanduser()
            path = path if path.is_absolute() else (base / path)
            if not path.is_file():
                where = "fit" if owner is cfg.fit else "cascade"
                raise UserError(f"{where}.{attr}: suite file {path} not found")
            setattr(owner, attr, str(path.resolve()))
    if c.cache_dir:
        c.cache_dir = str((base / Path(c.cache_dir).expanduser()).resolve())
    return cfg
