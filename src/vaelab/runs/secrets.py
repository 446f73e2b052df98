"""Keep credentials out of what a run writes, uploads and prints.

A value is secret when its key's name says so (key, token, secret, password, passwd, credential,
auth; any case), outside Hydra's own settings. Such values are masked under their key, and, when
they are at least MIN_LENGTH characters long, wherever else they appear: in an override typed on
the command line, in Hydra's joined override strings, in a URL they were interpolated into.

The values met so far in this process are remembered (`remember`), so that text written far from
the config (a log line, W&B's copy of the command line, a sweep's summary) is masked too.
"""

import logging
import re
from typing import Any

MASK = "***"
MIN_LENGTH = 6
_SECRET = re.compile(r"key|token|secret|passw|credential|auth", re.IGNORECASE)
_known: set[str] = set()
# scheme://user:password@host: the password, whatever the key that holds the URL; also as
# Hydra's job lines escape it (postgres\://me\:password@host)
_URL_PASSWORD = re.compile(r"([a-zA-Z][\w+.-]*\\?://[^/\s:@'\"]+:)([^/\s@'\"]+)@")
# key=value inside a text: a key as Hydra's overrides write it, a value up to a space or quote
_KEY_VALUE = re.compile(r"(?<![\w.])([+~]{0,2}[A-Za-z_][\w./@-]*)=([^\s'\",\]]+)")


def is_secret_key(key: Any) -> bool:
    return bool(_SECRET.search(str(key).rsplit(".", 1)[-1].lstrip("+~")))


def _split_override(text: str) -> tuple[str, str] | None:
    """'model.api_key=v' -> ('model.api_key', 'v'); None when the text is not `key=value`."""
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[+~]{0,2}[\w./@-]+", key):
        return None
    return key, value


def secret_values(config: Any, by_key: bool = True) -> set[str]:
    """The values of secret keys in a plain config (Hydra's own settings aside), and those typed
    as `secret_key=value` anywhere in it."""
    found: set[str] = set()
    if isinstance(config, dict):
        for key, value in config.items():
            own = by_key and key != "hydra"
            if own and is_secret_key(key) and isinstance(value, (str, int, float)):
                found.add(str(value))
            found |= secret_values(value, own)
    elif isinstance(config, list):
        for value in config:
            found |= secret_values(value, by_key)
    elif isinstance(config, str):
        parsed = _split_override(config)
        if parsed and is_secret_key(parsed[0]):
            value = parsed[1].strip("'\"")
            # As typed, as Hydra reads it, and each value of a sweep over secrets (a,b)
            found |= {parsed[1], value, *value.split(",")}
        found |= {m[2] for m in _URL_PASSWORD.finditer(config)}
    return {v for v in found if len(v) >= MIN_LENGTH}


def remember(config: Any) -> None:
    """Add the secret values of this config to those masked in every text from now on."""
    _known.update(secret_values(config))


def mask_text(text: str, values: set[str] | frozenset[str] = frozenset()) -> str:
    """`text` with every known secret value replaced by '***' (the longest first), and, whatever
    their length, a URL's password (`https://user:***@host`) and the value of a secret key
    written as `key=value` (a sweep's job line, an override list)."""
    for value in sorted(_known | set(values), key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)
    return _KEY_VALUE.sub(
        lambda m: f"{m[1]}={MASK}" if is_secret_key(m[1]) and m[2] != MASK else m[0], text
    )


def redact(config: Any, values: set[str] | None = None, by_key: bool = True) -> Any:
    """A copy of a plain config with secret keys' values replaced by '***' and every secret
    value masked inside other strings. Hydra's own settings keep their values, but any secret
    text in them (the overrides as typed) is masked."""
    if values is None:
        values = secret_values(config)
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            own = by_key and key != "hydra"
            masked = own and is_secret_key(key) and value is not None
            out[key] = MASK if masked else redact(value, values, own)
        return out
    if isinstance(config, list):
        return [redact(v, values, by_key) for v in config]
    if isinstance(config, str):
        parsed = _split_override(config)
        if parsed and is_secret_key(parsed[0]):
            return f"{parsed[0]}={MASK}"
        return mask_text(config, values)
    return config


def redact_argument(argument: str) -> str:
    """A command-line argument with a secret key's value, and any known secret, masked."""
    parsed = _split_override(argument)
    if parsed and is_secret_key(parsed[0]):
        return f"{parsed[0]}={MASK}"
    return mask_text(argument)


def mask_logging() -> None:
    """Mask known secret values in every log record of this process (console and log files):
    at the record, because Hydra replaces the logging handlers between the jobs of a sweep."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "masks_secrets", False):
        return

    def masking_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    masking_factory.masks_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masking_factory)
