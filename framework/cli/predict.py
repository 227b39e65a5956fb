"""The ``predict`` and ``verify`` verbs.

Importing this module is cheap (no onnxruntime): the runtime loads only when a verb runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from framework.errors import UserInputError
from framework.io import atomic_open, refuse_unsafe_target, special_kind
from framework.runtime.limits import MAX_THREADS, check_threads

if TYPE_CHECKING:
    from framework.runtime.router import RouteResult

OUT = Console()
ERR = Console(stderr=True)

PREDICT_EPILOG = """examples:
  intentcraft predict outputs/bundle "who calls authenticate_user"
  intentcraft predict outputs/bundle < queries.txt                # one JSON object per line
  intentcraft predict outputs/bundle --input queries.txt --output routes.jsonl
On a tool-router bundle (tool_router.json) it prints the validated call as JSON.
The bundle's checksums are always verified first. exit codes: 0 ok, 1 a tool router's single query failed
every attempt (the JSON says why), 2 bad input or bundle"""
STDOUT = "-"


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1, with a clear message for anything else."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_predict_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``intentcraft predict BUNDLE [TEXT]``."""
    parser = verbs.add_parser(
        "predict",
        help="route text with a bundle: intent, calibrated confidence, runners-up, accept or abstain",
        description="Route text with a bundle. One TEXT prints a summary; lines from stdin or --input "
        "print one JSON object per line (fields of RouteResult).",
        epilog=PREDICT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "bundle", metavar="BUNDLE", type=Path, help="the bundle directory (with model.onnx and checksums.json)"
    )
    parser.add_argument(
        "text",
        metavar="TEXT",
        nargs="?",
        help="the text to route (quote it); omitted or '-': one text per line of stdin",
    )
    parser.add_argument("-i", "--input", metavar="FILE", help="read one text per line from FILE ('-' = stdin)")
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the JSON lines to a regular FILE, atomically ('-' = stdout)"
    )
    parser.add_argument("--jsonl", action="store_true", help="print JSON lines even for a single TEXT")
    parser.add_argument(
        "--top-k", metavar="K", type=positive_int, default=3, help="labels to show per text (default: 3)"
    )
    parser.add_argument(
        "--threads", metavar="N", help=f"onnxruntime threads, 1 to {MAX_THREADS} (default: available CPUs, max 8)"
    )
    return parser


