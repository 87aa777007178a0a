"""Reading and editing sentencepiece model files (a ModelProto) with a tiny protobuf walk.

By hand so that ``protobuf`` is not a dependency.
"""

from __future__ import annotations

from collections.abc import Iterator


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _proto_spans(buf: bytes) -> Iterator[tuple[int, int, int | bytes, int, int]]:
    """(field number, wire type, value, start, end) of each top-level field of a protobuf message."""
    i = 0
    while i < len(buf):
        start = i
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value = buf[i : i + n]
            i += n
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            return
        yield num, wire, value, start, i


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    for num, wire, value, _, _ in _proto_spans(buf):
        yield num, wire, value


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(num: int, data: bytes) -> bytes:
    return _encode_varint(num << 3 | 2) + _encode_varint(len(data)) + data


def _set_rule_name(proto: bytes, name: str) -> bytes:
    """Replace normalizer_spec.normalization_rule_tsv (a temp-file path) by ``name``.

    sentencepiece stores the path of the rule file it was given; the path holds a
    random temp-dir name, which would make two identical trainings differ.
    """
    out = bytearray()
    for num, wire, value, start, end in _proto_spans(proto):
        if num == 3 and wire == 2:  # ModelProto.normalizer_spec
            inner = bytearray()
            for n2, w2, _v2, s2, e2 in _proto_spans(value):  # type: ignore[arg-type]
                if not (n2 == 6 and w2 == 2):  # NormalizerSpec.normalization_rule_tsv
                    inner += value[s2:e2]  # type: ignore[index]
            inner += _len_field(6, name.encode())
            out += _len_field(3, bytes(inner))
        else:
            out += proto[start:end]
    return bytes(out)


_SPM_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _spm_spec_summary(proto: bytes) -> dict[str, str]:
    """model_type and normalizer name from a sentencepiece ModelProto.

    Read with a tiny protobuf walk (ModelProto.trainer_spec = 2 -> model_type = 3;
    normalizer_spec = 3 -> name = 1) so that ``protobuf`` is not a dependency.
    """
    out = {"model_type": "unigram", "normalization": ""}
    try:
        for num, wire, value in _proto_fields(proto):
            if num == 2 and wire == 2:
                for n2, w2, v2 in _proto_fields(value):  # type: ignore[arg-type]
                    if n2 == 3 and w2 == 0:
                        out["model_type"] = _SPM_MODEL_TYPES.get(v2, str(v2))  # type: ignore[arg-type]
            elif num == 3 and wire == 2:
                for n2, w2, v2 in _proto_fields(value):  # type: ignore[arg-type]
                    if n2 == 1 and w2 == 2:
                        out["normalization"] = v2.decode("utf-8", "replace")  # type: ignore[union-attr]
    except IndexError:
        pass
    return out
