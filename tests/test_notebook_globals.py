"""No notebook cell reads a global name that a later cell gives a new meaning.

A learner who goes back to an earlier cell runs it with the kernel's globals as the later cells left them. If a later
cell re-used a name (chapter 09's KV-cache plot unpacked ``limit, kind, trained = ...`` and replaced the dict of
trained models called ``trained`` by an int), the earlier cell raises, or worse, silently computes with the wrong
object. The rerun test (``tests/test_notebook_rerun.py``) executes every cell again backwards and catches the
re-uses that raise, in about 22 minutes; this check reads the cells' code (no kernel, about a second) and would also
catch the silent ones.

For each code cell, in execution order (an ``if``'s test, then its body; a loop's iterable, its target, its body):
the names it reads on some path before it has bound them itself on every path, so that they may come from an earlier
cell (``x = x + 1``, ``x += 1`` and ``if ready(model): model = ...`` read ``x`` and ``model``; so does a ``print(m)``
after an ``if`` that binds ``m`` in one branch only); and the names the cell binds on any path (assignments, loop,
``with`` and ``except`` targets, ``:=``, ``match`` captures, imports, ``def``, ``class``, ``del``). Comprehensions and
lambdas have their own scope (their first iterable and defaults are read outside it); class bodies are read, function
bodies are not (what a function reads is decided when it is called; its decorators, defaults and annotations are
read at once). A branch that ends in ``raise``, ``break`` or ``continue`` does not reach what follows. The code of
``%%time``, ``%%capture`` and ``%time`` (run in the notebook's namespace) is unwrapped, then IPython's own
transformer turns the rest of IPython's syntax (``%magic``, ``!shell``, ``obj?``) into Python; other magics'
arguments are not read. A finding is a cell that reads a name bound by an earlier cell,
where a later cell binds it again, unless both bindings import one and the same object (``import math`` twice, or a
constant imported from the module that defines it and from one that re-exports it). Known, guarded cases are listed
in ``ALLOWED``, each for one reading cell found by a marker string (which must match exactly one cell), with the
reason; an entry that no longer matches a finding fails the test, so the list cannot go
stale. Not seen: what functions read or bind (``global``) when called, objects changed in place (the rerun test
covers these when they raise), and a few paths (a walrus behind ``and``/``or``, ``with suppress(...)``).
"""

import ast
import importlib
import re

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from notebook_cells import indexed_cell_sources, notebook_paths

# (notebook, name, a marker string of the reading cell): why going back to that cell is handled
ALLOWED = {
    ("06_lora.ipynb", "model", "weights = [p for name, p in model.named_parameters()"): "section 2 re-binds "
        "`model` when run again; this AdamW cell then measures that model's pretrained weights in place",
    ("06_lora.ipynb", "model", '("SmolLM2-135M", model.config'): "reads only `model.config`, which adapters and a "
        "re-loaded model leave unchanged",
}


class _Names(ast.NodeVisitor):
    """The global names one statement reads and binds; ``local`` holds the names of an enclosing comprehension or
    lambda, which are not globals."""

    def __init__(self, local=frozenset()):
        self.local, self.reads, self.binds = set(local), set(), {}

    def scoped(self, nodes, local):
        inner = _Names(local)
        for node in nodes:
            inner.visit(node)
        self.reads |= inner.reads
        self.binds |= {name: how for name, how in inner.binds.items() if name not in local}

    def visit_Name(self, node):
        if node.id in self.local:
            return
        if isinstance(node.ctx, ast.Load):
            self.reads.add(node.id)
        else:
            self.binds[node.id] = "del" if isinstance(node.ctx, ast.Del) else "assign"

    def visit_AugAssign(self, node):                    # x += 1 reads x, then binds it
        if isinstance(node.target, ast.Name) and node.target.id not in self.local:
            self.reads.add(node.target.id)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):                    # `x: int` alone binds nothing
        self.visit(node.annotation)
        if node.value is not None:
            self.visit(node.value)
            self.visit(node.target)

    def visit_Import(self, node):
        for a in node.names:
            module = a.name if a.asname else a.name.split(".")[0]
            self.binds[a.asname or module] = f"import {module}"

    def visit_ImportFrom(self, node):
        module = "." * node.level + (node.module or "")
        self.binds |= {(a.asname or a.name): f"from {module} import {a.name}" for a in node.names}

    def visit_FunctionDef(self, node):
        args = node.args
        self.scoped([*node.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d is not None),
                     *(a.annotation for a in ast.walk(args) if isinstance(a, ast.arg) and a.annotation is not None),
                     *([node.returns] if node.returns else [])], self.local)
        self.binds[node.name] = "def"

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.scoped([*node.decorator_list, *node.bases, *(k.value for k in node.keywords)], self.local)
        body = _Names(self.local)                       # the body runs now; what it binds belongs to the class
        for statement in node.body:
            names = _Names(self.local | set(body.binds))
            names.visit(statement)
            body.reads |= names.reads
            body.binds |= names.binds
        self.reads |= body.reads
        self.binds[node.name] = "def"

    def visit_Lambda(self, node):
        self.scoped([*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)], self.local)
        self.scoped([node.body], self.local | {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)})

    def visit_ListComp(self, node):                     # the first iterable is read outside the comprehension
        self.scoped([node.generators[0].iter], self.local)
        targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        rest = [*node.generators[0].ifs, *(x for g in node.generators[1:] for x in (g.iter, *g.ifs))]
        rest += [getattr(node, part) for part in ("elt", "key", "value") if hasattr(node, part)]
        self.scoped(rest, self.local | targets)

    visit_SetComp = visit_GeneratorExp = visit_DictComp = visit_ListComp

    def visit_ExceptHandler(self, node):
        if node.name:
            self.binds[node.name] = "assign"
        self.generic_visit(node)

    def visit_MatchAs(self, node):
        if node.name:
            self.binds[node.name] = "assign"
        self.generic_visit(node)

    visit_MatchStar = visit_MatchAs

    def visit_MatchMapping(self, node):
        if node.rest:
            self.binds[node.rest] = "assign"
        self.generic_visit(node)


