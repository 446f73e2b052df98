"""The code's shape: one boundary with Lightning's internals, no import circle, short functions."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vaelab
from vaelab import lightning_boundary

SRC = Path(vaelab.__file__).parent
BOUNDARY = Path(lightning_boundary.__file__)
MODULES = {
    ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted(SRC.rglob("*.py"))
}


def _accessed_privates(tree: ast.AST) -> set[str]:
    """Private attributes a module reads or writes on objects, by attribute or by getattr."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and re.fullmatch(r"_[a-z]\w*", node.attr):
            names.add(node.attr)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr"):
            arg = node.args[1] if len(node.args) > 1 else None
            if isinstance(arg, ast.Constant) and str(arg.value).startswith("_"):
                names.add(arg.value)
    return names


def test_the_boundary_lists_every_private_name_it_touches():
    tree = ast.parse(BOUNDARY.read_text())
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    overridden = {  # a private method of a Lightning class, defined again in a subclass
        method.name
        for klass in tree.body
        if isinstance(klass, ast.ClassDef)
        for method in klass.body
        if isinstance(method, ast.FunctionDef) and re.fullmatch(r"_[a-z]\w*", method.name)
    }
    touched = (_accessed_privates(tree) | overridden) - own
    assert touched == set(lightning_boundary.PRIVATE_NAMES)


@pytest.mark.parametrize(
    "name", lightning_boundary.PRIVATE_NAMES + lightning_boundary.LOOP_INTERNALS
)
def test_no_lightning_internal_is_named_outside_the_boundary(name):
    # As a word anywhere, comments included: the boundary is the one place to look.
    found = [
        f"{path.relative_to(SRC)}:{number}"
        for path in MODULES.values()
        if path != BOUNDARY
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(rf"(?<![\w.]){re.escape(name)}\b|\.{re.escape(name)}\b", line)
    ]
    assert not found, f"{name} outside vaelab/lightning_boundary.py: {found}"


def test_an_untested_lightning_is_refused_in_one_line():
    lightning_boundary._check_version("2.6.6")
    for version in ("2.7.0", "2.5.9", "3.0.0", "nightly"):
        with pytest.raises(lightning_boundary.UntestedLightning) as error:
            lightning_boundary._check_version(version)
        assert "\n" not in str(error.value)
        assert f"lightning {version} is installed" in str(error.value)
        assert "pip install 'lightning>=2.6,<2.7'" in str(error.value)


def test_pyproject_declares_the_tested_lightning_range():
    low, high = (".".join(map(str, bound)) for bound in lightning_boundary.TESTED)
    pyproject = (SRC.parents[1] / "pyproject.toml").read_text()
    assert f'"lightning>={low},<{high}"' in pyproject


def _imports(name: str, path: Path) -> set[str]:
    """The vaelab modules a module imports: at the top, inside functions, under TYPE_CHECKING;
    importing a module also runs the `__init__` of each package above it that the importer is
    not inside already."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in MODULES else base)
    edges = set()
    for target in targets:
        if target.split(".")[0] != "vaelab" or target not in MODULES:
            continue
        parts = target.split(".")
        for depth in range(1, len(parts) + 1):
            above = ".".join(parts[:depth])
            if above in MODULES and not (name == above or name.startswith(above + ".")):
                edges.add(above)
    return edges


def test_no_import_circle_in_vaelab():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    state: dict[str, str] = {}
    circles = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                circles.append(" -> ".join(trail[trail.index(other) :] + [other]))
            elif other not in state:
                visit(other, [*trail, other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)


def test_every_function_is_at_most_60_lines():
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - first + 1 > 60:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert not long, long


def test_a_command_under_an_untested_lightning_says_so_in_one_line_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    code = (
        "import sys, lightning; lightning.__version__ = '2.7.0'; "
        f"sys.argv = ['vaelab-train', 'trainer=cpu', 'hydra.run.dir={run_dir}']; "
        "from vaelab.train import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: lightning 2.7.0 is installed, but vaelab is tested with lightning>=2.6,<2.7 (its "
        "exact resume counts on Lightning's loop internals): pip install 'lightning>=2.6,<2.7'"
    ]
    assert not run_dir.exists()
