"""The golden content of the default build (tests/golden.py): it must not move by accident.

A change of what the rows hold is deliberate: rerun ``python tests/golden.py --write`` in the
same commit and say in it which configurations changed and why.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from . import golden

NEEDS = {"wordpiece": "tokenizers"}  # the tokenizers library reads a WordPiece vocab.txt


def _available(config: golden.Config) -> bool:
    module = NEEDS.get(config.tokenizer)
    return module is None or importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def computed() -> dict[str, dict]:
    return golden.compute([c for c in golden.CONFIGS if _available(c)])


@pytest.fixture(scope="module")
def expected() -> dict[str, dict]:
    return json.loads(golden.DIGESTS.read_text(encoding="utf-8"))


def _differences(got: dict, want: dict) -> list[str]:
    out = [f"column {name}" for name in sorted(set(got["columns"]) | set(want["columns"]))
           if got["columns"].get(name) != want["columns"].get(name)]
    if got["rows_per_shard"] != want["rows_per_shard"]:
        out.append(f"rows per shard {got['rows_per_shard']} (pinned {want['rows_per_shard']})")
    out += [f"stats[{k!r}]" for k in sorted(set(got["stats"]) | set(want["stats"])) if got["stats"].get(k) != want["stats"].get(k)]
    return out


@pytest.mark.parametrize("config", golden.CONFIGS, ids=[c.name for c in golden.CONFIGS])
def test_build_content_is_the_pinned_one(config, computed, expected):
    if not _available(config):
        pytest.skip(f"needs {NEEDS[config.tokenizer]}")
    assert set(expected) == {c.name for c in golden.CONFIGS}
    got, want = computed[config.name], expected[config.name]
    assert got == want, f"{config.name}: changed: {', '.join(_differences(got, want))} (see tests/golden.py)"


def test_pipelines_hold_the_rows_of_build(computed):
    for name, other in [("spm-parquet-pipeline", "spm-parquet"), ("wordpiece-numpy-no-shuffle-pipeline", "wordpiece-numpy-no-shuffle")]:
        if name in computed:
            assert computed[name]["columns"] == computed[other]["columns"]
            assert computed[name]["rows_per_shard"] == computed[other]["rows_per_shard"]


def test_the_digest_sees_one_changed_value(tmp_path):
    """The digest is of the values: flipping one label in one row changes that column only."""
    config = next(c for c in golden.CONFIGS if c.name == "spm-numpy")
    golden.run(config, tmp_path / "out")
    before = golden.digest(tmp_path / "out")
    (shard,) = (tmp_path / "out").glob("train-*")
    labels = np.load(shard / "labels.npy")
    k = int(np.flatnonzero(labels[0] != -100)[0])
    labels[0, k] += 1
    np.save(shard / "labels.npy", labels)
    after = golden.digest(tmp_path / "out")
    assert _differences(after, before) == ["column labels"]
