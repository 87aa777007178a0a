"""Rule-based sentence splitting for English, Korean and mixed-script paragraphs.

BERT-style pretraining corpora are written one sentence per line, and the
next-sentence-prediction pairs are cut at those lines, so the corpus builder
needs a sentence splitter that is

* fast: it runs over tens of megabytes of raw text, so it must not be the
  bottleneck next to tokenisation;
* lossless: every non-whitespace character of the input appears in the
  output, in order, because silently dropping text (emoticons such as ``ㅠㅠ``,
  stray punctuation) would corrupt the training data in ways nobody notices;
* dependency-free: plain :mod:`re`, so the package installs anywhere.

The default splitter, :func:`split_rules`, finds every *candidate* boundary
with one precompiled regular expression over the whole paragraph (a run of
terminators, the closing quotes/brackets/emoticons glued to it, and either
whitespace or - for Korean - directly the next Hangul syllable), plus a second
one for Korean formal endings written without any punctuation.  Candidates
are rare compared to characters, so the per-candidate Python checks
(abbreviations, initials, numbers, quotatives) cost little; there is no
per-character Python loop, and every pattern runs in linear time.  Sentences
are then plain slices between the accepted boundaries, stripped, so no
character can be lost or reordered.

Known, accepted limitations (rules, not a model): an abbreviation that really
ends a sentence stays joined to the next one unless that one opens with a
typical sentence-opening word (``... Apple Inc. The ...`` splits,
``... Apple Inc. Apple ...`` does not); a single capital letter is taken for
an initial; Korean sentences that end in a plain ``-다``/``-요`` without any
punctuation are not split (only formal ``-ㅂ니다``/``-ㅂ니까``/``-세요``/
``-십시오`` endings are).

Other splitters can be plugged in by name through :func:`get_splitter`, either
from :data:`SPLITTERS` or as ``"module.path:callable"``.
"""

from __future__ import annotations

import importlib
import re
from typing import Final, Protocol, cast

__all__ = ["SPLITTERS", "Splitter", "get_splitter", "load_callable", "is_abbreviation", "split_none", "split_rules"]


class Splitter(Protocol):
    """A sentence splitter: one paragraph in, its sentences out.

    The paragraph contains no newlines.  The result holds stripped, non-empty
    sentences in their original order, and joining them with single spaces
    loses no non-whitespace text.  This is the contract the corpus builder
    relies on, so any plugged-in splitter must honour it too.
    """

    def __call__(self, paragraph: str) -> list[str]:
        """Split ``paragraph`` into its sentences."""


# --------------------------------------------------------------------------
# Character classes.
# --------------------------------------------------------------------------

#: Sentence terminators that need a following space (or Korean context):
#: . ? ! … ‼ ‽ ⁇ ⁈ ⁉
_TERMINATORS: Final = ".?!\u2026\u203c\u203d\u2047\u2048\u2049"
#: Full-width / CJK terminators, after which a sentence ends even without a
#: space (Chinese and Japanese put none): 。 ！ ？ ｡.  The full-width period
#: ``．`` is left out: it is used as a decimal point (``５．０``).
_CJK_TERMINATORS: Final = "\u3002\uff01\uff1f\uff61"
#: Quotes and brackets that close a sentence and stay with it.
_CLOSING_PUNCT: Final = (
    "\"'\u201d\u2019\u00bb\u203a)\\]}"
    "\u300d\u300f\u3011\u3009\u300b\u3015\u3017\u3019\u301b\uff09\uff3d\uff63"
)
#: Emoticon characters that trail a Korean sentence end (``요.ㅠㅠ``,
#: ``다!!ㅋㅋ``, ``^^``, ``~~``): they belong to the sentence they follow.
#: U+3131..U+318E are the Hangul compatibility jamo (ㄱ..ㅎ, ㅏ..ㅣ).
_TRAILING_EMOTICON: Final = "\u3131-\u318e^~"
#: Quotes and brackets that can open a sentence.
_OPENING_PUNCT: Final = (
    "\"'\u201c\u2018\u201e\u201a\u00ab\u2039([{\u00bf\u00a1"
    "\u300c\u300e\u3010\u3008\u300a\u3014\u3016\u3018\u301a\uff08\uff3b\uff62"
)
_QUOTES_AND_BRACKETS: Final = frozenset(_CLOSING_PUNCT)
#: Bullets and marks that open an item or a sentence in web text
#: (``...입니다. **청과의 ...``, ``... 바랍니다. ※ 참고``).
_BULLETS: Final = (
    "*#\u203b\u2022\u25a0\u25a1\u25cf\u25cb\u25c6\u25c7\u25b6\u25b7\u25ba"
    "\u2605\u2606\u25b2\u25b3\u25bc\u25bd\u25ce"
)

