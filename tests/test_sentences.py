"""Tests for ``mlmcorpus.sentences``.

Every example asserts the exact expected list of sentences, written by hand;
the property tests check the contract the corpus builder relies on: no
non-whitespace character is ever lost or reordered, and every sentence is
stripped and non-empty.
"""

from __future__ import annotations

import gzip
import itertools
import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmcorpus.sentences import SPLITTERS, get_splitter, split_none, split_rules

from .conftest import SHARED, requires_shared

# --------------------------------------------------------------------------
# English
# --------------------------------------------------------------------------

ENGLISH_CASES: list[tuple[str, list[str]]] = [
    # plain terminators
    ("The cat sat. The dog ran.", ["The cat sat.", "The dog ran."]),
    ("Is it true? Yes! It is.", ["Is it true?", "Yes!", "It is."]),
    ("Really?! Yes!!! No?? OK.", ["Really?!", "Yes!!!", "No??", "OK."]),
    ("No final terminator here", ["No final terminator here"]),
    # closing quotes and brackets stay with their sentence
    ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    (
        "(This is an aside.) Next sentence. 'Single quoted.' Done! \u201cCurly?\u201d Yes.",
        ["(This is an aside.)", "Next sentence.", "'Single quoted.'", "Done!", "\u201cCurly?\u201d", "Yes."],
    ),
    ('She asked "Why?" and left.', ['She asked "Why?" and left.']),
    ('He left. "Wait," she said.', ["He left.", '"Wait," she said.']),
    # titles and other abbreviations
    (
        "Mr. Smith and Mrs. Jones met Dr. Brown. They talked.",
        ["Mr. Smith and Mrs. Jones met Dr. Brown.", "They talked."],
    ),
    (
        "Ms. Lee, Prof. Kim and Sr. Garcia came. Martin Luther King Jr. was a pastor.",
        ["Ms. Lee, Prof. Kim and Sr. Garcia came.", "Martin Luther King Jr. was a pastor."],
    ),
    ("St. Louis is big. So is Mt. Everest.", ["St. Louis is big.", "So is Mt. Everest."]),
    ("It is on Main St. The shop is old.", ["It is on Main St.", "The shop is old."]),
    ("He met John Smith Jr. The two talked.", ["He met John Smith Jr.", "The two talked."]),
    ("Apples vs. Oranges is a debate. I prefer pears.", ["Apples vs. Oranges is a debate.", "I prefer pears."]),
    (
        "See e.g. Smith, i.e. The Book, cf. Jones et al. Nature (2020). It was cited.",
        ["See e.g. Smith, i.e. The Book, cf. Jones et al. Nature (2020).", "It was cited."],
    ),
    (
        "Acme Inc. Board members, Foo Ltd. Staff, Bar Co. Officials and Baz Corp. Lawyers met.",
        ["Acme Inc. Board members, Foo Ltd. Staff, Bar Co. Officials and Baz Corp. Lawyers met."],
    ),
    (
        "No. 5 was retired. Fig. 3 shows it. See Vol. 2, pp. 10-12.",
        ["No. 5 was retired.", "Fig. 3 shows it.", "See Vol. 2, pp. 10-12."],
    ),
    ("He said no. Then he left.", ["He said no.", "Then he left."]),
    ("She ate a fig. It was sweet. Fig. S1 shows it.", ["She ate a fig.", "It was sweet.", "Fig. S1 shows it."]),
    (
        "They met on Sat. Jan. 5 at noon. The cat sat. The dog ran.",
        ["They met on Sat. Jan. 5 at noon.", "The cat sat.", "The dog ran."],
    ),
    (
        "The U.S. Army and the U.K. Government met at 9 a.m. Monday and 5 p.m. Tuesday.",
        ["The U.S. Army and the U.K. Government met at 9 a.m. Monday and 5 p.m. Tuesday."],
    ),
    ("It ran from Jan. 5 to Feb. 10. Then it closed.", ["It ran from Jan. 5 to Feb. 10.", "Then it closed."]),
    ("Open Sept. Through Dec. Only.", ["Open Sept. Through Dec. Only."]),
    (
        "Gen. Lee, Col. Smith, Lt. Dan, Sgt. Pepper, Capt. Hook, Rev. King, Gov. Brown, "
        "Sen. Warren and Rep. Lewis attended. It was crowded.",
        [
            "Gen. Lee, Col. Smith, Lt. Dan, Sgt. Pepper, Capt. Hook, Rev. King, Gov. Brown, "
            "Sen. Warren and Rep. Lewis attended.",
            "It was crowded.",
        ],
    ),
    ("She earned a Ph.D. She then taught.", ["She earned a Ph.D.", "She then taught."]),
    # documented choices: these abbreviations end a sentence before a typical
    # sentence-opening word, and `etc.` before any capitalised word
    ("He works for Apple Inc. The company is big.", ["He works for Apple Inc.", "The company is big."]),
    ("He moved to the U.S. He liked it.", ["He moved to the U.S.", "He liked it."]),
    (
        "We sold apples, pears, etc. and more. We bought nuts, seeds, etc. The shop closed.",
        ["We sold apples, pears, etc. and more.", "We bought nuts, seeds, etc.", "The shop closed."],
    ),
    # initials
    ("J. R. R. Tolkien wrote it. George W. Bush read it.", ["J. R. R. Tolkien wrote it.", "George W. Bush read it."]),
    ("J.R.R. Tolkien was born in 1892. He died in 1973.", ["J.R.R. Tolkien was born in 1892.", "He died in 1973."]),
    ("He served in World War I. The war ended in 1918.", ["He served in World War I.", "The war ended in 1918."]),
    ("He met Malcolm X. He was impressed.", ["He met Malcolm X.", "He was impressed."]),
    (
        "Smith v. Jones was decided (c. 1900). It was famous.",
        ["Smith v. Jones was decided (c. 1900).", "It was famous."],
    ),
    # numbers, decimals, versions, units
    (
        "Pi is about 3.14 and the version is v1.2.3 now. Update soon.",
        ["Pi is about 3.14 and the version is v1.2.3 now.", "Update soon."],
    ),
    ("The score was 3-1. 2019 was a good year.", ["The score was 3-1.", "2019 was a good year."]),
    ("The river is 465 m. The lake is deep.", ["The river is 465 m.", "The lake is deep."]),
    ("1. Germany", ["1. Germany"]),
    ("II. The second part.", ["II. The second part."]),
    ("1. FC Köln won. 2. Bundesliga clubs lost.", ["1. FC Köln won.", "2. Bundesliga clubs lost."]),
    # ellipses
    ("Wait... what happened? Nothing... Really.", ["Wait... what happened?", "Nothing...", "Really."]),
    ("He paused\u2026 then spoke. Fine\u2026 Go on.", ["He paused\u2026 then spoke.", "Fine\u2026", "Go on."]),
    # URLs, e-mails, domain names
    (
        "Visit www.example.com or https://example.org/a.b?c=d today. Email me at john.doe@example.com please. Thanks.",
        [
            "Visit www.example.com or https://example.org/a.b?c=d today.",
            "Email me at john.doe@example.com please.",
            "Thanks.",
        ],
    ),
    ("See example.com. It works.", ["See example.com.", "It works."]),
    # a terminator before a lowercase word never splits
    ("It was late. the end? no way! ok.", ["It was late. the end? no way! ok."]),
    # non-Latin letters after a terminator start a sentence
    ("It ended. \u03b1\u03b2\u03b3 is next.", ["It ended.", "\u03b1\u03b2\u03b3 is next."]),
    # editorial marks are not sentence ends
    ("The date (?) Is unknown.", ["The date (?) Is unknown."]),
    # whitespace inside a sentence is kept, around it stripped
    ("  First  sentence\twith  tabs.   Second.  ", ["First  sentence\twith  tabs.", "Second."]),
    ("", []),
    ("   \t ", []),
]


