"""Where words start (issue 11, "Words"): a tokenizer.json's pre-tokenizer words and the
``--word-splitter module:function`` hook, per piece, from tokenisation to the masks.

The tokenizers are trained here, on sample_data/ (no downloads).  The oracles are independent
of the code under test: a tokenizer.json's words come from ``pre_tokenizer.pre_tokenize_str``
(the code uses the encodings' ``word_ids``), and a row's positions are traced back to the unit's
flat token array by running the same task on the positions themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mlmcorpus.cli import cli
from mlmcorpus.config import BuildConfig, MaskConfig, PairConfig, UnitConfig
from mlmcorpus.masking import MaskVocab
from mlmcorpus.masking import words as wm
from mlmcorpus.objective import instances_of, mask_unit
from mlmcorpus.readers import ReaderConfig, iter_documents, resolve_sources
from mlmcorpus.segments import segment_unit
from mlmcorpus.tokenizers import load_tokenizer
from mlmcorpus.units import Unit
from mlmcorpus.word_splitter import encode_with_words

from .conftest import ROOT, SAMPLE

tokenizers = pytest.importorskip("tokenizers")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPM = ROOT / "tests" / "golden" / "sample-unigram-2k.model"


def _documents(limit: int | None = None) -> list[list[str]]:
    docs = [d.sentences for d in iter_documents(resolve_sources([str(SAMPLE)]), ReaderConfig())]
    return docs[:limit] if limit else docs


@pytest.fixture(scope="module")
def bytelevel_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE without prefix space (GPT-2 style): a sentence's first word has no Ġ."""
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=1500, special_tokens=SPECIALS,
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([s for d in _documents() for s in d], trainer)
    path = tmp_path_factory.mktemp("bytelevel") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def bert_bpe_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BPE without any word marker behind BertPreTokenizer: punctuation is a word of its own,
    and nothing in the vocabulary tells where a word starts."""
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=1500, special_tokens=SPECIALS)
    tok.train_from_iterator([s for d in _documents() for s in d], trainer)
    path = tmp_path_factory.mktemp("bertbpe") / "tokenizer.json"
    tok.save(str(path))
    return path


def oracle_starts(tok, sentences: list[str]) -> np.ndarray:
    """bool[total]: a piece starts a pre-tokenizer word, from ``pre_tokenize_str`` and the
    pieces' offsets: its first character lies in another word than the previous piece's."""
    out = []
    for s in sentences:
        enc = tok.tok.encode(s, add_special_tokens=False)
        words = tok.tok.pre_tokenizer.pre_tokenize_str(s)
        word_lo = np.array([lo for _, (lo, _) in words], dtype=np.int64)
        begins = np.array([b for b, _ in enc.offsets], dtype=np.int64)
        word = np.searchsorted(word_lo, begins, side="right")
        out.append(np.concatenate([[True], word[1:] != word[:-1]]) if len(word) else np.zeros(0, dtype=bool))
    return np.concatenate(out)


def masked_rows_and_flat_positions(tok, config: BuildConfig, docs: list[list[str]], seed: int = 3):
    """(masked bool[n, L], flat index int64[n, L] (-1 off the text), the unit's segments) of one
    unit built with per-piece word starts."""
    seg = segment_unit(Unit(0, docs), tok, config, word_starts=True)
    paired = instances_of(seg, config, tok.special_ids)
    m = mask_unit(paired, MaskVocab.of(tok), config.mask, seed).columns
    assert m is not None
    n, L = m["input_ids"].shape
    masked = np.zeros((n, L), dtype=bool)
    pos = m["masked_lm_positions"].astype(np.int64)
    np.put_along_axis(masked, pos, pos > 0, axis=1)
    masked[:, 0] = False
    # The same task on the positions: the same instances (they depend on segment lengths only).
    BASE = 1 << 24
    traced = replace(seg.segments, ids=(np.arange(len(seg.segments.ids)) + BASE).astype(np.int32), word_starts=None)
    rows = instances_of(replace(seg, segments=traced), config, tok.special_ids).input_ids.astype(np.int64)
    flat = np.where(rows >= BASE, rows - BASE, -1)
    return masked, flat, seg.segments


def split_words(masked: np.ndarray, flat: np.ndarray, starts: np.ndarray) -> int:
    """Adjacent pieces of one word (by ``starts`` over the flat array) masked apart."""
    both = (flat[:, 1:] >= 0) & (flat[:, :-1] >= 0) & (flat[:, 1:] == flat[:, :-1] + 1)
    same = both & ~starts[np.clip(flat[:, 1:], 0, None)]
    return int((same & (masked[:, 1:] != masked[:, :-1])).sum())


def config_for(masking: str = "whole-word", task: str = "nsp", **pairs) -> BuildConfig:
    return BuildConfig(pairs=PairConfig(max_seq_length=64, task=task, **pairs), mask=MaskConfig(masking=masking),
                       units=UnitConfig())


# ------------------------------------------------------------------ tokenizer.json: the pre-tokenizer's words


def test_bytelevel_first_word_of_a_sentence_is_a_word_of_its_own(bytelevel_json):
    tok = load_tokenizer(str(bytelevel_json))
    assert tok.word_starts_per_token
    # One-word sentences too: each pre-tokenizer word id is 0, the same as the sentence's before.
    sentences = [s for d in _documents(40) for s in d] + ["Hello", "World", "again"]
    batch = tok.encode_batch(sentences, word_starts=True)
    np.testing.assert_array_equal(batch.word_starts, oracle_starts(tok, sentences))
    first = batch.offsets[:-1][batch.lengths > 0]
    assert batch.word_starts[first].all()
    # ... where the Ġ table says "continues the word before": the first word would merge with it.
    assert not tok.word_start_mask()[batch.ids[first]].all()
    np.testing.assert_array_equal(tok.encode_batch(sentences).ids, batch.ids)  # the same ids either way


@pytest.mark.parametrize("policy,task", [("whole-word", "nsp"), ("span", "nsp"), ("whole-word", "none")])
def test_masking_never_splits_a_pre_tokenizer_word(bytelevel_json, policy, task):
    tok = load_tokenizer(str(bytelevel_json))
    docs = _documents(60)
    masked, flat, segs = masked_rows_and_flat_positions(tok, config_for(policy, task), docs)
    oracle = oracle_starts(tok, [s for d in docs for s in d])
    np.testing.assert_array_equal(segs.word_starts, oracle)
    assert split_words(masked, flat, oracle) == 0
    # The check has teeth: by the Ġ table, these masks split words (sentence-initial words).
    table = tok.word_start_mask()[segs.ids]
    table[np.flatnonzero(np.isin(np.arange(len(table)), segs.start))] = True  # segment starts, as in rows
    assert split_words(masked, flat, table) > 0
    multi = (flat[:, 1:] == flat[:, :-1] + 1) & masked[:, 1:] & masked[:, :-1] & ~oracle[np.clip(flat[:, 1:], 0, None)]
    assert multi.sum() > 20  # words of several pieces were masked whole


def test_bert_pre_tokenizer_makes_punctuation_a_word(bert_bpe_json):
    tok = load_tokenizer(str(bert_bpe_json))
    sentences = ["Hello, world! Isn't it (really) fine?", "Seoul-based 2024."]
    batch = tok.encode_batch(sentences, word_starts=True)
    np.testing.assert_array_equal(batch.word_starts, oracle_starts(tok, sentences))
    pieces = [tok.id_to_piece(int(i)) for i in batch.ids]
    for j, p in enumerate(pieces):
        if p in {",", "!", "'", "(", ")", "?", "-", "."}:
            assert batch.word_starts[j], p  # punctuation starts a word ...
            assert j + 1 == len(pieces) or batch.word_starts[j + 1], pieces[j + 1]  # ... and ends it
    # Nothing in this BPE's vocabulary marks words; its pre-tokenizer does.
    assert tok.word_start_mask()[5:].all() and tok.marks_word_continuations()
    docs = _documents(60)
    masked, flat, segs = masked_rows_and_flat_positions(tok, config_for("ngram"), docs)
    assert split_words(masked, flat, oracle_starts(tok, [s for d in docs for s in d])) == 0


def test_tokenizer_json_builds_the_same_for_any_workers_and_verify_says_what_it_skips(runner, tmp_path, bytelevel_json):
    digests = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(bytelevel_json), "--masking", "whole-word",
                "-j", workers, "-q", "--pool-docs", "25"]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        digests.append([s["sha256"] for s in json.loads((out / "manifest.json").read_text())["shards"]])
    assert digests[0] == digests[1]
    report = runner.invoke(cli, ["inspect", str(tmp_path / "w1"), "--verify", "--json"])
    assert report.exit_code == 0, report.stdout
    v = json.loads(report.stdout)["verify"]
    assert v["passed"] and v["word_check"].startswith("skipped: the words of") and "pre-tokenizer" in v["word_check"]


def test_token_masking_with_a_tokenizer_json_carries_no_word_starts(monkeypatch, tmp_path, bytelevel_json, runner):
    """The word starts are made only for a word-level policy: token masking encodes as before."""
    from mlmcorpus.tokenizers.hf import HFTokenizer

    calls: list[bool] = []
    real = HFTokenizer.encode_batch
    monkeypatch.setattr(HFTokenizer, "encode_batch",
                        lambda self, s, word_starts=False: calls.append(word_starts) or real(self, s, word_starts))
    out = tmp_path / "tok"
    assert runner.invoke(cli, ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(bytelevel_json), "-q", "-j", "1"]).exit_code == 0
    assert calls and not any(calls)


# ------------------------------------------------------------------ --word-splitter


HOOKS = textwrap.dedent('''
    calls = 0

    def pairs(sentence):
        """Two-character words of the text (spaces aside): a stand-in for jieba or fugashi."""
        text = "".join(sentence.split())
        return [text[i:i + 2] for i in range(0, len(text), 2)]

    def eojeol(sentence):
        return sentence.split()

    def boom(sentence):
        raise RuntimeError("segmenter\\ncrashed")

    def number(sentence):
        return 7

    def wrong(sentence):
        return ["not", "the", "text"]

    not_callable = 3
''')

# A Chinese-like script: a word is one "first" character and one "second" (the hook's 2-character
# words), each character a WordPiece piece of its own (BertNormalizer splits CJK characters).
FIRST = "中日天山水火木金土月"
SECOND = "文本地上下人口心手足"


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "ww_hooks.py").write_text(HOOKS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ww_hooks", raising=False)
    from mlmcorpus.word_splitter import load_word_splitter

    load_word_splitter.cache_clear()
    return "ww_hooks"


@pytest.fixture
def cjk(tmp_path: Path) -> tuple[Path, Path]:
    """(a corpus of space-free sentences of 2-character words, a vocab.txt of its characters)."""
    gen = np.random.default_rng(5)
    docs = []
    for _ in range(120):
        sentences = []
        for _ in range(int(gen.integers(2, 7))):
            words = gen.integers(0, 10, size=(int(gen.integers(3, 15)), 2))
            sentences.append("".join(FIRST[a] + SECOND[b] for a, b in words) + "。")
        docs.append("\n".join(sentences))
    corpus = tmp_path / "zh.bert.txt"
    corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    vocab = tmp_path / "zh-vocab.txt"
    vocab.write_text("\n".join([*SPECIALS, *FIRST, *SECOND, "。"]) + "\n", encoding="utf-8")
    return corpus, vocab


def test_word_splitter_groups_follow_the_hooks_words(runner, tmp_path, hooks, cjk):
    corpus, vocab = cjk
    digests = []
    for workers in ("1", "2"):
        out = tmp_path / f"zh{workers}"
        args = ["build", str(corpus), "-o", str(out), "--tokenizer", str(vocab), "--masking", "whole-word", "-q",
                "--word-splitter", f"{hooks}:pairs", "-j", workers, "--pool-docs", "20", "--format", "numpy", "--no-shuffle"]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        m = json.loads((out / "manifest.json").read_text())
        digests.append([s["sha256"] for s in m["shards"]])
    assert digests[0] == digests[1]
    assert m["config"]["pairs"]["word_splitter"] == f"{hooks}:pairs"
    tok = load_tokenizer(str(vocab))
    first = [tok.encode(c)[0] for c in FIRST]
    second = [tok.encode(c)[0] for c in SECOND]
    shard = tmp_path / "zh1" / m["shards"][0]["file"]
    ids = np.load(shard / "input_ids.npy").astype(np.int64)
    labels = np.load(shard / "labels.npy")
    original = np.where(labels != -100, labels, ids)
    masked = labels != -100
    # A second character right after a first one is the rest of its word: masked with it.
    pair = np.isin(original[:, :-1], first) & np.isin(original[:, 1:], second)
    assert not (pair & (masked[:, :-1] != masked[:, 1:])).any()
    assert (pair & masked[:, :-1]).sum() > 100
    # Without the hook every character is a word of its own (refused: no continuations).
    plain = runner.invoke(cli, ["build", str(corpus), "-o", str(tmp_path / "plain"), "--tokenizer", str(vocab),
                                "--masking", "whole-word", "-q"])
    assert plain.exit_code == 2 and "marks no word continuations" in plain.stderr
    report = runner.invoke(cli, ["inspect", str(tmp_path / "zh1"), "--verify", "--json"])
    v = json.loads(report.stdout)["verify"]
    assert report.exit_code == 0 and v["passed"], v
    assert v["word_check"] == f"skipped: the words came from --word-splitter {hooks}:pairs, which the shards do not record"


def test_word_splitter_on_sentencepiece_offsets(hooks):
    """Whitespace words through sentencepiece's offsets are its ▁ words (lone ▁ pieces included)."""
    tok = load_tokenizer(str(SPM))
    sentences = [s for d in _documents(80) for s in d] + ["청와대 국민청원  게시판 ㅠㅠ", "中文 分词", "a ① b"]
    by_hook = encode_with_words(tok, sentences, f"{hooks}:eojeol")
    by_table = tok.encode_batch(sentences, word_starts=True)
    np.testing.assert_array_equal(by_hook.ids, by_table.ids)
    # [UNK] (分词 here) counts as a start in the table, as every special; in the text it is the
    # rest of its word.
    known = by_table.ids != tok.special_ids.unk
    assert (~known).sum() >= 1
    np.testing.assert_array_equal(by_hook.word_starts[known], by_table.word_starts[known])


@pytest.mark.parametrize("hook,fragment", [
    ("ww_missing_module:f", "cannot import module 'ww_missing_module' of word splitter 'ww_missing_module:f'"),
    ("ww_hooks:nosuch", "word splitter 'ww_hooks:nosuch': 'ww_hooks' has no attribute 'nosuch'"),
    ("ww_hooks:not_callable", "word splitter 'ww_hooks:not_callable' is not callable"),
    ("ww_hooks", "--word-splitter: expected 'module.path:function', got 'ww_hooks'"),
    ("ww_hooks:boom", "--word-splitter ww_hooks:boom: raised RuntimeError: segmenter crashed on the sentence"),
    ("ww_hooks:number", "--word-splitter ww_hooks:number: returned int for the sentence"),
    ("ww_hooks:wrong", "--word-splitter ww_hooks:wrong: its words 'not | the | text' do not spell the sentence"),
])
def test_a_bad_word_splitter_is_one_line_error(runner, tmp_path, hooks, hook, fragment):
    args = ["build", str(SAMPLE), "-o", str(tmp_path / "out"), "--tokenizer", str(SPM), "--masking", "whole-word",
            "-q", "-j", "2", "--word-splitter", hook]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_word_splitter_needs_word_level_masking(runner, tmp_path, hooks):
    args = ["build", str(SAMPLE), "-o", str(tmp_path / "out"), "--tokenizer", str(SPM), "-q", "--word-splitter",
            f"{hooks}:eojeol"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"Error: --word-splitter {hooks}:eojeol: word boundaries are for word-level masking "
                                     "(--masking whole-word, ngram or span), not --masking token")


# ------------------------------------------------------------------ stage pipelines


@pytest.mark.parametrize("case", ["tokenizer.json", "word-splitter"])
def test_the_stage_pipeline_equals_build_with_per_piece_word_starts(tmp_path, bytelevel_json, hooks, case):
    """tokenizer.json through the segments stream (`pairs` without --seed); the hook through the
    pairs stream (`pairs --seed`)."""
    mc = f"{sys.executable} -m mlmcorpus"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    if case == "tokenizer.json":
        tok, extra, pairs_seed = bytelevel_json, "", ""
    else:
        tok, extra, pairs_seed = SPM, f"--word-splitter {hooks}:eojeol", "--seed 9"
    piped = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{mc} stream -q {SAMPLE} | {mc} pairs --tokenizer {tok} {extra} {pairs_seed} -q "
         f"| {mc} mask --masking whole-word --seed 9 | {mc} write {tmp_path / 'piped'} -q"],
        capture_output=True, env=env, cwd=ROOT,
    )
    assert piped.returncode == 0, piped.stderr.decode()
    built = subprocess.run([*mc.split(), "build", str(SAMPLE), "-o", str(tmp_path / "built"), "--tokenizer", str(tok),
                            *extra.split(), "--masking", "whole-word", "--seed", "9", "-q"], capture_output=True, env=env, cwd=ROOT)
    assert built.returncode == 0, built.stderr.decode()
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("piped", "built")]
    assert [s["sha256"] for s in manifests[0]["shards"]] == [s["sha256"] for s in manifests[1]["shards"]]
    assert manifests[0]["config"]["pairs"]["word_splitter"] == manifests[1]["config"]["pairs"]["word_splitter"]


