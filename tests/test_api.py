"""Meta-test: every public name exists, is importable, and documented."""

import inspect

import bertlearn


def test_every_public_name_is_exported_and_documented():
    for name in bertlearn.__all__:
        obj = getattr(bertlearn, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


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
