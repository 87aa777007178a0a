"""How raw files are read: one frozen configuration, checked before any file is opened.

Frozen, it is hashable: workers' splitters are cached by it (see ``records.split_texts``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlmcorpus.errors import ConfigError
from mlmcorpus.readers.sources import FORMATS
from mlmcorpus.sentences import get_splitter


@dataclass(frozen=True)
class ReaderConfig:
    """How raw files are read, normalised and split.

    ``input_format`` None means: by file extension (and by content for stdin).
    ``normalize`` is a Unicode normal form (``NFC``/``NFKC``) or ``none``.
    ``max_line_bytes`` caps one physical line (and one prose paragraph); longer
    lines are skipped and counted so a 50 MB line cannot exhaust memory.
    ``max_doc_sentences`` caps a document: a longer one (a file without blank
    lines, a book read with ``doc_boundary="file"``) is cut into consecutive
    documents, counted, so memory stays bounded whatever the layout.
    """

    input_format: str | None = None
    text_field: str = "text"
    id_field: str = "id"
    text_column: str = "text"
    doc_boundary: str = "blank"
    splitter: str = "rules"
    normalize: str = "nfc"
    lowercase: bool = False
    strip_control: bool = True
    max_line_bytes: int = 16 * 1024 * 1024
    max_doc_sentences: int = 100_000
    strict: bool = False

    def __post_init__(self) -> None:
        if self.input_format is not None and self.input_format not in FORMATS:
            raise ConfigError(f"--input-format: unknown format {self.input_format!r} (choose from {', '.join(FORMATS)})")
        if self.doc_boundary not in ("blank", "file"):
            raise ConfigError(f"--doc-boundary: expected 'blank' or 'file', got {self.doc_boundary!r}")
        if self.normalize.lower() not in ("nfc", "nfkc", "none"):
            raise ConfigError(f"--normalize: expected nfc, nfkc or none, got {self.normalize!r}")
        if self.max_line_bytes < 1024:
            raise ConfigError(f"--max-line-bytes: must be at least 1024, got {self.max_line_bytes}")
        if self.max_doc_sentences < 1:
            raise ConfigError(f"--max-doc-sentences: must be at least 1, got {self.max_doc_sentences}")
        try:
            get_splitter(self.splitter)
        except ValueError as e:
            raise ConfigError(f"--splitter: {e}") from None
