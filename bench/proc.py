"""What a process costs, read from /proc (Linux): CPU time and resident memory.

No psutil: /proc/<pid>/stat and /proc/<pid>/status are a line each to read.
"""

import asyncio
import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of `pid` in seconds (its own threads; not its children)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the name in brackets may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of `pid` in MB: VmRSS now, or VmHWM (its peak since it started)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no {field} for pid {pid}")


def machine_cpu_s() -> float:
    """CPU seconds every process on this machine has used since boot (/proc/stat: all but idle and iowait)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK


class PeakRss:
    """The peak VmRSS of some processes, sampled every `every` seconds while it runs; `reset`
    starts a new window (one arm)."""

    def __init__(self, pids: dict[str, int], every: float = 0.2) -> None:
        self.pids, self.every = pids, every
        self.peak: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    def sample(self) -> None:
        for name, pid in self.pids.items():
            self.peak[name] = max(self.peak.get(name, 0.0), rss_mb(pid))

    def reset(self) -> None:
        self.peak = {}
        self.sample()

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> "PeakRss":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_exc) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
