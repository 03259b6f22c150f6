"""The package's import graph: no cycle between modules or sub-packages (imports inside functions included), and
``nn``/``space`` at the bottom; ``tools/package_graph.py`` reads the graph from the source with ``ast``."""

import importlib.util
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: what the pure-PyTorch and plain-Python layers may import from the rest of the package
ALLOWED = {"space": {"utils"}, "nn": {"space", "utils"}}


def _package_graph():
    """tools/package_graph.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("package_graph", os.path.join(REPO_ROOT, "tools", "package_graph.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


graph_tools = _package_graph()


def test_relative_imports_resolve_to_package_modules():
    graph = graph_tools.module_imports()
    assert "detnas_d2.space.base" in graph["detnas_d2.space.backbone"]  # from .base import ...
    assert "detnas_d2.utils.config" in graph["detnas_d2.search.config"]  # from ..utils.config import ...
    assert "detnas_d2.register" in graph["detnas_d2"]  # from .register import ...
    assert "detnas_d2.data" in graph["detnas_d2.register"]  # from . import data (a package, inside a function)
    assert "detnas_d2.cli.defaults" in graph["detnas_d2.tools.ranking_check"]  # an import inside a function counts


def test_find_cycle_reports_a_cycle_and_accepts_a_dag():
    assert graph_tools.find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert graph_tools.find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_cycle_between_modules():
    cycle = graph_tools.find_cycle(graph_tools.module_imports())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_no_cycle_between_subpackages():
    cycle = graph_tools.find_cycle(graph_tools.subpackage_imports(graph_tools.module_imports()))
    assert cycle is None, f"sub-package cycle: {' -> '.join(cycle)}"


def test_nn_and_space_import_only_the_layers_below_them():
    packages = graph_tools.subpackage_imports(graph_tools.module_imports())
    for name, allowed in ALLOWED.items():
        assert packages[name] <= allowed, f"{name} imports {sorted(packages[name] - allowed)}"
