"""Retention settings (environment variables ``SAE_RETENTION_*``).

Kept beside the domain rather than in the global settings object because nothing outside
retention reads them; they are read once per call so tests can set them through the
environment.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The shortest appraisal duration of the shipped communal schedule is 4 months (voting proxies,
#: code électoral R76). Anything shorter in an imported referential is refused and raises an
#: alert: a referential rigged to zero years would otherwise make everything due at once.
DEFAULT_MIN_DURATIONS = {"AppraisalRule": "4 MONTH"}


class RetentionSettings(BaseSettings):
    """What the archives service configures for retention and disposal."""

    model_config = SettingsConfigDict(env_prefix="SAE_RETENTION_", extra="ignore")

    min_durations: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_MIN_DURATIONS),
        description='Per rule category, e.g. {"AppraisalRule": "1 YEAR"}.',
    )
    population: int = Field(
        default=45_000, description="Inhabitants of the commune (sampling rate of social files)."
    )
    archives_service: str = Field(
        default="SERVICE-ARCHIVES",
        description="Identifier of the archives service (ArchivalAgency, owner of the records "
        "the disposal circuit produces).",
    )
    archives_service_name: str = Field(default="Service des archives de la commune")
    control_authority: str = Field(
        default="AD93", description="The departmental archives that give the visa."
    )
    execution_lease_seconds: int = Field(
        default=600,
        description="An execution silent for this long may be taken over and resumed.",
    )


def retention_settings() -> RetentionSettings:
    """The current retention settings."""
    return RetentionSettings()
