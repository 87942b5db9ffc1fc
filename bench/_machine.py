"""What every benchmark prints about the machine it ran on, and the process tree it measures."""

from __future__ import annotations

import contextlib
import os
import platform
from collections import defaultdict
from pathlib import Path


def machine(*extra: str) -> list[str]:
    """CPU, RAM, OS, Python and the load average at the start (other work on a shared machine skews
    figures), then ``extra`` lines (versions of what is measured)."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    meminfo = Path("/proc/meminfo").read_text().split()
    ram_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores",
        f"RAM: {ram_gib:.1f} GiB",
        f"OS: {platform.platform()}",
        f"Python: {platform.python_version()} ({platform.python_implementation()})",
        f"load average at start: {os.getloadavg()[0]:.2f} (other work on the machine skews figures)",
        *extra,
    ]


def process_tree(root: int) -> dict[int, str]:
    """pid → command line of every live process under ``root`` (included)."""
    children: dict[int, list[int]] = defaultdict(list)
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children[parent].append(int(entry.name))
            commands[int(entry.name)] = (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        found[pid] = commands.get(pid, "")
        todo += children.get(pid, [])
    return found
