"""Figure 5: time and peak memory to load our Definitions vs a bare ``@dbt_assets``.

Each load is a fresh interpreter, timed whole, with its own peak RSS (``wait4``), because a code
location loads in a fresh process too. Both sides read the same parsed manifest (``dbt parse``
of the generated project, once). Variants, interleaved within each repeat:

- ``ours``: ``python -c "from orchestration.definitions import build_definitions;
  build_definitions()"`` (as specified);
- ``bare``: ``benchmarks/scripts/bare_load.py`` — one ``@dbt_assets`` and a ``Definitions``;
- ``ours_gc_off``: ours with Python's garbage collector disabled during the load, to size the
  fix that pausing the collector is (about half of a 10,000-model load is collection);
- ``imports``: ``import dagster, dagster_dbt`` alone, the floor under every variant, and
  ``ours_imports``: ``import orchestration.definitions`` (what ours imports before any work).

Resolving the repository as well (``get_repository_def()``, as a code server does) was measured
in the first full run and added at most ~1.5 s to either side; it was dropped to keep
``make bench`` inside its hour.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.env import BenchEnv
from benchmarks.generate import write_project
from benchmarks.timing import Stats, progress, ratios, run_process
from orchestration.settings import REPO_ROOT

TARGET_RATIO_AT_10000 = 0.75
BARE_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bare_load.py"
OURS = "from orchestration.definitions import build_definitions; defs = build_definitions()"


def commands(manifest: Path) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "imports": [python, "-c", "import dagster, dagster_dbt"],
        "ours_imports": [python, "-c", "import orchestration.definitions"],
        "ours": [python, "-c", OURS],
        "bare": [python, str(BARE_SCRIPT), str(manifest)],
        "ours_gc_off": [python, "-c", "import gc; gc.disable(); " + OURS],
    }


def run(work: Path, sizes: list[int], *, repeats: int) -> dict[str, Any]:
    by_size: dict[str, Any] = {}
    for n in sizes:
        project, _ = write_project(work, n)
        env = BenchEnv(project, work / "envs" / f"load-n{n}").reset()
        parsed = env.parse()
        manifest = project / "target" / "manifest.json"
        progress(
            f"load n={n}: manifest {manifest.stat().st_size / 2**20:.1f} MB "
            f"(prepare {parsed.wall_s:.1f}s)"
        )
        wall: dict[str, list[float]] = {}
        rss: dict[str, list[float]] = {}
        for repeat in range(repeats):
            for name, args in commands(manifest).items():
                result = run_process(args, env=env.environ(), cwd=REPO_ROOT).check()
                wall.setdefault(name, []).append(result.wall_s)
                rss.setdefault(name, []).append(result.peak_rss_mb)
            progress(
                f"load n={n} {repeat + 1}/{repeats}: "
                + ", ".join(f"{name} {values[-1]:.1f}s" for name, values in wall.items())
            )
        by_size[str(n)] = {
            "manifest_mb": round(manifest.stat().st_size / 2**20, 1),
            "wall_s": {name: Stats.of(values).to_dict() for name, values in wall.items()},
            "peak_rss_mb": {name: Stats.of(values).to_dict(1) for name, values in rss.items()},
            "ratio_ours_to_bare": ratios(wall["ours"], wall["bare"]).to_dict(),
            "rss_ratio_ours_to_bare": ratios(rss["ours"], rss["bare"]).to_dict(),
        }
    return {"target_ratio_at_10000": TARGET_RATIO_AT_10000, "repeats": repeats, "sizes": by_size}