def _block(statements: list[ast.stmt], reads: set[str], binds: dict[str, str], bound: set[str]) -> None:
    """Walk ``statements`` in execution order: add to ``reads`` each name read where it is not yet in ``bound`` (the
    names bound on every path so far, which the walk updates), and to ``binds`` every binding on any path. A branch
    is walked with a copy of ``bound``; afterwards only what every path binds counts as bound (a loop's body may
    run zero times, a ``try`` body may stop before its bindings)."""
    def take(node, bound):
        if node is not None:
            names = _Names()
            names.visit(node)
            reads.update(names.reads - bound)
            binds.update(names.binds)
            bound.update(names.binds)

    def branch(statements, start, *first):
        """What is bound on every path through a branch that goes on to the next statement; None when the
        branch ends in ``raise``, ``break`` or ``continue`` and so does not."""
        inner = set(start)
        for node in first:
            take(node, inner)
        _block(statements, reads, binds, inner)
        return None if statements and isinstance(statements[-1], (ast.Raise, ast.Break, ast.Continue)) else inner

    def join(paths):                                    # bound on every path that goes on
        paths = [p for p in paths if p is not None]
        return set.intersection(*paths) if paths else set()

    for statement in statements:
        if isinstance(statement, (ast.If, ast.While)):
            take(statement.test, bound)
            body, orelse = branch(statement.body, bound), branch(statement.orelse, bound)
            if isinstance(statement, ast.If):
                bound |= join([body, orelse])
        elif isinstance(statement, (ast.For, ast.AsyncFor)):
            take(statement.iter, bound)
            branch(statement.body, bound, statement.target)
            branch(statement.orelse, bound)
        elif isinstance(statement, (ast.With, ast.AsyncWith)):
            for item in statement.items:
                take(item.context_expr, bound)
                take(item.optional_vars, bound)
            _block(statement.body, reads, binds, bound)
        elif isinstance(statement, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            body = branch(statement.body, bound)
            paths = [branch(statement.orelse, body) if body is not None else None]
            for handler in statement.handlers:
                handled = set(bound)
                take(handler.type, handled)
                if handler.name:
                    binds[handler.name] = "assign"
                    handled.add(handler.name)
                paths.append(branch(handler.body, handled))
            finally_bound = set(bound)                  # `finally` runs too when the body stopped early
            _block(statement.finalbody, reads, binds, finally_bound)
            bound |= join(paths) | finally_bound
        elif isinstance(statement, ast.Match):
            take(statement.subject, bound)
            cases = [branch(case.body, bound, case.pattern, case.guard) for case in statement.cases]
            last = statement.cases[-1]
            if isinstance(last.pattern, ast.MatchAs) and last.pattern.pattern is None and last.guard is None:
                bound |= join(cases)                        # a bare `case _` or `case name`: some case runs
        else:
            take(statement, bound)


# magics whose code runs, and binds, in the notebook's namespace: read as that code (%timeit's code reads the
# notebook's globals but binds in its own namespace: not read; nor is the output variable of `%%capture out`)
_TIMING_CELL_MAGIC = re.compile(r"\A(?:\s*%%(?:time|capture)\b[^\n]*\n)+")
_TIMING_LINE_MAGIC = re.compile(r"^([ \t]*)%time[ \t]+(?=\S)", re.MULTILINE)


def cell_names(source: str) -> tuple[set[str], dict[str, str]]:
    """(reads, binds) of one code cell: the names it reads, on some path, before it has bound them itself on every
    path, and each name it binds on any path -> what it binds it to ('assign', 'del', 'def', or 'import <module>' /
    'from <module> import <name>' for imports)."""
    source = _TIMING_LINE_MAGIC.sub(r"\1", _TIMING_CELL_MAGIC.sub("", source))
    reads, binds = set(), {}
    _block(ast.parse(TransformerManager().transform_cell(source)).body, reads, binds, set())
    return reads, binds


def _imported(binding: str):
    """The object an import binding names, or None when it is not an import or cannot be imported here. It imports
    the module into the test process (only for a name that two cells import differently: today one course module)."""
    words = binding.split()
    try:
        if words[0] == "import":
            return importlib.import_module(words[1])
        if words[0] == "from" and not words[1].startswith("."):
            module = importlib.import_module(words[1])
            return getattr(module, words[3]) if hasattr(module, words[3]) else importlib.import_module(
                f"{words[1]}.{words[3]}")
    except Exception:  # noqa: BLE001 - anything that fails to import counts as a different object
        return None
    return None


def same_import(first: str, second: str) -> bool:
    """Whether two bindings from ``cell_names`` import one and the same object."""
    if first == second:
        return first.startswith(("import ", "from "))
    objects = [_imported(b) for b in (first, second)]
    return objects[0] is not None and objects[0] is objects[1]


def later_rebinds(sources: list[tuple[int, str]]) -> list[tuple[str, int, str]]:
    """(name, index of the reading cell, 'cell I reads NAME (bound in cell J); cell K binds it again') for every
    finding in a notebook's code cells, given as (index in the notebook, source) in order."""
    cells = []
    for index, source in sources:
        try:
            cells.append((index, *cell_names(source)))
        except SyntaxError as error:
            raise SyntaxError(f"cell {index} does not parse: {error}") from error
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
                found.append((name, index, f"cell {index} reads {name!r} (bound in cell {j}); cell {again[0]} "
                                           "binds it again"))
    return found


def findings(cells: list[str]) -> list[str]:
    return [text for _, _, text in later_rebinds(list(enumerate(cells)))]


def finding(reader: int, name: str, bound: int, again: int) -> str:
    return f"cell {reader} reads {name!r} (bound in cell {bound}); cell {again} binds it again"


def test_a_later_cell_that_reuses_a_name_is_found():
    cells = ["trained = {'full': 1}", "print(trained['full'])", "for limit, trained in [(1, 2)]:\n    pass"]
    assert findings(cells) == [finding(1, "trained", 0, 2)]
    assert findings(["x = 1", "print(x)", "del x"]) == [finding(1, "x", 0, 2)]
    assert findings(["from a import b", "b()", "from c import b"]) == [finding(1, "b", 0, 2)]
    assert findings(["import numpy as np", "np.ones(2)", "import torch as np"]) == [finding(1, "np", 0, 2)]
    assert findings(["from os.path import join", "join('a')", "from shlex import join"]) == [finding(1, "join", 0, 2)]
    # a read before the cell's own binding is a read: going back, it sees the later cell's object
    assert findings(["x = 1", "x = x + 1", "x = 'later'"]) == [finding(1, "x", 0, 2)]
    assert findings(["x = 1", "x += 1", "x = 'later'"]) == [finding(1, "x", 0, 2)]
    assert findings(["m = 1", "if m:\n    m = 2", "m = 3"]) == [finding(1, "m", 0, 2)]
    # a comprehension or lambda elsewhere in the cell hides neither its reads nor its bindings
    assert findings(["n = 3", "print(n)\nys = [n for n in range(2)]", "n = 'x'"]) == [finding(1, "n", 0, 2)]
    assert findings(["n = 3", "print(n)", "for n in range(2):\n    pass\nys = [n for n in range(2)]"]) == [
        finding(1, "n", 0, 2)]
    assert findings(["xs = [1]", "ys = [x for x in xs]", "xs = 2"]) == [finding(1, "xs", 0, 2)]  # first iterable
    assert findings(["V = 1", "class C:\n    size = V", "V = 2"]) == [finding(1, "V", 0, 2)]    # class bodies run
    assert findings(["V = 1", "def f(v=V):\n    return v", "V = 2"]) == [finding(1, "V", 0, 2)]  # defaults too
    # a binding on one path only: the other paths, and what follows, still read the earlier cell's object
    for cell in ("if ready:\n    m = 2\nelse:\n    m = m + 1", "if flag:\n    m = 2\nprint(m)",
                 "for i in range(2):\n    m = i\nprint(m)", "try:\n    m = f()\nexcept E:\n    print(m)",
                 "match v:\n    case 1:\n        m = 2\n    case _:\n        print(m)",
                 "try:\n    m = f()\nfinally:\n    print(m)", "while g():\n    m = 2\nprint(m)",
                 "try:\n    pass\nexcept A:\n    m = 1\nexcept B:\n    print(m)",
                 "match v:\n    case 1:\n        m = 2\n    case 2:\n        m = 3\nprint(m)"):
        assert findings(["m = 1", cell, "m = 3"]) == [finding(1, "m", 0, 2)], cell
    assert findings(["x = 1", "%%time\ny = x + 1", "x = 2"]) == [finding(1, "x", 0, 2)]     # timing magics read
    assert findings(["x = 1", "%time y = x + 1", "x = 2"]) == [finding(1, "x", 0, 2)]
    assert findings(["x = 1", "%%capture out\nprint(x)", "x = 2"]) == [finding(1, "x", 0, 2)]


def test_what_is_not_a_finding():
    assert findings(["import math", "math.sqrt(2)", "import math"]) == []          # the same object again
    assert findings(["from course_utils.text.bpe.interop import GPT2_PATTERN", "print(GPT2_PATTERN)",
                     "from course_utils.text.bpe.train import GPT2_PATTERN"]) == []  # re-exported: the same object
    assert findings(["import os.path as p", "p.join('a')", "from os import path as p"]) == []  # two spellings
    assert findings(["n = 3", "print(n)", "xs = [n for n in range(3)]", "f = lambda n: n"]) == []  # locals
    assert findings(["x = 1", "x = 2\nprint(x)", "x = 3"]) == []                  # cell 1 binds it first
    assert findings(["x = 1", "def f():\n    return x", "x = 2"]) == []             # read when f is called
    assert findings(["class C:\n    a = 1\n    b = a", "a = 2"]) == []                # the class's own name
    for cell in ("if ready:\n    m = 2\nelse:\n    m = 3\nprint(m)", "with f() as m:\n    print(m)",
                 "try:\n    m = f()\nexcept E:\n    m = 0\nprint(m)",
                 "match v:\n    case 1:\n        m = 2\n    case _:\n        m = 3\nprint(m)",
                 "if ok:\n    m = 2\nelse:\n    raise E\nprint(m)",               # raise, break: no way on
                 "while True:\n    try:\n        m = next(it)\n    except StopIteration:\n        break\n    print(m)",
                 "%%capture\n%%time\nm = 2\nprint(m)", "%time m = 2\nprint(m)"):
        assert findings(["m = 1", cell, "m = 3"]) == [], cell                       # bound on every path first
    assert findings(["%matplotlib inline\nx = 1", "if x:\n    !ls\nprint(x)", "y = !ls", "x?"]) == []  # IPython
    reads, binds = cell_names("import os.path\nfrom . import util as u\ntry:\n    pass\nexcept E as e:\n    y = e\n"
                              "z: int")
    assert reads == {"E", "int"} and binds == {"os": "import os", "u": "from . import util", "e": "assign",
                                               "y": "assign"}


def test_a_cell_that_does_not_parse_is_named():
    with pytest.raises(SyntaxError, match="cell 3 does not parse"):
        later_rebinds([(0, "x = 1"), (3, "x = (")])


def test_the_check_reads_every_notebook_and_every_allowed_entry_names_one():
    names = {p.name for p in notebook_paths()}
    assert len(names) >= 12
    assert {notebook for notebook, _, _ in ALLOWED} <= names


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_no_cell_reads_a_name_that_a_later_cell_reuses(path):
    sources = indexed_cell_sources(path, "code")
    source_of = dict(sources)
    found = later_rebinds(sources)
    allowed = {key for key in ALLOWED if key[0] == path.name}
    for key in allowed:
        assert sum(key[2] in source for _, source in sources) == 1, f"ALLOWED marker {key[2]!r} must match one cell"
    used = {key for key in allowed for name, index, _ in found if key[1] == name and key[2] in source_of[index]}
    unexplained = [text for name, index, text in found
                   if not any(key[1] == name and key[2] in source_of[index] for key in allowed)]
    assert not unexplained, (f"{path.name}: going back to these cells would use the later cell's object; rename "
                             "the later one, or guard the cell and add it to ALLOWED with the reason:\n"
                             + "\n".join(unexplained))
    assert used == allowed, f"{path.name}: ALLOWED lists {sorted(allowed - used)}, which match no finding: remove them"