# One regex finds every candidate boundary.  It starts with a plain character
# class so that the regex engine can skip to the next terminator in C, and the
# lookbehind right after that first character rejects a start inside a run of
# terminators, which keeps long runs (``!!!!...``) linear instead of quadratic.
#
# * ``cjk`` branch: a CJK full stop (last char of the terminator run) plus its
#   closers is always a boundary.
# * ``ws`` branch: terminator run, closers, whitespace, then some non-space
#   character (checked in Python: uppercase, digit, opener, non-Latin letter).
# * ``ko`` branch: terminator run, closers, then directly a Hangul syllable
#   (web Korean such as ``했습니다.그리고``); the character before the run
#   is checked in Python.
_ALL_TERMINATORS: Final = _TERMINATORS + _CJK_TERMINATORS
_CANDIDATE: Final = re.compile(
    rf"(?P<term>[{_ALL_TERMINATORS}](?<![{_ALL_TERMINATORS}].)[{_ALL_TERMINATORS}]*)"
    rf"(?:"
    rf"(?<=[{_CJK_TERMINATORS}])(?P<cjk>[{_CLOSING_PUNCT}]*)"
    rf"|(?P<close>[{_CLOSING_PUNCT}{_TRAILING_EMOTICON}]*)"
    rf"(?:(?P<ws>\s+)(?=\S)|(?=(?P<ko>[\uac00-\ud7a3])))"
    rf")"
)

# --------------------------------------------------------------------------
# Abbreviations (English).  Tokens are compared without their final period.
# --------------------------------------------------------------------------

#: Compared case-insensitively: abbreviations that practically never end a
#: sentence (titles before names, Latin citation words, ...).
_ABBREVIATIONS: Final = frozenset(
    """
    mr mrs ms mx messrs mmes mme mlle dr prof sra srta ste fr
    vs viz cf al approx incl esp adv vol vols pp dept univ assn intl natl govt mfg
    jan feb apr jun jul aug sep sept oct nov dec
    lt sgt capt cpl pvt maj brig adm cmdr cdr insp supt
    calif conn fla ariz colo okla tenn
    """.split()
)
#: Compared exactly: abbreviations with a spelling that is also a word or a
#: name (``Col``/col, ``Sat``/sat, ``Ed``/ed., ``CA``/ca.), so only the
#: abbreviation's own casing counts.
_ABBREVIATIONS_CASED: Final = frozenset(
    """
    Gen Col Gov Sen Rep Rev Pres Det Amb Atty Mt Ft Pt Mar Md Hon Rt Ph Fig Figs
    Mon Tue Tues Wed Thu Thur Thurs Fri Sat Sun
    ed eds trans repr ca fl
    """.split()
)
#: Abbreviations only when a number follows (``No. 5``, ``Fig. 3``); else
#: they are ordinary words that can end a sentence (``He said no. Then``,
#: ``She ate a fig. It``).
_NUMBER_ABBREVIATIONS: Final = frozenset("no nos nr art ch sec op para paras rs pg pt fol fig figs ff".split())
#: Abbreviations that often end a sentence too (``... by Apple Inc. The``,
#: ``... on Main St. It``): they end it only when a typical
#: sentence-opening word follows, never before a name (``St. Louis``).
_ENDABLE_ABBREVIATIONS: Final = frozenset("jr sr st inc ltd co cos corp bros pty plc llc esq ave rd blvd hwy".split())
#: Abbreviations that may end a sentence before any capitalised word.  A
#: mid-sentence ``etc.`` is followed by lowercase or punctuation, so
#: ``etc. The`` is almost always a boundary.
_SENTENCE_FINAL_ABBREVIATIONS: Final = frozenset(["etc"])
#: Dotted abbreviations that never end a sentence (unlike ``U.S.``, ``p.m.``).
_DOTTED_NEVER_FINAL: Final = frozenset(["e.g", "i.e", "a.k.a", "n.b", "v.s"])
#: Words that typically open an English sentence; after ``Jr.``, ``Inc.``,
#: ``U.S.``, ``p.m.`` or an initial they mean the abbreviation ended it
#: (``the U.S. Army`` vs ``moved to the U.S. He``).  Surnames are never
#: among them, so initials before a surname are safe.
_SENTENCE_STARTERS: Final = frozenset(
    """
    The He She It They We His Her Its Their This These Those There However
    In On At After During Since When While Although But Following Today
    Meanwhile Later Despite According Before Upon
    """.split()
)

