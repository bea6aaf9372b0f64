"""Deterministic synthetic dbt projects on DuckDB: N table models in a layered DAG.

Why synthetic: the benchmarks need 100 to 10,000 models with a known graph, so the set a
recovery *had* to run (failed ∪ downstream) is computed here from the generator's own edges,
independently of the planner under test. Why this shape:

- a root layer (``select … from range(R)``) so nothing needs external data or seeds — or, in
  the *seeded* shape (size ``"1000s"``), jaffle-shop's pattern: each root model reads a source
  whose ``raw`` table a seed of the project loads, an edge dbt's DAG lacks and Dagster
  resolves by table name (what made one-op builds fail Dagster's topological-order check);
- every other model has 1–3 parents (fan-in), the first from the layer just above (so a model's
  layer is its depth; each model of that layer feeds at least one while they last) and the
  others from any earlier layer, chosen by a heavy-tailed "popularity" so a few models feed
  many (fan-out like a shared dimension in a real project);
- tables, ``not_null`` / ``unique`` tests on some models (they become Dagster asset checks);
- the project's fault hook (``orchestration_faults.sql`` plus the project-wide pre-hook), so
  failures are injected exactly the way the real project injects them.

The same ``(n, seed)`` always yields byte-identical files; an existing project is reused, never
rewritten, so its parsed manifest stays fresh (our code re-parses when files are newer).
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
import shutil
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from orchestration.settings import REPO_ROOT

GENERATOR_VERSION = 3
"""Bump when the output changes, so cached projects are regenerated."""

FAULT_MACRO = REPO_ROOT / "dbt_project" / "macros" / "orchestration_faults.sql"
ROWS_PER_MODEL = 100
ROOT_SHARE = 0.2
FAN_IN_WEIGHTS = {1: 0.5, 2: 0.35, 3: 0.15}
NOT_NULL_SHARE = 0.3
UNIQUE_SHARE = 0.1
FAILURE_PERCENTILE = 0.9


@dataclass(frozen=True)
class SyntheticGraph:
    """The generated DAG: model names, their layer and their parents."""

    layers: tuple[tuple[str, ...], ...]
    parents: dict[str, tuple[str, ...]]
    tests: dict[str, tuple[str, ...]]
    """model → generic tests on its ``id`` column."""

    @property
    def models(self) -> list[str]:
        return [name for layer in self.layers for name in layer]

    @cached_property
    def children(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {name: [] for name in self.parents}
        for name, parents in self.parents.items():
            for parent in parents:
                children[parent].append(name)
        return children

    def downstream(self, starts: set[str]) -> set[str]:
        """``starts`` and everything below them: what a recovery has to run."""
        seen = set(starts)
        queue = deque(starts)
        while queue:
            for child in self.children[queue.popleft()]:
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
        return seen

    def pick_failure(self, position: str) -> str:
        """A typical model to fail near the roots, in the middle or near the leaves.

        The layer is fixed by ``position`` (first, middle, second to last, so a "leaf" failure
        still holds something back); within it we take the model at the 90th percentile of
        downstream size: a failure that matters (most models in a layer feed only a few), yet
        not the single worst case.
        """
        depth = len(self.layers)
        layer_index = {"roots": 0, "middle": depth // 2, "leaves": max(depth - 2, 0)}[position]
        candidates = [m for m in self.layers[layer_index] if self.children[m]]
        candidates = candidates or list(self.layers[layer_index])
        sized = sorted(candidates, key=lambda m: (len(self.downstream({m})), m))
        return sized[int(FAILURE_PERCENTILE * (len(sized) - 1))]

    def to_dict(self) -> dict[str, object]:
        return {
            "layers": [list(layer) for layer in self.layers],
            "parents": {k: list(v) for k, v in self.parents.items()},
            "tests": {k: list(v) for k, v in self.tests.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> SyntheticGraph:
        return cls(
            layers=tuple(tuple(layer) for layer in data["layers"]),
            parents={k: tuple(v) for k, v in data["parents"].items()},
            tests={k: tuple(v) for k, v in data["tests"].items()},
        )


def layer_count(n: int) -> int:
    """Depth grows slowly with size, as in real projects (staging → … → marts)."""
    return max(3, min(16, round(math.log2(max(n, 2))) + 1))


def generate_graph(n: int, seed: int = 0) -> SyntheticGraph:
    """The DAG alone (no files): also what the planner benchmark runs on."""
    rng = random.Random(f"{seed}:{n}")
    depth = min(layer_count(n), n)
    roots = max(1, round(n * ROOT_SHARE))
    rest = n - roots
    sizes = [roots] + [
        rest // (depth - 1) + (1 if i < rest % (depth - 1) else 0) for i in range(depth - 1)
    ]
    names = iter(f"m{i:05d}" for i in range(n))
    layers = tuple(tuple(itertools.islice(names, size)) for size in sizes if size)
    popularity: list[float] = []  # per model, in creation order
    ordered: list[str] = []
    parents: dict[str, tuple[str, ...]] = {}
    fan_ins, fan_in_weights = zip(*FAN_IN_WEIGHTS.items(), strict=True)
    for index, layer in enumerate(layers):
        previous_start = len(ordered) - (len(layers[index - 1]) if index else 0)
        cumulative = list(itertools.accumulate(popularity))
        # Every model of the layer above feeds at least one model here while they last: in a
        # real project an intermediate model nobody selects from is rare.
        unused = list(ordered[previous_start:]) if index else []
        rng.shuffle(unused)
        for name in layer:
            if index == 0:
                parents[name] = ()
            else:
                first = unused.pop() if unused else None
                chosen = [first or _weighted(rng, ordered, cumulative, previous_start)]
                want = rng.choices(fan_ins, fan_in_weights)[0]
                for _ in range(want * 3):  # a few tries; duplicates are dropped
                    if len(chosen) >= want:
                        break
                    pick = _weighted(rng, ordered, cumulative, 0)
                    if pick not in chosen:
                        chosen.append(pick)
                parents[name] = tuple(chosen)
        for name in layer:
            ordered.append(name)
            popularity.append(rng.paretovariate(1.2))
    tests: dict[str, tuple[str, ...]] = {}
    for name in ordered:
        draw = rng.random()
        if draw < UNIQUE_SHARE:
            tests[name] = ("not_null", "unique")
        elif draw < NOT_NULL_SHARE:
            tests[name] = ("not_null",)
    return SyntheticGraph(layers=layers, parents=parents, tests=tests)


def _weighted(rng: random.Random, ordered: list[str], cumulative: list[float], start: int) -> str:
    """A model from ``ordered[start:]`` drawn by popularity (bisect over cumulative weights)."""
    low = cumulative[start - 1] if start else 0.0
    point = low + rng.random() * (cumulative[-1] - low)
    return ordered[min(bisect.bisect_right(cumulative, point, lo=start), len(ordered) - 1)]


def parse_size(size: int | str) -> tuple[int, bool]:
    """``1000`` or ``"1000"`` → (1000, plain); ``"1000s"`` → (1000, seeded)."""
    text = str(size)
    return int(text.rstrip("s")), text.endswith("s")


def seed_csv(name: str) -> str:
    """The rows the root model ``name`` would compute, as the seed its source reads."""
    salt = int(name[1:])
    rows = [f"{i},{(i * (salt % 97 + 3) + salt) % 1000}" for i in range(ROWS_PER_MODEL)]
    return "id,v\n" + "\n".join(rows) + "\n"


def model_sql(name: str, parents: tuple[str, ...], *, seeded: bool = False) -> str:
    if not parents and seeded:
        return f"select id, v from {{{{ source('ext', 'raw_{name}') }}}}\n"
    if not parents:
        salt = int(name[1:])
        value = f"(range * {salt % 97 + 3} + {salt}) % 1000"
        return f"select range as id, {value} as v\nfrom range({ROWS_PER_MODEL})\n"
    aliases = [f"p{i}" for i in range(len(parents))]
    value = " + ".join(f"{a}.v" for a in aliases)
    lines = [f"select p0.id, ({value}) % 1000 as v", f"from {{{{ ref('{parents[0]}') }}}} as p0"]
    for alias, parent in zip(aliases[1:], parents[1:], strict=True):
        lines.append(f"join {{{{ ref('{parent}') }}}} as {alias} using (id)")
    return "\n".join(lines) + "\n"


DBT_PROJECT_YML = """\
name: synthetic
version: "1.0.0"
config-version: 2
profile: synthetic
model-paths: ["models"]
macro-paths: ["macros"]
target-path: target

