"""The import graph of ``detnas_d2``, read from the source with ``ast``, and its picture for the README.

``python tools/package_graph.py [OUT.png]`` draws the sub-package graph (default ``docs/package_graph.png``);
``tests/test_package_graph.py`` uses the same functions to assert that neither graph has a cycle.
"""

import ast
import os
import sys
from typing import Dict, List, Set

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "detnas_d2"


def package_modules(root: str = REPO_ROOT) -> Dict[str, str]:
    """Dotted module name -> file path of every ``detnas_d2`` module (packages named by their ``__init__``)."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(root, PACKAGE)):
        for name in files:
            if not name.endswith(".py"):
                continue
            parts = os.path.relpath(os.path.join(folder, name), root)[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = os.path.join(folder, name)
    return modules


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name ``from ... import`` refers to, with relative levels resolved against ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def module_imports(root: str = REPO_ROOT) -> Dict[str, Set[str]]:
    """Module -> the ``detnas_d2`` modules it imports anywhere in its file (module level and inside functions).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.
    """
    modules = package_modules(root)
    graph = {}
    for module, path in modules.items():
        is_package = path.endswith("__init__.py")
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else base)
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def subpackage_of(module: str) -> str:
    """``detnas_d2.search.engine`` -> ``search``; a module directly in the package (``pipeline``) is its own node,
    the package's own ``__init__`` is ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def subpackage_imports(graph: Dict[str, Set[str]]) -> Dict[str, Set[str]]:
    """The module graph collapsed to sub-packages (edges inside one sub-package dropped)."""
    collapsed: Dict[str, Set[str]] = {}
    for module, targets in graph.items():
        source = subpackage_of(module)
        edges = collapsed.setdefault(source, set())
        edges.update(subpackage_of(t) for t in targets if subpackage_of(t) != source)
    return collapsed


def find_cycle(graph: Dict[str, Set[str]]) -> List[str] | None:
    """One cycle of ``graph`` as a list of nodes ``[a, b, ..., a]``, or None for a DAG (depth-first search)."""
    state: Dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: List[str] = []

    def visit(node: str) -> List[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def layers(graph: Dict[str, Set[str]]) -> Dict[str, int]:
    """Node -> its layer in a drawing: 0 for nodes importing nothing, else one above the highest node it imports."""
    layer: Dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in layer:
            layer[node] = 1 + max((depth(n) for n in graph.get(node, ())), default=-1)
        return layer[node]

    for node in graph:
        depth(node)
    return layer


def draw(graph: Dict[str, Set[str]], path: str) -> None:
    """Draw ``graph`` (a DAG) in layers, importers above what they import, and save it to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layer = layers(graph)
    rows: Dict[int, List[str]] = {}
    for node in sorted(layer, key=lambda n: (layer[n], n)):
        rows.setdefault(layer[node], []).append(node)
    width = max(len(row) for row in rows.values())
    position = {
        node: ((i + 0.5) * width / len(row), level) for level, row in rows.items() for i, node in enumerate(row)
    }
    fig, ax = plt.subplots(figsize=(max(1.6 * width + 1, 7.5), 1.1 * len(rows) + 0.5))
    for source, targets in graph.items():
        for target in targets:
            ax.annotate(
                "",
                xy=position[target],
                xytext=position[source],
                arrowprops=dict(arrowstyle="->", color="0.55", lw=0.8, shrinkA=12, shrinkB=12),
            )
    for node, (x, y) in position.items():
        ax.text(
            x,
            y,
            node,
            ha="center",
            va="center",
            fontsize=10,
            bbox=dict(boxstyle="round,pad=0.35", facecolor="#dce9f5", edgecolor="#4a6f94"),
        )
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.axis("off")
    ax.set_title("detnas_d2 sub-packages and top-level modules (arrow: importer -> imported)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO_ROOT, "docs", "package_graph.png")
    packages = subpackage_imports(module_imports())
    cycle = find_cycle(packages)
    if cycle:
        sys.exit(f"the sub-package graph has a cycle: {' -> '.join(cycle)}")
    draw(packages, out)
    print(f"wrote {out}")
