"""What each train stage really depends on, so that `dvc repro` re-trains exactly what a change affects.

DVC's `foreach` over params.yaml's component list cannot name each component's own inputs, and
listing all of components/ and data/ as every train stage's dependency re-trained every paper when
one paper was added or one dataset re-prepared. Instead one cheap `lineage` stage (coarse deps:
the code, the lock, params.yaml, data/) writes `runs/lineage/<slug>.json` per component, and each
train stage depends on its own file only. The file holds digests of exactly what the run can read:

- code: every project source file that the component's module and the runner import, followed
  statically through `import` statements (lazy imports inside functions included, so it errs on the
  side of re-training), and any other file in the component's folder but its README and paper.yaml;
  the table of components is left out (its line for this slug is kept), so a new paper does not
  re-train the others;
- packages: requirements.lock (a torch upgrade changes what every run computes);
- datasets: the manifest digest of each dataset that the component's resolved config reads
  (`datasets_for`), at params.yaml's preset.

When the lineage stage re-runs and a file comes out byte-identical, DVC sees that train stage's
dependency unchanged and skips it.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from components.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("components", "cluster", "pipelines")
TABLE_MODULE = "components.registry"  # the table of components: each file keeps only its own line of it
RUNNER_MODULE = "cluster.runner"  # every train stage runs through it
LOCK_FILE = "requirements.lock"
LINEAGE_DIR = Path("runs/lineage")


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The project file that defines `module`, or None for a third-party or missing module."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """Every module an `import` statement in `path` may load, including `from package import submodule`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # may be submodules
    return found


def with_parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def import_closure(roots: tuple[str, ...], root: Path = ROOT) -> tuple[Path, ...]:
    """The project source files that importing `roots` can execute, the table of components excepted."""
    seen: set[str] = set()
    files: set[Path] = set()
    pending = [parent for module in roots for parent in with_parents(module)]
    while pending:
        module = pending.pop()
        if module in seen or module == TABLE_MODULE:
            continue
        seen.add(module)
        path = module_file(module, root)
        if path is None:
            continue
        files.add(path)
        for name in imported_modules(path, module):
            pending.extend(parent for parent in with_parents(name) if parent not in seen)
    return tuple(sorted(files))


def package_resources(module: str, root: Path = ROOT) -> list[Path]:
    """Files in the component's own folder that a run may read besides its modules (not its README or
    paper.yaml: editing the paper's numbers must not re-train it)."""
    folder = root.joinpath(*module.split(".")[:2])
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix not in (".py", ".pyc", ".md")
        and path.name != "paper.yaml"
        and "__pycache__" not in path.parts
    )


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def component_lineage(slug: str, params: Mapping[str, Any], data_dir: Path, root: Path = ROOT) -> dict[str, Any]:
    """Digests of everything a train stage of `slug` reads, at params.yaml's preset."""
    from cluster.provenance import dataset_digests
    from components.core.config import resolve_config
    from components.core.shards import check_dataset
    from components.registry import REGISTRY, get_component

    entry = REGISTRY[slug]
    component = get_component(slug)
    preset = params.get("preset", "smoke")
    cfg = resolve_config(component, preset, params.get(slug))
    names = list(component.datasets_for(cfg))
    for name in names:  # a missing dataset is one line naming the command that prepares it
        check_dataset(Path(data_dir), name, verify=False)  # digests come from the manifest; runs verify the bytes
    datasets = dataset_digests(Path(data_dir), names)
    module = entry.split(":")[0]
    code = [*import_closure((module, RUNNER_MODULE), root), *package_resources(module, root)]
    return {
        "component": slug,
        "entry": entry,
        "preset": preset,
        "code": {str(path.relative_to(root)): file_sha256(path) for path in code},
        "packages": {LOCK_FILE: file_sha256(root / LOCK_FILE)},
        "datasets": {name: digest["manifest_sha256"] for name, digest in datasets.items()},
    }


def changed_parts(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Which of code / packages / datasets differ (what a user wants to see before GPU-days re-run)."""
    if old is None:
        return ["new"]
    parts = []
    for part in ("code", "packages", "datasets"):
        before, after = old.get(part, {}), new.get(part, {})
        changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
        if changed:
            parts.append(f"{part} ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})")
    if old.get("entry") != new.get("entry") or old.get("preset") != new.get("preset"):
        parts.append("entry or preset")
    return parts


def write_lineage(
    params: Mapping[str, Any], data_dir: Path = Path("data"), out_dir: Path = LINEAGE_DIR, slugs: Iterable[str] = ()
) -> dict[str, list[str]]:
    """Write one lineage file per component of params.yaml (all checked before any is written); return
    {slug: what changed} for the components whose file changed."""
    from components.core.files import atomic_directory

    slugs = list(slugs) or list(params.get("components") or [])
    if not slugs:
        raise ConfigError("params.yaml lists no components: nothing to trace")
    out_dir = Path(out_dir)
    lineages = {slug: component_lineage(slug, params, data_dir) for slug in slugs}
    changes: dict[str, list[str]] = {}
    with atomic_directory(out_dir) as staging:
        for slug, lineage in lineages.items():
            old_path = out_dir / f"{slug}.json"
            old = json.loads(old_path.read_text()) if old_path.is_file() else None
            if old != lineage:
                changes[slug] = changed_parts(old, lineage)
            (staging / f"{slug}.json").write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")
    return changes
