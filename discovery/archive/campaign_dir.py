"""One campaign directory: its resolved config, its database and its event log, opened in one place.

    runs/quickstart/
      config.resolved.yaml   every knob of the run, defaults spelled out (what --resume reads)
      campaign.db            the archive (SQLite; or `database.url` points elsewhere, e.g. PostgreSQL)
      log.jsonl              one event per line
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from discovery.archive.database import ProgramDatabase
from discovery.archive.log import CampaignLog, read_log
from discovery.config import CampaignConfig, config_from_dict, dump_config
from discovery.errors import UserError
from evaluators.paths import default_cache_dir

CONFIG_FILE = "config.resolved.yaml"
DB_FILE = "campaign.db"
LOG_FILE = "log.jsonl"


class CampaignDir:
    """The files of one campaign. ``CampaignDir.create`` starts one, ``CampaignDir.open`` reads one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._config: CampaignConfig | None = None

    @classmethod
    def create(cls, path: str | Path, config: CampaignConfig) -> "CampaignDir":
        d = cls(path)
        if d.db_path.exists() or d.config_path.exists():
            raise UserError(f"{d.path} already holds a campaign; use `prefdisco run --resume {d.path}` or another --out")
        d.path.mkdir(parents=True, exist_ok=True)
        d.config_path.write_text(dump_config(config))
        d._config = config
        return d

    @classmethod
    def open(cls, path: str | Path) -> "CampaignDir":
        d = cls(path)
        if not d.config_path.is_file():
            raise UserError(f"{d.path} is not a campaign directory (no {CONFIG_FILE}); "
                            "pass the DIR of a `prefdisco run`, or start one with `prefdisco run CONFIG`")
        return d

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def db_path(self) -> Path:
        return self.path / DB_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    def config(self) -> CampaignConfig:
        """The resolved config, typed (read once)."""
        if self._config is None:
            import yaml

            self._config = config_from_dict(yaml.safe_load(self.config_path.read_text()))
        return self._config

    def database_url(self) -> str:
        return self.config().database.url or f"sqlite:///{self.db_path}"

    def database(self) -> ProgramDatabase:
        return ProgramDatabase(self.database_url())

    def log(self) -> CampaignLog:
        return CampaignLog(self.log_path)

    def events(self) -> list[dict[str, Any]]:
        return read_log(self.log_path)

    def cache_dir(self) -> str:
        """The reference-model cache of this campaign (config's cascade.cache_dir, else the default),
        resolved by the driver because sandbox workers get a stripped environment."""
        return self.config().cascade.cache_dir or str(default_cache_dir())
