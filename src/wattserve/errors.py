"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""


class WattserveError(Exception):
    """An error caused by input or environment that the user can fix; the message says how."""

    exit_code = 2


class ConfigError(WattserveError):
    """Bad options, a malformed file, impossible settings."""


class EngineUnavailable(WattserveError):  # noqa: N818 - public name, raised and caught project-wide
    """A model, server or library that cannot be reached or loaded."""

    exit_code = 3