@pytest.mark.parametrize(("paragraph", "expected"), ENGLISH_CASES)
def test_english(paragraph: str, expected: list[str]) -> None:
    assert split_rules(paragraph) == expected


# --------------------------------------------------------------------------
# Korean
# --------------------------------------------------------------------------

KOREAN_CASES: list[tuple[str, list[str]]] = [
    # spaced terminators
    (
        "날씨가 좋다. 산책을 갔다! 재미있었나? 그렇다.",
        ["날씨가 좋다.", "산책을 갔다!", "재미있었나?", "그렇다."],
    ),
    # no space after the sentence end (common in web text)
    (
        "안녕하세요.저는 학생입니다.그리고 감사합니다.",
        ["안녕하세요.", "저는 학생입니다.", "그리고 감사합니다."],
    ),
    (
        "정말 했습니다.그리고 갔어요?그래서 왔죠.네 좋아요!그럼요.",
        ["정말 했습니다.", "그리고 갔어요?", "그래서 왔죠.", "네 좋아요!", "그럼요."],
    ),
    # decimals and dotted dates
    ("물가가 3.5% 올랐다. 금리는 1.25%다.", ["물가가 3.5% 올랐다.", "금리는 1.25%다."]),
    (
        "2019.08.30에 청원했다. 2019. 8. 30. 선고가 있었다.",
        ["2019.08.30에 청원했다.", "2019. 8. 30. 선고가 있었다."],
    ),
    # emoticon runs are kept, with the sentence they follow
    (
        "너무 슬퍼요ㅠㅠ 정말요. 감사합니다.ㅋㅋ 다음에 봐요!ㅎㅎ또 봐요.",
        ["너무 슬퍼요ㅠㅠ 정말요.", "감사합니다.ㅋㅋ", "다음에 봐요!ㅎㅎ", "또 봐요."],
    ),
    ("ㅋㅋㅋㅋ", ["ㅋㅋㅋㅋ"]),
    ("ㅠㅠ 너무 힘들어요 ㅠㅠ", ["ㅠㅠ 너무 힘들어요 ㅠㅠ"]),
    # a period used as a middle dot between nouns
    ("한.중.일 정상회의와 중.소기업 지원을 논의했다.", ["한.중.일 정상회의와 중.소기업 지원을 논의했다."]),
    # a quotation followed by its quotative particle continues the sentence
    (
        '그는 "정말입니까?"라고 물었다. 그녀는 "그만해!" 라고 외쳤다.',
        ['그는 "정말입니까?"라고 물었다.', '그녀는 "그만해!" 라고 외쳤다.'],
    ),
    ("좀 더 노력해보자!라는 생각으로 버텼다.", ["좀 더 노력해보자!라는 생각으로 버텼다."]),
    # an ellipsis after a non-final syllable is a pause
    (
        "요청해서... 학부모 동의도 얻었다... 그래서 갔다.",
        ["요청해서... 학부모 동의도 얻었다...", "그래서 갔다."],
    ),
    # formal endings close a sentence even without punctuation
    (
        "입학하였습니다 하지만 비리가 있습니다 정시를 늘려주십시오 감사합니다",
        ["입학하였습니다", "하지만 비리가 있습니다", "정시를 늘려주십시오", "감사합니다"],
    ),
    ("꼭 도와주세요 ㅠㅠ 부탁드립니다", ["꼭 도와주세요 ㅠㅠ", "부탁드립니다"]),
    ("감사합니다 라고 말했다.", ["감사합니다 라고 말했다."]),
    ("교황 보니파시오 8세는 과세했다.", ["교황 보니파시오 8세는 과세했다."]),
    # numbered lists
    (
        "제안합니다. 1. 로그인 기능. 2. 검색 기능.",
        ["제안합니다.", "1. 로그인 기능.", "2. 검색 기능."],
    ),
    # mixed Korean and English
    (
        "삼성전자는 Galaxy S10을 출시했다. Apple Inc. 역시 iPhone을 냈다. 가격은 $999.99이다.",
        ["삼성전자는 Galaxy S10을 출시했다.", "Apple Inc. 역시 iPhone을 냈다.", "가격은 $999.99이다."],
    ),
    ("D.C.에서 열렸다. 조지 W. 부시가 왔다.", ["D.C.에서 열렸다.", "조지 W. 부시가 왔다."]),
]


