"""The house's shape: kerasxai's packages import downwards only, with no cycles, counting imports inside functions.

The floors, lowest first (a module may import its own floor and those below it):

0. ``backend`` (one module per Keras backend), ``_version`` and ``_warn`` (kerasxai's warnings, collectable per thread);
1. ``probe`` (graph re-tracing, layers, heads, inputs, targets, the cache);
2. ``methods`` (formulas, the method table, the engine, map post-processing);
3. ``data`` (decode/resize, ImageNet names, top-k);
4. ``figures`` (the overlay, image figures, signal/volume figures);
5. ``evaluation`` and ``visualize``;
6. ``folder`` (the batch job, its runners, the run folder, the report) and ``train``;
7. the public face: ``kerasxai/__init__``, ``cli``, ``demo``, ``__main__``.
"""

import ast
import os

import kerasxai

ROOT = os.path.dirname(kerasxai.__file__)
FLOORS = {
    "kerasxai._version": 0, "kerasxai._startup": 0, "kerasxai._warn": 0, "kerasxai.backend": 0, "kerasxai.probe": 1, "kerasxai.methods": 2, "kerasxai.data": 3,
    "kerasxai.figures": 4, "kerasxai.evaluation": 5, "kerasxai.visualize": 5, "kerasxai.folder": 6,
    "kerasxai.train": 6, "kerasxai": 7, "kerasxai.cli": 7, "kerasxai.demo": 7, "kerasxai.__main__": 7,
}
# Imports of kerasxai modules inside functions, each for a reason:
LAZY_ALLOWED = {
    "kerasxai.cli",  # the command's start-up: `kerasxai CMD --help` answers without importing TensorFlow
    "kerasxai.train.cli",  # likewise for `kerasxai train --help`
    "kerasxai.train",  # `python -m kerasxai.train.demo_data` must not find its module imported already
}


def _modules():
    mods = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return mods


def _imports(mods):
    """``{module: {(imported kerasxai module, inside a function?)}}``."""
    found = {}
    for module, path in mods.items():
        edges = set()

        def visit(node, inside):
            for child in ast.iter_child_nodes(node):
                deeper = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                names = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                    names = [f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in mods else child.module
                             for a in child.names]
                edges.update((n, deeper) for n in names if n in mods and n != module)
                visit(child, deeper)

        visit(ast.parse(open(path).read()), False)
        found[module] = edges
    return found


def _floor(module):
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in FLOORS:
            return FLOORS[".".join(parts[:i])]
    raise AssertionError(f"{module} is on no floor: add its package to FLOORS")


def test_every_module_is_on_a_floor_and_imports_only_its_own_floor_or_lower():
    mods = _modules()
    upward = []
    for module, edges in _imports(mods).items():
        for target, _ in edges:
            if target == "kerasxai" and _floor(module) < FLOORS["kerasxai"]:
                upward.append(f"{module} imports the package's public face")
            elif _floor(target) > _floor(module):
                upward.append(f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})")
    assert not upward, "\n".join(upward)


def test_no_import_cycles_counting_imports_inside_functions():
    graph = {m: {t for t, _ in e} for m, e in _imports(_modules()).items()}
    state, stack, cycles = {}, [], []

    def walk(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_kerasxai_modules_are_imported_inside_functions_only_where_the_start_up_needs_it():
    lazy = {m for m, edges in _imports(_modules()).items() if any(inside for _, inside in edges)}
    assert lazy <= LAZY_ALLOWED, f"imports inside functions in {sorted(lazy - LAZY_ALLOWED)}"


def test_the_checks_above_can_fail():
    """The graph reader sees a cycle through a function-level import and an upward import."""
    import tempfile

    global ROOT
    saved = ROOT
    with tempfile.TemporaryDirectory() as tmp:
        ROOT = os.path.join(tmp, "kerasxai")
        os.makedirs(os.path.join(ROOT, "probe"))
        open(os.path.join(ROOT, "__init__.py"), "w").close()
        open(os.path.join(ROOT, "probe", "__init__.py"), "w").close()
        with open(os.path.join(ROOT, "probe", "a.py"), "w") as fh:
            fh.write("def f():\n    from kerasxai.methods import b\n")
        os.makedirs(os.path.join(ROOT, "methods"))
        open(os.path.join(ROOT, "methods", "__init__.py"), "w").close()
        with open(os.path.join(ROOT, "methods", "b.py"), "w") as fh:
            fh.write("from kerasxai.probe import a\n")
        try:
            edges = _imports(_modules())
            assert ("kerasxai.methods.b", True) in edges["kerasxai.probe.a"]
            for check in (test_no_import_cycles_counting_imports_inside_functions,
                          test_every_module_is_on_a_floor_and_imports_only_its_own_floor_or_lower,
                          test_kerasxai_modules_are_imported_inside_functions_only_where_the_start_up_needs_it):
                try:
                    check()
                except AssertionError:
                    continue
                raise AssertionError(f"{check.__name__} passed on a broken package")
        finally:
            ROOT = saved


def test_every_folder_of_modules_is_a_package_that_a_wheel_ships():
    """A folder of modules without ``__init__.py`` is left out by ``packages = find:`` (a wheel would lack it)."""
    missing = [os.path.relpath(folder, ROOT) for folder, _, files in os.walk(ROOT)
               if "__pycache__" not in folder and any(f.endswith(".py") for f in files) and "__init__.py" not in files]
    assert not missing, f"folders of modules without __init__.py: {missing}"
