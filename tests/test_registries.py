"""The registries behind the objective and format interfaces: lookups, names, and their errors."""

from __future__ import annotations

import pytest

from mlmcorpus import formats, masking, tasks
from mlmcorpus.config import MaskConfig, OutputConfig, PairConfig
from mlmcorpus.errors import ConfigError, InputError
from mlmcorpus.formats.base import ShardFormat
from mlmcorpus.masking.base import MaskingPolicy
from mlmcorpus.tasks.base import Task


def test_todays_behaviour_is_the_default_entry_of_each_registry():
    assert PairConfig().task == tasks.NAMES[0] == "nsp"
    assert MaskConfig().masking == masking.NAMES[0] == "token"
    assert OutputConfig().format == formats.NAMES[0] == "parquet"
    assert isinstance(tasks.get("nsp"), Task) and tasks.get("nsp").name == "nsp"
    assert isinstance(masking.get("token"), MaskingPolicy) and masking.get("token").name == "token"
    for name in formats.NAMES:
        assert isinstance(formats.get(name), ShardFormat) and formats.get(name).name == name


@pytest.mark.parametrize(
    "make,option",
    [
        (lambda: PairConfig(task="bogus"), "--pair-task"),
        (lambda: MaskConfig(masking="bogus"), "--masking"),
        (lambda: OutputConfig(format="hdf5"), "--format"),
    ],
)
def test_unknown_names_are_config_errors(make, option):
    with pytest.raises(ConfigError, match=option):
        make()


def test_unknown_names_in_lookups():
    with pytest.raises(ConfigError, match="unknown pair task 'bogus'"):
        tasks.get("bogus")
    with pytest.raises(ConfigError, match="unknown masking policy 'bogus'"):
        masking.get("bogus")
    with pytest.raises(InputError, match="unknown shard format 'hdf5'"):
        formats.get("hdf5")


def test_detect_finds_each_format_of_a_lone_shard(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"")
    (tmp_path / "np").mkdir()
    (tmp_path / "np" / "input_ids.npy").write_bytes(b"")
    assert formats.detect(str(tmp_path / "a.parquet")).name == "parquet"
    assert formats.detect(str(tmp_path / "np")).name == "numpy"
    assert formats.detect(str(tmp_path)) is None


def test_the_public_api_resolves_and_import_stays_light():
    import subprocess
    import sys

    import mlmcorpus

    for name in mlmcorpus.__all__:
        assert getattr(mlmcorpus, name) is not None, name
    with pytest.raises(AttributeError):
        mlmcorpus.no_such_name  # noqa: B018
    code = "import sys, mlmcorpus, mlmcorpus.cli; print(sorted(m for m in ('pyarrow', 'numpy') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
