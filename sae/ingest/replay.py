"""Replays of the ingest events (see :mod:`sae.recovery.replay`)."""

from __future__ import annotations
