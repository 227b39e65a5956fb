"""The bundle on disk: schemas of its JSON files, checksums, and verification.

A bundle is a directory written by the bundle stage and read by :class:`~framework.runtime.Router`:
``model.onnx``, ``tokenizer.json``, ``labels.json``, ``calibration.json``, ``bundle.json``, ``README.md``
(plus ``ood.npz`` when ``calibration.json`` names a Mahalanobis out-of-distribution score) and
``checksums.json``, which lists the SHA-256 of every other file. :func:`verify_bundle` refuses a
bundle whose files were changed, added or removed after it was built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from framework.errors import IntentcraftError
from framework.io import atomic_write_json, sha256_file

CHECKSUMS = "checksums.json"
REQUIRED_FILES = ("model.onnx", "tokenizer.json", "labels.json", "calibration.json", "bundle.json", "README.md")
MODEL_INPUTS = ("input_ids", "attention_mask")
OPTIONAL_INPUTS = ("token_type_ids",)
REBUILD = "rebuild it with `intentcraft run` or restore the original files"
TAMPERED = "the bundle was modified or corrupted after it was built"

Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
M = TypeVar("M", bound=BaseModel)


class BundleError(IntentcraftError):
    """A bundle is missing, malformed or tampered with; the message names the bundle, the file and the fix."""

    exit_code = 2

    def __init__(self, bundle: Path | str, file: str | None, problem: str, fix: str = REBUILD) -> None:
        self.bundle = str(bundle)
        self.file = file
        super().__init__(f"Bundle {bundle}: {problem}; {fix}.")


class _StrictFile(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class LabelsFile(_StrictFile):
    """``labels.json``: label *i* names logit column *i*."""

    labels: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)

    @field_validator("labels")
    @classmethod
    def _unique(cls, labels: list[str]) -> list[str]:
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"labels must be unique; repeated: {', '.join(repeated)}")
        return labels


class OodCalibration(_StrictFile):
    """``calibration.json``'s ``ood``: the out-of-distribution score and its threshold (see ``runtime.ood``).

    The router abstains when the score exceeds ``threshold``, which kept ``in_scope_recall`` of the in-scope
    eval rows. ``file`` names the Mahalanobis arrays (``ood.npz``); the logit scores need none.
    """

    method: Literal["mahalanobis", "energy", "max_softmax"]
    threshold: Annotated[float, Field(allow_inf_nan=False)]
    in_scope_recall: Probability
    file: Literal["ood.npz"] | None = None

    @model_validator(mode="after")
    def _file_for_mahalanobis(self) -> OodCalibration:
        if (self.method == "mahalanobis") != (self.file is not None):
            raise ValueError("file must be 'ood.npz' for method mahalanobis, and absent for the logit scores")
        return self


class CalibrationFile(_StrictFile):
    """``calibration.json``: temperature scaling, the abstention thresholds and, since format 2, the optional
    out-of-distribution score (absent in older bundles: they route on confidence alone)."""

    temperature: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    thresholds: dict[str, Probability]
    global_threshold: Probability
    fallback_intent: str | None
    ood: OodCalibration | None = None


class BundleManifest(BaseModel):
    """``bundle.json``: format version, provenance and tokenizer settings (extra keys such as metrics kept)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    format_version: Literal[1, 2]  # 2: the model's embedding output and calibration.json's ood section
    recipe: str
    max_length: Annotated[int, Field(gt=0, le=65536)]
    created_by: str
    inputs: list[str]

    @field_validator("inputs")
    @classmethod
    def _known_inputs(cls, inputs: list[str]) -> list[str]:
        missing = [name for name in MODEL_INPUTS if name not in inputs]
        unknown = [name for name in inputs if name not in (*MODEL_INPUTS, *OPTIONAL_INPUTS)]
        if missing or unknown:
            raise ValueError(f"inputs must be {list(MODEL_INPUTS)} (missing {missing}, unknown {unknown})")
        return inputs


class ChecksumsFile(_StrictFile):
    """``checksums.json``: the SHA-256 of every other file, by relative POSIX path."""

    algorithm: Literal["sha256"]
    files: dict[str, Sha256Hex]


@dataclass(frozen=True)
class BundleInfo:
    """A bundle whose JSON files parsed and agree with each other (and, when verified, its checksums)."""

    path: Path
    labels: tuple[str, ...]
    calibration: CalibrationFile
    manifest: BundleManifest
    files: dict[str, str] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        """Path of ``model.onnx``."""
        return self.path / "model.onnx"

    @property
    def tokenizer_path(self) -> Path:
        """Path of ``tokenizer.json``."""
        return self.path / "tokenizer.json"