#: Dotted abbreviations: ``U.S``, ``e.g``, ``i.e``, ``a.m``, ``Ph.D``,
#: ``J.R.R``, ``2a.m`` (tokens are seen without their final period).
#: Multi-letter lowercase parts are excluded so that ``example.com`` is not
#: matched.
_DOTTED_ABBREVIATION: Final = re.compile(r"[0-9]*(?:[A-Z][a-z]?|[a-z])(?:\.(?:[A-Z][a-z]?|[a-z]))+")
#: Numbers, dates and versions before a period: ``2019``, ``2019.08``, ``1.2.3``.
_NUMERIC: Final = re.compile(r"[0-9][0-9.,]*")
#: List markers that open a paragraph: ``1. Germany``, ``II. This Freedom``.
_LIST_MARKER: Final = re.compile(r"[0-9]{1,3}|[IVX]{1,4}")
_LEADING_SPACE: Final = re.compile(r"\s*")
#: German ordinal club names: ``1. FC Nürnberg``, ``2. Bundesliga``.
_ORDINAL_NAME: Final = re.compile(r"(?:FC|FSV|FFC|SC|SV|VfB|VfL|HFC|BFC|Bundesliga|Liga)\b")
#: The word after a candidate boundary, for :data:`_SENTENCE_STARTERS`.
_WORD: Final = re.compile(r"[A-Za-z]+")

# --------------------------------------------------------------------------
# Korean.
# --------------------------------------------------------------------------

#: Syllables that end a Korean sentence before ``.`` written without a space
#: (``했다.그``, ``해요.그``, ``입니까.그``, ``했음.그``), or before an ellipsis
#: that ends a sentence (``했어요... 그``).  Deliberately short: informal text
#: also uses ``.`` as a middle dot between nouns (``중.소기업``,
#: ``제작.배포``, ``한.중.일``) and ``..`` as a pause inside a sentence
#: (``요청해서... 학부모``), neither of which may split.
_KO_FINAL_SYLLABLES: Final = frozenset("다요죠까네음함임됨냐")
#: Quotative particles and verbs that continue a sentence after a quotation
#: (``"정말입니까?"라고 물었다``, ``"...했다." 라는``): no boundary there.
_KO_QUOTATIVE: Final = re.compile(
    r"(?:이?라(?:고|는|며|면서|던|니|든지)|이?란(?![가-힣])|하(?:고|는|며|면서|였|여|던)|했|한다"
    r"|고(?![가-힣])|며(?![가-힣])|면서|는(?![가-힣])|의(?![가-힣])|[을를와과](?![가-힣]))"
)
#: Hangul syllables whose final consonant is ㅂ (합, 습, 입, 됩, 랍, ...):
#: before ``니다``/``니까`` they form the formal sentence endings.
_KO_B_FINAL: Final = "".join(chr(0xAC00 + 28 * i + 17) for i in range(19 * 21))
#: Formal/polite endings that close a sentence even without punctuation,
#: as petitions often do (``입학하였습니다 하지만 ...``): ``-ㅂ니다``,
#: ``-ㅂ니까``, ``-세요``, ``-십시오``, plus trailing emoticons (``ㅠㅠ``).
#: ``-시니까`` ("because you ...") and a bare ``-시오`` (common in names:
#: 보니파시오, 요시오) are deliberately not matched.
_KO_UNPUNCTUATED_END: Final = re.compile(
    rf"[{_KO_B_FINAL}세시](?:(?<=[{_KO_B_FINAL}])니[다까]|(?<=세)요|(?<=십시)오)"
    rf"(?:[ \t]*[{_TRAILING_EMOTICON}]+)?(?=\s+(?P<next>\S))"
)


