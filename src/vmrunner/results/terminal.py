"""Guest text made safe to show on a terminal.

Pure. Output from a VM is untrusted: a root guest can print escape sequences that act on
the terminal showing it (OSC 52 writes the clipboard, OSC 0/2 the window title, CSI
``2J`` clears the screen, DCS/APC talk to the terminal itself) or carriage returns and
newlines that overwrite or forge the ``[job]`` prefix of a line. :func:`for_terminal`
returns text that can do none of that; logs and result documents keep the original.
"""

from __future__ import annotations

import re

_SGR = r"\x1b\[[0-9;:]*m"
_UNSAFE = re.compile(rf"({_SGR})|([\x00-\x08\x0a-\x1f\x7f])|([\x80-\x9f])")


def _visible_control(char: str) -> str:
    code = ord(char)
    return "\u2421" if code == 0x7F else chr(0x2400 + code)  # the Control Pictures block


def for_terminal(text: str, *, colours: bool = True) -> str:
    """``text`` with nothing in it that acts on a terminal.

    A carriage return keeps what a terminal would show of the line (the text after the
    last one that is not at the end: a progress bar shows its last state); every other
    C0 control but tab, DEL and the C1 controls (U+0080..U+009F, which some terminals
    read as ESC sequences) become visible symbols (ESC shows as ``␛``, newline as ``␊``),
    so an escape sequence shows as inert text. With ``colours``, SGR sequences (colour
    and style only: ``ESC [`` digits ``m``) are kept. Linear in the length of ``text``.
    """
    body = text.rstrip("\r")
    if "\r" in body:
        body = body.rsplit("\r", 1)[1]

    def replace(match: re.Match[str]) -> str:
        sgr, c0, c1 = match.groups()
        if sgr is not None:
            return sgr if colours else ""
        if c0 is not None:
            return _visible_control(c0)
        return f"\\x{ord(c1):02x}"

    return _UNSAFE.sub(replace, body)
