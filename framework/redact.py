"""Keep secrets out of everything intentcraft writes, and decide which variables a recipe may read.

Secrets are redacted three ways: by key name (``api_key``, ``access_token``, ...), by value (the values of
the environment variables that hold secrets, and prefixes of them that a provider echoes before a mask), and
by shape (well-known key formats, passwords in ``user:pass@`` URIs, ``key=``/``token=``/``sig=`` query
parameters). Other strings are left alone.
"""

from __future__ import annotations

import fnmatch
import os
import re
from typing import Any

REDACTED = "***redacted***"

# A config key whose value is a secret: the name ends in one of these words (``access_token``, ``api_key``),
# so ``max_tokens`` or ``api_key_env`` (a variable's name, not its value) are not secrets.
SECRET_KEY = re.compile(
    r"(?:^|[_.-])(?:api[_-]?key|apikey|token|access[_-]?key|secret|password|passwd|authorization|credentials?)$",
    re.IGNORECASE,
)
# An environment variable that holds a secret: one of its ``_``-separated words says so.
_SECRET_ENV_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "CREDENTIAL", "CREDENTIALS"}
_MIN_SECRET_LENGTH = 8

SECRET_SHAPES = re.compile(
    r"""
      \bsk-[A-Za-z0-9_-]{16,}                                     # OpenAI / Anthropic style keys
    | \bA(?:KIA|SIA)[0-9A-Z]{16}\b                                # AWS access key ids
    | \bgh[pousr]_[A-Za-z0-9]{30,}                                # GitHub tokens
    | \bgithub_pat_[A-Za-z0-9_]{30,}
    | \bxox[abposr]-[A-Za-z0-9-]{10,}                             # Slack tokens
    | \bAIza[0-9A-Za-z_-]{35}                                     # Google API keys
    | \bhf_[A-Za-z0-9]{30,}                                       # Hugging Face tokens
    | \beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}  # JSON web tokens
    | (?<=Bearer\ )[A-Za-z0-9._~+/=-]{12,}                        # bearer credentials
    """,
    re.VERBOSE,
)
# Bounded quantifiers throughout: these run on every string written, so none may take quadratic time.
_URL = re.compile(r"\b[a-z][a-z0-9+.-]{0,31}://[^\s'\"<>]{1,8192}", re.IGNORECASE)
_SECRET_PARAM = re.compile(
    r"(?P<head>(?:^|[&;])(?:api[_-]?key|apikey|key|token|access[_-]?token|auth|sig|signature|secret|password|pwd"
    r"|x-amz-signature|x-amz-credential|x-goog-signature|code)=)(?P<secret>[^&;#]+)",
    re.IGNORECASE,
)
_MASK = r"(?:[*•·…]{2,}|\.{3,}|x{4,})"  # how providers mask the rest of an echoed key

KEY_ENV_ALLOW_VARIABLE = "INTENTCRAFT_KEY_ENV_ALLOW"
API_BASE_ALLOW_VARIABLE = "INTENTCRAFT_API_BASE_ALLOW"
_LOOPBACK = ("localhost", "127.*", "::1")
DEFAULT_KEY_ENV_ALLOW = ("*_API_KEY",)


def is_secret_env_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret (``OPENAI_API_KEY``, ``GH_TOKEN``)."""
    return bool(_SECRET_ENV_WORDS & set(name.upper().split("_")))


def secret_values(extra_names: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Values of environment variables that hold secrets (secret-looking names, plus ``extra_names``)."""
    names = [name for name in os.environ if is_secret_env_name(name)] + list(extra_names)
    values = {os.environ.get(name, "") for name in names}
    return sorted((value for value in values if len(value) >= _MIN_SECRET_LENGTH), key=len, reverse=True)


