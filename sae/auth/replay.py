"""Replays of the auth events (see :mod:`sae.recovery.replay`)."""

from __future__ import annotations
