"""Guest text on a terminal: nothing in it may act on the terminal."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.results.terminal import for_terminal

CASES = [
    ("plain text\tok", "plain text\tok"),
    ("\x1b]52;c;ZXZpbA==\x07", "␛]52;c;ZXZpbA==␇"),  # OSC 52: clipboard
    ("\x1b]0;owned\x1b\\", "␛]0;owned␛\\"),  # window title, ST-terminated
    ("\x1b[2J\x1b[H", "␛[2J␛[H"),  # clear screen, cursor home
    ("\x1bP+q544e\x1b\\", "␛P+q544e␛\\"),  # DCS
    ("\x9b2J \x9d52;c;x", "\\x9b2J \\x9d52;c;x"),  # 8-bit CSI and OSC
    ("\x1b[1;31mred\x1b[0m", "\x1b[1;31mred\x1b[0m"),  # colours stay
    ("a\nforged [job] line", "a␊forged [job] line"),
    ("10%\r50%\r100%", "100%"),  # a progress bar shows its last state
    ("done\r\r", "done"),
    ("bell\x07 del\x7f nul\x00", "bell␇ del␡ nul␀"),
]


@pytest.mark.parametrize(("text", "shown"), CASES)
def test_for_terminal(text: str, shown: str) -> None:
    assert for_terminal(text) == shown


def test_without_colours_sgr_goes_too() -> None:
    assert for_terminal("\x1b[31mred\x1b[0m", colours=False) == "red"


@given(st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=80))
def test_nothing_that_acts_on_a_terminal_survives(text: str) -> None:
    shown = for_terminal(text)
    without_sgr = re.sub(r"\x1b\[[0-9;:]*m", "", shown)
    assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]", without_sgr)
