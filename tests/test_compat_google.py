"""``build --compat google``: the instances of Google's create_pretraining_data.py, exactly.

Two references:

* :func:`reference_instances`, a plain list-based port of the reference (google-research/bert
  master, with ``do_whole_word_mask``) written for this test, on the token ids of our
  Google-rules tokenizer: it checks the range-based builder of ``mlmcorpus.compat.google``
  draw for draw, in every configuration below, wherever the tests run;
* ``bert-tensorflow`` itself (its ``create_training_instances`` and ``FullTokenizer``), when
  it and TensorFlow are importable (``pip install tensorflow-cpu bert-tensorflow``); skipped
  otherwise.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlmcorpus.cli import cli

from .conftest import SAMPLE

BERT_FILE = SAMPLE / "en_wiki.bert.txt"

#: Text the tokenisers disagree on if one gets a rule wrong: accents, Chinese characters,
#: control and format characters, punctuation, Greek capitals with a final sigma, long words.
TRICKY = [
    "Café Naïve résumé ÀÉÎÕÜ İstanbul ß ﬁ Å Ω K ǅ",
    "ΟΔΟΣ ΣΟΦΟΣ Σ ΑΣ\x00Α ΑΣ.Β ΑΣ中 ΑΣ\u200bΑ",
    "中文字符测试，漢字 and 日本語のテキスト",
    "a\x00b\u200bc\ufeffd\x7fe\ufffdf",
    "tab\there\x0bvt\x0cff",
    "$5^2`x~ «quoted» — dash… (paren) [bracket] {brace} ¿qué? ¡sí!",
    "\u2028line\u2029sep\u00a0nbsp\u3000ideographic",
    "x" * 150 + " " + "y" * 250 + " " + "z" * 201 + " " + "w" * 200,
    "[CLS] [SEP] [MASK] [UNK] [unused1] ##ing",
    "emoji 👍🏽 👨‍👩‍👧 한국어 텍스트 ﾊﾝｶｸ カタカナ \u0301accent",
    "private ab\ue000cd use \U000f0000the and unassigned x\u0378y",
]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uncased WordPiece vocab.txt trained on the sample's BERT-layout file."""
    from tokenizers import BertWordPieceTokenizer

    out = tmp_path_factory.mktemp("wp")
    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train([str(BERT_FILE)], vocab_size=2500, min_frequency=2, show_progress=False,
              special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.save_model(str(out))
    return out / "vocab.txt"


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's BERT layout, a document of tricky lines, whitespace-only and control-only
    lines, several blank lines in a row, no blank line at the end."""
    text = BERT_FILE.read_text(encoding="utf-8").rstrip("\n")
    path = tmp_path_factory.mktemp("in") / "wiki.txt"
    path.write_text(text + "\n\n\n" + "\n".join(TRICKY) + "\n \t \n\x00\x01\nLast doc, one line.", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the port


def reference_instances(documents, vocab_size, cls, sep, mask, continues, *, max_seq_length, dupe_factor,
                        short_seq_prob, masked_lm_prob, max_predictions, whole_word, rng):
    """The reference's create_training_instances after reading, on lists of token ids.

    ``documents``: list of documents, each a list of non-empty sentences (lists of ids).
    Returns (tokens, segment_ids, is_random_next, positions, labels) per instance, in the
    order the reference writes them.
    """
    docs = list(documents)
    rng.shuffle(docs)
    max_num_tokens = max_seq_length - 3
    instances = []
    for _ in range(dupe_factor):
        for d, document in enumerate(docs):
            target = max_num_tokens
            if rng.random() < short_seq_prob:
                target = rng.randint(2, max_num_tokens)
            chunk, length, i = [], 0, 0
            while i < len(document):
                chunk.append(document[i])
                length += len(document[i])
                if i == len(document) - 1 or length >= target:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    a = [t for s in chunk[:a_end] for t in s]
                    if len(chunk) == 1 or rng.random() < 0.5:
                        random_next = True
                        for _ in range(10):
                            other = rng.randint(0, len(docs) - 1)
                            if other != d:
                                break
                        b = []
                        for s in docs[other][rng.randint(0, len(docs[other]) - 1):]:
                            b.extend(s)
                            if len(b) >= target - len(a):
                                break
                        i -= len(chunk) - a_end
                    else:
                        random_next = False
                        b = [t for s in chunk[a_end:] for t in s]
                    while len(a) + len(b) > max_num_tokens:
                        longer = a if len(a) > len(b) else b
                        if rng.random() < 0.5:
                            del longer[0]
                        else:
                            longer.pop()
                    tokens = [cls, *a, sep, *b, sep]
                    segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
                    instances.append((*_mask(tokens, vocab_size, cls, sep, mask, continues, masked_lm_prob,
                                             max_predictions, whole_word, rng), segments, random_next))
                    chunk, length = [], 0
                i += 1
    rng.shuffle(instances)
    return [(t, s, r, p, lab) for t, p, lab, s, r in instances]


def _mask(tokens, vocab_size, cls, sep, mask, continues, prob, max_predictions, whole_word, rng):
    groups = []
    for i, t in enumerate(tokens):
        if t in (cls, sep):
            continue
        if whole_word and groups and continues[t]:
            groups[-1].append(i)
        else:
            groups.append([i])
    rng.shuffle(groups)
    out = list(tokens)
    k = min(max_predictions, max(1, int(round(len(tokens) * prob))))
    chosen, covered = [], set()
    for group in groups:
        if len(chosen) >= k:
            break
        if len(chosen) + len(group) > k or any(i in covered for i in group):
            continue
        for i in group:
            covered.add(i)
            if rng.random() < 0.8:
                out[i] = mask
            elif rng.random() < 0.5:
                pass
            else:
                out[i] = rng.randint(0, vocab_size - 1)
            chosen.append((i, tokens[i]))
    chosen.sort()
    return out, [i for i, _ in chosen], [t for _, t in chosen]


def read_like_the_reference(path: Path, encode) -> list[list[list[int]]]:
    documents: list[list[list[int]]] = [[]]
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8").strip()
            if not line:
                documents.append([])
            tokens = encode(line) if line else []
            if tokens:
                documents[-1].append(tokens)
    return [d for d in documents if d]


# ----------------------------------------------------------------------------- helpers


def build(runner, inp: Path, out: Path, vocab: Path, *args: str, quiet: bool = True) -> dict:
    result = runner.invoke(cli, ["build", str(inp), "-o", str(out), "--tokenizer", str(vocab), "--compat", "google",
                                 *(["-q"] if quiet else []), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())


def rows(out: Path) -> list[tuple]:
    """(tokens, segment_ids, is_random_next, positions, labels) of every row, in shard order."""
    manifest = json.loads((out / "manifest.json").read_text())
    found = []
    for shard in manifest["shards"]:
        t = pq.read_table(out / shard["file"]).to_pydict()
        for i in range(len(t["input_ids"])):
            n = sum(t["attention_mask"][i])
            k = sum(1 for p in t["masked_lm_positions"][i] if p)
            found.append((list(t["input_ids"][i][:n]), list(t["token_type_ids"][i][:n]), bool(t["next_sentence_label"][i]),
                          list(t["masked_lm_positions"][i][:k]), list(t["masked_lm_ids"][i][:k])))
    return found


def ported(corpus_file: Path, vocab: Path, *, seed=12345, max_seq_length=128, dupe_factor=10, short_seq_prob=0.1,
           masked_lm_prob=0.15, max_predictions=20, whole_word=False, lowercase=True):
    from mlmcorpus.compat.google import encode_lines, load_tokenizer
    from mlmcorpus.tokenizers import TokenizerSpec

    tok = load_tokenizer(TokenizerSpec(str(vocab), lowercase))
    docs = read_like_the_reference(corpus_file, lambda line: encode_lines(tok, [line], lowercase)[0].tolist())
    sp = tok.special_ids
    continues = [tok.id_to_piece(i).startswith("##") for i in range(tok.vocab_size)]
    return reference_instances(docs, tok.vocab_size, sp.cls, sp.sep, sp.mask, continues, max_seq_length=max_seq_length,
                               dupe_factor=dupe_factor, short_seq_prob=short_seq_prob, masked_lm_prob=masked_lm_prob,
                               max_predictions=max_predictions, whole_word=whole_word, rng=random.Random(seed))


# ----------------------------------------------------------------------------- against the port

CONFIGS = [
    ({}, []),
    ({"whole_word": True}, ["--masking", "whole-word"]),
    ({"seed": 7, "max_seq_length": 24, "dupe_factor": 2, "max_predictions": 5},
     ["--seed", "7", "--max-seq-length", "24", "--dupe-factor", "2", "--max-predictions-per-seq", "5"]),
    ({"seed": 3, "max_seq_length": 40, "dupe_factor": 3, "short_seq_prob": 0.9, "masked_lm_prob": 0.4,
      "max_predictions": 16, "whole_word": True},
     ["--seed", "3", "--max-seq-length", "40", "--dupe-factor", "3", "--short-seq-prob", "0.9", "--masked-lm-prob",
      "0.4", "--max-predictions-per-seq", "16", "--masking", "whole-word"]),
    ({"lowercase": False, "dupe_factor": 2}, ["--no-lowercase", "--dupe-factor", "2"]),
]


@pytest.mark.parametrize("kwargs,args", CONFIGS, ids=["defaults", "whole-word", "short-rows", "short-targets-ww", "cased"])
def test_instances_equal_the_port(runner, tmp_path, corpus_file, vocab, kwargs, args):
    manifest = build(runner, corpus_file, tmp_path / "out", vocab, *args)
    expected = ported(corpus_file, vocab, **kwargs)
    got = rows(tmp_path / "out")
    assert len(got) == len(expected) == manifest["totals"]["rows"]
    mismatched = [i for i, (g, e) in enumerate(zip(got, expected)) if g != e]
    assert not mismatched, f"{len(mismatched)} of {len(got)} instances differ, first {mismatched[0]}"


def test_reference_defaults_and_record(runner, tmp_path, corpus_file, vocab):
    manifest = build(runner, corpus_file, tmp_path / "out", vocab)
    config = manifest["config"]
    assert config["compat"] == "google"
    assert config["pairs"]["dupe_factor"] == 10
    assert config["mask"]["max_predictions_per_seq"] == 20
    assert config["output"]["shuffle"] is False
    assert manifest["tokenizer"]["lowercase"] is True
    assert manifest["tokenizer"]["max_chars_per_word"] == 200
    # Options given explicitly win over the reference's defaults.
    manifest = build(runner, corpus_file, tmp_path / "out2", vocab, "--dupe-factor", "2", "--max-seq-length", "64")
    assert manifest["config"]["pairs"]["dupe_factor"] == 2
    assert manifest["config"]["mask"]["max_predictions_per_seq"] == 20  # the reference's, not ceil(64 * 0.15)


@pytest.mark.parametrize("args", [[], ["--masking", "whole-word", "--format", "numpy"]])
def test_verify_passes(runner, tmp_path, corpus_file, vocab, args):
    build(runner, corpus_file, tmp_path / "out", vocab, "--dupe-factor", "3", *args)
    result = runner.invoke(cli, ["inspect", str(tmp_path / "out"), "--verify"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output


@pytest.mark.parametrize("where", ["unmasked", "masked"])
def test_verify_excuses_specials_only_where_masked(runner, tmp_path, corpus_file, vocab, where):
    """A random replacement of the reference may be [SEP]: excused at a masked position, not elsewhere."""
    from .test_inspect import rewrite_shard, update_manifest_shard

    out = tmp_path / "out"
    manifest = build(runner, corpus_file, out, vocab, "--dupe-factor", "2")
    sep = manifest["tokenizer"]["special_ids"]["sep"]

    def edit(cols):
        row = 3
        masked = np.flatnonzero(cols["labels"][row] != -100)
        plain = [j for j in range(2, 20) if cols["labels"][row, j] == -100 and cols["input_ids"][row, j] != sep]
        cols["input_ids"][row, masked[0] if where == "masked" else plain[0]] = sep

    rewrite_shard(out / manifest["shards"][0]["file"], edit)
    update_manifest_shard(out, 0)
    m = json.loads((out / "manifest.json").read_text())
    m["totals"]["bytes"] = sum(s["bytes"] for s in m["shards"])
    (out / "manifest.json").write_text(json.dumps(m))
    result = runner.invoke(cli, ["inspect", str(out), "--verify"])
    if where == "masked":
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1
        assert "row 3: [CLS], [SEP] or [PAD] inside the text" in result.output


def test_same_bytes_twice_and_workers_are_not_used(runner, tmp_path, corpus_file, vocab):
    a = build(runner, corpus_file, tmp_path / "a", vocab, "--dupe-factor", "2")
    result = runner.invoke(cli, ["build", str(corpus_file), "-o", str(tmp_path / "b"), "--tokenizer", str(vocab),
                                 "--compat", "google", "--dupe-factor", "2", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "runs in one process" in result.output
    b = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]


@pytest.mark.parametrize("extra,message", [
    (["--pair-task", "sop"], "NSP pairs only"),
    (["--masking", "span"], "tokens or whole words"),
    (["--masking", "whole-word", "--replace-per", "word"], "per piece"),
    (["--mask-ratios", "0.5,0.25,0.25"], "0.8,0.1,0.1"),
    (["--shuffle"], "--shuffle does not apply"),
    (["--masking", "whole-word", "--word-splitter", "os.path:split"], "no --word-splitter"),
    (["--resume"], "cannot --resume"),
])
def test_refuses_what_the_reference_cannot_do(runner, tmp_path, corpus_file, vocab, extra, message):
    result = runner.invoke(cli, ["build", str(corpus_file), "-o", str(tmp_path / "out"), "--tokenizer", str(vocab),
                                 "--compat", "google", *extra])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_refuses_other_inputs_and_tokenizers(runner, tmp_path, corpus_file, spm_model):
    for args, message in [
        ([str(corpus_file), "--tokenizer", str(spm_model)], "WordPiece vocab.txt"),
        ([str(corpus_file)], "--tokenizer"),
    ]:
        result = runner.invoke(cli, ["build", *args, "-o", str(tmp_path / "out"), "--compat", "google"])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output


def test_refuses_jsonl(runner, tmp_path, vocab):
    result = runner.invoke(cli, ["build", str(SAMPLE / "ko_wiki.jsonl"), "-o", str(tmp_path / "out"), "--tokenizer",
                                 str(vocab), "--compat", "google"])
    assert result.exit_code != 0 and "BERT layout" in result.output, result.output


def test_invalid_utf8_is_a_one_line_error(runner, tmp_path, vocab):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line.\nbroken \xff line.\n")
    result = runner.invoke(cli, ["build", str(bad), "-o", str(tmp_path / "out"), "--tokenizer", str(vocab),
                                 "--compat", "google"])
    assert result.exit_code == 1
    assert "bad.txt:2: not valid UTF-8" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "manifest.json").exists()


# ----------------------------------------------------------------------------- against Google's code


@pytest.fixture(scope="module")
def google():
    """bert-tensorflow's create_pretraining_data and tokenization (TensorFlow 2 through compat.v1)."""
    pytest.importorskip("tensorflow")
    cpd = pytest.importorskip("bert.create_pretraining_data")
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    from bert import tokenization

    return cpd, tokenization


def test_tokenizer_equals_full_tokenizer(google, vocab):
    from mlmcorpus.compat.google import encode_lines, load_tokenizer
    from mlmcorpus.tokenizers import TokenizerSpec

    _, tokenization = google
    lines = TRICKY + [line for line in BERT_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    for lowercase in (True, False):
        full = tokenization.FullTokenizer(str(vocab), do_lower_case=lowercase)
        ours = load_tokenizer(TokenizerSpec(str(vocab), lowercase))
        for line in lines:
            got = encode_lines(ours, [line], lowercase)[0].tolist()
            assert got == full.convert_tokens_to_ids(full.tokenize(line)), line


@pytest.mark.parametrize("seed,dupe,max_seq_length", [(12345, 10, 128), (1, 3, 32)])
def test_instances_equal_create_pretraining_data(google, runner, tmp_path, corpus_file, vocab, seed, dupe, max_seq_length):
    cpd, tokenization = google
    full = tokenization.FullTokenizer(str(vocab), do_lower_case=True)
    instances = cpd.create_training_instances([str(corpus_file)], full, max_seq_length, dupe, 0.1, 0.15, 20,
                                              random.Random(seed))
    expected = [(full.convert_tokens_to_ids(inst.tokens), list(inst.segment_ids), bool(inst.is_random_next),
                 list(inst.masked_lm_positions), full.convert_tokens_to_ids(inst.masked_lm_labels)) for inst in instances]
    build(runner, corpus_file, tmp_path / "out", vocab, "--seed", str(seed), "--dupe-factor", str(dupe),
          "--max-seq-length", str(max_seq_length))
    got = rows(tmp_path / "out")
    assert len(got) == len(expected)
    assert got == expected


def test_final_sigma_is_lower_cased_as_python_does_after_cleaning():
    """`tokenizers` lower-cases character by character; the reference uses str.lower() on the cleaned
    text, which turns a word-final capital sigma into a final sigma (a NUL between letters is gone
    first, so that sigma is not final)."""
    from mlmcorpus.compat.google import _prepared

    assert _prepared("ΟΔΟΣ ΑΣ\x00Α ΑΣ.", True) == "οδος ασα ας."
    assert _prepared("ΟΔΟΣ", False) == "ΟΔΟΣ"
    assert _prepared("Plain text\x00", True) == "Plain text\x00"  # untouched: the tokenizer cleans it


@pytest.mark.parametrize("lowercase", [True, False])
def test_private_use_and_unassigned_characters_make_the_word_unknown(vocab, lowercase):
    """The reference keeps them (they are not control characters), so the word holding one is out
    of the vocabulary: one [UNK].  `tokenizers` alone drops them and splits the word into pieces."""
    from mlmcorpus.compat.google import encode_lines, load_tokenizer
    from mlmcorpus.tokenizers import TokenizerSpec

    tok = load_tokenizer(TokenizerSpec(str(vocab), lowercase))
    unk = tok.special_ids.unk
    the = encode_lines(tok, ["the"], lowercase)[0].tolist()
    assert encode_lines(tok, ["ab\ue000cd the"], lowercase)[0].tolist() == [unk, *the]
    assert encode_lines(tok, ["\U000f0000the"], lowercase)[0].tolist() == [unk]
    assert encode_lines(tok, ["x\u0378y the"], lowercase)[0].tolist() == [unk, *the]
    # Lines without such characters go through `tokenizers`, in one batch, in order.
    lines = ["the cat", "ab\ue000cd", "Café"]
    batch = encode_lines(tok, lines, lowercase)
    assert [batch[i].tolist() for i in range(3)] == [encode_lines(tok, [x], lowercase)[0].tolist() for x in lines]
