"""The package's layers, read from its source: every first-party import points down (or within a layer), there
is no import cycle, and an import inside a function is there only to defer a heavy dependency (it says so)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "xpcs_denoise"
#: Bottom to top; a module may import its own layer and the layers before it (README, "Architecture").
LAYERS = ("core", "io", "nn", "restoration", "analysis", "app")
#: Modules whose every first-party import is deferred on purpose: the CLI imports the layers it needs only for
#: the sub-command it runs, so that ``--help`` and ``--version`` load neither torch nor scipy.
ALL_DEFERRED = {"xpcs_denoise.app.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(imported module, line, inside a function?, the import's source lines) for each first-party import."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            deeper = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] == "xpcs_denoise":
                    targets = [target]
                    if not child.module:  # from . import x / from .. import x: x may be a module
                        targets = [f"{target}.{a.name}" for a in child.names]
                    src = lines[max(child.lineno - 2, 0): child.end_lineno]
                    out.extend((t, child.lineno, in_function, src) for t in targets)
            elif isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.split(".")[0] == "xpcs_denoise":
                        out.append((a.name, child.lineno, in_function, lines[max(child.lineno - 2, 0): child.lineno]))
            visit(child, deeper)

    visit(tree, False)
    return out


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(target: str) -> str | None:
    """The package module an import names (``xpcs_denoise.core.fitting.fit_g2`` → ``xpcs_denoise.core.fitting``)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


GRAPH = {m: [(_resolve(t), line, fn, src) for t, line, fn, src in _imports(p)] for m, p in MODULES.items()}


def test_every_module_lies_in_a_layer():
    loose = [m for m in MODULES if _layer(m) is None and m not in ("xpcs_denoise", "xpcs_denoise.__main__")]
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) is not None))
def test_imports_point_down(module):
    up = [(t, line) for t, line, _, _ in GRAPH[module]
          if t and _layer(t) is not None and _layer(t) > _layer(module)]
    assert not up, f"{module} imports a higher layer: {up}"


def test_no_import_cycles():
    edges = {m: {t for t, *_ in GRAPH[m] if t and t != m and t != "xpcs_denoise"} for m in MODULES}
    state, stack, cycles = {}, [], []

    def walk(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                walk(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            walk(m)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_inside_functions_defer_something_heavy():
    hidden = [f"{m}:{line}" for m, rows in GRAPH.items() if m not in ALL_DEFERRED
              for t, line, fn, src in rows if fn and not any("defers" in s for s in src)]
    assert not hidden, ("first-party imports inside functions without a '# defers ...' reason (import at the top "
                        f"of the module instead): {hidden}")


def test_the_checker_sees_what_it_checks():
    """The graph walk is not vacuous: it finds known edges and a deferred import."""
    assert ("xpcs_denoise.core.errors" in {t for t, *_ in GRAPH["xpcs_denoise.core.correlation"]})
    assert any(fn for _, _, fn, _ in GRAPH["xpcs_denoise.app.cli"])
    assert _layer("xpcs_denoise.app.cli") > _layer("xpcs_denoise.core.fitting")


def test_every_public_name_resolves_lazily():
    """Each name of ``xpcs_denoise.__all__`` comes from the module ``_EXPORTS`` names, and the old flat module
    paths still import (the same module object, with a DeprecationWarning)."""
    import importlib
    import sys
    import warnings

    import xpcs_denoise as xd

    for name in xd.__all__:
        assert getattr(xd, name) is not None, name
    for old, new in xd._MOVED.items():
        sys.modules.pop(f"xpcs_denoise.{old}", None)  # as a first import would, so that it warns
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mod = importlib.import_module(f"xpcs_denoise.{old}")
        assert mod is importlib.import_module(f"xpcs_denoise.{new}")
        assert any(issubclass(w.category, DeprecationWarning) for w in caught), old


def test_every_name_the_readme_uses_exists():
    """README's API: each ``xd.NAME``, each ``from xpcs_denoise... import NAME`` and each layer path
    (``core.badframes.fill_excluded``) resolves in the code."""
    import importlib
    import re

    import xpcs_denoise as xd

    text = (PACKAGE.parents[1] / "README.md").read_text()
    missing = [n for n in set(re.findall(r"\bxd\.([A-Za-z_]\w*)", text)) if not hasattr(xd, n)]
    for module, names in re.findall(r"from (xpcs_denoise[\w.]*) import ([\w, ]+)", text):
        missing += [f"{module}.{n.strip()}" for n in names.split(",")
                    if not hasattr(importlib.import_module(module), n.strip())]
    for path in set(re.findall(r"`((?:core|io|nn|restoration|analysis|app)\.\w+\.\w+)`", text)):
        layer, module, name = path.split(".")
        if not hasattr(importlib.import_module(f"xpcs_denoise.{layer}.{module}"), name):
            missing.append(path)
    assert not missing, f"README names missing from the code: {missing}"


def test_an_old_path_leaves_the_module_as_it_was():
    """The module found through an old path keeps its own spec (relative imports inside it stay silent)."""
    import importlib
    import sys
    import warnings

    new = importlib.import_module("xpcs_denoise.app.cli")
    sys.modules.pop("xpcs_denoise.cli", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("xpcs_denoise.cli")
    assert old is new and new.__spec__.name == "xpcs_denoise.app.cli" and new.__package__ == "xpcs_denoise.app"


def _strings_with_flags(path: Path):
    """(line, flags) of the string literals (docstrings aside) of a module that name command-line flags."""
    import re

    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if flags := re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                yield node.lineno, flags


def test_library_messages_name_parameters_not_cli_flags():
    # the CLI translates them (app/cli.py _FLAGS); a model card's provenance command line is not a message
    allowed = {("nn/finetune.py", ("--rois",))}
    found = {(str(p.relative_to(PACKAGE)), tuple(flags)) for p in PACKAGE.rglob("*.py")
             if p != PACKAGE / "app" / "cli.py" for _, flags in _strings_with_flags(p)}
    assert found == allowed
    assert list(_strings_with_flags(PACKAGE / "app" / "cli.py"))  # the scan sees flags where there are some


def test_the_cli_says_flags_where_the_library_names_parameters():
    from xpcs_denoise.app.cli import _as_flags

    cases = {
        "x.h5 exists; pass overwrite=True to replace it": "x.h5 exists; pass --overwrite to replace it",
        "unknown 2TCF layout; give dataset='path/in/file'": "unknown 2TCF layout; give --dataset path/in/file",
        "output_format='aps' copies an APS file; use output_format='ours'":
            "--format aps copies an APS file; use --format ours",
        "cut_width (frames) must be >= 1; got 0": "--cut-width (frames) must be >= 1; got 0",
        "cut_width=90 is wider than the 60-frame 2TCF": "--cut-width 90 is wider than the 60-frame 2TCF",
        "learning rate (TrainConfig.lr) must be > 0": "learning rate (--lr) must be > 0",
        "TrainConfig.split_seed must be in 0..9": "--split-seed must be in 0..9",
        "use that run's TrainConfig.n_members and ModelConfig (size, channels, latent), or pass resume=False":
            "use that run's --members/--size/--channels/--latent, or pass --restart",
        "exclude such frames: exclude='auto')": "exclude such frames: --exclude-frames auto)",
        "the seed of the draws; seed must be >= 0": "the seed of the draws; seed must be >= 0",  # not a parameter
        "my_overwrite=True, max_lags": "my_overwrite=True, max_lags",  # only whole names
    }
    for library, cli in cases.items():
        assert _as_flags(library) == cli
