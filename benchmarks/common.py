"""Helpers shared by the benchmark scripts: the machine description, timing and table formatting.

Benchmarks print a table and write JSON; they never assert on timings (these machines are noisy). Where two
things are compared, they are measured side by side in the same run, alternating in rounds, and the figure
reported is the median of the per-round ratios.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("/work/shared/data/ham10000")


def data_dir() -> Path:
    """HAMVIZ_DATA, else the shared copy on the development machines."""
    return Path(os.environ.get("HAMVIZ_DATA") or DEFAULT_DATA)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_vector_flags() -> list[str]:
    """The CPU's SIMD extensions that matter to TensorFlow (from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in have]
    except OSError:
        pass
    return []


def machine() -> dict:
    """What the numbers were measured on (and how busy the machine was when the run started)."""
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        # "AMD EPYC" names several generations here: the vector extensions tell them apart, and TensorFlow
        # turns its oneDNN kernels on by default only where AVX512_VNNI / AVX512_BF16 / AMX exist
        "cpu_vector_flags": cpu_vector_flags(),
    }
    try:
        info["sched_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
        info["mem_total_gb"] = round(int(mem[1]) / 1024 ** 2, 1)
    except (OSError, IndexError, ValueError):
        pass
    return info


def versions() -> dict:
    out = {}
    for mod in ("numpy", "PIL", "tensorflow", "keras"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001 - a missing library is just not reported
            pass
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / (1024 ** 2 if sys.platform == "darwin" else 1024), 1)


def timed(fn, *args, **kw) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t, out


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def render(headers, rows, title: str | None = None, notes=()) -> str:
    """A plain-text table (markdown-compatible pipes)."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    out = []
    if title:
        out.append(title)
    out.append(line(headers))
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [line(r) for r in cells]
    out += [f"  {n}" for n in notes]
    return "\n".join(out)
