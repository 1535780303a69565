"""One place for configuration: paths, defaults and tunable rates.

Everything else imports :func:`get_settings` rather than reading environment
variables or hard-coding paths, so a center swaps its own data in by editing
one TOML file or setting ``YUJING_*`` variables.
"""

from conf.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
