"""The built-in sources: ``csv``, ``jsonl`` and ``hf_dataset`` (local files only), and the real BANKING77 files."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from framework.config.schema import IntentSpec, RecipeConfig
from framework.data.dedupe import dedupe_rows, find_leaks
from framework.data.rows import Row, normalize_text, row_id
from framework.errors import StageError
from framework.plugin_api import SourceContext, SplitContext
from framework.plugins.sources.csv_file import CsvParams, csv_source
from framework.plugins.sources.hf_dataset import HfDatasetParams, hf_dataset_source
from framework.plugins.sources.jsonl_file import JsonlParams, jsonl_source
from framework.plugins.splitters.stratified import StratifiedParams, stratified
from framework.registry import sources

REPO_ROOT = Path(__file__).resolve().parents[2]
BANKING77 = REPO_ROOT.parent / "shared" / "data" / "banking77"
INTENTS = ("card_arrival", "lost_or_stolen_card", "Greet", "Search")


class Recorder:
    """A ``SourceContext`` whose warnings and progress the test can read."""

    def __init__(self, name: str = "mine", split: str | None = None, intents: tuple[str, ...] = INTENTS) -> None:
        self.warnings: list[str] = []
        self.progress = 0
        self.ctx = SourceContext(
            name=name,
            plugin_id=f"builtin.{name}.v1",
            intents={intent: IntentSpec() for intent in intents},
            split=split,
            seed=1,
            advance=self._advance,
            warn=self.warnings.append,
        )

    def _advance(self, n: int) -> None:
        self.progress += n


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def read_csv(path: Path, recorder: Recorder | None = None, **params: Any) -> list[dict[str, Any]]:
    recorder = recorder or Recorder()
    return list(csv_source(CsvParams(path=str(path), **params), recorder.ctx))


def error_of(func: Any, params: Any, recorder: Recorder | None = None) -> str:
    with pytest.raises(StageError) as caught:
        list(func(params, (recorder or Recorder()).ctx))
    return str(caught.value)


def test_sources_are_registered() -> None:
    assert [spec.id for spec in sources.all() if spec.namespace == "builtin"] == [
        "builtin.csv.v1",
        "builtin.hf_dataset.v1",
        "builtin.jsonl.v1",
    ]
    assert sources.resolve("csv").params is CsvParams


# --- csv --------------------------------------------------------------------------------------------------


CSV_TEXT = (
    "text,category\n"
    '"Hello, ""friend""",Greet\n'
    "Zoë's café card — when?,card_arrival\n"
    '"two\nlines",Search\n'
    "lost it,lost\n"
)


