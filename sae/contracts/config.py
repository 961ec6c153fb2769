"""Contract settings (environment variables ``SAE_CONTRACTS_*``), following the environment
as it is at each call (tests change it while a server runs)."""

from __future__ import annotations

import functools
import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ContractsSettings(BaseSettings):
    """Whether every transfer must come under a contract."""

    model_config = SettingsConfigDict(env_prefix="SAE_CONTRACTS_", extra="ignore")

    required: bool = Field(
        default=False,
        description="SAE_CONTRACTS_REQUIRED=1: every SIP must name an active contract of its "
        "producer. Off by default (the embedded case): a commune starting with no contract "
        "deposits; a producer that has a contract must still name one.",
    )


def contracts_settings() -> ContractsSettings:
    """The current contract settings: parsed again only when their variables changed (building
    the settings cost 0.3 ms of every deposit; looking at the environment costs microseconds)."""
    return _parsed(
        tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(_PREFIX)))
    )


_PREFIX = "SAE_CONTRACTS_"


@functools.lru_cache(maxsize=8)
def _parsed(variables: tuple[tuple[str, str], ...]) -> ContractsSettings:
    return ContractsSettings()
