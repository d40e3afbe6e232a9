"""Generate docs/api.md, the API reference, from the docstrings of everything `bertlearn` exports.

    python docs/gen_api.py          # rewrites docs/api.md; tests/test_api.py fails when it is stale
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import bertlearn

OUT = Path(__file__).resolve().parent / "api.md"
MODULE_ORDER = ["data", "learner", "tasks.classification", "tasks.lm", "tasks.token_classification", "model", "metrics", "predict", "onnx", "embed",
                "interpret", "callbacks", "graphs", "losses", "optim", "device", "compat", "errors"]


def _signature(obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    return re.sub(r" at 0x[0-9a-f]+", "", sig)


def _doc(obj) -> str:
    return inspect.getdoc(obj) or ""


def _public_methods(cls) -> list[tuple[str, object]]:
    out = []
    for name, member in cls.__dict__.items():
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(member, (classmethod, staticmethod)):
            member = member.__func__
        if isinstance(member, property):
            if member.__doc__:
                out.append((name, member))
            continue
        if inspect.isfunction(member) and name != "__init__" and _doc(member):
            out.append((name, member))
    return out


def render() -> str:
    import bertlearn.metrics
    groups: dict[str, list[str]] = {}
    names = list(bertlearn.__all__) + list(bertlearn.ADVANCED)
    names += [n for n in bertlearn.metrics.__all__ if n not in names]
    for name in names:
        obj = getattr(bertlearn, name, None) or getattr(bertlearn.metrics, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        module = getattr(obj, "__module__", "")
        module = module.removeprefix("bertlearn.").removeprefix("data.") if module.startswith("bertlearn") else ""
        module = "data" if getattr(obj, "__module__", "").startswith("bertlearn.data") else module
        groups.setdefault(module or "re-exported", []).append(name)
    lines = ["# API reference", "", "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.",
             "Everything below is importable from `bertlearn` directly (`bertlearn.__all__` is the curated list;",
             "the building blocks in `bertlearn.ADVANCED` import from the top level too), except the metric",
             "functions that only `bertlearn.metrics` exports (`from bertlearn.metrics import f1_macro`).",
             "Sections are named for the module that defines each name. The command line is described by",
             "`bertlearn --help` and `bertlearn <train|predict|eval> --help`.", ""]
    for module in MODULE_ORDER + sorted(set(groups) - set(MODULE_ORDER)):
        if module not in groups:
            continue
        lines += [f"## `bertlearn.{module}`" if module != "re-exported" else "## Re-exported from fastai", ""]
        for name in groups[module]:
            obj = getattr(bertlearn, name, None) or getattr(bertlearn.metrics, name)
            kind = "class" if inspect.isclass(obj) else "def"
            lines += [f"### `{name}`", "", "```python", f"{kind} {name}{_signature(obj)}", "```", "", _doc(obj), ""]
            if inspect.isclass(obj) and obj.__module__.startswith("bertlearn"):
                for mname, member in _public_methods(obj):
                    if isinstance(member, property):
                        lines += [f"- **`{name}.{mname}`** (property): {_doc(member).splitlines()[0]}"]
                        continue
                    lines += ["", f"#### `{name}.{mname}{_signature(member)}`", "", _doc(member)]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