flags:
  send_anonymous_usage_stats: false

vars:
  orchestration_model_faults: {}
  orchestration_test_faults: {}

models:
  synthetic:
    +materialized: table
    +pre-hook: "{{ orchestration_fault_hook() }}"

seeds:
  synthetic:
    +schema: raw
"""

GENERATE_SCHEMA_MACRO = """\
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name | trim if custom_schema_name else target.schema }}
{%- endmacro %}
"""

PROFILES_YML = """\
synthetic:
  target: duckdb
  outputs:
    duckdb:
      type: duckdb
      path: "{{ env_var('DUCKDB_PATH') }}"
      schema: main
      threads: "{{ env_var('DBT_THREADS', '2') | int }}"
"""


def project_dir(work_dir: Path, n: int, seed: int, seeded: bool = False) -> Path:
    return work_dir / "projects" / f"n{n}-s{seed}{'-seeded' if seeded else ''}"


def write_project(work_dir: Path, size: int | str, seed: int = 0) -> tuple[Path, SyntheticGraph]:
    """The project for ``(size, seed)`` under ``work_dir``: reused when already written."""
    n, seeded = parse_size(size)
    root = project_dir(work_dir, n, seed, seeded)
    stamp = root / ".generated.json"
    expected = {"version": GENERATOR_VERSION, "n": n, "seed": seed, "seeded": seeded}
    graph_file = root / "graph.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == expected and graph_file.is_file():
        return root, SyntheticGraph.from_dict(json.loads(graph_file.read_text()))
    if root.exists():
        shutil.rmtree(root)
    graph = generate_graph(n, seed)
    (root / "macros").mkdir(parents=True)
    shutil.copyfile(FAULT_MACRO, root / "macros" / FAULT_MACRO.name)
    (root / "dbt_project.yml").write_text(DBT_PROJECT_YML)
    (root / "profiles.yml").write_text(PROFILES_YML)
    if seeded:
        _write_seeds(root, graph.layers[0])
    for index, layer in enumerate(graph.layers):
        folder = root / "models" / f"layer_{index:02d}"
        folder.mkdir(parents=True)
        schema: list[dict[str, object]] = []
        for name in layer:
            sql = model_sql(name, graph.parents[name], seeded=seeded)
            (folder / f"{name}.sql").write_text(sql)
            if name in graph.tests:
                columns = [{"name": "id", "data_tests": list(graph.tests[name])}]
                schema.append({"name": name, "columns": columns})
        if schema:
            # JSON is valid YAML, and far faster to write than a YAML dump at 10,000 models.
            body = json.dumps({"version": 2, "models": schema}, indent=1)
            (folder / "_schema.yml").write_text(body + "\n")
    graph_file.write_text(json.dumps(graph.to_dict()))
    stamp.write_text(json.dumps(expected))
    return root, graph


def _write_seeds(root: Path, roots: tuple[str, ...]) -> None:
    """One seed per root model and the source that reads its table (``raw.raw_<model>``).

    The source is named ``ext``, not ``raw``: a source named like the seeds' schema would get
    the seed's own asset key, which dagster-dbt rejects as a duplicate (it says so, naming
    both nodes)."""
    (root / "seeds").mkdir()
    (root / "macros" / "generate_schema_name.sql").write_text(GENERATE_SCHEMA_MACRO)
    for name in roots:
        (root / "seeds" / f"raw_{name}.csv").write_text(seed_csv(name))
    tables = [{"name": f"raw_{name}"} for name in roots]
    sources = {"version": 2, "sources": [{"name": "ext", "schema": "raw", "tables": tables}]}
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "_sources.yml").write_text(json.dumps(sources, indent=1) + "\n")
