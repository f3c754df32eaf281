"""The command line's own files and streams: --output and --input opened, text checked.

Each problem is a one-line error with exit 2 (the caller's input), never a traceback:
a folder that does not exist, a file that cannot be written, text that is not UTF-8.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from sagesql.errors import DataError, InterfaceError


def output_file(stack: ExitStack, path: str, option: str) -> IO[str]:
    """The file ``path`` opened for writing (closed with ``stack``)."""
    try:
        return stack.enter_context(open(path, "w", encoding="utf-8", newline=""))
    except OSError as exc:
        raise InterfaceError(
            f"cannot write {option} {path}: {_why(exc, path)}",
            hint="give a file in a folder that exists and that you can write",
        ) from None


def input_file(stack: ExitStack, path: str, option: str) -> IO[str]:
    """The file ``path`` opened for reading as UTF-8 (closed with ``stack``)."""
    try:
        return stack.enter_context(open(path, encoding="utf-8"))
    except OSError as exc:
        raise InterfaceError(
            f"cannot read {option} {path}: {_why(exc, path)}", hint="give a file that exists"
        ) from None


def read_stdin(what: str) -> str:
    """All of standard input as UTF-8 text."""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    if isinstance(data, str):
        return checked_text(data, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            hint="save it as UTF-8, e.g. iconv -f LATIN1 -t UTF-8",
        ) from None


def checked_text(text: str, what: str) -> str:
    """Text from the command line, which Python keeps as lone surrogates when not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(
            f"{what} is not UTF-8 text (character {exc.start + 1})",
            hint="pass UTF-8 text (check the terminal's or script's encoding)",
        ) from None
    return text


def _why(exc: OSError, path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        folder = Path(path).parent
        return f"the folder {folder} does not exist" if not folder.is_dir() else "no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder"
    return exc.strerror or type(exc).__name__
