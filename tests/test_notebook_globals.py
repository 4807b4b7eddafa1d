"""No notebook cell reads a global name that a later cell gives a new meaning.

A learner who goes back to an earlier cell runs it with the kernel's globals as the later cells left them. If a later
cell re-used a name (chapter 09's KV-cache plot unpacked ``limit, kind, trained = ...`` and replaced the dict of
trained models called ``trained`` by an int), the earlier cell raises, or worse, silently computes with the wrong
object. The rerun test (``tests/test_notebook_rerun.py``) executes every cell again backwards and catches the
re-uses that raise, in about 20 minutes; this check reads the cells' code (no kernel, well under a second) and also
catches the silent ones.

For each code cell: the names it reads at its top level (comprehensions, lambdas, decorators and default values
included; function and class bodies left out, since what a function reads is decided when it is called) and does
not bind itself, so that they come from an earlier cell; and the names it binds (assignments, loop and ``with``
targets, imports, ``def``, ``class``, ``del``). A finding is a cell that reads a name bound by an earlier cell, where
a later cell binds it again, unless both bindings import the same object (``import math`` twice, or one constant
imported from the module that defines it and from one that re-exports it). IPython magics and
shell lines (``%``, ``!``) are skipped. Known, guarded cases are listed in ``ALLOWED`` with the reason; an entry
that no longer matches a finding fails the test, so the list cannot go stale.
"""

import ast
import importlib
import json

import pytest
from notebook_cells import notebook_paths

# (notebook, name): why going back is handled there
ALLOWED = {
    ("06_lora.ipynb", "model"): "section 2 wraps the pretrained model in adapters and the name stays; section 1's "
                                "AdamW cell measures a freshly loaded copy when `model` has adapters, and its "
                                "parameter-count cell reads `model.config`, which adapters do not change",
}


def cell_names(source: str) -> tuple[set[str], dict[str, str]]:
    """(reads, binds) of one code cell: the names read at its top level that the cell does not bind itself, and each
    name it binds -> what it binds it to ('assign', 'del', 'def', or 'import <module>' / 'from <module> import
    <name>' for imports)."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    nodes, stack = [], [ast.parse(code)]
    while stack:                                    # every node outside function and class bodies
        node = stack.pop()
        nodes.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stack += node.decorator_list
            if isinstance(node, ast.ClassDef):
                stack += node.bases + [k.value for k in node.keywords]
            else:
                stack += node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
            continue
        stack += ast.iter_child_nodes(node)
    local = set()                                   # comprehension targets and lambda arguments: not globals
    for node in nodes:
        if isinstance(node, ast.comprehension):
            local |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Lambda):
            local |= {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    binds: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)) and node.id not in local:
            binds[node.id] = "del" if isinstance(node.ctx, ast.Del) else "assign"
        elif isinstance(node, ast.Import):
            binds |= {(a.asname or a.name.split(".")[0]): f"import {a.name if a.asname else a.name.split('.')[0]}"
                      for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            binds |= {(a.asname or a.name): f"from {module} import {a.name}" for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            binds[node.name] = "def"
        elif isinstance(node, ast.ExceptHandler) and node.name:
            binds[node.name] = "assign"
    reads = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - local - set(binds)
    return reads, binds


def same_import(first: str, second: str) -> bool:
    """Whether two bindings from ``cell_names`` import one and the same object."""
    if first == second:
        return first.startswith(("import ", "from "))
    parts = [b.split() for b in (first, second)]                # ['from', module, 'import', name]
    if not all(p[0] == "from" and not p[1].startswith(".") for p in parts) or parts[0][3] != parts[1][3]:
        return False
    try:
        objects = [getattr(importlib.import_module(p[1]), p[3]) for p in parts]
    except (ImportError, AttributeError):
        return False
    return objects[0] is objects[1]


def later_rebinds(sources: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """(name, 'cell I reads NAME (bound in cell J); cell K binds it again') for every finding in a notebook's code
    cells, given as (index in the notebook, source) in order."""
    cells = [(index, *cell_names(source)) for index, source in sources]
    found = []
    for position, (index, reads, _) in enumerate(cells):
        for name in sorted(reads):
            earlier = [(j, binds[name]) for j, _, binds in cells[:position] if name in binds]
            if not earlier:
                continue                            # a builtin, or something IPython defines
            j, meaning = earlier[-1]
            again = [k for k, _, binds in cells[position + 1:]
                     if name in binds and not same_import(meaning, binds[name])]
            if again:
                found.append((name, f"cell {index} reads {name!r} (bound in cell {j}); cell {again[0]} binds it again"))
    return found


def code_sources(path) -> list[tuple[int, str]]:
    cells = json.loads(path.read_text())["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


def findings(cells: list[str]) -> list[str]:
    return [text for _, text in later_rebinds(list(enumerate(cells)))]


def test_a_later_cell_that_reuses_a_name_is_found():
    cells = ["trained = {'full': 1}", "print(trained['full'])", "for limit, trained in [(1, 2)]:\n    pass"]
    assert findings(cells) == ["cell 1 reads 'trained' (bound in cell 0); cell 2 binds it again"]
    assert findings(["x = 1", "print(x)", "del x"]) == ["cell 1 reads 'x' (bound in cell 0); cell 2 binds it again"]
    assert findings(["from a import b", "b()", "from c import b"]) != []
    assert findings(["import numpy as np", "np.ones(2)", "import torch as np"]) != []


def test_what_is_not_a_finding():
    assert findings(["import math", "math.sqrt(2)", "import math"]) == []          # the same object again
    assert findings(["from course_utils.text.bpe.interop import GPT2_PATTERN", "print(GPT2_PATTERN)",
                     "from course_utils.text.bpe.train import GPT2_PATTERN"]) == []  # re-exported: the same object
    assert findings(["from os.path import join", "join('a')", "from shlex import join"]) != []  # same name, not object
    assert findings(["n = 3", "print(n)", "xs = [n for n in range(3)]", "f = lambda n: n"]) == []  # locals
    assert findings(["model = 1", "if model:\n    model = 2", "model = 3"]) == []    # cell 1 binds it itself
    assert findings(["x = 1", "def f():\n    return x", "x = 2"]) == []             # read when f is called
    assert findings(["%matplotlib inline\nx = 1", "!ls\nprint(x)"]) == []            # magics skipped, no reuse
    reads, binds = cell_names("import os.path\nfrom . import util as u\ntry:\n    pass\nexcept E as e:\n    y = e")
    assert reads == {"E"} and binds == {"os": "import os", "u": "from . import util", "e": "assign", "y": "assign"}


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_no_cell_reads_a_name_that_a_later_cell_reuses(path):
    found = later_rebinds(code_sources(path))
    unexplained = [text for name, text in found if (path.name, name) not in ALLOWED]
    assert not unexplained, (f"{path.name}: going back to these cells would use the later cell's object; rename "
                             "the later one, or guard the cell and add it to ALLOWED with the reason:\n"
                             + "\n".join(unexplained))
    stale = [name for notebook, name in ALLOWED if notebook == path.name and name not in {n for n, _ in found}]
    assert not stale, f"{path.name}: ALLOWED lists {stale}, which no cell re-uses any more: remove them"
