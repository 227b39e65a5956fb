"""Redaction by key name, by the environment's secret values and by shape; other strings are left alone."""

from __future__ import annotations

import logging

import pytest

from framework.redact import (
    REDACTED,
    credentials_in,
    is_secret_env_name,
    key_env_permitted,
    redact,
    scrub,
    secret_values,
)

KEY = "sk-live-4c1d9e8f7a6b5c4d3e2f"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"Incorrect API key provided: {KEY}", "Incorrect API key provided: "),
        (f"Authorization: Bearer {KEY[3:]}", "Authorization: Bearer "),
        ("aws AKIAABCDEFGHIJKLMNOP here", "aws  here"),
        ("token ghp_" + "a" * 36, "token "),
        ("hf_" + "b" * 34 + " is mine", " is mine"),
        ("https://bob:hunter2hunter2@example.com/v1", "https://bob:@example.com/v1"),
        ("https://h/v1?api_key=abc123&model=x", "https://h/v1?api_key=&model=x"),
        ("https://h/blob?sig=ZXhhbXBsZQ%3D%3D", "https://h/blob?sig="),
    ],
)
def test_secret_shapes_are_redacted(text: str, kept: str) -> None:
    cleaned = scrub(text, [])
    assert REDACTED in cleaned and cleaned.replace(REDACTED, "") == kept


@pytest.mark.parametrize(
    "text",
    [
        "sk-proj- is how project keys start",  # a key's prefix alone is no key
        "skim the sk-learn docs",
        "max_tokens: 256",
        "http://127.0.0.1:8000/v1?model=small",
        "who calls parse_config in src/",
        "user@example.com wrote to me",
    ],
)
def test_other_strings_are_left_alone(text: str) -> None:
    assert scrub(text, [KEY]) == text


def test_an_env_secret_and_its_echoed_prefix_are_redacted_but_not_the_prefix_in_other_text() -> None:
    assert KEY not in scrub(f"key {KEY} failed", [KEY])
    assert scrub(f"you sent {KEY[:10]}****************", [KEY]) == f"you sent {REDACTED}"
    unrelated = f"{KEY[:10]}, the start of every live key"  # its first 10 characters, no mask after them
    assert scrub(unrelated, [KEY]) == unrelated


def test_redact_by_key_name_and_value() -> None:
    config = {
        "api_key": "anything",
        "access_token": "t",
        "max_tokens": 256,
        "api_key_env": "OPENAI_API_KEY",
        "notes": [f"key {KEY}", "plain"],
    }
    assert redact(config, []) == {
        "api_key": REDACTED,
        "access_token": REDACTED,
        "max_tokens": 256,
        "api_key_env": "OPENAI_API_KEY",
        "notes": [f"key {REDACTED}", "plain"],
    }


def test_secret_names_replace_strings_only() -> None:
    """An intent or rule whose name looks secret keeps its spec or its counts (manifests stay readable)."""
    recipe = {"intents": {"reset_password": {"templates": ["reset my password"]}}, "rejections": {"credentials": 3}}
    assert redact(recipe, []) == recipe
    manifest = {"password": "hunter2hunter2", "notes": f"saw {KEY}"}
    assert redact(manifest, [], by_name=False) == {"password": "hunter2hunter2", "notes": f"saw {REDACTED}"}


def test_secret_env_names_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_secret_env_name("AWS_SECRET_ACCESS_KEY") and is_secret_env_name("GH_TOKEN")
    assert not is_secret_env_name("PATH") and not is_secret_env_name("KEYBOARD_LAYOUT")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-0123456789")
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to redact without blanking ordinary words
    values = secret_values()
    assert "tok-0123456789" in values and "abc" not in values


def test_redaction_stays_linear_on_long_strings() -> None:
    """These patterns run on everything written: a megabyte of near-misses takes well under a second (a
    quadratic pattern took 2.7 s on 40 kB and would take half an hour on this)."""
    import time

    for text in ("a." * 500_000, "x://" * 250_000, "http://" + "a" * 1_000_000, KEY[:8] * 125_000):
        started = time.monotonic()
        scrub(text, [KEY])
        credentials_in(text)
        assert time.monotonic() - started < 5.0, text[:20]


def test_credentials_in_uris() -> None:
    assert credentials_in("https://u:p4ss@host/v1") == "a password in its user:password@ part"
    assert credentials_in("https://host/v1?token=abc") and credentials_in("s3://b/k?X-Amz-Signature=ab")
    assert credentials_in("https://u@host/v1") is None and credentials_in("http://127.0.0.1:8000/v1") is None
    assert credentials_in("open the reset page ?code=1234 please") is None  # no URI: template text, not a secret


def test_key_env_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTENTCRAFT_KEY_ENV_ALLOW", raising=False)
    assert key_env_permitted("OPENAI_API_KEY") and not key_env_permitted("AWS_SECRET_ACCESS_KEY")
    assert not key_env_permitted("HF_TOKEN")
    monkeypatch.setenv("INTENTCRAFT_KEY_ENV_ALLOW", "HF_TOKEN, MYCO_*")
    assert key_env_permitted("HF_TOKEN") and key_env_permitted("MYCO_LLM") and not key_env_permitted("GITHUB_TOKEN")


def test_log_records_are_scrubbed_whatever_the_handler() -> None:
    from framework.cli.launch import scrub_log_records

    saved = logging.getLogRecordFactory()
    try:
        scrub_log_records(["canary-log-value-1234"])
        scrub_log_records(["other"])  # installed once
        make = logging.getLogRecordFactory()
        record = make("x", logging.INFO, __file__, 1, "sent %s to %s", ("canary-log-value-1234", "host"), None)
        assert record.getMessage() == f"sent {REDACTED} to host"
        plain = make("x", logging.INFO, __file__, 1, "%d rows", (3,), None)
        assert plain.getMessage() == "3 rows" and plain.args == (3,)
    finally:
        logging.setLogRecordFactory(saved)