def _is_hangul(char: str) -> bool:
    """Whether ``char`` is a Hangul syllable or compatibility jamo."""
    return "\uac00" <= char <= "\ud7a3" or "\u3131" <= char <= "\u318e"


# --------------------------------------------------------------------------
# What may start a sentence (after a terminator and whitespace).
# --------------------------------------------------------------------------

_START_CACHE: dict[str, bool] = {}


def _starts_sentence(char: str) -> bool:
    """Whether ``char`` may begin a sentence after ``. `` / ``? `` / ``! ``.

    Uppercase letters, digits, opening quotes/brackets and letters of scripts
    without case (Hangul, CJK, ...) or of non-Latin scripts may; Latin
    lowercase letters and other punctuation (``, ; : -``) may not.  Results
    are cached because the same few characters recur constantly.
    """
    cached = _START_CACHE.get(char)
    if cached is not None:
        return cached
    code = ord(char)
    latin = code < 0x370 or 0x1D00 <= code < 0x1F00 or 0x2C60 <= code < 0x2C80 or 0xFF41 <= code <= 0xFF5A
    result = (
        char.isupper()
        or char.isdigit()
        or char in _OPENING_PUNCT
        or char in _BULLETS
        or (char.isalpha() and not (char.islower() and latin))
    )
    if len(_START_CACHE) < 4096:
        _START_CACHE[char] = result
    return result


def _last_token(paragraph: str, end: int) -> str:
    """The whitespace-delimited token ending at ``end``, without opening quotes.

    Only a bounded window is examined: longer tokens (URLs) are never
    abbreviations, so a truncated view of them is just as good.
    """
    parts = paragraph[max(0, end - 48) : end].rsplit(None, 1)
    if not parts:
        return ""
    return parts[-1].lstrip(_OPENING_PUNCT)


def _starter_follows(paragraph: str, pos: int) -> bool:
    """Whether the word at ``pos`` typically opens a sentence (``The``, ``He``)."""
    word = _WORD.match(paragraph, pos)
    return word is not None and word.group() in _SENTENCE_STARTERS


def is_abbreviation(word: str) -> bool:
    """Whether ``word`` (with its final ``.``) is an abbreviation that never ends a sentence: ``Mr.``, ``approx.``."""
    stem = word[:-1]
    return word.endswith(".") and (stem in _ABBREVIATIONS_CASED or stem.lower() in _ABBREVIATIONS)


