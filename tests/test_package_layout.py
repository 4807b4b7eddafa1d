"""The package is layered: a module may import its own layer or layers below it, never one above."""

import ast
import pathlib
import re

import course_utils

PACKAGE = pathlib.Path(course_utils.__file__).parent
INFRA = {"arguments", "assets", "cache", "checks", "device", "optional", "parent_watch", "plotting", "profile",
         "switch_off", "widgets"}
# Lowest first; a module may import from its own layer or any earlier one.
LAYERS = ["infrastructure", "text", "model", "train", "generate", "evaluate", "scaling", "rlhf", "lora", "rag",
          "classify", "parallel", "exercises", "solutions", "delivery"]


def layer_of(dotted: str) -> str:
    parts = dotted.split(".")
    assert parts[0] == "course_utils", dotted
    if len(parts) == 1 or parts[1] in INFRA:
        return "infrastructure"
    assert parts[1] in LAYERS, f"{dotted} is in no layer; add its subpackage to LAYERS and to the package docstring"
    return parts[1]


def package_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports (from course_utils.x import ...)"
            if node.module and node.module.startswith("course_utils"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("course_utils")}
    return found


def test_no_module_imports_upward():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = "course_utils." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        own = LAYERS.index(layer_of(module))
        for imported in package_imports(path):
            if LAYERS.index(layer_of(imported)) > own:
                violations.append(f"{module} imports {imported}")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_every_module_is_small_and_documented():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert ast.get_docstring(ast.parse(text)), f"{path} has no module docstring"
        assert len(text.splitlines()) <= 320, f"{path} is {len(text.splitlines())} lines; split it by concept"


def test_layer_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from course_utils.generate.sampling import greedy\n")
    assert LAYERS.index(layer_of(next(iter(package_imports(bad))))) > LAYERS.index("model")


def test_every_subpackage_is_a_package_that_setuptools_finds():
    # pyproject.toml discovers packages (include = ["course_utils*"]); a folder without __init__.py would be left
    # out of a wheel even though an editable install can still import it.
    for folder in {p.parent for p in PACKAGE.rglob("*.py")}:
        assert (folder / "__init__.py").exists(), f"{folder} has modules but no __init__.py"
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'include = ["course_utils*"]' in text, "pyproject.toml must find every course_utils subpackage"


def test_one_minimum_python_everywhere():
    """pyproject's requires-python, the Makefile's check, the README and the conda/CI interpreters agree (the pinned
    numpy 2.4 and scipy 1.17 have no Python 3.10 wheels, so a 3.10 claim would fail in pip, not with a message)."""
    import re
    import tomllib

    root = pathlib.Path(__file__).resolve().parents[1]
    spec = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in re.fullmatch(r">=(\d+)\.(\d+)", spec).groups())
    make_check = re.search(r"sys\.version_info >= \((\d+), (\d+)\)", (root / "Makefile").read_text())
    assert make_check and tuple(map(int, make_check.groups())) == minimum, "Makefile's Python check != requires-python"
    assert f"Python {minimum[0]}.{minimum[1]}+" in (root / "README.md").read_text()
    conda = re.search(r"python=(\d+)\.(\d+)", (root / "environment.yml").read_text())
    ci = re.search(r'python-version: "(\d+)\.(\d+)"', (root / ".github/workflows/ci.yml").read_text())
    for found in (conda, ci):
        assert found and tuple(map(int, found.groups())) >= minimum


def test_contributing_states_the_layer_order_of_this_test():
    text = (pathlib.Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    assert " < ".join(f"`{layer}`" for layer in LAYERS[1:]) in " ".join(text.replace("\n  <", " <").split())


def layer_entries(docstring: str) -> dict[str, str]:
    """The text of each layer's entry in the package docstring's diagram: its first line and the indented lines
    below it."""
    entries, current = {}, None
    for line in docstring.splitlines():
        words = line.split()
        if not words or words == ["|"]:
            continue
        head = line[:25].strip().rstrip(",")
        if head:  # a layer's first line: name(s) in the left column
            current = head
            entries[current] = line[25:]
        elif current is not None and line.startswith(" " * 25):
            entries[current] += " " + line.strip()
    return entries


def test_package_docstring_names_every_module_in_its_layer():
    doc = course_utils.__doc__
    diagram = doc[doc.index("::"):doc.index("Each layer may import")]
    entries = layer_entries(diagram)
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        layer = "infrastructure" if len(parts) == 1 else parts[0]
        entry = next((text for head, text in entries.items() if layer in head.replace(",", " ").split()), None)
        assert entry is not None, f"layer {layer} has no entry in course_utils' docstring"
        words = set(re.findall(r"\w+", entry))
        stem = parts[-1]
        per_chapter = layer in {"exercises", "solutions"} and stem.startswith("ch")  # "ch01 ... ch11"
        if stem not in words and not per_chapter:
            missing.append(".".join(parts))
    assert not missing, f"modules missing from course_utils' layer diagram: {missing}"
