"""The package's layers import one way (model → tape → layout → writer, checks beside), and every op
belongs to exactly one tested family.

The allowed directions, by top-level part of tracer (a module may always import its own part):

    core      the tape and the ops              nothing else of tracer
    frontends a foreign model read into ops     core, errors (and the foreign library, only when used)
    data      MNIST, texts, mlp configs         errors
    models    one file per model                core, frontends, data, errors
    render    templates, layout, writers        core, errors
    engines   spreadsheet engines               errors
    checks    verify, gradcheck, exercise, check   core, frontends, data, models, render, engines, errors
    api       the Python API                    everything but cli
    bench     the benchmark                     everything but cli
    cli       the command                       api, errors, and the package's version
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from families import FAMILIES

from tracer import core

PACKAGE = Path(core.__file__).resolve().parent.parent  # the tracer folder
ALLOWED = {
    "core": {"core"},
    "frontends": {"frontends", "core", "errors"},
    "data": {"data", "errors"},
    "models": {"models", "core", "frontends", "data", "errors"},
    "render": {"render", "core", "errors"},
    "engines": {"engines", "errors"},
    "checks": {"checks", "core", "frontends", "data", "models", "render", "engines", "errors"},
    "errors": set(),
    "api": {"core", "frontends", "data", "models", "render", "engines", "checks", "errors", "bench"},
    "bench": {"core", "frontends", "data", "models", "render", "engines", "checks", "errors"},
    "cli": {"api", "errors", "__init__"},
    "__init__": {"api", "errors"},
}


def part(module: str) -> str:
    """tracer.core.tape -> core; tracer -> __init__; tracer.api -> api."""
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    """Every tracer module a file imports, at its top or inside a function (absolute imports: the
    package uses no relative ones, and a test below makes sure)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tracer"}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            if node.module == "tracer":  # from tracer import api: the submodule, or the package itself
                found |= {f"tracer.{a.name}" if (PACKAGE / a.name).is_dir() or (PACKAGE / f"{a.name}.py").is_file()
                          else "tracer" for a in node.names}
            elif (node.module or "").split(".")[0] == "tracer":
                found.add(node.module)
    return found


def modules():
    return sorted((PACKAGE).rglob("*.py"))


def layer(path: Path) -> str:
    """The part of tracer a file belongs to: its folder, or its own name at the top."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def violations(path: Path, here: str) -> list[str]:
    """The tracer modules `path` imports that its layer `here` may not."""
    return sorted(m for m in imports(path) if part(m) not in ALLOWED[here] | {here})


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    assert not violations(path, layer(path)), f"{path.relative_to(PACKAGE)} imports {violations(path, layer(path))}"


def test_nothing_imports_the_cli():
    assert not [p for p in modules() if any(part(m) == "cli" for m in imports(p))]


def test_the_import_check_can_fail(tmp_path):
    """A model importing the writer inside a function, or the CLI, is caught."""
    fake = tmp_path / "model.py"
    fake.write_text("import numpy\n\ndef f():\n    from tracer.render.xlsx import write_xlsx\n    import tracer.cli\n", "utf-8")
    assert violations(fake, "models") == ["tracer.cli", "tracer.render.xlsx"]
    assert violations(fake, "checks") == ["tracer.cli"]


def test_only_the_front_end_imports_torch():
    """PyTorch is an optional extra: no module but tracer/frontends/pytorch.py imports it (and that
    one only inside functions, when a run needs it)."""
    def torch_imports(path):
        tree = ast.parse(path.read_text("utf-8"))
        found = []
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [(node, n) for n in names if n.split(".")[0] == "torch"]
        return tree, found

    for path in modules():
        tree, found = torch_imports(path)
        if path.relative_to(PACKAGE).as_posix() == "frontends/pytorch.py":
            assert found and not [n for node, n in found if node in tree.body], "torch imported at the top"
        elif path.parent.name != "examples":  # the shipped example module is the user's code
            assert not found, f"{path.relative_to(PACKAGE)} imports torch"


def test_every_op_belongs_to_exactly_one_tested_family():
    names = [n for family in FAMILIES.values() for n in family]
    assert len(names) == len(set(names))
    assert set(names) == set(core.OPS)