def _echoed_prefix(secret: str) -> re.Pattern[str]:
    """A pattern for the first 8+ characters of ``secret`` followed by a mask (``sk-abcd1234****``)."""
    return re.compile(re.escape(secret[:_MIN_SECRET_LENGTH]) + r"[^\s*•·….]{0,64}" + _MASK)


def _url_parts(url: str) -> tuple[str, str, str, str]:
    """``(scheme://, userinfo@ or '', the rest up to ?, query with its fragment)``, split without regexes."""
    head, _, rest = url.partition("://")
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, rest = rest[:authority_end], rest[authority_end:]
    userinfo, at, host = authority.rpartition("@")
    path, mark, query = rest.partition("?")
    return f"{head}://{userinfo}{at}", host + path, mark + query, userinfo


def _redact_url(match: re.Match[str]) -> str:
    prefix, middle, query, userinfo = _url_parts(match[0])
    if ":" in userinfo:
        prefix = prefix[: prefix.index("://") + 3] + userinfo.split(":", 1)[0] + ":" + REDACTED + "@"
    if query:
        query = "?" + _SECRET_PARAM.sub(lambda m: m["head"] + REDACTED, query[1:])
    return prefix + middle + query


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with secrets replaced: the given values (default: the environment's), echoed prefixes, shapes."""
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
        if len(secret) >= 2 * _MIN_SECRET_LENGTH:  # providers echo key prefixes before a mask
            text = _echoed_prefix(secret).sub(REDACTED, text)
    text = SECRET_SHAPES.sub(REDACTED, text)
    return _URL.sub(_redact_url, text) if "://" in text else text


def redact(value: Any, secrets: list[str] | None = None, by_name: bool = True) -> Any:
    """A copy of ``value`` with every string scrubbed and, with ``by_name``, the string values of secret-named
    keys (``api_key``) replaced. Only strings are replaced by name: an intent called ``reset_password`` or a
    rule called ``credentials`` keeps its mapping or its counts."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, dict):
        return {
            k: REDACTED
            if by_name and isinstance(v, str) and v and SECRET_KEY.search(str(k))
            else redact(v, secrets, by_name)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, secrets, by_name) for item in value]
    if isinstance(value, str):
        return scrub(value, secrets)
    return value


def credentials_in(text: str) -> str | None:
    """What kind of credential a URI in ``text`` carries (``a password in user:pass@``), or ``None``."""
    for match in _URL.finditer(text) if "://" in text else ():
        _, _, query, userinfo = _url_parts(match[0])
        if ":" in userinfo:
            return "a password in its user:password@ part"
        param = _SECRET_PARAM.search(query[1:])
        if param:
            return f"a credential in its query string ({param['head'].lstrip('&;')}...)"
    return None


def _patterns_from_env(variable: str) -> tuple[str, ...]:
    """The comma-separated patterns the user put in ``$variable`` (none when it is unset)."""
    return tuple(item.strip() for item in os.environ.get(variable, "").split(",") if item.strip())


def key_env_allowed() -> tuple[str, ...]:
    """Patterns of the variables ``api_key_env`` may name: the defaults plus ``$INTENTCRAFT_KEY_ENV_ALLOW``."""
    return DEFAULT_KEY_ENV_ALLOW + _patterns_from_env(KEY_ENV_ALLOW_VARIABLE)


def key_env_permitted(name: str) -> bool:
    """Whether a recipe may read the variable ``name`` as an API key (``fnmatch`` against the allow patterns)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in key_env_allowed())


def api_base_permitted(url: str) -> bool:
    """Whether a recipe may send requests (and so an API key) to ``url``: a loopback host, or one matching the
    user's ``$INTENTCRAFT_API_BASE_ALLOW`` (comma-separated host patterns)."""
    from urllib.parse import urlsplit

    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    patterns = _LOOPBACK + tuple(pattern.lower() for pattern in _patterns_from_env(API_BASE_ALLOW_VARIABLE))
    return bool(host) and any(fnmatch.fnmatchcase(host, pattern) for pattern in patterns)
