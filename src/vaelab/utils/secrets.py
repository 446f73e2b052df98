"""Keep credentials out of what a run writes and uploads."""

import re
from typing import Any

_SECRET = re.compile(r"(api_?key|token|secret|password|passwd)", re.IGNORECASE)


def redact(config: Any) -> Any:
    """A copy of a plain config with the values of secret-looking keys replaced by '***'."""
    if isinstance(config, dict):
        return {
            k: "***" if _SECRET.search(str(k)) and v is not None else redact(v)
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [redact(v) for v in config]
    if isinstance(config, str) and "=" in config:  # overrides, or Hydra's comma-joined list
        return ",".join(redact_argument(part) for part in config.split(","))
    return config


def redact_argument(argument: str) -> str:
    """A command-line override `key=value` with the value masked when the key looks secret."""
    key, sep, _ = argument.partition("=")
    return f"{key}=***" if sep and _SECRET.search(key) else argument
