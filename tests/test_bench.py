"""The bench scripts' time budgets: a lent GPU gives one short call, so the device scripts must return inside it
with what finished, and say what they skipped (the measurements themselves are the benchmarks' business)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "bench").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_device_script_parses(script):
    run = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("script", ["device_run.sh", "device_ner.sh", "device_serve.sh"])
def test_a_budget_that_is_not_whole_seconds_is_refused_before_anything_runs(script, tmp_path):
    env = {**os.environ, "ALL_S": "5m", "OUT": str(tmp_path)}
    run = subprocess.run(["bash", f"bench/{script}"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == "ALL_S=5m: pass whole seconds, e.g. ALL_S=330"
    assert not (tmp_path / "env.txt").exists()  # refused before the install and the environment report


def test_an_unknown_step_is_refused_before_anything_runs(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    run = subprocess.run(["bash", "bench/device_run.sh", "predict,preditc"], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == ("step preditc: not one of all, tests, cli, predict, train, tokenize, overhead, "
                                  "scaling")
    assert not (tmp_path / "env.txt").exists()


def test_an_unknown_serve_step_is_refused_before_anything_runs(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    run = subprocess.run(["bash", "bench/device_serve.sh", "cpu,gpus"], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == "step gpus: not one of cpu, gpu, http"
    assert not (tmp_path / "env.txt").exists()


def test_a_spent_budget_skips_every_step_and_says_so(tmp_path):
    env = {**os.environ, "ALL_S": "0", "SKIP_INSTALL": "1", "PY": sys.executable, "OUT": str(tmp_path)}
    run = subprocess.run(["bash", "bench/device_run.sh", "all"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    skipped = [line.split(":")[0] for line in run.stderr.splitlines() if "s left of ALL_S=0" in line]
    assert skipped == ["tests", "cli", "predict", "train"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.txt"]  # no step wrote anything


def test_train_bench_reports_loops_it_had_no_time_for(tmp_path):
    out = tmp_path / "train.json"
    run = subprocess.run([sys.executable, "bench/train_throughput.py", "--loops", "plain loop fp32,HF Trainer best",
                          "--budget-s", "0", "--workdir", str(tmp_path), "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())["results"]
    why = "not started: under 30 s of --budget-s 0 left"
    assert {k: v["skipped"] for k, v in results.items()} == {"plain loop fp32": why, "HF Trainer best": why}
    assert run.stdout.strip() == f"no loop ran: plain loop fp32: {why}; HF Trainer best: {why}"


@pytest.mark.parametrize("script", sorted((ROOT / "bench").glob("*.py")), ids=lambda p: p.name)
def test_bench_scripts_import_only_names_their_siblings_define(script):
    # loop_overhead.py and step_profile.py imported train_throughput.plain_loop, renamed months before: a device
    # call spent on them would have failed at the import
    import ast
    siblings = {p.stem: p for p in (ROOT / "bench").glob("*.py")}

    def defined(path):
        tree = ast.parse(path.read_text())
        names = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        return names

    missing = [f"{node.module}.{a.name}" for node in ast.walk(ast.parse(script.read_text()))
               if isinstance(node, ast.ImportFrom) and node.module in siblings
               for a in node.names if a.name not in defined(siblings[node.module])]
    assert missing == []
