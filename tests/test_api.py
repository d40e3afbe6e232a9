"""Meta-test: every public name exists, is importable, and documented."""

import inspect

import bertlearn


def test_every_public_name_is_exported_and_documented():
    for name in bertlearn.__all__:
        obj = getattr(bertlearn, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_public_functions_and_methods_document_their_arguments():
    """The house style: a docstring on every public class, function and method of each module's `__all__`, with an
    `Args:` section (`Attributes:` for a dataclass) wherever there are arguments. fastai's event hooks
    (`before_batch`...) take none and follow fastai's documentation."""
    import importlib
    import pkgutil

    from fastai.callback.core import event

    events = set(dir(event))
    missing = []
    for info in pkgutil.walk_packages(bertlearn.__path__, prefix="bertlearn."):
        if info.name == "bertlearn.__main__":
            continue  # importing it runs the command line
        mod = importlib.import_module(info.name)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not obj.__module__.startswith("bertlearn"):
                continue  # fastai's and transformers' names re-exported as they are
            targets = [(name, obj, obj)]
            if inspect.isclass(obj):
                if "__init__" in vars(obj):
                    targets.append((f"{name}.__init__", vars(obj)["__init__"], obj))  # documented on the class
                for attr, value in vars(obj).items():
                    value = getattr(value, "__func__", value)  # classmethods, staticmethods
                    if not attr.startswith("_") and attr not in events and inspect.isfunction(value):
                        targets.append((f"{name}.{attr}", value, value))
            for qual, fn, documented in targets:
                doc = inspect.getdoc(documented) or ""
                try:
                    params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
                except ValueError:  # an exception class
                    params = []
                if not doc:
                    missing.append(f"{info.name}.{qual}: no docstring")
                elif params and not inspect.isclass(fn) and "Args:" not in doc and "Attributes:" not in doc:
                    missing.append(f"{info.name}.{qual}: no Args: section for {params}")
    assert not missing, "\n".join(missing)


def test_import_adds_no_global_warning_filters():
    import subprocess
    import sys
    # fastai, scipy and numpy add filters of their own at import; bertlearn must add none on top
    code = ("import warnings, fastai.learner, fastai.callback.all, transformers, pandas, sklearn; "
            "before = list(warnings.filters); import bertlearn; print(warnings.filters == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_api_reference_is_current():
    import sys
    from pathlib import Path
    docs = Path(__file__).resolve().parents[1] / "docs"
    sys.path.insert(0, str(docs))
    try:
        import gen_api
    finally:
        sys.path.pop(0)
    assert (docs / "api.md").read_text() == gen_api.render(), "docs/api.md is stale: run python docs/gen_api.py"
