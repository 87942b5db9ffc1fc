"""What a child process that failed had to say: the last line it wrote, or its exit status."""

from __future__ import annotations


def failure_line(output: bytes | None, returncode: int | None) -> str:
    """The last non-blank line of ``output`` (a traceback ends with the exception), else ``exit N``."""
    lines = (output or b"").decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit {returncode}"