@pytest.mark.parametrize("sentence,words,spans,starts", [
    ("abcdef", ["ab", "cd", "ef"], [(0, 3), (3, 4), (4, 6)], [1, 0, 1]),  # "abc" runs into "cd": "d" continues it
    ("abcdef", ["ab", "cd", "ef"], [(0, 1), (1, 3), (3, 6)], [1, 1, 1]),  # "bc", "def" cross into new words
    ("abcdef", ["abcdef"], [(0, 1), (1, 3), (3, 6)], [1, 0, 0]),
    ("ab cd", ["ab", " ", "cd"], [(0, 2), (2, 3), (3, 5)], [1, 1, 0]),  # a piece of space goes with the next word
    ("ab cd", ["ab", "cd"], [(0, 2), (2, 4), (4, 5)], [1, 1, 0]),  # " c" starts "cd"
    ("中文", ["中文"], [(0, 0), (0, 1), (1, 2)], [1, 0, 0]),  # an empty piece (sentencepiece's lone ▁)
])
def test_piece_word_starts_by_hand(sentence, words, spans, starts):
    from mlmcorpus.word_splitter import piece_word_starts

    two = [sentence, sentence]  # the second sentence's first piece starts a word whatever the first ends with
    got = piece_word_starts(two, lambda s: words, "t:f", np.array([0, len(spans), 2 * len(spans)]),
                            np.array(spans * 2, dtype=np.int64))
    assert got.astype(int).tolist() == starts * 2