def bundle_files(bundle_dir: Path) -> list[str]:
    """Every file under the bundle (recursively, relative POSIX paths) except ``checksums.json``."""
    root = Path(bundle_dir)
    names = (path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    return sorted(name for name in names if name != CHECKSUMS)


def write_checksums(bundle_dir: Path) -> dict[str, Any]:
    """Hash every other file of the bundle and write ``checksums.json`` atomically.

    Args:
        bundle_dir: the bundle directory, complete except for its checksums.

    Returns:
        The document written: ``{"algorithm": "sha256", "files": {path: hex}}``.
    """
    root = Path(bundle_dir)
    document = {"algorithm": "sha256", "files": {name: sha256_file(root / name) for name in bundle_files(root)}}
    atomic_write_json(root / CHECKSUMS, document)
    return document


def verify_bundle(bundle_dir: Path | str) -> BundleInfo:
    """Check every file against ``checksums.json``, then the JSON files' schemas and their agreement.

    Raises:
        BundleError: a missing directory or file, a changed, unlisted or missing file, bad JSON or schema,
            or labels that disagree with the calibration.
    """
    root = Path(bundle_dir)
    listed = verify_checksums(root, REQUIRED_FILES)
    info = read_bundle(root)
    return BundleInfo(info.path, info.labels, info.calibration, info.manifest, dict(listed))


def verify_checksums(bundle_dir: Path | str, required: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Check that ``required`` files exist and that every file matches ``checksums.json`` (none added, none missing);
    returns the listing. Shared by every kind of bundle.

    Raises:
        BundleError: a missing directory or file, or a changed, unlisted or missing file.
    """
    root = Path(bundle_dir)
    _require_dir(root)
    listed = _read_checksums(root)
    _check_listing(root, listed, tuple(required))
    for name, expected in listed.items():
        actual = sha256_file(root / name)
        if actual != expected:
            problem = f"{name} does not match {CHECKSUMS} (expected {expected[:12]}…, got {actual[:12]}…): {TAMPERED}"
            raise BundleError(root, name, problem)
    return listed


def read_bundle(bundle_dir: Path | str) -> BundleInfo:
    """Parse and cross-check the bundle's JSON files without checking checksums."""
    root = Path(bundle_dir)
    _require_dir(root)
    for name in REQUIRED_FILES:
        if not (root / name).is_file():
            raise BundleError(root, name, f"{name} is missing")
    labels = _parse(root, "labels.json", LabelsFile).labels
    calibration = _parse(root, "calibration.json", CalibrationFile)
    manifest = _parse(root, "bundle.json", BundleManifest)
    _check_agreement(root, labels, calibration)
    if calibration.ood is not None and calibration.ood.file and not (root / calibration.ood.file).is_file():
        name = calibration.ood.file
        raise BundleError(root, name, f"{name} is missing, though calibration.json's ood section names it")
    return BundleInfo(root, tuple(labels), calibration, manifest)


def _require_dir(root: Path) -> None:
    if not root.exists():
        raise BundleError(root, None, "no such directory", "check the path: a bundle is the directory a run writes")
    if not root.is_dir():
        raise BundleError(root, None, "not a directory", "pass the bundle directory, not a file inside it")


def _read_checksums(root: Path) -> dict[str, str]:
    if not (root / CHECKSUMS).is_file():
        raise BundleError(root, CHECKSUMS, f"{CHECKSUMS} is missing, so the bundle cannot be verified")
    listed = _parse(root, CHECKSUMS, ChecksumsFile).files
    for name in listed:
        path = PurePosixPath(name)
        if name != path.as_posix() or path.is_absolute() or ".." in path.parts or name in ("", ".", CHECKSUMS):
            problem = f"{CHECKSUMS} lists {name!r}, which is not a relative path to a file inside the bundle"
            raise BundleError(root, CHECKSUMS, problem)
    return listed


def _check_listing(root: Path, listed: dict[str, str], needed: tuple[str, ...]) -> None:
    present = bundle_files(root)
    required = [name for name in needed if name not in present]
    if required:
        raise BundleError(root, required[0], f"{', '.join(required)} missing: {TAMPERED}")
    missing = sorted(set(listed) - set(present))
    if missing:
        problem = f"{', '.join(missing)} listed in {CHECKSUMS} but missing: {TAMPERED}"
        raise BundleError(root, missing[0], problem)
    unlisted = sorted(set(present) - set(listed))
    if unlisted:
        problem = f"{', '.join(unlisted)} present but not listed in {CHECKSUMS}: a file was added after the build"
        raise BundleError(root, unlisted[0], problem, f"remove it or {REBUILD}")


def _parse(root: Path, name: str, model: type[M]) -> M:
    try:
        data = json.loads((root / name).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BundleError(root, name, f"{name} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BundleError(root, name, f"{name} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BundleError(root, name, f"{name} does not match its schema: {_schema_problems(exc)}") from None


def _schema_problems(exc: ValidationError) -> str:
    """Pydantic errors as ``key: message (got value)`` joined into one sentence."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "<document>"
        got = repr(error.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        problems.append(f"{where}: {error['msg']}" + ("" if error["type"] == "missing" else f" (got {got})"))
    return "; ".join(problems)


def _check_agreement(root: Path, labels: list[str], calibration: CalibrationFile) -> None:
    unknown = sorted(set(calibration.thresholds) - set(labels))
    if unknown:
        problem = (
            f"calibration.json sets thresholds for {', '.join(unknown)}, which labels.json does not list "
            f"(labels: {', '.join(labels)}): the two files come from different builds"
        )
        raise BundleError(root, "calibration.json", problem)
    fallback = calibration.fallback_intent
    if fallback is not None and fallback not in labels:
        problem = f"calibration.json names fallback_intent {fallback!r}, which labels.json does not list"
        raise BundleError(root, "calibration.json", problem)