@pytest.mark.parametrize(("paragraph", "expected"), KOREAN_CASES)
def test_korean(paragraph: str, expected: list[str]) -> None:
    assert split_rules(paragraph) == expected


# --------------------------------------------------------------------------
# CJK full stops and mixed scripts
# --------------------------------------------------------------------------

CJK_CASES: list[tuple[str, list[str]]] = [
    (
        "今日は晴れです。明日は雨でしょう！本当？はい。",
        ["今日は晴れです。", "明日は雨でしょう！", "本当？", "はい。"],
    ),
    ("他说：“你好。”然后走了。", ["他说：“你好。”", "然后走了。"]),
    (
        "This is English. 这是中文。이것은 한국어다. Done.",
        ["This is English.", "这是中文。", "이것은 한국어다.", "Done."],
    ),
    ("하중 ５．０～７．０ 정도이다.", ["하중 ５．０～７．０ 정도이다."]),
]


@pytest.mark.parametrize(("paragraph", "expected"), CJK_CASES)
def test_cjk_and_mixed(paragraph: str, expected: list[str]) -> None:
    assert split_rules(paragraph) == expected


def test_long_runs_are_linear() -> None:
    # A quadratic regex would need many seconds for these; linear takes ms.
    started = time.perf_counter()
    assert split_rules("!" * 30_000) == ["!" * 30_000]
    assert split_rules("다." + "ㅋ" * 30_000) == ["다." + "ㅋ" * 30_000]
    assert len(split_rules("Yes. " * 30_000)) == 30_000
    assert time.perf_counter() - started < 2.0


