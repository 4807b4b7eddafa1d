"""What the launcher sends its ranks: refused in the caller when a fresh process could not rebuild it; rebuilt exactly
otherwise; a failure to rebuild says why. (A rank that cannot import an argument's module: test_parallel_launch.py.)"""

import sys
import types

import pytest
import torch

from course_utils.parallel.launch import hello_rank, launch
from course_utils.parallel.payload import pickle_for_ranks, unpickle_in_rank


@pytest.fixture
def notebook_main(monkeypatch):
    """A Jupyter kernel's ``__main__``: a module without ``__file__``, which a spawned process cannot import."""
    module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", module)
    return module


def test_fn_and_args_round_trip():
    args = (torch.arange(6.0).reshape(2, 3), {"lr": 1e-3, "steps": [1, 2]}, "text")
    fn, rebuilt = unpickle_in_rank(pickle_for_ranks(hello_rank, args))
    assert fn is hello_rank
    assert torch.equal(rebuilt[0], args[0]) and rebuilt[1:] == args[1:]


def test_classes_and_functions_defined_in_a_notebook_are_refused(notebook_main):
    NotebookConfig = type("NotebookConfig", (), {"__module__": "__main__"})
    notebook_main.NotebookConfig = NotebookConfig

    def notebook_function():
        return 1
    notebook_function.__module__, notebook_function.__qualname__ = "__main__", "notebook_function"
    notebook_main.notebook_function = notebook_function
    for args in [(NotebookConfig(),), ([1, {"config": NotebookConfig}],), (notebook_function,)]:
        with pytest.raises(ValueError, match="defined in a notebook or interactive session"):
            pickle_for_ranks(hello_rank, args)
    with pytest.raises(ValueError, match="args hold 'NotebookConfig'"):
        launch(hello_rank, args=(NotebookConfig(),))  # refused before any process starts
    with pytest.raises(ValueError, match="fn 'notebook_function' is defined in a notebook"):
        pickle_for_ranks(notebook_function, ())


def test_unpicklable_args_and_bad_fn_are_refused():
    with pytest.raises(TypeError, match="must be picklable to reach the ranks"):
        pickle_for_ranks(hello_rank, (lambda: 1,))
    import threading
    with pytest.raises(TypeError, match="must be picklable to reach the ranks"):
        pickle_for_ranks(hello_rank, (threading.Lock(),))
    with pytest.raises(ValueError, match="lambda or a nested function"):
        pickle_for_ranks(lambda ctx: None, ())
    with pytest.raises(TypeError, match="fn must be a function"):
        pickle_for_ranks(3, ())


def test_nested_functions_are_refused_and_a_scripts_functions_accepted(monkeypatch):
    def nested(ctx):
        return ctx
    with pytest.raises(ValueError, match="lambda or a nested function"):
        pickle_for_ranks(nested, ())
    script = types.ModuleType("__main__")
    script.__file__ = "train.py"  # a script run as __main__: a spawned process can import it again
    monkeypatch.setitem(sys.modules, "__main__", script)

    def script_function():
        return 1
    script_function.__module__, script_function.__qualname__ = "__main__", "script_function"
    script.script_function = script_function
    assert isinstance(pickle_for_ranks(hello_rank, (script_function,)), bytes)


def test_a_payload_that_cannot_be_rebuilt_says_why():
    with pytest.raises(RuntimeError, match="could not rebuild fn and args.*UnpicklingError"):
        unpickle_in_rank(b"not a pickle")
