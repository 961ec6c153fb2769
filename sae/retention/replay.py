"""Replays of the retention events (see :mod:`sae.recovery.replay`)."""

from __future__ import annotations
