"""Text from outside (file names, paths, error messages) in the reports' Markdown, so that it
reads as itself: a checkpoint named ``a`b|c`` must neither end its code span nor split a table
row, and ``*``, ``_``, ``[`` must not turn into emphasis or links."""

from __future__ import annotations

import re

# Every character that can start inline markup, end a table cell or begin raw HTML or an entity.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#&])")
# "- ", "+ ", "1. ", "1) " at the start of a list item's text would open a nested list
_LIST_MARKER = re.compile(r"([-+]|\d{1,9}[.)])(?=\s|$)")


def md_text(text: object) -> str:
    """`text` as literal Markdown on one line: markup characters backslash-escaped (CommonMark
    allows it before any ASCII punctuation), whitespace runs and line breaks as one space."""
    escaped = _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    marker = _LIST_MARKER.match(escaped)
    return escaped if marker is None else escaped[: marker.end() - 1] + "\\" + escaped[marker.end() - 1 :]


def md_code(text: object) -> str:
    """`text` as a code span: fenced by one backtick more than its longest run of backticks, and
    padded with a space where it starts or ends with one (CommonMark strips one such pair)."""
    text = " ".join(str(text).splitlines())  # a line break could start a new block mid-span
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" or (text[:1] == text[-1:] == " " and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_fence(text: str, info: str = "") -> str:
    """`text` as a fenced code block: fenced by more backticks than any run in it (at least three)."""
    fence = "`" * max(3, max(map(len, re.findall(r"`+", text)), default=0) + 1)
    return f"{fence}{info}\n{text}\n{fence}"
