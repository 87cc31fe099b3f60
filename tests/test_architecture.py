"""The package's folders are its architecture: dependencies point one way, and docs/DESIGN.md says so.

Every module's imports are read from its source (``ast``), lazy ones inside functions included, and
checked against the layering table of ``docs/DESIGN.md``; the design card's module table must list
exactly the modules that exist, so the card cannot go stale.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "nfrepro"
DESIGN = (ROOT / "docs" / "DESIGN.md").read_text()
# imported inside a function body only: the optional dependencies (extras), nothing of our own
OPTIONAL = {"timm", "torchvision", "safetensors", "matplotlib", "seaborn", "dill", "tensorboard",
            "IPython"}  # IPython: only inside a Jupyter kernel (the notebooks extra's ipykernel brings it)
# the one lazy first-party import: nfrepro.signal_propagation needs pandas, not a core dependency
LAZY_OURS = {("nfrepro", "nfrepro.analysis.spp")}
# the figure modules import matplotlib at the top: they exist to draw (the `plots` extra)
PLOTTING = "nfrepro.analysis.plotting"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
MODULE_NAMES = set(MODULES)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, lazy) for every import statement of ``path``; ``from nfrepro.models import
    nfnet`` counts as an import of the module ``nfrepro.models.nfnet``."""
    tree = ast.parse(path.read_text())
    lazy_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        lazy = id(node) in lazy_nodes
        if isinstance(node, ast.Import):
            out += [(alias.name, lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; nfrepro imports absolutely"
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.append((full if full in MODULE_NAMES else node.module, lazy))
    return out


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PKG / parts[1]).is_dir() else module  # cli, __main__, nfrepro


def _layering() -> dict[str, tuple[set[str], set[str]]]:
    """DESIGN.md's table: subpackage -> (nfrepro subpackages it may import, third-party packages)."""
    section = DESIGN.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rules = {}
    for line in section.splitlines():
        m = re.match(r"\| `(nfrepro[\w./]*)` \| (.*?) \| (.*?) \|", line)
        if m:
            ours = set(re.findall(r"`(\w+)`", m[2])) | ({"anything"} if "anything" in m[2] else set())
            theirs = set(re.findall(r"`(\w+)`", m[3])) | ({"anything"} if "anything" in m[3] else set())
            rules[m[1].removeprefix("nfrepro/").strip("/") or "nfrepro"] = (ours, theirs)
    return rules


RULES = _layering()


def test_design_card_has_a_layering_rule_for_every_part():
    parts = {_subpackage(m) for m in MODULES}
    keys = {k.removeprefix("nfrepro.").removesuffix(".py") for k in RULES}
    assert {p.removeprefix("nfrepro.") for p in parts} == keys, \
        "docs/DESIGN.md '## Layers' table vs the package"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layering(module):
    part = _subpackage(module).removeprefix("nfrepro.")
    key = next(k for k in RULES if k.removeprefix("nfrepro.").removesuffix(".py") == part)
    ours, theirs = RULES[key]
    for imported, lazy in IMPORTS[module]:
        top = imported.split(".")[0]
        if top == "nfrepro":
            target = _subpackage(imported).removeprefix("nfrepro.")
            assert target == part or target in ours or "anything" in ours, \
                f"{module} imports {imported}: {part}/ may import only {sorted(ours)} (docs/DESIGN.md)"
            assert not lazy or (module, imported) in LAZY_OURS, \
                f"{module} imports {imported} inside a function: import it at the top " \
                f"(lazy only for optional packages)"
        elif top not in sys.stdlib_module_names and top != "__future__":
            assert top in theirs or "anything" in theirs, \
                f"{module} imports {top}: {part}/ may use only {sorted(theirs)} (docs/DESIGN.md)"
            assert not lazy or top in OPTIONAL, \
                f"{module} imports {top} lazily, but it is no optional dependency"
            assert lazy or top not in OPTIONAL or part == "experiments" or module.startswith(PLOTTING), \
                f"{module} imports the optional {top} at the top: import it where it is used"


def test_no_import_cycles_between_modules():
    graph = defaultdict(set)
    for module, imports in IMPORTS.items():
        if module.endswith("__init__") or module in {_subpackage(m) for m in MODULES} | {"nfrepro"}:
            continue  # a package's __init__ re-exports its own modules
        for imported, lazy in imports:
            is_package = (PKG / Path(*imported.split(".")[1:])).is_dir()
            if imported in MODULES and not lazy and imported != module and not is_package:
                graph[module].add(imported)
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in list(graph):
        if node not in state:
            visit(node, [node])


def test_design_card_lists_every_module_and_no_other():
    listed = set(re.findall(r"^\| `(nfrepro/[\w/]+\.py)` \|", DESIGN, flags=re.M))
    present = {str(p.relative_to(ROOT)) for p in PKG.rglob("*.py") if p.name != "__init__.py"}
    assert listed == present, f"missing from docs/DESIGN.md: {sorted(present - listed)}; " \
                              f"gone from the package: {sorted(listed - present)}"


def test_tests_mirror_the_package():
    """Every subpackage has its tests folder; every test file there names a module of that subpackage."""
    for sub in (p for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        folder = ROOT / "tests" / sub.name
        assert folder.is_dir(), f"tests/{sub.name}/ is missing"
        modules = {p.stem for p in sub.glob("*.py")}
        modules |= {p.name for p in sub.iterdir() if (p / "__init__.py").exists()}  # analysis/plotting/
        for test in folder.glob("test_*.py"):
            assert test.stem.removeprefix("test_") in modules, \
                f"{test} names no module of nfrepro/{sub.name}/"


def test_import_nfrepro_builds_and_clips_without_the_extras():
    """The core (torch, numpy) builds NFNet-F0 and clips with AGC without loading any extra."""
    code = ("import sys, torch, nfrepro\n"
            "m = nfrepro.create_model('nfnet_f0')\n"
            "m(torch.randn(1, 3, 32, 32)).sum().backward()\n"
            "nfrepro.adaptive_grad_clip_(nfrepro.clip_parameters(m), 0.01)\n"
            "print(sorted(k for k in ('pandas', 'matplotlib', 'seaborn', 'timm') if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
