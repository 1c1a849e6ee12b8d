"""The package's seams: import direction, no cycles, no import-time side effects, upstream internals in _compat,
one option vocabulary."""

import ast
import importlib
import os
import re
import subprocess
import sys

from .conftest import REPO

PACKAGE = REPO / "src" / "ctlearn_mlops"


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports():
    """{module: modules of the package it imports, at any level (lazy imports included)}"""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            found.update(c for c in candidates if c in modules and c != name)
        graph[name] = found
    return graph


def test_the_package_has_no_import_cycle():
    graph = _imports()

    def reaches(start, goal, seen):
        for nxt in graph[start]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    cycles = [name for name in graph if reaches(name, name, set())]
    assert not cycles, f"modules on an import cycle: {sorted(cycles)}"


# cli -> tools -> reporting -> physics -> io/metrics: a layer imports only the layers below it
LAYERS = {"cli": 5, "tools": 4, "reporting": 3, "physics": 2, "io": 1, "metrics": 1}


def _layer(module):
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_modules_depend_one_way():
    wrong = []
    for module, imported in _imports().items():
        own = _layer(module)
        if own is None:
            continue
        for target in imported:
            theirs = _layer(target)
            if theirs is not None and theirs > own or (theirs == own and target.split(".")[1] != module.split(".")[1]):
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


LIGHT_MODULES = [
    "ctlearn_mlops.io.dl2", "ctlearn_mlops.physics.evaluation", "ctlearn_mlops.physics.irf",
    "ctlearn_mlops.tools.report", "ctlearn_mlops.tools.compare", "ctlearn_mlops.tools.irf",
    "ctlearn_mlops.tools.runs", "ctlearn_mlops.reporting.plots",
]


def test_reading_reporting_and_comparing_import_no_tensorflow():
    # one interpreter imports them in turn and names the first that brings a heavy module in
    code = ("import importlib, sys\n"
            f"for module in {LIGHT_MODULES!r}:\n"
            "    importlib.import_module(module)\n"
            "    heavy = [m for m in ('tensorflow', 'keras', 'ctlearn', 'ctlearn_mlops.tools.train') if m in sys.modules]\n"
            "    if heavy:\n"
            "        sys.exit(f'{module} imports {heavy}')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_importing_the_package_changes_no_process_setting():
    code = ("import os, matplotlib; matplotlib.use('svg'); "
            "import ctlearn_mlops, ctlearn_mlops.reporting.plots, ctlearn_mlops.reporting.document, "
            "ctlearn_mlops.reporting.irf_figures, ctlearn_mlops.tools.report; "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); "
            "assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MPLBACKEND")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


def test_importing_the_dl1_checks_leaves_hdf5_messages_on(tmp_path):
    """Whether HDF5 prints its back traces is the program's setting: importing a module does not change it."""
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    code = ("import sys, tables\ntables.silence_hdf5_messages(False)\nimport ctlearn_mlops.io.dl1, ctlearn_mlops.rundir\n"
            f"try:\n    tables.open_file({str(broken)!r})\nexcept Exception:\n    pass\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HDF5-DIAG" in result.stderr


def _own_private_names():
    """Private names the package defines itself (functions, classes, attributes it assigns)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {n for n in names if n.startswith("_")}


def test_private_upstream_names_are_used_in_compat_only():
    own = _own_private_names()
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            # PyTables names its public node API _v_* and _f_*; os._exit is public
            if node.attr.startswith(("_v_", "_f_")) or node.attr in own or node.attr == "_exit":
                continue
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: .{node.attr}")
    text_hits = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in PACKAGE.rglob("*.py") if p.name != "_compat.py"
                 for m in re.finditer(r"__wrapped__|keras\.Model\.fit\s*=", p.read_text())]
    assert not found and not text_hits, found + text_hits


def test_every_compat_shim_names_the_upstream_version_it_was_written_for():
    from ctlearn_mlops import _compat

    functions = [getattr(_compat, n) for n in dir(_compat) if not n.startswith("_")
                 and callable(getattr(_compat, n)) and getattr(getattr(_compat, n), "__module__", "") == _compat.__name__]
    assert functions
    for function in functions:
        doc = function.__doc__ or ""
        assert re.search(r"\d+\.\d+", doc), f"_compat.{function.__name__} names no upstream version"


# the scripts and the tool behind each (the image-cache mode of extract_only_images.py has its own tool)
SCRIPTS = {
    "train_model.py": "train", "test_model.py": "predict", "predict_events.py": "events",
    "generate_report.py": "report", "compare_models.py": "compare", "compute_irf.py": "irf",
    "list_runs.py": "runs", "convert_data.py": "convert", "extract_only_images.py": "extract",
    "extract_only_images.py --image-cache": "image_cache", "make_default_dataset.py": "make_default_data",
    "run_merge.py": "merge",
}


def _tool_class(module):
    from ctapipe.core import Tool

    mod = importlib.import_module(f"ctlearn_mlops.tools.{module}")
    (tool,) = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, Tool) and v.__module__ == mod.__name__]
    return tool


def _documented_options():
    """{option spelling: scripts} from the table of docs/options.md."""
    table = {}
    text = (REPO / "docs" / "options.md").read_text().split("## Old spellings")[0]
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`-"):
            continue
        for option in re.findall(r"`(-[\w-]+)`", cells[0]):
            table[option] = cells[2]
    return table


def test_every_shared_option_has_one_meaning_and_is_in_the_options_table():
    documented = _documented_options()
    meanings = {}
    for script, module in SCRIPTS.items():
        tool = _tool_class(module)
        for names in tool.aliases:
            names = names if isinstance(names, tuple) else (names,)
            spellings = [("-" if len(n) == 1 else "--") + n for n in names]
            long = spellings[-1]
            # one short form per long form, the same in every script
            for short in spellings[:-1]:
                assert meanings.setdefault(short, long) == long, f"{short} is {meanings[short]} and {long} ({script})"
            in_other_scripts = [s for s, m in SCRIPTS.items() if s != script and long in
                                [("--" + (n[-1] if isinstance(n, tuple) else n)) for n in _tool_class(m).aliases]]
            if in_other_scripts:
                assert long in documented, f"{long} ({script} and {in_other_scripts}) is not in docs/options.md"
                name = script.split()[0]
                assert name in documented[long], f"docs/options.md: {long} does not list {name}"