def add_verify_parser(verbs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``intentcraft verify BUNDLE``."""
    parser = verbs.add_parser(
        "verify",
        help="check a bundle's files against checksums.json and its schemas, then load it and route a test text",
        description="Check a bundle: every file against checksums.json (SHA-256), no file added or missing, "
        "labels.json, calibration.json and bundle.json against their schemas; then load the tokenizer and the "
        "model as predict does and route one test text. exit codes: 0 ok, 2 not ok",
    )
    parser.add_argument("bundle", metavar="BUNDLE", type=Path, help="the bundle directory")
    return parser


def cmd_verify(args: argparse.Namespace) -> int:
    """``intentcraft verify``: checksums, schemas, then a load and one routed text as ``predict`` does.

    Prints a one-line summary, or raises the BundleError (exit 2).
    """
    from framework.runtime.router import Router

    if (Path(args.bundle) / "tool_router.json").is_file():
        return _verify_tool_bundle(args.bundle)
    router = Router.load(args.bundle, verify=True, threads=1)
    router.self_check()
    info, calibration = router.info, router.info.calibration
    labels = ", ".join(info.labels)
    OUT.print(
        f"[green]OK[/] {escape(str(info.path))}: {len(info.files)} files match checksums.json (sha256); "
        f"{len(info.labels)} labels ({escape(labels)}); fallback intent: {escape(str(calibration.fallback_intent))}; "
        f"temperature {calibration.temperature:.4g}, global threshold {calibration.global_threshold:.4g}; "
        f"{_ood_words(calibration.ood)}; "
        f"recipe {escape(info.manifest.recipe)}, max_length {info.manifest.max_length}; "
        "model and tokenizer load and route a test text",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _verify_tool_bundle(bundle: str) -> int:
    """``verify`` on a tool-router bundle: checksums and schemas, then a load and one routed query."""
    from framework.toolcalls.bundle import read_tool_bundle
    from framework.toolcalls.router import ToolRouter

    manifest, spec = read_tool_bundle(bundle)
    route = ToolRouter.load(bundle, threads=1).route("hello")
    OUT.print(
        f"[green]OK[/] {escape(bundle)}: files match checksums.json (sha256); tool router for "
        f"{escape(', '.join(spec.labels))} on {escape(manifest.base_model.name)} (weights SHA-256 "
        f"{manifest.base_model.weights_sha256[:16]}…); the model loads and answers a test query "
        f"({'a valid call' if route.ok else 'a typed failure: ' + str(route.failure)})",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _ood_words(ood: object) -> str:
    """The bundle's out-of-distribution score in words, for ``verify``."""
    from framework.runtime.bundle import OodCalibration

    if not isinstance(ood, OodCalibration):
        return "no out-of-distribution score (abstains on confidence alone)"
    return f"out-of-distribution score {ood.method}, threshold {ood.threshold:.4g}"


def cmd_predict(args: argparse.Namespace) -> int:
    """``intentcraft predict``: one TEXT as a summary, or lines in and JSON lines out."""
    from framework.runtime.router import CHUNK, Router

    if args.text is not None and args.input is not None:
        raise UserInputError("give either TEXT or --input FILE, not both (use --input - to read stdin).")
    if args.text == "-":  # the Unix convention, as for --input -
        args.text, args.input = None, "-"
    threads = parse_threads(args.threads)
    output = _output_file(args.output)
    source = args.input or "-"
    texts = [args.text] if args.text is not None else _read_lines(source)
    interactive = args.text is None and source == "-" and sys.stdin.isatty()  # answer each line as typed
    if (Path(args.bundle) / "tool_router.json").is_file():
        return _predict_tool_calls(args, texts, output, threads)
    router = Router.load(args.bundle, verify=True, threads=threads)
    if args.text is not None and not args.jsonl and args.output is None:
        _print_result(router.predict(args.text, top_k=args.top_k)[0])
        return 0
    results = router.iter_predict(texts, args.top_k, chunk_size=1 if interactive else CHUNK)
    lines = (json.dumps(result.to_dict(), ensure_ascii=False) + "\n" for result in results)
    return _emit(lines, output, args.output, flush_each=interactive)


def _emit(lines: Iterable[str], output: Path | None, shown: str | None, flush_each: bool) -> int:
    """JSON lines to ``output`` (replaced atomically) or to stdout (a closed pipe ends quietly)."""
    if output is not None:
        count = _write_lines(output, lines)
        ERR.print(f"wrote {count} results to {escape(str(shown))}", highlight=False)
        return 0
    with contextlib.suppress(BrokenPipeError):
        for line in lines:
            sys.stdout.buffer.write(line.encode("utf-8"))
            if flush_each:
                sys.stdout.flush()
        sys.stdout.flush()
        return 0
    _silence_stdout()
    return 0


def _tool_route_dict(route: Any) -> dict[str, Any]:
    from framework.toolcalls.schema import ToolCallSchema

    return {
        "query": route.query,
        "call": ToolCallSchema.dump(route.call) if route.call is not None else None,
        "ok": route.ok,
        "failure": route.failure,
        "attempts": [{"text": a.text, "rule": a.rule, "problem": a.problem} for a in route.attempts],
        "latency_ms": round(route.latency_ms, 1),
    }


def _predict_tool_calls(
    args: argparse.Namespace, texts: Iterable[str], output: Path | None, threads: int | None
) -> int:
    """``predict`` on a tool-router bundle: one validated call (or a typed failure) per query, as JSON."""
    from framework.toolcalls.router import ToolRouter

    router = ToolRouter.load(args.bundle, threads=threads)
    if args.text is not None and not args.jsonl and args.output is None:
        route = router.route(args.text)
        print(json.dumps(_tool_route_dict(route), ensure_ascii=False, indent=2))
        return 0 if route.ok else 1
    lines = (json.dumps(_tool_route_dict(router.route(text)), ensure_ascii=False) + "\n" for text in texts)
    return _emit(lines, output, args.output, flush_each=True)  # a route takes a while: show each as it comes


def parse_threads(text: str | None) -> int | None:
    """``--threads`` as a number from 1 to :data:`MAX_THREADS` (None: the runtime's default)."""
    if text is None:
        return None
    try:
        return check_threads(int(text))
    except ValueError:
        raise UserInputError(
            f"--threads must be a whole number from 1 to {MAX_THREADS}, got {text!r}. Leave it out for the "
            "default (the CPUs available, at most 8), or use --threads 1 where the router shares its cores."
        ) from None


def _output_file(output: str | None) -> Path | None:
    """The file ``--output`` names, checked before any work; None for no ``--output`` or ``-`` (stdout)."""
    if output is None or output == STDOUT:
        return None
    path = Path(output)
    fix = f"Give the path of a new or regular file, or use --output {STDOUT} to stream to stdout"
    refuse_unsafe_target(path, "--output", fix)
    return path


def _print_result(result: RouteResult) -> None:
    """The human summary of one routed text."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("text", escape(result.text if len(result.text) <= 200 else result.text[:200] + "…"))
    table.add_row("intent", escape(str(result.intent)))
    if result.decision == "accept":
        table.add_row("decision", "[green]accept[/]")
    else:
        table.add_row("decision", f"[yellow]abstain[/] to the fallback intent {escape(str(result.intent))}")
        table.add_row("reason", escape(result.reason))
    if result.predicted is not None:
        table.add_row("predicted", f"{escape(result.predicted)} (calibrated confidence {result.confidence:.3f})")
    if result.runners_up:
        table.add_row("runners-up", ", ".join(f"{escape(label)} {p:.3f}" for label, p in result.runners_up))
    if result.ood_score is not None:
        table.add_row("OOD score", f"{result.ood_score:.4g} (higher: less like the training data)")
    if result.error:
        table.add_row("error", escape(result.error))
    OUT.print(table)


def _read_lines(source: str) -> Iterator[str]:
    """Lines of a file or stdin ('-') as text, without their line ends; bad UTF-8 becomes U+FFFD."""
    problem = None if source == "-" else _input_problem(Path(source))
    if problem:
        raise UserInputError(
            f"cannot read --input {source}: {problem}. Give a regular text file, one text per line (or pipe the "
            "texts into --input -)."
        )
    if source == "-" and sys.stdin.isatty():
        ERR.print("reading texts from stdin, one per line (end with Ctrl-D)", highlight=False)
    return _decoded(sys.stdin.buffer) if source == "-" else _decoded_file(Path(source))


def _input_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as ``--input`` (missing, a directory, a device or FIFO), or None."""
    try:
        kind = special_kind(path.stat().st_mode)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return f"it is {kind}, not a regular file" if kind else None


def _decoded_file(path: Path) -> Iterator[str]:
    with path.open("rb") as handle:
        yield from _decoded(handle)


def _decoded(handle: IO[bytes]) -> Iterator[str]:
    for raw in handle:
        yield raw.decode("utf-8", "replace").rstrip("\r\n")


def _write_lines(path: Path, lines: Iterable[str]) -> int:
    """Stream lines into ``path`` atomically; returns the count."""
    count = 0
    with atomic_open(path) as handle:
        for line in lines:
            handle.write(line)
            count += 1
    return count


def _silence_stdout() -> None:
    """After a closed pipe (``| head``), point stdout at /dev/null so the interpreter exits quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
