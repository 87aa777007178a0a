"""A plain-Python port of the instance builder of Google's ``create_pretraining_data.py``.

Ported from ``create_instances_from_document`` and ``truncate_seq_pair`` of
google-research/bert (master), see DESIGN.md section 3.  It works on token-id
lists: ``all_documents`` is a list of documents, a document a list of segments
(sentences), a segment a non-empty ``list[int]``.  Every random draw goes to the
``random.Random`` passed in, in exactly the reference's call order:

* per document: ``rng.random()`` for the short target, then ``rng.randint(2, max_num_tokens)``
  if it fired;
* per chunk: ``rng.randint(1, len(chunk) - 1)`` for ``a_end`` when the chunk has
  >= 2 segments; ``rng.random()`` for random-next unless the chunk has one segment
  (short-circuit ``or``); for random next up to 10 ``rng.randint(0, n_docs - 1)``
  to find another document, then ``rng.randint(0, len(doc) - 1)`` for the start;
* ``truncate_seq_pair``: one ``rng.random()`` per removed token.

Deliberate omissions and differences:

* **No masking.**  The reference calls ``create_masked_lm_predictions`` (which
  consumes ``rng``) right after every instance; in mlmcorpus masking is a
  separate stage with its own generator, so it is left out here and the port
  returns ``(tokens_a, tokens_b, is_random_next)`` per instance.
* **No document shuffle, no dupe loop.**  :func:`create_instances` is one pass
  over the documents in their given order (the reference shuffles all
  documents once, then makes ``dupe_factor`` passes; mlmcorpus makes each pass
  with its own generator, see ``objective.pair_unit``).
* **Long sentences** (``split_long=True``, mlmcorpus' behaviour): segments
  longer than ``max_seq_length - 3`` are first cut into consecutive pieces of at
  most that length (:func:`split_long_segments`); the reference keeps them whole
  and lets ``truncate_seq_pair`` cut them.  With every segment shorter than
  ``max_num_tokens`` both agree.  Empty segments and documents are dropped, as
  the reference does when reading.
* **Random next from the same document** (``same_document="distant"``,
  mlmcorpus' behaviour): the reference, when its 10 tries keep hitting the
  current document (always, with one document), takes B from a random start in
  that same document -- possibly A itself.  mlmcorpus instead:

  - skips the 10 tries altogether when there is a single document (no draws);
  - draws ``k = rng.randint(0, before + after - 1)`` over the segments before
    the current chunk (``before``) and those after the chunk *and the segment
    right after it* (``after``), and starts B there; a B that starts before the
    chunk stops at the chunk's first segment, so it never contains A;
  - if there are no such segments, emits no instance for this chunk (and does
    not put segments back): the chunk is dropped.

  ``same_document="reference"`` keeps the reference's behaviour.  With >= 3
  documents the 10 tries all hitting the current document has probability
  <= (1/3)**10 < 2e-5 per random-next instance, so the two settings agree on
  multi-document input in practice.  In ``"distant"`` mode B is collected from
  the start forward exactly as mlmcorpus does (until ``target_b`` tokens or the
  end of the document), so it mirrors the library, not a specification.

``trace`` (optional list) receives, per instance, ``(document_index,
chunk_first, chunk_last, a_end, b_document_index, b_first, b_last)``: segment
indices (into the split, cleaned documents) of the chunk as flushed (before
put-back), the number of its segments in A, and the document and segment range
B was collected from (before truncation), to let tests reason about where A and
B came from.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = [
    "truncate_seq_pair",
    "split_long_segments",
    "create_instances_from_document",
    "create_instances",
]

Document = list[list[int]]


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: random.Random) -> None:
    """Trim in place: while too long, drop one token of the longer list (B on ties), front or back."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_num_tokens:
            break
        trunc_tokens = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        assert len(trunc_tokens) >= 1
        if rng.random() < 0.5:
            del trunc_tokens[0]
        else:
            trunc_tokens.pop()


def split_long_segments(document: Sequence[Sequence[int]], max_num_tokens: int) -> Document:
    """mlmcorpus' pre-step: cut segments into consecutive pieces of <= ``max_num_tokens``; drop empty ones."""
    out: Document = []
    for seg in document:
        seg = list(seg)
        for k in range(0, len(seg), max_num_tokens):
            out.append(seg[k : k + max_num_tokens])
    return out


