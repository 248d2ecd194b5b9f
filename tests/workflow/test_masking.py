"""Secret masking: tables, and properties over every way of splitting the stream."""

from __future__ import annotations

import itertools
from collections.abc import Set

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmrunner.workflow.masking import MAX_MASK_BYTES, MAX_MASKS, Masker, MaskLimitError, mask_values


def reference_mask(data: bytes, secrets: Set[bytes]) -> bytes:
    """Byte-by-byte model: mark every byte any occurrence covers, then collapse each run
    of marked bytes (touching occurrences make one run) into one ***."""
    covered = [False] * len(data)
    for secret in secrets:
        for i in range(len(data) - len(secret) + 1):
            if data[i : i + len(secret)] == secret:
                covered[i : i + len(secret)] = [True] * len(secret)
    out = bytearray()
    for i, byte in enumerate(data):
        if not covered[i]:
            out.append(byte)
        elif i == 0 or not covered[i - 1]:
            out += b"***"
    return bytes(out)


CASES: list[tuple[list[str | bytes], bytes, bytes]] = [
    ([], b"nothing to hide", b"nothing to hide"),
    (["s3cret"], b"token=s3cret\n", b"token=***\n"),
    (["s3cret"], b"s3crets3cret and s3cret", b"*** and ***"),
    (["abc", "bcde"], b"xabcdey", b"x***y"),  # overlapping: the union is masked
    (["ab", "abcd"], b"abcd ab abc", b"*** *** ***c"),
    (["aa"], b"aaa", b"***"),
    (["", "   ", "\n"], b"  \n", b"  \n"),  # empty and whitespace-only are ignored
    (["line1\nline2"], b"line1\nline2", b"***"),
    (["line1\nline2"], b"echo line2; echo line1", b"echo ***; echo ***"),
    (["multi\r\n\r\nline"], b"multi line", b"*** ***"),
    (["pässwörd"], "my pässwörd!".encode(), b"my ***!"),
    ([b"\xff\x00raw"], b"a\xff\x00rawb", b"a***b"),
    (["Secret"], b"secret SECRET Secret", b"secret SECRET ***"),
]


@pytest.mark.parametrize(("values", "data", "expected"), CASES)
def test_mask(values: list[str | bytes], data: bytes, expected: bytes) -> None:
    masker = Masker(values)
    assert masker.mask(data) == expected
    assert masker.feed(data) + masker.finish() == expected
    assert (
        b"".join(masker.feed(data[i : i + 1]) for i in range(len(data))) + masker.finish()
        == expected
    )


def test_mask_values() -> None:
    assert mask_values("a\nb\r\nc") == {b"a\nb\r\nc", b"a", b"b", b"c"}
    assert mask_values("  ") == set()
    assert mask_values("\n x \n") == {b"\n x \n", b" x "}
    assert mask_values(b"\xffraw") == {b"\xffraw"}


def test_tail_is_held_only_while_a_secret_may_complete() -> None:
    masker = Masker(["password"])
    assert masker.feed(b"the pass") == b"the "
    assert masker.feed(b"wo") == b""
    assert masker.feed(b"rd is set\n") == b"*** is set\n"
    assert masker.feed(b"the pass") == b"the "
    assert masker.feed(b"port\n") == b"passport\n"
    assert masker.feed(b"no secret here\n") == b"no secret here\n"
    assert masker.feed(b"ends with p") == b"ends with "
    assert masker.finish() == b"p"


def test_secret_at_the_end_waits_to_merge_with_a_touching_one() -> None:
    masker = Masker(["ab"])
    assert masker.feed(b"x ab") == b"x "
    assert masker.feed(b"ab y") == b"*** y"


def test_added_values_apply_to_the_held_tail() -> None:
    masker = Masker(["abcdef"])
    assert masker.feed(b"go abc") == b"go "
    masker.add("abc")
    assert masker.feed(b"!") + masker.finish() == b"***!"
    assert masker.values == {b"abcdef", b"abc"}


def test_mask_text() -> None:
    assert Masker(["ü"]).mask_text("grüße") == "gr***ße"


def test_hold_limit_bounds_the_held_tail() -> None:
    masker = Masker(["ab"], hold_limit=10)
    out = b"".join(masker.feed(b"ab") for _ in range(20))
    assert len(out) > 0
    out += masker.finish()
    assert b"ab" not in out
    assert set(out) == {ord("*")}


def test_finish_resets_the_stream() -> None:
    masker = Masker(["secret"])
    assert masker.feed(b"sec") == b""
    assert masker.finish() == b"sec"
    assert masker.feed(b"ret") == b"ret"