# --------------------------------------------------------------------------
# split_none
# --------------------------------------------------------------------------


def test_split_none() -> None:
    assert split_none("  Hello. World!  ") == ["Hello. World!"]
    assert split_none("안녕하세요.저는") == ["안녕하세요.저는"]
    assert split_none("") == []
    assert split_none(" \t ") == []


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------

# Characters that exercise every rule: terminators, closers, openers, digits,
# upper/lower Latin, Hangul syllables and jamo, CJK stops, assorted spaces.
_TRICKY = [
    *".?!…。！？｡．\"'”’)]」』“‘([「『^~;:,-—%$@/*※",
    *"aAbBzZiIxXmMpPeEgGsStT0123456789",
    *"다요죠까니습합입세시오십라고는의을",
    *"ㅋㅠㅎㄱㅏ가힣漢字αβЖ",
    *[" ", " ", " ", "  ", "\t", "\u00a0", "\u3000", "\u200b"],
    *["Mr", "etc", "U.S", "No", "War I", "Inc", "The", "He", "니다", "세요"],
]

_text = st.one_of(
    st.text(),
    st.lists(st.sampled_from(_TRICKY), max_size=60).map("".join),
)


def _nonspace(text: str) -> str:
    return "".join(text.split())


@settings(max_examples=500, deadline=None)
@given(_text)
def test_split_rules_loses_nothing(paragraph: str) -> None:
    sentences = split_rules(paragraph)
    assert _nonspace(" ".join(sentences)) == _nonspace(paragraph)
    for sentence in sentences:
        assert sentence
        assert sentence == sentence.strip()


@settings(max_examples=200, deadline=None)
@given(_text)
def test_split_none_loses_nothing(paragraph: str) -> None:
    sentences = split_none(paragraph)
    assert _nonspace(" ".join(sentences)) == _nonspace(paragraph)
    assert all(s and s == s.strip() for s in sentences)
    assert len(sentences) <= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_TRICKY), max_size=40).map("".join))
def test_sentences_are_contiguous_slices(paragraph: str) -> None:
    # Each sentence is a piece of the input, in order, so inner whitespace is
    # preserved exactly.
    position = 0
    for sentence in split_rules(paragraph):
        found = paragraph.find(sentence, position)
        assert found >= 0
        assert not paragraph[position:found].strip()
        position = found + len(sentence)
    assert not paragraph[position:].strip()


# --------------------------------------------------------------------------
# get_splitter
# --------------------------------------------------------------------------


def test_builtin_splitters() -> None:
    assert set(SPLITTERS) == {"rules", "none"}
    assert get_splitter("rules") is split_rules
    assert get_splitter("none") is split_none


def test_plugin_path() -> None:
    assert get_splitter("mlmcorpus.sentences:split_none") is split_none
    assert get_splitter("mlmcorpus.sentences:split_rules")("One two. Three four.") == ["One two.", "Three four."]


