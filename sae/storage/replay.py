"""Replays of the storage events (see :mod:`sae.recovery.replay`)."""

from __future__ import annotations
