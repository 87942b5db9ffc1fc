"""Child processes: waiting for one within a deadline, and what one that failed had to say."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


def failure_line(output: bytes | None, returncode: int | None) -> str:
    """The last non-blank line of ``output`` (a traceback ends with the exception), else ``exit N``."""
    lines = (output or b"").decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit {returncode}"


async def communicate(
    process: asyncio.subprocess.Process, stdin: bytes | None, within: float
) -> tuple[bytes, bytes]:
    """``process``'s stdout and stderr; a process that outlives ``within`` seconds (TimeoutError) or a
    cancelled caller is killed, not left running."""
    import asyncio

    try:
        return await asyncio.wait_for(process.communicate(stdin), within)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