def create_instances_from_document(
    all_documents: Sequence[Document],
    document_index: int,
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    *,
    same_document: str = "distant",
    trace: list | None = None,
) -> list[tuple[list[int], list[int], bool]]:
    """Instances ``(tokens_a, tokens_b, is_random_next)`` of one document (reference semantics, no masking)."""
    if same_document not in ("distant", "reference"):
        raise ValueError(same_document)
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3

    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)

    instances: list[tuple[list[int], list[int], bool]] = []
    current_chunk: list[list[int]] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                chunk_first = i - len(current_chunk) + 1
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = rng.randint(1, len(current_chunk) - 1)

                tokens_a: list[int] = []
                for j in range(a_end):
                    tokens_a.extend(current_chunk[j])

                tokens_b: list[int] = []
                is_random_next = False
                if len(current_chunk) == 1 or rng.random() < 0.5:
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)

                    random_document_index = document_index
                    if same_document == "reference" or len(all_documents) > 1:
                        for _ in range(10):
                            random_document_index = rng.randint(0, len(all_documents) - 1)
                            if random_document_index != document_index:
                                break

                    random_document = all_documents[random_document_index]
                    random_start = -1
                    if same_document == "distant" and random_document_index == document_index:
                        # mlmcorpus: B from a distant part of this document -- not the chunk nor
                        # the segment just before or after it -- stopping before the chunk.
                        before = max(chunk_first - 1, 0)
                        after = max(len(document) - (i + 2), 0)
                        b_stop = len(document)
                        if before + after:
                            k = rng.randint(0, before + after - 1)
                            if k < before:
                                random_start, b_stop = k, chunk_first - 1
                            else:
                                random_start = i + 2 + (k - before)
                    else:
                        random_start = rng.randint(0, len(random_document) - 1)
                        b_stop = len(random_document)
                    if random_start < 0 and len(current_chunk) == 1:
                        # mlmcorpus: nothing to pair a lone segment with -> the chunk is dropped.
                        current_chunk = []
                        current_length = 0
                        i += 1
                        continue
                    if random_start < 0:
                        # mlmcorpus: no distant text -> keep the actual next segments (label 0).
                        is_random_next = False
                        random_document_index = document_index
                        for j in range(a_end, len(current_chunk)):
                            tokens_b.extend(current_chunk[j])
                        b_first, b_last = chunk_first + a_end, chunk_first + len(current_chunk) - 1
                    else:
                        b_last = random_start
                        for j in range(random_start, b_stop):
                            tokens_b.extend(random_document[j])
                            b_last = j
                            if len(tokens_b) >= target_b_length:
                                break
                        b_first = random_start
                        num_unused_segments = len(current_chunk) - a_end
                        i -= num_unused_segments
                else:
                    is_random_next = False
                    random_document_index = document_index
                    for j in range(a_end, len(current_chunk)):
                        tokens_b.extend(current_chunk[j])
                    b_first, b_last = chunk_first + a_end, chunk_first + len(current_chunk) - 1
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)

                assert len(tokens_a) >= 1
                assert len(tokens_b) >= 1
                # (the reference builds [CLS] A [SEP] B [SEP] and masks here; masking is omitted)
                instances.append((tokens_a, tokens_b, is_random_next))
                if trace is not None:
                    chunk_last = chunk_first + len(current_chunk) - 1
                    trace.append((document_index, chunk_first, chunk_last, a_end, random_document_index, b_first, b_last))
            current_chunk = []
            current_length = 0
        i += 1

    return instances


def create_instances(
    documents: Sequence[Sequence[Sequence[int]]],
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    *,
    split_long: bool = True,
    same_document: str = "distant",
    trace: list | None = None,
) -> list[tuple[list[int], list[int], bool]]:
    """One pass over all documents in order (no shuffle, no dupe loop, no masking).

    Empty segments and documents are dropped first, as the reference does when
    reading; with ``split_long`` long segments are cut as mlmcorpus does.
    Indices in ``trace`` refer to the cleaned document list.
    """
    max_num_tokens = max_seq_length - 3
    if split_long:
        docs = [split_long_segments(d, max_num_tokens) for d in documents]
    else:
        docs = [[list(s) for s in d if len(s)] for d in documents]
    docs = [d for d in docs if d]
    out: list[tuple[list[int], list[int], bool]] = []
    for document_index in range(len(docs)):
        out.extend(
            create_instances_from_document(
                docs, document_index, max_seq_length, short_seq_prob, rng, same_document=same_document, trace=trace
            )
        )
    return out
