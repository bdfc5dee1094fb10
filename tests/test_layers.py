"""The house rule of docs/ARCHITECTURE.md: imports go down the layers, and nothing imports in a circle.

The package's imports are read from its source (every ``import``/``from ... import`` statement,
function-local ones included, ``if TYPE_CHECKING:`` blocks left out), each module is mapped to its
layer (:data:`LAYERS`, the longest matching name wins), and the test fails on any import from a lower
layer to a higher one and on any circle. An exception is allowed only where :data:`ALLOWED_UPWARD`
lists it with its reason (two at most). Importing ``b2diffurl.a.b`` also runs ``b2diffurl/a/__init__.py``,
so it counts as an import of both (except from inside ``b2diffurl/a/`` itself, whose __init__ has
run already; an explicit ``from b2diffurl.a import x`` there still counts).
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "b2diffurl")

# 1 pure math and formats, 2 models and rewards, 3 the stages and their checks, 4 the run and the tools
LAYERS = {
    # 1. pure math and formats: no model, no stage, no run
    "b2diffurl.errors": 1,
    "b2diffurl.schedule": 1,
    "b2diffurl.ddim": 1,
    "b2diffurl.objectives": 1,
    "b2diffurl.metrics": 1,
    "b2diffurl.stats": 1,
    "b2diffurl.records": 1,
    "b2diffurl.atomic": 1,
    "b2diffurl.tensorfiles": 1,
    "b2diffurl.trajectories": 1,
    "b2diffurl.layout": 1,
    "b2diffurl.configs": 1,
    "b2diffurl.choices": 1,
    "b2diffurl.prompt_sets": 1,
    "b2diffurl.summaries": 1,
    "b2diffurl.variables": 1,
    "b2diffurl.heap": 1,
    "b2diffurl.tf32": 1,
    "b2diffurl.runlock": 1,
    "b2diffurl.grids": 1,
    "b2diffurl.perf": 1,
    # 2. models and rewards
    "b2diffurl.backbones": 2,
    "b2diffurl.models": 2,
    "b2diffurl.weights": 2,
    "b2diffurl.tiny": 2,
    "b2diffurl.tiny_text": 2,
    "b2diffurl.textenc": 2,
    "b2diffurl.rewards": 2,
    "b2diffurl.toyworld": 2,
    # 3. the stages and their checks
    "b2diffurl.checks": 3,
    "b2diffurl.cli": 3,
    "b2diffurl.sampler": 3,
    "b2diffurl.selection": 3,
    "b2diffurl.trainer": 3,
    "b2diffurl.optimizer_state": 3,
    "b2diffurl.policy": 3,
    "b2diffurl.train_batches": 3,
    "b2diffurl.train_loop": 3,
    "b2diffurl.train_record": 3,
    "b2diffurl.evaluate": 3,
    "b2diffurl.stages": 3,
    "b2diffurl.round": 3,
    "b2diffurl.nodes": 3,
    "b2diffurl.stability": 4,
    # 4. the run, and the tools on top
    "b2diffurl.driver": 4,
    "b2diffurl.settings": 4,
    "b2diffurl.outcome": 4,
    "b2diffurl.tracking": 3,
    "b2diffurl.figures": 4,
    "b2diffurl.bench": 4,
    "b2diffurl.flops": 4,
    "b2diffurl.toylab": 4,
    "b2diffurl.toyworld.__main__": 4,
}

# (importer, imported): why this one import may run up a layer. Two at most.
ALLOWED_UPWARD = {}


def module_name(path, root=PACKAGE):
    rel = os.path.relpath(path, os.path.dirname(root))[: -len(".py")].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def package_modules(root=PACKAGE):
    """{module name: path} of every .py file of the package."""
    found = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                found[module_name(os.path.join(dirpath, name), root)] = os.path.join(dirpath, name)
    return found


def _type_checking_block(node):
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree):
    """Every import statement of a module, at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if _type_checking_block(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def _with_parents(name, modules, importer):
    """``name`` and the packages above it that are modules of ours (their __init__ runs too), except the
    packages that hold the importer itself: those are initialised before it runs at all."""
    parts = name.split(".")
    above = {".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in modules}
    own = {p for p in above if importer.startswith(p + ".")}
    return ({name} & set(modules)) | (above - own)


def imports_of(name, path, modules):
    """The package modules ``name`` imports (parents' __init__ included, itself excluded)."""
    tree = ast.parse(open(path).read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from . import x, from .a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target.startswith("b2diffurl"):
                found |= _with_parents(target, modules, name)
    found.discard(name)
    found.discard("b2diffurl")
    return found


def layer_of(name):
    matches = [prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def import_graph(root=PACKAGE):
    modules = package_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def upward_imports(graph):
    return sorted(
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)
    )


def circles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    missing = sorted(name for name in package_modules() if name != "b2diffurl" and layer_of(name) is None)
    assert not missing, f"modules without a layer in tests/test_layers.py LAYERS: {missing}"


def test_imports_only_go_down():
    assert len(ALLOWED_UPWARD) <= 2
    upward = [pair for pair in upward_imports(import_graph()) if pair not in ALLOWED_UPWARD]
    lines = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})" for a, b in upward]
    assert not lines, "imports that run up a layer:\n" + "\n".join(lines)


def test_no_circles():
    found = circles(import_graph())
    assert not found, "import circles, each among the modules named:\n" + "\n".join(", ".join(c) for c in found)


def test_allowed_upward_imports_still_exist():
    upward = set(upward_imports(import_graph()))
    stale = [pair for pair in ALLOWED_UPWARD if pair not in upward]
    assert not stale, f"ALLOWED_UPWARD lists imports that are gone (remove them): {stale}"


def _plant(tmp_path, files):
    root = tmp_path / "b2diffurl"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


@pytest.mark.parametrize(
    "files, expect_up, expect_circle",
    [
        # a function-local import from a lower layer up to a higher one
        ({"__init__.py": "", "records.py": "def f():\n    from b2diffurl import driver\n", "driver.py": ""}, 1, 0),
        # a relative import, up
        ({"__init__.py": "", "schedule.py": "from .stages import x\n", "stages.py": "x = 1\n"}, 1, 0),
        # a submodule import runs its package's __init__
        (
            {
                "__init__.py": "",
                "errors.py": "import b2diffurl.bench.shapes\n",
                "bench/__init__.py": "",
                "bench/shapes.py": "",
            },
            2,
            0,
        ),
        # a submodule that imports its own package's __init__, which imports the submodule
        (
            {
                "__init__.py": "",
                "rewards/__init__.py": "from b2diffurl.rewards.a import f\n",
                "rewards/a.py": "from b2diffurl.rewards import g\n",
            },
            0,
            1,
        ),
        # a submodule importing a sibling while the __init__ re-exports both: no circle
        (
            {
                "__init__.py": "",
                "figures/__init__.py": "from b2diffurl.figures.a import f\nfrom b2diffurl.figures.b import g\n",
                "figures/a.py": "from b2diffurl.figures.b import g\n",
                "figures/b.py": "",
            },
            0,
            0,
        ),
        # a circle inside one layer
        (
            {
                "__init__.py": "",
                "sampler.py": "from b2diffurl import trainer\n",
                "trainer.py": "import b2diffurl.sampler\n",
            },
            0,
            1,
        ),
        # downward only, TYPE_CHECKING ignored
        (
            {
                "__init__.py": "",
                "driver.py": "from b2diffurl import records\n",
                "records.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from b2diffurl import driver\n",
            },
            0,
            0,
        ),
    ],
)
def test_the_rule_catches_planted_imports(tmp_path, files, expect_up, expect_circle):
    graph = import_graph(_plant(tmp_path, files))
    assert len(upward_imports(graph)) == expect_up
    assert len(circles(graph)) == expect_circle
