"""Tokenizers: training, loading each kind, special tokens, Korean round trip."""

from __future__ import annotations

import io
import json
import unicodedata
import os
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from mlmcorpus.errors import TokenizerError
from mlmcorpus.readers import ReaderConfig, iter_documents, iter_sentences, resolve_sources
from mlmcorpus.tokenizers import (
    EncodedBatch,
    TrainConfig,
    hangul_preserving_nfkc_rules,
    load_tokenizer,
    train_tokenizer,
)

from .conftest import SAMPLE, SHARED, requires_shared

COMPAT_JAMO = {chr(c) for c in range(0x3131, 0x318F)}


def sentences_of(*paths: Path):
    sources = resolve_sources([str(p) for p in paths])
    return lambda: iter_sentences(iter_documents(sources, ReaderConfig()))


def train(tmp_path: Path, name: str, *paths: Path, **kw) -> tuple:
    kw.setdefault("threads", 2)
    return train_tokenizer(sentences_of(*paths), str(tmp_path / name), TrainConfig(**kw))


# ------------------------------------------------------------------ trained sentencepiece


def test_trained_model_reserves_special_ids_and_records_training(spm_model):
    tok = load_tokenizer(str(spm_model))
    assert tok.kind == "sentencepiece"
    assert tok.special_ids.as_dict() == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert [tok.id_to_piece(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.vocab_size == 2000
    info = tok.info()
    assert info["model_type"] == "unigram" and info["normalization"] == "user_defined"
    record = json.loads(spm_model.with_suffix(".json").read_text())
    assert record["config"]["vocab_size"] == 2000 and record["config"]["normalization"] == "nfkc_hangul"
    assert record["sha256"] == tok.sha256
    assert record["sentences_seen"] > 2000
    vocab = spm_model.with_suffix(".vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 2000 and vocab[4].startswith("[MASK]\t")


def test_special_tokens_in_text_are_not_special(spm_model):
    tok = load_tokenizer(str(spm_model))
    ids = tok.encode("a [MASK] b [CLS]")
    assert not set(ids) & {0, 2, 3, 4}


def test_training_is_deterministic(tmp_path):
    a, _ = train(tmp_path, "a", SAMPLE / "ko_wiki.jsonl", vocab_size=800, input_sentence_size=300, seed=7)
    b, _ = train(tmp_path, "b", SAMPLE / "ko_wiki.jsonl", vocab_size=800, input_sentence_size=300, seed=7)
    c, _ = train(tmp_path, "c", SAMPLE / "ko_wiki.jsonl", vocab_size=800, input_sentence_size=300, seed=8)
    assert Path(a.path).read_bytes() == Path(b.path).read_bytes()
    assert Path(a.path).read_bytes() != Path(c.path).read_bytes()


def test_too_large_vocab_is_reduced_with_a_warning(tmp_path, warnings_log):
    tok, record = train(tmp_path, "small", SAMPLE / "en_gutenberg.txt", vocab_size=32000)
    assert 100 < tok.vocab_size < 32000
    assert record["requested_vocab_size"] == 32000 and record["vocab_size"] == tok.vocab_size
    assert len(warnings_log) == 1
    assert f"--vocab-size 32000 is too large for this corpus; training with {tok.vocab_size}" in warnings_log[0]


def test_bpe_model(tmp_path):
    tok, _ = train(tmp_path, "bpe", SAMPLE / "en_wiki.bert.txt", model_type="bpe", vocab_size=600)
    assert tok.info()["model_type"] == "bpe"
    assert tok.special_ids.as_dict() == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert tok.decode(tok.encode("The city of London.")) == "The city of London."


def test_empty_input_is_an_error(tmp_path):
    with pytest.raises(TokenizerError, match="the input has no sentences"):
        train_tokenizer(lambda: iter([]), str(tmp_path / "x"), TrainConfig(vocab_size=100))


# ------------------------------------------------------------------ Korean round trip


def jamo_sentences():
    return [s for s in sentences_of(SAMPLE / "ko_petitions.jsonl.gz")() if COMPAT_JAMO & set(s)]


def test_hangul_rules_keep_compatibility_jamo_and_apply_nfkc_elsewhere():
    rules = dict(line.split("\t") for line in hangul_preserving_nfkc_rules().splitlines())
    assert not [k for k in rules if 0x3131 <= int(k, 16) <= 0x318E]
    assert rules["FF21"] == "41"  # fullwidth A -> A
    assert rules["FB01"] == "66 69"  # ligature fi -> f i
    assert rules["FFA1"] == "3131"  # halfwidth kiyeok -> compatibility kiyeok, not U+1100
    assert rules["3260"] == "3131"  # circled kiyeok likewise
    assert all(not (0x1100 <= int(t, 16) <= 0x11FF) for v in rules.values() for t in v.split())


def test_korean_with_compatibility_jamo_round_trips(spm_model):
    tok = load_tokenizer(str(spm_model))
    samples = jamo_sentences()
    assert len(samples) >= 10
    assert any("ㅋ" in s for s in samples) and any("ㅠ" in s for s in samples)
    checked = 0
    for s in samples + ["ㅋㅋㅋ 진짜 웃기네요", "ㅠㅠ 너무 슬퍼요 ㅜㅜ"]:
        ids = tok.encode(s)
        if tok.special_ids.unk in ids:  # a character outside the 0.9995 coverage cannot round trip
            continue
        assert tok.decode(ids) == unicodedata.normalize("NFC", s)
        checked += 1
    assert checked >= len(samples) - 2  # all but the odd sentence with a rare character
    assert tok.decode(tok.encode("ㅋㅋㅋ 진짜 웃기네요")) == "ㅋㅋㅋ 진짜 웃기네요"


def test_default_nmt_nfkc_would_break_the_round_trip(tmp_path):
    """Why the default is nfkc_hangul: plain NFKC turns ㅋ (U+314B) into U+110F."""
    tok, _ = train(tmp_path, "nfkc", SAMPLE / "ko_petitions.jsonl.gz", vocab_size=1500, normalization="nmt_nfkc")
    out = tok.decode(tok.encode("ㅋㅋㅋ 진짜 웃기네요"))
    assert out != "ㅋㅋㅋ 진짜 웃기네요" and "\u110f" in out


# ------------------------------------------------------------------ batch encoding and pieces


def test_encode_batch_matches_single_encodes(spm_model):
    tok = load_tokenizer(str(spm_model), threads=2)
    sents = ["Hello world.", "", "지미 카터는 조지아주에서 태어났다.", "The end."]
    batch = tok.encode_batch(sents)
    assert isinstance(batch, EncodedBatch) and len(batch) == 4
    assert batch.ids.dtype == np.int32 and batch.offsets.dtype == np.int64
    assert batch.offsets[0] == 0 and batch.offsets[-1] == len(batch.ids)
    for i, s in enumerate(sents):
        assert batch[i].tolist() == tok.sp.encode(s)
    assert batch.lengths[1] == 0


def test_word_start_mask_sentencepiece(spm_model):
    tok = load_tokenizer(str(spm_model))
    mask = tok.word_start_mask()
    assert mask.shape == (tok.vocab_size,) and mask.dtype == bool
    for i in range(5, tok.vocab_size):
        assert mask[i] == tok.id_to_piece(i).startswith("\u2581")
    assert mask[:5].all()


# ------------------------------------------------------------------ WordPiece vocab.txt and tokenizer.json

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "fox", "##es", "jump", "##ed", ".", "ㅋ", "##ㅋ"]


@pytest.fixture
def vocab_txt(tmp_path) -> Path:
    p = tmp_path / "vocab.txt"
    p.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return p


def test_wordpiece_vocab_txt(vocab_txt):
    tok = load_tokenizer(str(vocab_txt))
    assert tok.kind == "wordpiece" and tok.info()["lowercase"] is True  # no capitals in the vocab
    assert tok.vocab_size == len(VOCAB)
    assert tok.special_ids.as_dict() == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    ids = tok.encode("The quick foxes JUMPED. ㅋㅋ")
    assert [tok.id_to_piece(i) for i in ids] == ["the", "quick", "fox", "##es", "jump", "##ed", ".", "ㅋ", "##ㅋ"]
    assert tok.word_start_mask().tolist() == [not t.startswith("##") for t in VOCAB]
    cased = load_tokenizer(str(vocab_txt), lowercase=False)
    assert cased.encode("The fox")[0] == cased.special_ids.unk


def test_wordpiece_threads_1_encodes_without_the_library_thread_pool(vocab_txt, monkeypatch):
    """A worker loads its tokenizer with threads=1: `tokenizers` must not start a pool of its own."""
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    seen = []
    for threads, expected in ((1, "false"), (None, "true")):
        tok = load_tokenizer(str(vocab_txt), threads=threads) if threads else load_tokenizer(str(vocab_txt), threads=4)
        real = tok._encode

        def spy(batch, _real=real, **kw):
            seen.append(os.environ.get("TOKENIZERS_PARALLELISM"))
            return _real(batch, **kw)

        tok._encode = spy
        assert tok.encode_batch(["the quick fox"]).ids.tolist() == [5, 6, 7]
        assert seen[-1] == expected
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"  # restored


def test_tokenizer_json_matches_vocab_txt(vocab_txt, tmp_path):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    hf = Tokenizer(models.WordPiece.from_file(str(vocab_txt), unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece()
    hf.enable_padding(length=16)  # saved tokenizers may pad/truncate: loading must undo it
    hf.enable_truncation(max_length=4)
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    a = load_tokenizer(str(path))
    b = load_tokenizer(str(vocab_txt))
    text = ["the quick foxes jumped. the fox", "fox"]
    assert a.kind == "tokenizer.json"
    assert a.encode_batch(text).ids.tolist() == b.encode_batch(text).ids.tolist()
    assert len(a.encode("the quick foxes jumped. the fox")) == 9  # neither truncated to 4 nor padded to 16
    assert a.word_start_mask().tolist() == b.word_start_mask().tolist()


def test_missing_special_tokens_refused_unless_added(tmp_path):
    p = tmp_path / "vocab.txt"
    p.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"]) + "\n")
    with pytest.raises(TokenizerError, match=r"lacks special tokens \[MASK\]; pass --add-special-tokens"):
        load_tokenizer(str(p))
    tok = load_tokenizer(str(p), add_special_tokens=True)
    assert tok.vocab_size == 7 and tok.special_ids.mask == 6 and tok.id_to_piece(6) == "[MASK]"
    assert tok.word_start_mask().shape == (7,)


def test_sentencepiece_model_without_specials(tmp_path):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences_of(SAMPLE / "en_wiki.bert.txt")(), model_writer=model, vocab_size=300, minloglevel=2
    )
    path = tmp_path / "plain.model"
    path.write_bytes(model.getvalue())
    with pytest.raises(TokenizerError, match=r"lacks special tokens \[PAD\], \[MASK\]"):
        load_tokenizer(str(path))
    tok = load_tokenizer(str(path), add_special_tokens=True)
    # <s> and </s> serve as [CLS] and [SEP] (the RoBERTa convention); [PAD] and [MASK] are appended.
    assert tok.special_ids.as_dict() == {"pad": 300, "unk": 0, "cls": 1, "sep": 2, "mask": 301}
    assert tok.decode([300, *tok.encode("the city"), 301]) == "the city"


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.model", None, "no such tokenizer file"),
        ("bad.model", b"not a model", "not a loadable sentencepiece model"),
        ("bad.json", b"{}", "not a loadable tokenizer.json"),
        ("vocab.bin", b"\x00\x01\x02", "binary file; expected"),
        ("empty.txt", b"", "empty vocabulary"),
    ],
)
def test_bad_tokenizer_files(tmp_path, name, content, message):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(TokenizerError, match=message):
        load_tokenizer(str(p))


def test_tokenizer_directory_resolution(tmp_path, vocab_txt):
    assert load_tokenizer(str(vocab_txt.parent)).kind == "wordpiece"
    (tmp_path / "other.model").write_bytes(b"x")
    with pytest.raises(TokenizerError, match="several tokenizers"):
        load_tokenizer(str(tmp_path))
    empty = tmp_path / "e"
    empty.mkdir()
    with pytest.raises(TokenizerError, match="holds no tokenizer.json"):
        load_tokenizer(str(empty))


# ------------------------------------------------------------------ the real files in ../shared/data


@requires_shared
def test_real_bert_base_uncased_vocab():
    tok = load_tokenizer(str(SHARED / "tokenizers" / "bert-base-uncased_vocab.txt"))
    assert tok.vocab_size == 30522 and tok.info()["lowercase"] is True
    assert tok.special_ids.as_dict() == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    assert tok.encode("Hello World, unbelievable!") == [7592, 2088, 1010, 23653, 999]
    assert tok.sha256.startswith("07eced37")


@requires_shared
def test_real_koelectra_vocab():
    tok = load_tokenizer(str(SHARED / "tokenizers" / "koelectra-v1_vocab.txt"))
    assert tok.info()["lowercase"] is False
    pieces = [tok.id_to_piece(i) for i in tok.encode("지미 카터는 조지아주에서 태어났다.")]
    assert pieces == ["지", "##미", "카터", "##는", "조지아", "##주에서", "태어났다", "."]


@requires_shared
def test_real_tokenizer_json_equals_vocab_txt():
    a = load_tokenizer(str(SHARED / "tokenizers" / "all-MiniLM-L6-v2_tokenizer.json"))
    b = load_tokenizer(str(SHARED / "tokenizers" / "bert-base-uncased_vocab.txt"))
    sents = list(sentences_of(SAMPLE / "en_wiki.bert.txt")())[:300]
    sents.append(" ".join(sents[:20]))  # longer than the file's truncation length
    ea, eb = a.encode_batch(sents), b.encode_batch(sents)
    assert np.array_equal(ea.ids, eb.ids) and np.array_equal(ea.offsets, eb.offsets)
    assert max(ea.lengths) > 128  # the file's padding/truncation to 128 was switched off


@requires_shared
@pytest.mark.parametrize("name,model_type,size", [
    ("mistral-7b-v0.1_tokenizer.model", "bpe", 32000),
    ("sentencepiece_test_model.model", "unigram", 1000),
    ("sentencepiece_test_ja_model.model", "unigram", 8000),
])
def test_real_sentencepiece_models(name, model_type, size):
    path = str(SHARED / "tokenizers" / name)
    with pytest.raises(TokenizerError, match=r"lacks special tokens \[PAD\], \[MASK\]"):
        load_tokenizer(path)
    tok = load_tokenizer(path, add_special_tokens=True)
    assert tok.info()["model_type"] == model_type
    assert tok.vocab_size == size + 2
    ids = tok.encode("I am a cat.")
    assert ids and max(ids) < size and tok.decode(ids).strip() == "I am a cat."


def test_too_small_vocab_names_the_options(tmp_path):
    with pytest.raises(TokenizerError, match=r"--vocab-size 50 is smaller than the \d+ characters .* --character-coverage 0.9995"):
        train(tmp_path, "tiny", SAMPLE / "ko_wiki.jsonl", vocab_size=50)


def test_reservoir_sample_is_uniform_and_seeded():
    from mlmcorpus.tokenizers.train import reservoir_sample

    assert reservoir_sample(iter("abc"), 5, np.random.default_rng(0)) == ["a", "b", "c"]
    one = reservoir_sample(map(str, range(1000)), 10, np.random.default_rng(1))
    assert one == reservoir_sample(map(str, range(1000)), 10, np.random.default_rng(1))
    assert len(set(one)) == 10
    n, k, trials = 100, 10, 4000
    counts = np.zeros(n)
    rng = np.random.default_rng(2)
    for _ in range(trials):
        for x in reservoir_sample(range(n), k, rng):
            counts[x] += 1
    expected = trials * k / n  # each item is kept with probability k/n
    sd = np.sqrt(trials * (k / n) * (1 - k / n))
    assert np.all(np.abs(counts - expected) < 5 * sd), counts
    # chi-square over the 100 inclusion counts (df = 99): 99 +- 5 * sqrt(2 * 99) covers > 99.99 %
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 99 + 5 * np.sqrt(2 * 99)


def test_record_keeps_the_thread_count_because_it_changes_the_model(spm_model):
    record = json.loads(spm_model.with_suffix(".json").read_text())
    assert record["config"]["threads"] == 2
    assert TrainConfig().threads == 4  # fixed, not the machine's core count


def test_output_prefix_is_checked_before_training(tmp_path):
    from mlmcorpus.errors import ConfigError

    calls = []

    def sentences():
        calls.append(1)
        return iter(["never read"])

    with pytest.raises(ConfigError, match="is a directory; give a prefix such as"):
        train_tokenizer(sentences, str(tmp_path) + "/", TrainConfig(vocab_size=100))
    with pytest.raises(TokenizerError, match="cannot write there"):
        train_tokenizer(sentences, "/proc/nope/spm", TrainConfig(vocab_size=100))
    assert calls == []


def test_vocab_txt_that_is_not_utf8(tmp_path):
    p = tmp_path / "vocab.txt"
    p.write_bytes(b"[PAD]\n\xff\xfe\xfd\n")
    with pytest.raises(TokenizerError, match="not a UTF-8 text vocabulary"):
        load_tokenizer(str(p))


def test_overlong_sentences_left_out_of_training_are_reported(tmp_path, warnings_log):
    long = " ".join(["word"] * 3000)  # 14999 bytes > max_sentence_length 8192
    sents = list(sentences_of(SAMPLE / "en_wiki.bert.txt")()) + [long]
    _, record = train_tokenizer(lambda: iter(sents), str(tmp_path / "x"), TrainConfig(vocab_size=500, threads=2))
    assert record["sentences_too_long"] == 1
    assert any("1 sentence(s) longer than 8192 bytes were left out" in m for m in warnings_log)
