"""Errors of the energy package; both are ``WattserveError`` so the CLI prints one line."""

from __future__ import annotations

from wattserve.errors import ConfigError, WattserveError


class MeterError(WattserveError):
    """A meter that cannot be used here; the message says why and how to fix it."""

    exit_code = 3


class WindowError(ConfigError, ValueError):
    """A window that the recorded series cannot answer (outside it, or reversed)."""