def _is_abbreviation(paragraph: str, start: int, next_pos: int) -> bool:
    """Whether the single ``.`` at ``start`` does not end the sentence.

    ``next_pos`` is the index of the first character after the whitespace,
    already known to be able to start a sentence.
    """
    token = _last_token(paragraph, start)
    if not token:
        return False
    if token in _ABBREVIATIONS_CASED:
        return True
    lower = token.lower()
    if lower in _ABBREVIATIONS:
        return True
    if lower in _SENTENCE_FINAL_ABBREVIATIONS:
        return False
    next_char = paragraph[next_pos]
    if lower in _NUMBER_ABBREVIATIONS:
        return next_char.isdigit()
    token_start = start - len(token)
    if _LIST_MARKER.fullmatch(token) is not None:
        leading = _LEADING_SPACE.match(paragraph)
        if leading is not None and leading.end() == token_start:
            return True  # ``1. Germany``, ``II. This Freedom`` opening the paragraph
    if len(token) == 1 and ("A" <= token <= "Z" or "a" <= token <= "z"):
        # A single Latin letter is an initial (``J. R. R. Tolkien``,
        # ``George W. Bush``) or a label (``p. 5``, ``c. 1900``, ``b. 1929``),
        # except for a unit after a number (``465 m. The``) and a letter or
        # numeral that ends a sentence (``World War I.``, ``Malcolm X. He``).
        if token.islower():
            return next_char.isdigit() or _NUMERIC.fullmatch(_last_token(paragraph, token_start)) is None
        if token == "I" and paragraph.endswith("War I", 0, start):
            return False
        return not _starter_follows(paragraph, next_pos)
    if _NUMERIC.fullmatch(token) is not None:
        # Korean dates and numbered lists (``2019. 8. 30.``, ``2019. 8. 30. 선고``):
        # a number followed by a digit or Hangul continues the sentence.
        if next_char.isdigit() or _is_hangul(next_char):
            return True
        return len(token) <= 2 and _ORDINAL_NAME.match(paragraph, next_pos) is not None
    if lower in _ENDABLE_ABBREVIATIONS:
        return not _starter_follows(paragraph, next_pos)
    if "." in token and _DOTTED_ABBREVIATION.fullmatch(token) is not None:
        return lower in _DOTTED_NEVER_FINAL or not _starter_follows(paragraph, next_pos)
    return False


def _boundaries(paragraph: str) -> list[int]:
    """Indices just after each sentence end (terminators plus closers)."""
    cuts: list[int] = []
    for match in _CANDIDATE.finditer(paragraph):
        cjk_end = match.end("cjk")
        if cjk_end >= 0:
            cuts.append(cjk_end)
            continue
        start = match.start()
        before = paragraph[start - 1] if start else ""
        if before in "([{":
            # ``(?)``, ``(!)``, ``[...]``: editorial marks, not sentence ends.
            continue
        close = match.group("close")
        cut = match.end("close")
        term = match.group("term")
        if match.group("ws") is None:
            # Korean without a space: ``했습니다.그리고``, ``뭡니까?그래서``.
            if not before or not _is_hangul(before):
                continue
            if close and not _QUOTES_AND_BRACKETS.isdisjoint(close):
                # ``"정말입니까?"라고``: a quotation followed by its particle.
                continue
            if (
                "?" not in term
                and "!" not in term
                and before not in _KO_FINAL_SYLLABLES
                and not ("\u3131" <= before <= "\u318e")  # ``ㅠㅠ.그리고`` may split
            ):
                continue  # ``중.소기업``: a middle dot, not a sentence end
            if _KO_QUOTATIVE.match(paragraph, cut) is not None:
                continue  # ``해보자!라는 생각``
            cuts.append(cut)
            continue
        next_pos = match.end()
        if not _starts_sentence(paragraph[next_pos]):
            continue
        if term == ".":
            if _is_abbreviation(paragraph, start, next_pos):
                continue
        elif (
            "\uac00" <= before <= "\ud7a3"
            and before not in _KO_FINAL_SYLLABLES
            and (term[0] == "\u2026" or term.startswith(".."))
        ):
            continue  # ``요청해서... 학부모``: a pause, not an end
        if (
            close
            and _is_hangul(paragraph[next_pos])
            and not _QUOTES_AND_BRACKETS.isdisjoint(close)
            and _KO_QUOTATIVE.match(paragraph, next_pos) is not None
        ):
            continue  # ``"그만해!" 라고 외쳤다``
        cuts.append(cut)
    if "니" in paragraph or "세요" in paragraph or "십시오" in paragraph:  # cheap pre-check
        extra = [
            match.end()
            for match in _KO_UNPUNCTUATED_END.finditer(paragraph)
            if _starts_sentence(match.group("next"))
            and _KO_QUOTATIVE.match(paragraph, match.start("next")) is None
        ]
        if extra:
            cuts = sorted(set(cuts).union(extra))
    return cuts


