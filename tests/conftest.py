"""Shared fixtures: paths, a CLI runner and one tiny trained tokenizer per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
SHARED = Path(os.environ.get("MLMCORPUS_SHARED_DATA", ROOT.parent / "shared" / "data"))

requires_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")


@pytest.fixture(scope="session")
def sample() -> Path:
    return SAMPLE


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small unigram model trained once on all of sample_data/ (English + Korean)."""
    from mlmcorpus.readers import ReaderConfig, iter_documents, iter_sentences, resolve_sources
    from mlmcorpus.tokenizers import TrainConfig, train_tokenizer

    prefix = tmp_path_factory.mktemp("tok") / "spm"
    sources = resolve_sources([str(SAMPLE)])
    train_tokenizer(
        lambda: iter_sentences(iter_documents(sources, ReaderConfig())),
        str(prefix),
        TrainConfig(vocab_size=2000, threads=2),
    )
    return Path(str(prefix) + ".model")


@pytest.fixture
def warnings_log():
    """Messages the library logs on the "mlmcorpus" logger during the test (a list of str)."""
    import logging

    messages: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("mlmcorpus")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:] = [ListHandler()]
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield messages
    finally:
        handlers, level, propagate = saved
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
