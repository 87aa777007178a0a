"""mlmcorpus: raw text in, masked-language-model pretraining shards out.

The library API: :func:`build` and the stage functions (``run_stream | run_pairs |
run_mask | run_write`` equals ``build``), their configs, :func:`read_manifest` for a
built corpus, and the errors.  Names load on first use, so ``import mlmcorpus`` (and
the CLI's ``--help``) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mlmcorpus.config import BuildConfig, MaskConfig, OutputConfig, PairConfig, UnitConfig
    from mlmcorpus.errors import ConfigError, InputError, MlmCorpusError, OutputError, TokenizerError
    from mlmcorpus.manifest import Manifest, read_manifest
    from mlmcorpus.pipeline import build
    from mlmcorpus.readers import ReaderConfig, ReadStats, Source, iter_documents, resolve_sources
    from mlmcorpus.stages import (
        TrainResult,
        run_mask,
        run_pairs,
        run_stream,
        run_tokenizer_encode,
        run_tokenizer_train,
        run_write,
    )
    from mlmcorpus.tokenizers import TokenizerSpec, TrainConfig, load_tokenizer

_EXPORTS = {
    "mlmcorpus.config": ("BuildConfig", "MaskConfig", "OutputConfig", "PairConfig", "UnitConfig"),
    "mlmcorpus.errors": ("ConfigError", "InputError", "MlmCorpusError", "OutputError", "TokenizerError"),
    "mlmcorpus.manifest": ("Manifest", "read_manifest"),
    "mlmcorpus.pipeline": ("build",),
    "mlmcorpus.readers": ("ReaderConfig", "ReadStats", "Source", "iter_documents", "resolve_sources"),
    "mlmcorpus.stages": (
        "TrainResult", "run_mask", "run_pairs", "run_stream", "run_tokenizer_encode", "run_tokenizer_train", "run_write",
    ),
    "mlmcorpus.tokenizers": ("TokenizerSpec", "TrainConfig", "load_tokenizer"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'mlmcorpus' has no attribute {name!r}")
