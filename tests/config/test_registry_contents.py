"""Snapshot of every built-in plugin, stage kind and target (as spaCy keeps ``registry_contents.json``).

A plugin renamed or removed, a param added, removed or given another default, or a stage kind or target
changed, shows here as a diff to review. Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest
tests/config/test_registry_contents.py`` and read the diff: recipes written against the old contents may need
a new plugin version rather than a changed one.
"""

from __future__ import annotations

import json
import os
from typing import Any

from framework.pipeline.targets import BUILTIN, STAGE_KINDS, TARGETS, load_targets
from framework.registry import registries
from tests.config.test_golden_errors import GOLDEN, update_golden

SNAPSHOT = GOLDEN / "registry_contents.json"


def _params(model: Any) -> dict[str, str]:
    """Each param with its type and default, as a recipe author sees them."""
    fields = {}
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        annotation = field.annotation
        kind = annotation.__name__ if isinstance(annotation, type) else repr(annotation).replace("typing.", "")
        fields[field.alias or name] = f"{kind} = {default}"
    return fields


def registry_contents() -> dict[str, Any]:
    """Built-in plugins by kind (id -> params), stage kinds (upstream, recipe keys and sections, version, plugin
    kinds) and targets."""
    load_targets()
    plugins = {
        kind: {spec.id: _params(spec.params) for spec in registry.all() if spec.namespace == "builtin"}
        for kind, registry in registries().items()
    }
    stages = {
        name: {
            "upstream": list(stage.upstream),
            "config_keys": list(stage.config_keys),
            "version": stage.version,
            "sections": {s.key: {"plugin_kind": s.plugin_kind, "keys": _params(s.model)} for s in stage.sections},
            "plugin_kinds": list(stage.all_plugin_kinds()),
        }
        for name, stage in sorted(STAGE_KINDS.items())
        if stage.run.__module__.startswith("framework.")  # built-in, not from an installed package
    }
    targets = {name: list(TARGETS[name].stages) for name in sorted(BUILTIN)}
    return {"plugins": plugins, "stage_kinds": stages, "targets": targets}


def test_registry_contents_match_the_snapshot() -> None:
    text = json.dumps(registry_contents(), indent=2, sort_keys=True) + "\n"
    if update_golden(os.environ.get("UPDATE_GOLDEN")):
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.is_file(), f"no snapshot {SNAPSHOT}; run with UPDATE_GOLDEN=1 once and review it"
    assert json.loads(text) == json.loads(SNAPSHOT.read_text()), "registry changed: review, then UPDATE_GOLDEN=1"


def test_the_snapshot_names_every_kind_and_the_classifier() -> None:
    contents = registry_contents()
    assert set(contents["plugins"]) == set(registries())
    assert all(contents["plugins"][kind] for kind in registries()), "every kind ships at least one built-in plugin"
    assert contents["targets"]["classifier"][0] == "generate" and contents["targets"]["classifier"][-1] == "bundle"
    assert "builtin.encoder.v1" in contents["plugins"]["trainers"]