alphabet = b"abc\n "
secrets_st = st.lists(
    st.binary(min_size=1, max_size=5).map(lambda b: bytes(alphabet[x % 5] for x in b)), max_size=4
)
data_st = st.binary(max_size=60).map(lambda b: bytes(alphabet[x % 5] for x in b))


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(data_st)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300)
@given(secrets_st, chunked())
def test_streaming_equals_one_shot_for_any_split(
    secrets: list[bytes], split: tuple[bytes, list[bytes]]
) -> None:
    data, chunks = split
    masker = Masker(secrets)
    streamed = b"".join(masker.feed(chunk) for chunk in chunks) + masker.finish()
    assert streamed == masker.mask(data) == reference_mask(data, masker.values)
    for secret in masker.values:
        assert secret not in streamed


@given(secrets_st, chunked())
def test_no_secret_survives_even_past_the_hold_limit(
    secrets: list[bytes], split: tuple[bytes, list[bytes]]
) -> None:
    _, chunks = split
    masker = Masker(secrets, hold_limit=3)
    streamed = b"".join(masker.feed(chunk) for chunk in chunks) + masker.finish()
    for secret in masker.values:
        assert secret not in streamed


@given(st.lists(st.text(max_size=5), max_size=3), st.lists(st.binary(max_size=20), max_size=6))
def test_output_without_secrets_passes_through(secrets: list[str], chunks: list[bytes]) -> None:
    masker = Masker(secrets)
    data = b"".join(chunks)
    if any(value in data for value in masker.values):
        return
    assert b"".join(masker.feed(chunk) for chunk in chunks) + masker.finish() == data


@given(st.lists(st.binary(max_size=20), max_size=6))
def test_no_secrets_is_identity_chunk_by_chunk(chunks: list[bytes]) -> None:
    masker = Masker()
    assert [masker.feed(chunk) for chunk in chunks] == chunks
    assert masker.finish() == b""


# --- the automaton against the byte-by-byte model, job maskers, caps -----------------

wide = b"ab\x00\xff"
wide_secrets = st.lists(
    st.binary(min_size=1, max_size=8).map(lambda b: bytes(wide[x % 4] for x in b)), max_size=12
)
wide_data = st.binary(max_size=200).map(lambda b: bytes(wide[x % 4] for x in b))


@settings(max_examples=400)
@given(wide_secrets, wide_secrets, wide_data)
def test_automaton_equals_the_naive_model(
    parent_values: list[bytes], own: list[bytes], data: bytes
) -> None:
    parent = Masker(parent_values)
    job = parent.child()
    for value in own:
        job.add(value)
    assert parent.mask(data) == reference_mask(data, parent.values)
    assert job.mask(data) == reference_mask(data, job.values)


@given(wide_secrets, wide_data)
def test_safe_length_cuts_no_secret(secrets: list[bytes], data: bytes) -> None:
    masker = Masker(secrets)
    cut = masker.safe_length(data)
    tails = [i for i in range(len(data)) if any(v.startswith(data[i:]) and len(v) > len(data) - i
                                                for v in masker.values)]  # fmt: skip
    assert cut <= min([len(data), *tails])
    for value in masker.values:
        for start in range(len(data)):
            if data.startswith(value, start):
                assert not start < cut < start + len(value)


def test_masks_added_to_a_job_masker_stay_in_that_job() -> None:
    run = Masker(["tok3n"])
    one, two = run.child(), run.child()
    one.add("s")
    assert one.mask_text("status tok3n") == "***tatu*** ***"
    assert two.mask_text("status tok3n") == "status ***"
    assert run.mask_text("status") == "status"


def test_a_one_letter_mask_masks_every_occurrence_as_github_does() -> None:
    masker = Masker()
    masker.add("a")
    assert masker.mask_text("banana") == "b***n***n***"


def test_add_is_capped_and_a_refused_value_registers_nothing() -> None:
    masker = Masker(["x" * (MAX_MASK_BYTES + 1)])  # constructor values are not capped
    for i in range(MAX_MASKS):
        masker.add(f"value-{i:04d}")
    with pytest.raises(MaskLimitError, match="at most 256 mask values"):
        masker.add("one-too-many")
    assert b"one-too-many" not in masker.values
    big = Masker()
    with pytest.raises(MaskLimitError):
        big.add("y" * (MAX_MASK_BYTES + 1))
    assert big.values == frozenset()
    big.add("y" * MAX_MASK_BYTES)  # exactly the cap is fine
    assert big.mask(b"y" * MAX_MASK_BYTES) == b"***"


def test_many_masks_make_one_automaton_with_constant_work_per_byte() -> None:
    """By construction: one goto step per byte (the automaton), whatever the count."""
    values = [f"secret-{i:05d}".encode() for i in range(MAX_MASKS)]
    masker = Masker(values)
    line = b"x" * 1000 + values[-1] + b"y"
    assert masker.mask(line) == b"x" * 1000 + b"***y"
    automaton = masker._compiled()
    assert automaton is not None
    assert len(automaton.goto) <= sum(len(v) for v in values) + 1
