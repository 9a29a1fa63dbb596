"""The package's layout: no import circle among its modules, package imports at the top of each file, and
the jobs as peers (none imports another; `main` and the experiment compose them).

Anyone can run the check: `python tests/test_layout.py` prints each module's storyjax imports and any circle.
"""

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "storyjax")
JOBS = {"storyjax.pretrain", "storyjax.interactive", "storyjax.evaluate", "storyjax.grade"}
COMPOSERS = {"storyjax.main", "storyjax.experiment"}


def modules() -> dict[str, str]:
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].replace(os.sep, ".")
                found[rel.removesuffix(".__init__")] = os.path.join(folder, name)
    return found


def _target(name: str, known: dict) -> str:
    """The package module an import names (a submodule when `from package import submodule`)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def imports(path: str, module: str, known: dict) -> list[tuple[str, bool]]:
    """(imported package module, whether the import sits inside a function or class body)."""
    tree = ast.parse(open(path).read(), path)
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            target = _target(name, known)
            if target.startswith("storyjax") and target != module:
                found.append((target, id(node) not in top))
    return found


def graph() -> tuple[dict[str, set], list[str]]:
    known = modules()
    edges, local = {}, []
    for module, path in known.items():
        edges[module] = set()
        for target, nested in imports(path, module, known):
            edges[module].add(target)
            if nested:
                local.append(f"{module} imports {target} inside a function")
    return edges, local


def cycles(edges: dict[str, set]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_no_import_circle():
    edges, _ = graph()
    assert cycles(edges) == []


def floors(edges: dict[str, set]) -> dict[str, int]:
    """Each module's floor: 1 for a module importing no other, else one above the highest it imports."""
    found: dict[str, int] = {}

    def floor(module: str) -> int:
        if module not in found:
            found[module] = 1 + max((floor(t) for t in edges.get(module, ()) if t != module), default=0)
        return found[module]

    for module in edges:
        floor(module)
    return found


def test_the_house_has_at_most_nine_floors_and_the_rl_core_no_teacher():
    edges, _ = graph()
    height = floors(edges)
    top = max(height, key=height.get)
    assert height[top] <= 9, f"{top} stands on {height[top]} floors"

    def reached(module: str, seen: set) -> set:
        for t in edges.get(module, ()):
            if t not in seen:
                seen.add(t)
                reached(t, seen)
        return seen

    core = ("storyjax.reinforce", "storyjax.reward", "storyjax.rollout", "storyjax.step_record")
    assert {m: sorted(t for t in reached(m, set()) if t.startswith("storyjax.teachers")) for m in core} == \
        {m: [] for m in core}


def test_package_imports_at_the_top_of_each_file():
    _, local = graph()
    assert local == []


def test_jobs_are_peers():
    edges, _ = graph()
    crossing = [f"{job} imports {other}" for job in JOBS for other in edges[job] & (JOBS | COMPOSERS)]
    assert crossing == []


def test_config_dicts_stop_at_the_entries():
    """Settings reach the code below a job's entry as typed records: only the entry (main), the config files'
    loader and defaults, and the parser that turns a section into a record know what a ConfigDict is."""
    allowed = {"storyjax.main", "storyjax.config_file", "storyjax.settings_record", "storyjax.teachers.config"}
    knowing = set()
    for module, path in modules().items():
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "ml_collections" for n in names):
                knowing.add(module)
    assert knowing <= allowed, sorted(knowing - allowed)


def test_every_function_reads_in_60_lines():
    """Every function of the package and of configs/ (the loops included) fits a screen."""
    root = os.path.dirname(PACKAGE)
    paths = [os.path.join(folder, f) for base in (PACKAGE, os.path.join(root, "configs"))
             for folder, _, files in os.walk(base) for f in files if f.endswith(".py")]
    assert len(paths) > 50
    long = []
    for path in paths:
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{os.path.relpath(path, root)}:{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []


def test_every_saved_state_has_params_first():
    from storyjax import pretrain_step, reinforce  # noqa: PLC0415 — only this test needs jax
    assert pretrain_step.TrainState._fields[0] == reinforce.RLState._fields[0] == "params"  # checkpoint.params_of


def test_the_check_sees_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


if __name__ == "__main__":
    edges, local = graph()
    for module in sorted(edges):
        print(f"{module}: {', '.join(sorted(edges[module])) or '-'}")
    problems = [" → ".join(c) for c in cycles(edges)] + local
    print("\n".join(problems) or "no import circle; every package import at the top of its file")
    sys.exit(1 if problems else 0)