def test_csv_reads_quotes_commas_unicode_and_multiline_records(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", CSV_TEXT)
    rows = read_csv(path, label_column="category", label_map={"lost": "lost_or_stolen_card"})
    assert [(r["text"], r["intent"]) for r in rows] == [
        ('Hello, "friend"', "Greet"),
        ("Zoë's café card — when?", "card_arrival"),
        ("two\nlines", "Search"),
        ("lost it", "lost_or_stolen_card"),
    ]
    # Positions are the line each record starts on (the quoted newline makes the last record start on 6).
    assert [r["provenance"]["line"] for r in rows] == [2, 3, 4, 6]
    assert [r["id"] for r in rows] == [row_id("mine", line) for line in (2, 3, 4, 6)]
    assert rows[0]["provenance"] == {
        "generator": "mine",
        "plugin": "builtin.mine.v1",
        "synthetic": False,
        "file": str(path),
        "line": 2,
    }
    assert all("split" not in r and r["source"] == "mine" for r in rows)
    assert all(Row.model_validate(r) for r in rows)


def test_csv_rows_carry_the_pinned_split(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", CSV_TEXT)
    rows = read_csv(path, Recorder(split="test"), label_column="category", label_map={"lost": "Greet"})
    assert {r["split"] for r in rows} == {"test"}


def test_csv_limit_delimiter_encoding_and_bom(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.tsv", "txt\tlabel\nÉté\tGreet\n", encoding="latin-1")
    with pytest.raises(StageError, match=r"sources\.mine\.encoding: .* is not valid utf-8"):
        read_csv(path, text_column="txt", delimiter="\t")
    assert read_csv(path, text_column="txt", delimiter="\t", encoding="latin-1")[0]["text"] == "Été"
    path = write(tmp_path / "data.tsv", "\ufefftxt\tlabel\nÉté\tGreet\nb\tSearch\nc\tGreet\n")
    rows = read_csv(path, text_column="txt", delimiter="\t", limit=2)
    assert [r["text"] for r in rows] == ["Été", "b"]


def test_csv_skips_blank_rows_with_one_warning(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "text,label\nhi,Greet\n  ,Greet\n\nfind x,Search\n,Search\nno label,\n")
    recorder = Recorder()
    rows = read_csv(path, recorder)
    assert [r["text"] for r in rows] == ["hi", "find x"]
    assert recorder.warnings == [
        f"sources.mine: {path}: skipped 2 rows with blank text (line 3, 6); skipped 1 row with no label (line 7)"
    ]
    assert recorder.progress == 5  # every record read (the empty line is not a record)


def test_csv_missing_file_names_the_key_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = error_of(csv_source, CsvParams(path="data/nope.csv"))
    assert message.startswith("sources.mine.path: no such file: data/nope.csv (resolved to ")
    assert str(tmp_path / "data" / "nope.csv") in message
    assert "absolute path" in message


def test_csv_missing_column_lists_columns_and_suggests_one(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", CSV_TEXT)
    message = error_of(csv_source, CsvParams(path=str(path), label_column="categroy"))
    assert message == (
        f"sources.mine.label_column: column 'categroy' is not in {path} (header line 1); did you mean 'category'? "
        "Columns found: 'text', 'category'. Set sources.mine.label_column to the column that holds the labels."
    )
    message = error_of(csv_source, CsvParams(path=str(path), text_column="utterance", label_column="category"))
    assert message.startswith("sources.mine.text_column: column 'utterance' is not in")


def test_csv_unknown_labels_are_listed_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "text,label\na,Greet\nb,card_arival\nc,card_arival\nd,refund\ne,CARD ARRIVAL\n")
    message = error_of(csv_source, CsvParams(path=str(path), label_map={"refund": "Refund"}))
    assert message.startswith(f"sources.mine.label_column: 3 labels name no intent of the recipe in {path}: ")
    assert "'card_arival' (2 rows, first at line 3; did you mean 'card_arrival'?)" in message
    assert "'CARD ARRIVAL' (1 row, first at line 6; did you mean 'card_arrival'?)" in message
    assert "'refund' (label_map gives 'Refund') (1 row, first at line 5)," in message
    assert "intents_from: sources.mine" in message
    assert "sources.mine.label_map (e.g. label_map: {'card_arival': card_arrival})" in message


def test_csv_unknown_labels_are_all_counted_and_twenty_named(tmp_path: Path) -> None:
    """57 unknown labels: the count says 57, the 20 with most rows are named, unlike names get no did-you-mean."""
    lines = [f"row {i} of {n},topic number {n}" for n in range(57) for i in range(1 + (n < 20))]
    path = write(tmp_path / "data.csv", "text,label\n" + "\n".join(lines) + "\n")
    message = error_of(csv_source, CsvParams(path=str(path)))
    assert message.startswith(
        f"sources.mine.label_column: 57 labels name no intent of the recipe in {path} (the 20 with most rows shown): "
    )
    named = [n for n in range(57) if f"'topic number {n}' (" in message]
    assert named == list(range(20))
    assert "(2 rows, first at line 2)" in message
    assert "did you mean" not in message


@pytest.mark.parametrize(("content", "detail"), [("", "is empty"), ("text,label\n", "has no usable rows")])
def test_csv_empty_file_is_an_error(tmp_path: Path, content: str, detail: str) -> None:
    path = write(tmp_path / "data.csv", content)
    message = error_of(csv_source, CsvParams(path=str(path)))
    assert message.startswith(f"sources.mine.path: {path} {detail}")
    assert "remove sources.mine" in message


def test_files_are_resolved_against_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert CsvParams(path="a/b.csv").files() == [tmp_path / "a" / "b.csv"]
    assert JsonlParams(path=str(tmp_path / "x.jsonl")).files() == [tmp_path / "x.jsonl"]


def test_label_map_targets_are_checked_against_the_recipe() -> None:
    config = RecipeConfig.model_construct(intents={name: IntentSpec() for name in INTENTS})
    params = CsvParams(path="x.csv", label_map={"1": "Greet", "2": "Serch"})
    assert params.check_recipe(config) == [
        ("label_map.2", "maps to 'Serch', which is not an intent of the recipe; did you mean 'Search'?")
    ]


# --- jsonl ------------------------------------------------------------------------------------------------


def test_jsonl_reads_nested_keys_and_maps_int_labels(tmp_path: Path) -> None:
    lines = [
        {"data": {"text": "hello there"}, "meta": {"label": 1}},
        {"data": {"text": "find ünïcode"}, "meta": {"label": 2}},
        {"data": {"text": "where is my card"}, "meta": {"label": "card_arrival"}},
    ]
    path = write(tmp_path / "data.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")
    params = JsonlParams(
        path=str(path), text_column="data.text", label_column="meta.label", label_map={1: "Greet", 2: "Search"}
    )
    rows = list(jsonl_source(params, Recorder(split="eval").ctx))
    assert [(r["text"], r["intent"], r["split"]) for r in rows] == [
        ("hello there", "Greet", "eval"),
        ("find ünïcode", "Search", "eval"),
        ("where is my card", "card_arrival", "eval"),
    ]
    assert [r["provenance"]["line"] for r in rows] == [1, 2, 3]
    assert rows[0]["provenance"]["synthetic"] is False


def test_jsonl_literal_dotted_key_wins_and_blank_text_is_skipped(tmp_path: Path) -> None:
    content = '{"meta.label": "Greet", "text": "hi"}\n{"meta.label": "Greet", "text": " "}\n'
    path = write(tmp_path / "data.jsonl", content)
    recorder = Recorder()
    rows = list(jsonl_source(JsonlParams(path=str(path), label_column="meta.label"), recorder.ctx))
    assert [r["text"] for r in rows] == ["hi"]
    assert recorder.warnings == [f"sources.mine: {path}: skipped 1 row with blank text (line 2)"]


def test_jsonl_missing_key_names_the_line_and_suggests_a_key(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", '{"text": "a", "meta": {"label": "Greet"}}\n{"text": "b", "meta": {}}\n')
    message = error_of(jsonl_source, JsonlParams(path=str(path), label_column="meta.labels"))
    assert message.startswith("sources.mine.label_column: column 'meta.labels' is not in")
    assert "(line 1); did you mean 'meta.label'? Columns found: 'text', 'meta', 'meta.label'." in message
    message = error_of(jsonl_source, JsonlParams(path=str(path), label_column="meta.label"))
    assert "(line 2)" in message


def test_jsonl_bad_lines_and_empty_files_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "a", "label": "Greet"}\n{"text": \n')
    assert "line 2 of" in error_of(jsonl_source, JsonlParams(path=str(path)))
    path = write(tmp_path / "list.jsonl", '["a", "Greet"]\n')
    assert "holds a JSON list, not an object" in error_of(jsonl_source, JsonlParams(path=str(path)))
    path = write(tmp_path / "empty.jsonl", "\n\n")
    assert "has no JSON lines" in error_of(jsonl_source, JsonlParams(path=str(path)))
    assert "no such file" in error_of(jsonl_source, JsonlParams(path=str(tmp_path / "none.jsonl")))


# --- hf_dataset ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DatasetDict saved with save_to_disk, whose label column is a ClassLabel."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"utterance": datasets.Value("string"), "label": datasets.ClassLabel(names=["Greet", "Search", "lost"])}
    )
    train = datasets.Dataset.from_dict(
        {"utterance": ["hi there", "find foo", "", "lost my card"], "label": [0, 1, 0, 2]}, features=features
    )
    test = datasets.Dataset.from_dict({"utterance": ["hello"], "label": [0]}, features=features)
    path = tmp_path_factory.mktemp("hf") / "saved"
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(path))
    return path


def test_hf_save_to_disk_maps_class_label_ids_to_names(hf_dir: Path) -> None:
    recorder = Recorder()
    params = HfDatasetParams(path=str(hf_dir), text_column="utterance", label_map={"lost": "lost_or_stolen_card"})
    rows = list(hf_dataset_source(params, recorder.ctx))
    assert [(r["text"], r["intent"]) for r in rows] == [
        ("hi there", "Greet"),
        ("find foo", "Search"),
        ("lost my card", "lost_or_stolen_card"),
    ]
    assert [r["provenance"]["index"] for r in rows] == [0, 1, 3]
    assert rows[0]["id"] == row_id("mine", 0)
    assert recorder.warnings == [f"sources.mine: {hf_dir}: skipped 1 row with blank text (index 2)"]
    assert recorder.progress == 4


def test_hf_dataset_split_selects_a_split_and_rows_can_be_pinned(hf_dir: Path) -> None:
    params = HfDatasetParams(path=str(hf_dir), dataset_split="test", text_column="utterance")
    rows = list(hf_dataset_source(params, Recorder(split="test").ctx))
    assert [(r["text"], r["intent"], r["split"]) for r in rows] == [("hello", "Greet", "test")]
    message = error_of(hf_dataset_source, HfDatasetParams(path=str(hf_dir), dataset_split="tset"))
    assert message.startswith(f"sources.mine.dataset_split: {hf_dir} has no split 'tset'; did you mean 'test'?")
    assert "Splits found: train, test." in message


def test_hf_files_lists_every_file_of_a_saved_directory(hf_dir: Path) -> None:
    files = HfDatasetParams(path=str(hf_dir)).files()
    assert files == sorted(p for p in hf_dir.rglob("*") if p.is_file())
    assert hf_dir / "dataset_dict.json" in files
    assert any(p.suffix == ".arrow" for p in files)


def test_hf_reads_local_parquet_and_json_files(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict({"text": ["hi", "find x", "hey"], "intent": ["Greet", "Search", "Greet"]})
    table.to_parquet(str(tmp_path / "data.parquet"))
    write(tmp_path / "data.json", '{"text": "hi", "m": {"l": "Greet"}}\n{"text": "look", "m": {"l": "Search"}}\n')
    parquet = HfDatasetParams(path=str(tmp_path / "data.parquet"), label_column="intent", limit=2)
    rows = list(hf_dataset_source(parquet, Recorder().ctx))
    assert [(r["text"], r["intent"]) for r in rows] == [("hi", "Greet"), ("find x", "Search")]
    as_json = HfDatasetParams(path=str(tmp_path / "data.json"), label_column="m.l")
    assert [r["intent"] for r in hf_dataset_source(as_json, Recorder().ctx)] == ["Greet", "Search"]


def test_hf_errors_name_the_key(tmp_path: Path, hf_dir: Path) -> None:
    pytest.importorskip("datasets")
    write(tmp_path / "data.txt", "hi\n")
    assert "has the suffix '.txt'" in error_of(hf_dataset_source, HfDatasetParams(path=str(tmp_path / "data.txt")))
    (tmp_path / "plain").mkdir()
    message = error_of(hf_dataset_source, HfDatasetParams(path=str(tmp_path / "plain")))
    assert "is a directory but not a dataset written by save_to_disk" in message
    message = error_of(hf_dataset_source, HfDatasetParams(path=str(hf_dir), text_column="text"))
    assert "did you mean" not in message and "Columns found: 'utterance', 'label'" in message
    message = error_of(hf_dataset_source, HfDatasetParams(path=str(hf_dir), text_column="utterance"), Recorder())
    assert "'lost' (1 row, first at index 3)" in message


# --- the real BANKING77 files -------------------------------------------------------------------------------


def _banking77_sources() -> dict[str, dict[str, Any]]:
    recipe = yaml.safe_load((REPO_ROOT / "recipes" / "banking77.yaml").read_text(encoding="utf-8"))
    return recipe["sources"]


def _banking77_rows(name: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Rows read by the recipe's source ``name`` (from the repository root), and the file read by plain csv."""
    if not BANKING77.is_dir():
        pytest.skip(f"BANKING77 data not found at {BANKING77}")
    section = dict(_banking77_sources()[name])
    section.pop("plugin")
    split = section.pop("split", None)
    pack = yaml.safe_load((REPO_ROOT / "recipes" / "intents" / "banking77.yaml").read_text(encoding="utf-8"))
    recorder = Recorder(name=name, split=split, intents=tuple(pack["intents"]))
    params = CsvParams(**{**section, "path": str(REPO_ROOT / section["path"])})
    rows = list(csv_source(params, recorder.ctx))
    assert recorder.warnings == []
    with params.resolved().open(newline="", encoding="utf-8") as handle:
        plain = list(csv.DictReader(handle))
    return rows, plain


@pytest.mark.parametrize("name", ["train", "test"])
def test_banking77_csv_through_the_recipe_source(name: str) -> None:
    rows, plain = _banking77_rows(name)
    assert len(rows) == len(plain) == {"train": 10003, "test": 3080}[name]
    assert [r["text"] for r in rows] == [p["text"] for p in plain]
    label_map = _banking77_sources()[name]["label_map"]
    assert [r["intent"] for r in rows] == [label_map.get(p["category"], p["category"]) for p in plain]
    categories = json.loads((BANKING77 / "categories.json").read_text(encoding="utf-8"))
    assert {p["category"] for p in plain} == set(categories)
    assert len({r["intent"] for r in rows}) == 77
    assert all(r.get("split") == ("test" if name == "test" else None) for r in rows)


def test_banking77_pack_names_every_category() -> None:
    if not BANKING77.is_dir():
        pytest.skip(f"BANKING77 data not found at {BANKING77}")
    pack = yaml.safe_load((REPO_ROOT / "recipes" / "intents" / "banking77.yaml").read_text(encoding="utf-8"))
    categories = json.loads((BANKING77 / "categories.json").read_text(encoding="utf-8"))
    label_map = _banking77_sources()["train"]["label_map"]
    assert list(pack["intents"]) == [label_map.get(c, c) for c in categories]
    assert all(spec["description"] and not spec.get("templates") for spec in pack["intents"].values())


def test_banking77_dedupe_keeps_the_official_test_set_and_splits_the_rest() -> None:
    train, _ = _banking77_rows("train")
    test, _ = _banking77_rows("test")
    kept, dropped = dedupe_rows(train + test, "normalized")
    conflicts = {normalize_text(d["row"]["text"]) for d in dropped if d["rule"] == "label_conflict"}
    kept_test = [r for r in kept if r.get("split") == "test"]
    # Every official test text survives as a test row unless it is a label conflict; copies in train go.
    test_texts = {normalize_text(r["text"]) for r in test} - conflicts
    assert test_texts == {normalize_text(r["text"]) for r in kept_test}
    train_texts = {normalize_text(r["text"]) for r in kept if r.get("split") is None}
    assert not train_texts & test_texts
    params = StratifiedParams(ratios={"train": 0.9, "eval": 0.1, "test": 0.0})
    result = stratified(kept, params, SplitContext(intents={}, seed=13))
    assert all(result.assignments[r["id"]] == "test" for r in kept_test)
    assert sum(1 for split in result.assignments.values() if split == "test") == len(kept_test)
    assert find_leaks([{**r, "split": result.assignments[r["id"]]} for r in kept]) == []
    assert sum(sum(c.values()) for c in result.report["pinned"].values()) == len(kept_test)


# --- hostile paths and contents -----------------------------------------------------------------------------

FAKE_SECRET = "root:$6$Zq9CANARYsecretHASH$Xy:19000:0:99999:7:::"


def unblock_later(fifo: Path, seconds: float = 5.0) -> None:
    """Should a broken source open ``fifo`` to read, write an empty line into it after ``seconds``: no hang."""

    def writer() -> None:
        time.sleep(seconds)
        with fifo.open("w") as handle:
            handle.write("\n")

    threading.Thread(target=writer, daemon=True).start()


@pytest.mark.parametrize("params_type", [CsvParams, JsonlParams])
def test_a_directory_is_reported_as_a_directory(tmp_path: Path, params_type: type) -> None:
    params = params_type(path=str(tmp_path))
    message = error_of(csv_source if params_type is CsvParams else jsonl_source, params)
    assert message.startswith(f"sources.mine.path: {tmp_path} is a directory, not a data file.")
    config = RecipeConfig.model_construct(intents={name: IntentSpec() for name in INTENTS})
    assert params.check_recipe(config) == [("path", message.removeprefix("sources.mine.path: "))]


def test_a_device_is_not_a_regular_file_and_is_never_read(tmp_path: Path) -> None:
    message = error_of(csv_source, CsvParams(path="/dev/zero"))
    assert message.startswith("sources.mine.path: /dev/zero is not a regular file: it is a character device")
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)  # reading would block: it must be refused before it is opened
    unblock_later(fifo)
    assert "it is a FIFO (named pipe)" in error_of(jsonl_source, JsonlParams(path=str(fifo)))
    config = RecipeConfig.model_construct(intents={})
    assert [where for where, _ in CsvParams(path="/dev/zero").check_recipe(config)] == ["path"]
    assert CsvParams(path=str(tmp_path / "later.csv")).check_recipe(config) == [], "missing: reported when run"


def test_hf_dataset_still_reads_directories_but_not_devices(hf_dir: Path) -> None:
    config = RecipeConfig.model_construct(intents={})
    assert HfDatasetParams(path=str(hf_dir)).check_recipe(config) == []
    assert "is not a regular file" in error_of(hf_dataset_source, HfDatasetParams(path="/dev/zero"))


@pytest.mark.parametrize(
    "first_line", [FAKE_SECRET, f"user,{FAKE_SECRET}", "API_KEY=sk-CANARYsecretHASH,label", "x" * 65 + ",label"]
)
def test_a_file_that_is_not_csv_is_refused_without_quoting_it(tmp_path: Path, first_line: str) -> None:
    path = write(tmp_path / "shadow", f"{first_line}\nbin:*:19000:0:99999:7:::\n")
    message = error_of(csv_source, CsvParams(path=str(path)))
    assert message.startswith(f"sources.mine.path: {path} does not look like a CSV file with a header line: ")
    assert "CANARY" not in message and "xxxxx" not in message and "bin:" not in message
    assert "Its content is not shown" in message


def test_values_quoted_from_a_real_csv_are_short(tmp_path: Path) -> None:
    label = "L" * 500
    path = write(tmp_path / "data.csv", f"text,label\nhello,{label}\n")
    message = error_of(csv_source, CsvParams(path=str(path)))
    assert "'LLLL" in message and label[:100] not in message and len(message) < 800


def test_jsonl_nested_too_deeply_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "deep.jsonl", '{"text": "a", "label": "Greet"}\n' + "[" * 200_000 + "]" * 200_000 + "\n")
    message = error_of(jsonl_source, JsonlParams(path=str(path)))
    assert message.startswith(f"sources.mine.path: line 2 of {path} nests JSON arrays or objects too deeply")
