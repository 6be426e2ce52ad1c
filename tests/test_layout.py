"""The layout's promise: imports inside lectures_code flow one way, ops -> models -> training -> apps -> cli.

Every ``import lectures_code.x`` / ``from lectures_code.x import ...`` of every module is read with ``ast``
(also the imports inside functions: a lazy import against the direction is still one), and so is every
``"module:attribute"`` target of the model registry.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lectures_code"

# Top-level parts of lectures_code by layer; a part may import its own layer and the layers below, except
# that the foundation (layer 0) is finer: each of its parts may import only what FOUNDATION allows.
LAYERS = [
    {"__init__", "device", "progress", "ops", "metrics", "data", "checkpoints", "plotting", "results", "cuda_checks"},
    {"models", "detection", "segmentation"},  # model families (rnn, attention, vision_transformers to come)
    {"training"},
    {"registry", "examples", "lecture12", "lecture13", "lecture14"},  # lecture code may train with the loop
    {"figures", "tables", "demos"},
    {"cli", "__main__"},
]
FOUNDATION = {
    "__init__": {"device"},
    "device": set(),
    "progress": set(),
    "ops": set(),  # pure tensor functions: nothing of ours
    "metrics": {"ops"},
    "data": {"progress", "metrics"},  # the COCO export writes masks with metrics.rle
    "checkpoints": set(),
    "plotting": set(),
    "results": {"checkpoints"},
    "cuda_checks": set(),
}
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str:
    """"lectures_code.detection.fcos" -> "detection"; "lectures_code" -> "__init__"."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, modules: set[str] = frozenset()) -> list[tuple[int, str]]:
    """(line, imported lectures_code module) for every import statement, at any depth. ``from package import
    name`` counts as importing ``package.name`` when that is one of ``modules`` (or the package is the root)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("lectures_code")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lectures_code"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((node.lineno, submodule if submodule in modules or node.module == "lectures_code"
                              else node.module))
    return found


def violations(importer: str, source: str) -> list[str]:
    """Why each import of ``importer`` (a module name) goes against the layers; [] if none does."""
    source_part = part_of(importer)
    if source_part not in LAYER_OF:
        return [f"{importer}: lectures_code.{source_part} is in no layer of tests/test_layout.py"]
    problems = []
    for line, imported in imports_of(source):
        target = part_of(imported)
        if target == source_part:
            continue
        if target not in LAYER_OF:
            problems.append(f"{importer}:{line} imports {imported}, which is in no layer")
        elif LAYER_OF[source_part] == 0 and target not in FOUNDATION[source_part]:
            problems.append(f"{importer}:{line} imports {imported}: {source_part} may import only "
                            f"{sorted(FOUNDATION[source_part]) or 'nothing of ours'}")
        elif LAYER_OF[target] > LAYER_OF[source_part]:
            problems.append(f"{importer}:{line} imports {imported} (layer {LAYER_OF[target]}) from layer "
                            f"{LAYER_OF[source_part]}: against the direction")
    return problems


def all_modules() -> dict[str, str]:
    return {module_name(path): path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_import_follows_the_layers():
    problems = [problem for name, source in all_modules().items() for problem in violations(name, source)]
    assert problems == [], "\n".join(problems)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search meets in ``graph`` (node -> nodes it imports)."""
    state, stack, cycles = {}, [], []

    def visit(node: str) -> None:
        state[node] = "active"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "active":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycle_between_modules():
    modules = all_modules()
    graph = {name: {imported for _, imported in imports_of(source, set(modules)) if imported in modules}
             for name, source in modules.items()}
    # A package's __init__ re-exporting its own submodules is how packages work, not a cycle of the logic.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")} - {name}
    cycles = find_cycles(graph)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_registry_targets_are_model_level_code():
    from lectures_code import registry

    for entry in registry.MODELS.values():
        for target in (entry.model, entry.training_set, entry.evaluate):
            module, _, attribute = target.partition(":")
            assert LAYER_OF[part_of(module)] <= LAYER_OF["training"] - 1, f"{entry.name}: {target}"
            assert callable(registry._resolve(target)), target


@pytest.mark.parametrize("importer, line, complaint", [
    ("lectures_code.ops.nms", "from lectures_code.detection.anchors import AnchorGenerator", "ops may import only"),
    ("lectures_code.detection.fcos", "from lectures_code.training import fit", "against the direction"),
    ("lectures_code.training.loop", "import lectures_code.cli", "against the direction"),
    ("lectures_code.detection.fcos", "def f():\n    from lectures_code.registry import get", "against the direction"),
    ("lectures_code.metrics.voc_ap", "from lectures_code import registry", "metrics may import only"),
])
def test_the_checker_catches_imports_against_the_direction(importer, line, complaint):
    found = violations(importer, line)
    assert len(found) == 1 and complaint in found[0], found


def test_the_checker_accepts_imports_with_the_direction():
    assert violations("lectures_code.detection.fcos", "from lectures_code.ops.nms import batched_nms") == []
    assert violations("lectures_code.cli", "from lectures_code.registry import MODELS") == []
    assert violations("lectures_code.metrics.coco_eval", "from lectures_code.ops.boxes import box_iou") == []