def test_plugin_from_user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_splitter_plugin.py").write_text(
        "def by_semicolon(paragraph):\n"
        "    return [p.strip() for p in paragraph.split(';') if p.strip()]\n"
        "class Holder:\n"
        "    @staticmethod\n"
        "    def words(paragraph):\n"
        "        return paragraph.split()\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_splitter_plugin", raising=False)
    assert get_splitter("my_splitter_plugin:by_semicolon")("a; b ;c") == ["a", "b", "c"]
    assert get_splitter("my_splitter_plugin:Holder.words")("x y") == ["x", "y"]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("bogus", "'bogus'"),
        ("", "''"),
        ("no_such_module_xyz_123:split", "'no_such_module_xyz_123:split'"),
        ("mlmcorpus.sentences:no_such_function", "'mlmcorpus.sentences:no_such_function'"),
        ("mlmcorpus.sentences:SPLITTERS", "not callable"),
        (":split_rules", "':split_rules'"),
        ("mlmcorpus.sentences:", "'mlmcorpus.sentences:'"),
    ],
)
def test_get_splitter_errors(name: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        get_splitter(name)
    message = str(info.value)
    assert fragment in message
    assert "'rules'" in message and "'none'" in message and "module.path:callable" in message
    assert "\n" not in message


def test_get_splitter_plugin_import_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_splitter_plugin.py").write_text("raise RuntimeError('boom\\nsecond line')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_splitter_plugin", raising=False)
    with pytest.raises(ValueError) as info:
        get_splitter("broken_splitter_plugin:split")
    message = str(info.value)
    assert "'broken_splitter_plugin:split'" in message
    assert "RuntimeError: boom second line" in message
    assert "\n" not in message


# --------------------------------------------------------------------------
# The real corpora in ../shared/data
# --------------------------------------------------------------------------


def _documents(name: str, count: int) -> list[tuple[int, str]]:
    with gzip.open(SHARED / f"{name}.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [(doc["id"], doc["text"]) for doc in map(json.loads, itertools.islice(lines, count))]


@requires_shared
def test_real_paragraphs() -> None:
    en = dict(_documents("en_wikipedia", 1))[56564559].split("\n")[4]
    assert split_rules(en) == [
        "On October 31, 2015, Shaw was selected by the Santa Cruz Warriors with the 18th overall pick "
        "in the 2015 NBA Development League Draft.",
        "He signed for Dorados de Chihuahua of the Liga Nacional de Baloncesto Profesional (LNBP) in August 2019.",
        "In February 2020 he signed for Club Trouville of Montevideo, Uruguay, and played during the 2019–20 LUB "
        "season.",
    ]
    ko = dict(_documents("ko_wikipedia", 1))[5].split("\n")[6]
    assert split_rules(ko) == [
        "조지아 공과대학교를 졸업하였다.",
        "그 후 해군에 들어가 전함·원자력·잠수함의 승무원으로 일하였다.",
        "1953년 미국 해군 대위로 예편하였고 이후 땅콩·면화 등을 가꿔 많은 돈을 벌었다.",
        '그의 별명이 "땅콩 농부" (Peanut Farmer)로 알려졌다.',
    ]
    petition = dict(_documents("ko_petitions", 1))[510]
    assert split_rules(petition)[:6] == [
        "안녕하세요.",
        "현재 사대, 교대 등 교원양성학교들의 예비교사들이 임용절벽에 매우 힘들어 하고 있는 줄로 압니다.",
        "정부 부처에서는 영양사의 영양'교사'화, 폭발적인 영양'교사' 채용, 기간제 교사, 영전강, 스강의 "
        "무기계약직화가 그들의 임용 절벽과는 전혀 무관한 일이라고 주장하고 있지만 조금만 생각해보면 전혀 "
        "설득력 없는 말이라고 생각합니다.",
        "학교 수가 같고, 학생 수가 동일한데 영양교사와 기간제 교사, 영전강 스강이 학교에 늘어나게 되면 당연히 "
        "정규 교원의 수는 줄어들게 되지 않겠습니까?",
        "기간제 교사, 영전강, 스강의 무기계약직화, 정규직화 꼭 전면 백지화해주십시오.",
        "백년대계인 국가의 교육에 달린 문제입니다.",
    ]


@requires_shared
@pytest.mark.parametrize("name", ["en_wikipedia", "ko_wikipedia", "ko_petitions"])
def test_real_corpora_lose_nothing(name: str) -> None:
    for _, text in _documents(name, 300):
        for paragraph in text.split("\n"):
            sentences = split_rules(paragraph)
            assert _nonspace(" ".join(sentences)) == _nonspace(paragraph)
            assert all(s and s == s.strip() for s in sentences)