# ------------------------------------------------------------------ the masker's side


def test_word_groups_take_per_position_starts_over_the_vocabulary():
    """The same ids grouped two ways: by the table (one word per piece) and by the rows' starts."""
    vocab = MaskVocab(np.array([0, 2, 3, 4], dtype=np.int32), 4, np.arange(5, 50, dtype=np.int32), 50,
                      np.ones(50, dtype=bool))
    ids = np.array([[2, 10, 11, 12, 13, 3, 14, 15, 3, 0]], dtype=np.int32)
    lengths = np.array([9])
    starts = np.array([[1, 1, 0, 0, 1, 1, 0, 0, 1, 1]], dtype=bool)  # [10 11 12] [13] | [14 15]
    _, wid, words, _ = wm.word_groups(ids, lengths, vocab, starts)
    assert words.tolist() == [3] and wid[0, :9].tolist() == [-1, 0, 0, 0, 1, -1, 2, 2, -1]
    assert wm.word_groups(ids, lengths, vocab)[2].tolist() == [6]
    cfg = MaskConfig(masking="whole-word", masked_lm_prob=0.3, max_predictions_per_seq=5)
    for seed in range(20):
        m = wm.mask_words(ids, lengths, vocab, cfg, np.random.default_rng(seed), starts)
        chosen = (m.labels != -100)[0]
        assert chosen[1] == chosen[2] == chosen[3] and chosen[6] == chosen[7]