def split_rules(paragraph: str) -> list[str]:
    """Split ``paragraph`` into sentences with the built-in rules.

    Handles English (abbreviations, initials, decimals, URLs, ellipses,
    quotes), Korean (sentence endings with or without a following space,
    emoticon runs, dotted dates) and CJK full stops.  Sentences are slices of
    the input, stripped of surrounding whitespace; inner whitespace is kept.
    """
    cuts = _boundaries(paragraph)
    if not cuts:
        stripped = paragraph.strip()
        return [stripped] if stripped else []
    sentences: list[str] = []
    begin = 0
    for cut in cuts:
        piece = paragraph[begin:cut].strip()
        if piece:
            sentences.append(piece)
        begin = cut
    piece = paragraph[begin:].strip()
    if piece:
        sentences.append(piece)
    return sentences


def split_none(paragraph: str) -> list[str]:
    """Return the whole paragraph as one sentence (``[]`` if it is blank).

    For corpora that are already one sentence per line, or for experiments
    that want paragraph-level segments.
    """
    stripped = paragraph.strip()
    return [stripped] if stripped else []


#: Built-in splitters by name, as accepted by :func:`get_splitter`.
SPLITTERS: dict[str, Splitter] = {"rules": split_rules, "none": split_none}


def _choices() -> str:
    """The accepted splitter names, for error messages."""
    return ", ".join(repr(name) for name in SPLITTERS) + " or 'module.path:callable'"


def load_callable(name: str, what: str, hint: str = "") -> object:
    """Import the callable ``"module.path:attr.path"`` that a plug-in option names.

    ``what`` names the option's role in messages (``"sentence splitter"``), ``hint`` ends them.
    The sentence splitter and the word splitter (:mod:`mlmcorpus.word_splitter`) resolve their
    plug-ins here, so both fail the same way.

    Raises:
        ValueError: one line naming the bad value (a CLI shows it as is).
    """
    module_name, _, attr_path = name.partition(":")
    if not module_name or not attr_path:
        raise ValueError(f"bad {what} {name!r}: expected 'module.path:callable'{hint}")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # the plugin may fail in any way while importing
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ValueError(f"cannot import module {module_name!r} of {what} {name!r} ({reason}){hint}") from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            raise ValueError(f"{what} {name!r}: {module_name!r} has no attribute {attr_path!r}{hint}") from exc
    if not callable(obj):
        raise ValueError(f"{what} {name!r} is not callable{hint}")
    return obj


def get_splitter(name: str) -> Splitter:
    """Resolve a splitter name from configuration or the command line.

    ``name`` is a key of :data:`SPLITTERS` or ``"module.path:callable"`` (the
    callable may be a dotted attribute path), which is imported so that users
    can plug in their own splitter without touching this package.

    Raises:
        ValueError: one line naming the bad value and the valid choices, so
            that a CLI can show it as is.
    """
    builtin = SPLITTERS.get(name)
    if builtin is not None:
        return builtin
    if not isinstance(name, str) or ":" not in name:
        raise ValueError(f"unknown sentence splitter {name!r}; choose {_choices()}")
    obj = load_callable(name, "sentence splitter", f"; choose {_choices()}")
    if any(obj is builtin for builtin in SPLITTERS.values()):
        return cast(Splitter, obj)  # one of ours, named by its path
    return _checked(name, cast(Splitter, obj))


def _checked(name: str, fn: Splitter) -> Splitter:
    """A plug-in splitter whose failures are one-line errors naming it: it raises, has the wrong
    signature, or returns something else than a list of strings."""
    from mlmcorpus.errors import ConfigError

    def split(paragraph: str) -> list[str]:
        try:
            out = fn(paragraph)
        except Exception as exc:  # the plug-in may fail in any way
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise ConfigError(f"--splitter {name}: failed on a paragraph ({reason})") from None
        if not isinstance(out, (list, tuple)) or not all(isinstance(x, str) for x in out):
            raise ConfigError(f"--splitter {name}: must return a list of str, returned {type(out).__name__}")
        return list(out)

    return split
