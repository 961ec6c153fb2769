"""Contract settings (environment variables ``SAE_CONTRACTS_*``), read at each call so that
tests and operators can change them through the environment."""

from __future__ import annotations

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
    """The current contract settings."""
    return ContractsSettings()
