"""`bertlearn serve`: the real server in a subprocess on a free port, spoken to over HTTP (httpx)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from bertlearn import BertClassificationPredictor  # noqa: E402
from bertlearn.serve import Batcher, ServeLimits  # noqa: E402

TEXTS = ["a lovely film", "an awful boring movie", "the plot was fine", "terrible acting", "great fun", "dull"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m bertlearn serve ...` on a free port; waits until /health is ready."""

    def __init__(self, model: Path, *extra: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        # the log goes to a file: a pipe nobody reads fills up (one access line per request) and blocks the server
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.final: str | None = None  # the log once stopped
        self.proc = subprocess.Popen([sys.executable, "-m", "bertlearn", "serve", str(model), "--port",
                                      str(self.port), "--device", "cpu", *extra], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.stop()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError("the server did not get ready in 120 s")

    def post(self, body, **kwargs):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return httpx.post(self.url + "/predict", content=data, headers={"content-type": "application/json"},
                          timeout=60, **kwargs)

    def output(self) -> str:
        return self.final if self.final is not None else Path(self.log.name).read_text()

    def stop(self) -> str:
        """SIGTERM, then its whole log (the file is removed: every test server would leave one in /tmp)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.final is None:
            self.final = Path(self.log.name).read_text()
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)
        return self.final


@pytest.fixture(scope="module")
def model_dir(trained_learner, tmp_path_factory):
    return trained_learner.save_model(tmp_path_factory.mktemp("serve") / "model")


@pytest.fixture(scope="module")
def server(model_dir):
    s = Server(model_dir, "--max-texts", "50", "--max-chars", "500", "--max-body-bytes", "20000")
    yield s
    s.stop()


def _offline(model_dir, texts):
    return [[{"label": l, "score": p} for l, p in ranked]
            for ranked in BertClassificationPredictor(model_dir, device="cpu").predict_batch(texts)]


def test_predictions_equal_the_offline_predictor(server, model_dir):
    r = server.post({"texts": TEXTS})
    assert r.status_code == 200
    got = r.json()["predictions"]
    want = _offline(model_dir, TEXTS)
    assert [[x["label"] for x in p] for p in got] == [[x["label"] for x in p] for p in want]
    assert [x["score"] for p in got for x in p] == pytest.approx([x["score"] for p in want for x in p], abs=1e-6)
    info = httpx.get(server.url + "/info").json()
    assert info["task"] == "single_label_classification" and info["labels"] == ["negative", "positive"]
    assert httpx.get(server.url + "/openapi.json").json()["paths"]["/predict"]
    assert "<textarea" in httpx.get(server.url + "/").text


def test_64_concurrent_clients_are_batched_and_all_answered(server, model_dir):
    want = dict(zip(TEXTS, _offline(model_dir, TEXTS)))

    def client(i: int) -> list:
        out = []
        with httpx.Client(timeout=60) as c:
            for k in range(20):
                texts = [TEXTS[(i + k) % len(TEXTS)], TEXTS[(i * 7 + k) % len(TEXTS)]]
                r = c.post(server.url + "/predict", json={"texts": texts})
                out.append((texts, r.status_code, r.json()))
        return out

    before = httpx.get(server.url + "/info").json()["served"]
    with ThreadPoolExecutor(64) as pool:
        results = [x for chunk in pool.map(client, range(64)) for x in chunk]
    assert len(results) == 64 * 20
    after = httpx.get(server.url + "/info").json()["served"]
    assert after["texts"] - before["texts"] == 64 * 20 * 2
    assert after["batches"] - before["batches"] < 64 * 20  # requests that arrived together shared batches
    for texts, status, body in results:
        assert status == 200
        for text, pred in zip(texts, body["predictions"]):
            assert [x["label"] for x in pred] == [x["label"] for x in want[text]]
            assert pred[0]["score"] == pytest.approx(want[text][0]["score"], abs=1e-5)


@pytest.mark.parametrize("body, status, field, message", [
    (b"{not json", 400, "body", "the body is not JSON"),
    ([1, 2], 422, "body", "the body is a JSON list"),
    ({"text": ["a"]}, 422, "texts", "the body has no 'texts' field"),
    ({"pairs": [["a", "b"]]}, 422, "texts", "this model takes texts, not pairs"),
    ({"texts": []}, 422, "texts", "'texts' must be a non-empty list"),
    ({"texts": "a lovely film"}, 422, "texts", "'texts' must be a non-empty list"),
    ({"texts": ["good", 3]}, 422, "texts[1]", "texts[1] must be a string, got 3"),
    ({"texts": ["good", "  "]}, 422, "texts[1]", "texts[1] is empty"),
    ({"texts": ["good"] * 51}, 413, "texts", "'texts' has 51 items; at most 50"),
    ({"texts": ["x" * 501]}, 413, "texts[0]", "texts[0] has 501 characters; at most 500"),
    ({"texts": ["x" * 450] * 49}, 413, "body", "bytes; at most 20,000"),
    ('{"texts": ["\\ud800"]}', 422, "texts[0]", "texts[0] holds a lone surrogate"),
    ("[" * 5000 + "]" * 5000, 400, "body", "the body is not JSON"),
    ({"texts": [True]}, 422, "texts[0]", "texts[0] must be a string, got true"),
    ({"texts": [None, "a"]}, 422, "texts[0]", "texts[0] must be a string, got null"),
    ({"texts": None}, 422, "texts", "'texts' must be a non-empty list, got null"),
    ({"texts": ["a"], "group": False}, 422, "group", "the body has the field 'group', which the server does not take"),
    # before: answered with the model's prediction for an empty input (no token), and for the last list only
    ({"texts": ["good", "\u200b\ufeff"]}, 422, "texts[1]", 'texts[1] holds no character the model reads ("\\u200b\\ufeff" '
                                                         "becomes no token); send text to predict"),
    ({"texts": ["\x00\x01"]}, 422, "texts[0]", "texts[0] holds no character the model reads"),
    ('{"texts": ["good"], "texts": ["awful", "dull"]}', 422, "texts", "the body has the field 'texts' twice; send it "
                                                                      "once"),
    ('{"texts": [{"x": 1, "x": 2}]}', 422, "texts[0]", "texts[0] must be a string"),
    ({"texts": ["!" * 501]}, 413, "texts[0]", "texts[0] has 501 characters; at most 500"),  # before it is tokenized
    ({"texts": ["\U0001f600 !"]}, 200, None, None),  # an emoji is [UNK]: a token, answered
])
def test_bad_requests_get_a_4xx_naming_the_field_and_the_server_stays_up(server, body, status, field, message):
    r = server.post(body)
    assert r.status_code == status, r.text
    if status == 200:
        return
    assert r.json()["field"] == field and message in r.json()["error"]
    assert httpx.get(server.url + "/health").json() == {"status": "ready"}
    assert server.post({"texts": ["good"]}).status_code == 200


def test_info_counts_the_clients_texts_not_the_warm_up(model_dir):
    # before: /info said 1 batch and 1 text served before any client had sent one (the warm-up's)
    from fastapi.testclient import TestClient

    from bertlearn.serve import create_app
    with TestClient(create_app(model_dir, device="cpu")) as client:
        assert client.get("/info").json()["served"] == {"batches": 0, "texts": 0, "waited_ms": 0.0}
        assert client.post("/predict", json={"texts": ["good", "!!"]}).status_code == 200
        served = client.get("/info").json()["served"]
        assert (served["batches"], served["texts"]) == (1, 2)


def test_a_failing_request_fails_alone_and_batches_stay_within_the_size():
    import asyncio
    sizes = []

    def predict(items):
        sizes.append(len(items))
        if "boom" in items:
            raise RuntimeError("boom")
        return [len(x) for x in items]

    async def main():
        b = Batcher(predict, max_batch_size=4, max_wait_ms=20)
        b.start()
        res = await asyncio.gather(b.submit(["ab", "boom"]), b.submit(["c"]), return_exceptions=True)
        later = await asyncio.gather(*(b.submit(["xy", "z"]) for _ in range(5)))
        await b.stop()
        return res, later

    (bad, good), later = asyncio.run(main())
    assert isinstance(bad, RuntimeError) and good == [1]  # batched together, then each alone: only "boom" fails
    assert sizes[:3] == [3, 2, 1]
    assert later == [[2, 1]] * 5 and max(sizes[3:]) <= 4  # 2-text requests, two to a batch


def _closed_loop(max_wait_ms, *, clients=8, rounds=10, run_s=0.06):
    """`clients` coroutines sending one item after another, each back 1-3 ms after its answer (answers go out one
    by one, then clients send again), to a Batcher whose predict takes `run_s`; returns the batch sizes."""
    import asyncio
    sizes = []

    def predict(items):
        sizes.append(len(items))
        time.sleep(run_s)
        return list(items)

    async def main():
        b = Batcher(predict, max_batch_size=64, max_wait_ms=max_wait_ms)
        b.start()

        async def client(i):
            for k in range(rounds):
                assert await b.submit([(i, k)]) == [(i, k)]
                await asyncio.sleep(0.001 * (1 + i % 3))

        await asyncio.gather(*(client(i) for i in range(clients)))
        await b.stop()

    asyncio.run(main())
    assert sum(sizes) == clients * rounds
    return sizes


def test_auto_wait_keeps_the_batches_of_clients_answered_together_whole():
    # without a wait, the first client back takes a batch with the few behind it and the rest wait for the next:
    # two part batches alternate under a steady load (what bench/serve_throughput.py saw: 16 texts a batch at 32
    # clients); "auto" waits, a few ms, for as many as the server held when the last batch ended
    import statistics
    assert min(_closed_loop(0)) < 8
    assert statistics.median(_closed_loop("auto")) == 8


def test_auto_wait_never_holds_a_lone_client_or_an_idle_server():
    import asyncio
    sizes = []

    def predict(items):
        sizes.append(len(items))
        time.sleep(0.06)
        return list(items)

    async def main():
        b = Batcher(predict, max_batch_size=64)  # "auto" is the default
        b.start()
        for k in range(4):  # one client: every batch holds its one request, and none waits
            await b.submit([k])
        lone = b.waited
        await asyncio.gather(*(b.submit([k]) for k in range(8)))  # 8 together: one batch, no wait
        await b.submit(["alone"])  # right after: the batch waits (for the other 7) until its bound, then goes
        bounded = b.waited
        await asyncio.sleep(0.5)  # idle for longer than a batch takes
        await b.submit(["after a pause"])
        await b.stop()
        return lone, bounded, b.waited

    lone, bounded, last = asyncio.run(main())
    assert sizes == [1, 1, 1, 1, 8, 1, 1]
    assert lone == 0.0
    # a quarter of the last batch's run (>= 60 ms), capped at 20 ms
    assert 0.014 <= bounded <= 0.021 + 0.05, bounded
    assert last == bounded


def test_auto_wait_counts_requests_not_texts_and_a_gone_client_does_not_stop_the_batcher():
    import asyncio
    sizes, predicted = [], []

    def predict(items):
        sizes.append(len(items))
        predicted.append(list(items))
        time.sleep(0.05)
        if "boom" in items:
            raise RuntimeError("boom")
        return list(items)

    async def main():
        b = Batcher(predict, max_batch_size=64)
        b.start()
        for k in range(4):  # one client, 5 then 3 texts a request: the smaller one waits for nobody either
            await b.submit([f"t{i}" for i in range(5 if k % 2 == 0 else 3)])
        lone = b.waited
        failing = asyncio.ensure_future(b.submit(["boom"]))
        await asyncio.sleep(0.02)  # its batch is running
        failing.cancel()  # the client goes away; then the batch fails
        after = await asyncio.wait_for(b.submit(["still served"]), 5)
        await b.stop()
        return lone, after

    lone, after = asyncio.run(main())
    assert sizes[:4] == [5, 3, 5, 3] and lone == 0.0
    assert predicted[4] == ["boom"], predicted  # the failing batch ran, its client gone
    assert after == ["still served"]


@pytest.mark.parametrize("value", ["abc", -1, float("nan"), float("inf"), None])
def test_a_bad_max_wait_is_refused_naming_it(value):
    from bertlearn.errors import ModelError
    with pytest.raises(ModelError, match=r"max_wait_ms=.*: expected \"auto\" or a number of milliseconds >= 0"):
        Batcher(lambda items: items, max_wait_ms=value)


def test_the_cli_refuses_a_bad_max_wait_before_loading(tmp_path, capsys):
    from bertlearn.cli import main
    with pytest.raises(SystemExit) as e:
        main(["serve", str(tmp_path / "nowhere"), "--max-wait-ms", "soon"])
    assert e.value.code == 2
    assert ("argument --max-wait-ms: max_wait_ms='soon': expected \"auto\" or a number of milliseconds >= 0"
            in capsys.readouterr().err)


def test_sigterm_answers_every_accepted_request(model_dir):
    # batches of 4 texts: each 24-text request is predicted alone in 6 passes, so the 40 requests take a while and
    # most are still queued or running when the signal comes
    server = Server(model_dir, "--max-batch-size", "4")
    results, errors = [], []

    def client(i: int) -> None:
        try:
            r = server.post({"texts": TEXTS * 4})
            results.append(r.status_code)
        except httpx.ConnectError:
            errors.append("refused")  # not accepted: the server had stopped listening
        except httpx.HTTPError as e:  # accepted, then dropped: what must not happen
            errors.append(f"dropped: {type(e).__name__}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while '"POST /predict HTTP/1.1" 200' not in server.output() and time.time() < deadline:
        time.sleep(0.01)  # the signal comes once the first request is answered: the others are accepted by then
    answered_before = server.output().count('"POST /predict HTTP/1.1" 200')
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    log = server.stop()
    assert len(results) + len(errors) == 40, "a client got no outcome at all"
    assert answered_before < len(results), "no request was in flight when the signal came: the test proved nothing"
    # uvicorn shuts down gracefully, then re-raises the signal (the exit status a supervisor expects)
    assert server.proc.returncode in (0, -signal.SIGTERM) and "Finished server process" in log, log[-2000:]
    assert not [e for e in errors if e.startswith("dropped")], (errors, log[-2000:])
    assert results and all(s == 200 for s in results)
    assert log.count('"POST /predict HTTP/1.1" 200') == len(results)  # one access-log line per request


def test_sigterm_starts_a_drain_that_answers_late_requests(model_dir):
    # closing the listening socket at the signal would reset connections the kernel had queued (requests sent, never
    # accepted: seen as dropped); the drain keeps answering until a quiet spell, with /health 503 for balancers
    server = Server(model_dir, "--drain-ms", "1500")
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    health = httpx.get(server.url + "/health", timeout=10)
    assert (health.status_code, health.json()) == (503, {"status": "draining"})
    t0 = time.time()
    late = server.post({"texts": TEXTS[:2]})
    assert late.status_code == 200 and len(late.json()["predictions"]) == 2
    server.proc.wait(30)  # it exits on its own once no request has come for 1.5 s
    assert time.time() - t0 >= 1.2
    log = server.stop()
    assert "draining: answering requests until none arrives for 1.5 s" in log
    assert server.proc.returncode in (0, -signal.SIGTERM) and "Finished server process" in log


@pytest.fixture(scope="module")
def ner_server(tmp_path_factory, tiny_model_dir):
    from test_token_classification import make_tagged, write_conll

    from bertlearn import BertNERDataBunch, BertNERLearner
    d = tmp_path_factory.mktemp("ner-serve")
    write_conll(d / "train.txt", *make_tagged(240, seed=1))
    write_conll(d / "val.txt", *make_tagged(20, seed=2))
    db = BertNERDataBunch(d, str(tiny_model_dir), label_file=None, bs=16, maxlen=64, device="cpu", seed=0)
    learner = BertNERLearner.from_pretrained_model(db, str(tiny_model_dir), d / "o", "cpu", seed=0)
    with learner.no_bar(), learner.no_logging():
        learner.fit(10, lr=5e-3)
    path = learner.save_model(d / "ner")
    server = Server(path)
    server.path = path
    yield server
    server.stop()


def test_ner_folder_serves_entities(ner_server):
    from bertlearn import BertNERPredictor
    texts = ["the movie bob ann was good", "kim is fun"]
    got = ner_server.post({"texts": texts}).json()["predictions"]
    want = BertNERPredictor(ner_server.path, device="cpu").predict_batch(texts)
    assert any(got), "the tiny NER model found no entity"
    assert [[(e["entity_group"], e["start"], e["end"]) for e in x] for x in got] == \
        [[(e["entity_group"], e["start"], e["end"]) for e in x] for x in want]
    assert [e["score"] for x in got for e in x] == pytest.approx([e["score"] for x in want for e in x], abs=1e-6)
    assert httpx.get(ner_server.url + "/info").json()["task"] == "token_classification"


def test_the_page_marks_entities_in_a_real_browser(ner_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from bertlearn import BertNERPredictor
    text = "the movie bob ann was good"
    want = BertNERPredictor(ner_server.path, device="cpu").predict(text)
    browser = _browser()
    try:
        browser.get(ner_server.url + "/")
        WebDriverWait(browser, 20).until(lambda b: "token_classification" in b.find_element(By.ID, "info").text)
        browser.find_element(By.ID, "text").send_keys(text)
        browser.find_element(By.ID, "go").click()
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.ID, "entities"))
        shown = browser.execute_script("return Array.from(document.querySelectorAll('#entities mark.entity'))"
                                       ".map(m => [m.querySelector('small').textContent, m.firstChild.textContent])")
        assert [k for k, _ in shown] == [e["entity_group"] for e in want]
        assert [w for _, w in shown] == [text[e["start"]:e["end"]] for e in want]
        assert browser.find_element(By.ID, "entities").text.replace("\n", " ").startswith("the movie")
    finally:
        browser.quit()


def test_limits_default_and_missing_folder(tmp_path):
    assert ServeLimits() == ServeLimits(1_000_000, 256, 20_000)
    from bertlearn.cli import main
    assert main(["serve", str(tmp_path / "nowhere")]) == 1


def test_serve_onnx_points_to_the_export_beside_the_save(trained_learner, tmp_path, capsys):
    # save_model() and to_onnx() write output_dir/model_out and output_dir/onnx: --onnx looked in model_out/onnx only
    # and the message suggested the export the user had made
    from bertlearn.cli import main
    saved = trained_learner.save_model(tmp_path / "model_out")
    trained_learner.to_onnx(tmp_path / "onnx")
    assert main(["serve", str(saved), "--onnx"]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"; an export sits beside it in {str(tmp_path / 'onnx')!r}: serve that folder (without --onnx), or export "
        f"into the model's folder with learner.to_onnx({str(saved / 'onnx')!r})")
    assert main(["serve", str(tmp_path / "onnx"), "--onnx"]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"; {str(tmp_path / 'onnx')!r} is itself an ONNX export: serve it without --onnx")


def _browser():
    import shutil
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,700"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_page_predicts_in_a_real_browser(server, model_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser = _browser()
    try:
        browser.get(server.url + "/")
        WebDriverWait(browser, 20).until(lambda b: "labels" in b.find_element(By.ID, "info").text)
        browser.find_element(By.ID, "text").send_keys("a lovely film")
        browser.find_element(By.ID, "go").click()
        rows = WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#out .label"))
        shown = [(r.find_element(By.CLASS_NAME, "name").text, float(r.find_element(By.CLASS_NAME, "score").text))
                 for r in rows]
        want = _offline(model_dir, ["a lovely film"])[0]
        assert [l for l, _ in shown] == [x["label"] for x in want]
        assert [s for _, s in shown] == pytest.approx([x["score"] for x in want], abs=1e-4)
        shot = os.environ.get("BERTLEARN_SCREENSHOT")  # docs/serve_page.png is made this way
        browser.save_screenshot(shot or str(tmp_path / "page.png"))
    finally:
        browser.quit()


@pytest.mark.parametrize("kind", ["multi_label", "regression", "pairs", "onnx"])
def test_every_kind_of_folder_serves_what_the_offline_predictor_gives(kind, tmp_path, tiny_model_dir, trained_learner):
    import pandas as pd
    from conftest import make_texts

    from bertlearn import BertDataBunch, BertLearner, load_predictor
    df = make_texts(64, seed=3)
    texts = TEXTS[:3]
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
        folder = trained_learner.to_onnx(tmp_path / "onnx").parent
    else:
        if kind == "multi_label":
            df = df.assign(pos=(df["label"] == "positive").astype(int), neg=(df["label"] == "negative").astype(int))
            db = BertDataBunch.from_df(df, df, str(tiny_model_dir), label_col=["pos", "neg"], multi_label=True,
                                       maxlen=32, device="cpu")
        elif kind == "regression":
            db = BertDataBunch.from_df(df.assign(score=df["text"].str.len() / 100.0), df.assign(score=0.5),
                                       str(tiny_model_dir), label_col="score", regression=True, maxlen=32,
                                       device="cpu")
        else:
            pairs = pd.DataFrame({"a": df["text"], "b": df["text"].str[::-1], "label": df["label"]})
            db = BertDataBunch.from_df(pairs, pairs, str(tiny_model_dir), text_col=["a", "b"], maxlen=32,
                                       device="cpu")
            texts = [(t, t[::-1]) for t in texts]
        learner = BertLearner.from_pretrained_model(db, str(tiny_model_dir), device="cpu", output_dir=tmp_path,
                                                    seed=0)
        if kind == "multi_label":
            learner.thresholds = [0.3, 0.7]  # saved with the model: the server decides with them
        folder = learner.save_model(tmp_path / "m")
    server = Server(folder)
    try:
        key = "pairs" if kind == "pairs" else "texts"
        got = server.post({key: [list(t) if kind == "pairs" else t for t in texts]}).json()["predictions"]
        offline = load_predictor(folder, device="cpu").predict_batch(texts)
        if kind == "regression":
            assert [g["score"] for g in got] == pytest.approx([float(v) for v in offline], abs=1e-6)
        else:
            assert [[x["label"] for x in g] for g in got] == [[l for l, _ in o] for o in offline]
            assert [x["score"] for g in got for x in g] == pytest.approx([p for o in offline for _, p in o], abs=1e-5)
        if kind == "multi_label":  # the flags are predict_labels' decisions with the saved thresholds
            decided = load_predictor(folder, device="cpu").predict_labels(texts)
            assert [{x["label"] for x in g if x["predicted"]} for g in got] == [set(d) for d in decided]
        if kind == "onnx":
            assert httpx.get(server.url + "/info").json()["runtime"] == "onnxruntime"
    finally:
        server.stop()


def test_bad_batch_sizes_and_limits_are_refused_naming_the_option(tmp_path, capsys):
    from bertlearn.cli import main
    from bertlearn.errors import ModelError
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ModelError, match=r"^max_batch_size=.*: expected a whole number >= 1 \(bertlearn serve "
                                             r"--max-batch-size\)$"):
            Batcher(lambda items: items, max_batch_size=bad)
    with pytest.raises(ModelError, match=r"^max_texts=0: expected a whole number >= 1 \(bertlearn serve --max-texts\)$"):
        ServeLimits(max_texts=0)
    import numpy as np
    limits = ServeLimits(max_texts=np.int64(3))  # numpy integers are taken, and kept as ints (/info sends them as JSON)
    assert type(limits.max_texts) is int and json.dumps(limits.__dict__)
    assert type(Batcher(lambda items: items, max_batch_size=np.int32(8)).max_batch_size) is int
    # the CLI refuses it before loading the (here empty) folder, instead of a traceback from the warm-up batch
    assert main(["serve", str(tmp_path), "--max-batch-size", "0"]) == 1
    assert capsys.readouterr().err == ("bertlearn serve: error: max_batch_size=0: expected a whole number >= 1 "
                                       "(bertlearn serve --max-batch-size)\n")


class _FakeEncoder:
    problem_type, pairs, multi_label, regression = "single_label_classification", True, False, False


class _FakePairPredictor:
    """A pair model's predictor whose predictions refuse one input (as a predictor's own checks do)."""
    encoder, labels, thresholds = _FakeEncoder(), ["no", "yes"], None

    def predict_batch(self, items):
        from bertlearn.errors import DataError
        if ("bad", "pair") in items:
            raise DataError("pair 0 is refused by the predictor")
        return [[("yes", 0.75), ("no", 0.25)] for _ in items]


def test_a_pair_model_names_pairs_in_its_errors(tmp_path):
    from fastapi.testclient import TestClient

    from bertlearn.serve import create_app
    with TestClient(create_app(tmp_path, predictor=_FakePairPredictor())) as client:
        r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["field"] == "body"
        assert r.json()["error"].endswith('; send {"pairs": [["...", "..."]]}')
        r = client.post("/predict", json={"pairs": [["bad", "pair"]]})
        assert r.status_code == 422 and r.json() == {"error": "pair 0 is refused by the predictor", "field": "pairs"}
        assert client.post("/predict", json={"pairs": [["a", "b"]]}).json() == {
            "predictions": [[{"label": "yes", "score": 0.75}, {"label": "no", "score": 0.25}]]}


def test_multi_label_predicted_flag_decides_in_float32_as_predict_labels():
    import numpy as np
    import torch

    from bertlearn.predict import decide
    from bertlearn.serve import predictions_for
    # a logit whose float32 sigmoid is float32(0.3) itself: not over a 0.3 threshold in float32, but the float64 of
    # that sigmoid (0.30000001192...) is over the Python float 0.3
    logits = torch.tensor([[-0.8472978472709656, 2.0]])
    probs = logits.sigmoid()
    assert probs[0, 0].item() == float(np.float32(0.3)) > 0.3

    class Encoder:
        problem_type, multi_label, regression, labels = "multi_label_classification", True, False, ["a", "b"]

    class Predictor:
        encoder, labels, thresholds = Encoder(), ["a", "b"], [0.3, 0.7]

        def predict_batch(self, items):
            return [sorted(zip(self.labels, probs[0].tolist()), key=lambda x: -x[1])]

    got = predictions_for(Predictor())(["text"])[0]
    assert decide(logits, Encoder(), [0.3, 0.7]) == [["b"]]  # what predict_labels says
    assert {x["label"]: x["predicted"] for x in got} == {"a": False, "b": True}


class _FakeTextEncoder:
    problem_type, pairs, multi_label, regression = "single_label_classification", False, False, False


class _FakeTextPredictor:
    """A classifier's predictor: a NaN score for "nan", a refusal for "refused", a crash for "crash"."""
    encoder, labels, thresholds = _FakeTextEncoder(), ["no", "sí"], None

    def predict_batch(self, items):
        from bertlearn.errors import DataError
        if "refused" in items:
            raise DataError("text 0 is refused by the predictor")
        if "crash" in items:
            raise RuntimeError("the model broke")
        return [[("sí", float("nan") if t == "nan" else 0.75), ("no", 0.25)] for t in items if t != "dropped"]


def test_a_predictor_answering_another_count_fails_its_batch_not_other_requests(tmp_path):
    # before: answers were handed out by position, so a predictor that dropped one shifted the rest onto other texts
    from fastapi.testclient import TestClient

    from bertlearn.serve import create_app
    with TestClient(create_app(tmp_path, predictor=_FakeTextPredictor())) as client:
        r = client.post("/predict", json={"texts": ["a", "dropped", "b"]})
        assert r.status_code == 500 and r.json() == {
            "error": "prediction failed: RuntimeError: the predictor returned 2 answers for 3 texts; a predictor "
                     "returns one answer per text, in order", "field": None}
        assert client.post("/predict", json={"texts": ["a"]}).status_code == 200


def _asgi_post(app, messages, headers=(), path="/predict", root_path=""):
    """What the app sends for one POST, its body given as ASGI messages (the server started and stopped around it)."""
    import asyncio
    sent, pending = [], list(messages)

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def main():
        async with app.router.lifespan_context(app):
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": root_path,
                     "query_string": b"", "headers": [(k.encode(), v.encode()) for k, v in headers],
                     "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000)}
            await app(scope, receive, send)
    asyncio.run(main())
    return sent


def _answer(sent) -> tuple[int, dict, bytes]:
    start, = [m for m in sent if m["type"] == "http.response.start"]
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def _through_fastapi(monkeypatch) -> list:
    """The paths of the HTTP requests that FastAPI's routing hands to a route (a spy on `APIRoute.handle`: one on
    `FastAPI.__call__` would itself be a patch the server sees, and turn its direct path off)."""
    from fastapi.routing import APIRoute
    seen, original = [], APIRoute.handle

    async def spy(self, scope, receive, send):
        seen.append(scope["path"])
        await original(self, scope, receive, send)
    monkeypatch.setattr(APIRoute, "handle", spy)
    return seen


@pytest.mark.parametrize("body", [
    b'{"texts": ["good", "nan"]}', b'{"texts": ["caf\\u00e9"]}', b"{not json", b'{"texts": []}',
    b'{"texts": ["good"], "extra": 1}', b'{"texts": ["refused"]}', b'{"texts": ["crash"]}', b'{"texts": ["x"]}' * 500,
    b'{"texts": ["a"], "\\ud800": 1}',
])
def test_predict_answers_the_same_bytes_past_the_middleware_as_through_it(tmp_path, body, monkeypatch):
    from bertlearn.serve import create_app
    seen = _through_fastapi(monkeypatch)
    got = {}
    for fast in (True, False):
        app = create_app(tmp_path, predictor=_FakeTextPredictor(), fast_path=fast,
                         limits=ServeLimits(max_body_bytes=4000))
        got[fast] = _answer(_asgi_post(app, [{"type": "http.request", "body": body}],
                                       [("content-type", "application/json"), ("content-length", str(len(body)))]))
    assert seen == ["/predict"]  # only the fast_path=False request went through FastAPI's stack
    assert got[True] == got[False]
    status, headers, content = got[True]
    assert headers == {"content-type": "application/json", "content-length": str(len(content))}
    if body == b'{"texts": ["good", "nan"]}':  # the bytes FastAPI's own encoder wrote: UTF-8, compact, NaN as null
        assert content == ('{"predictions":[[{"label":"sí","score":0.75},{"label":"no","score":0.25}],'
                           '[{"label":"sí","score":null},{"label":"no","score":0.25}]]}').encode()
    if body == b'{"texts": ["a"], "\\ud800": 1}':  # a field name that is no valid Unicode: echoed as a \u escape
        assert content == (b'{"error":"the body has the field \'\\\\ud800\', which the server does not take; send '
                           b'only \'texts\'","field":"\\ud800"}')
    want = {b'{"texts": ["good", "nan"]}': (200, {"predictions": [[{"label": "sí", "score": 0.75},
                                                                   {"label": "no", "score": 0.25}],
                                                                  [{"label": "sí", "score": None},  # JSON has no NaN
                                                                   {"label": "no", "score": 0.25}]]}),
            b'{"texts": ["caf\\u00e9"]}': (200, {"predictions": [[{"label": "sí", "score": 0.75},
                                                                    {"label": "no", "score": 0.25}]]}),
            b'{"texts": ["refused"]}': (422, {"error": "text 0 is refused by the predictor", "field": "texts"}),
            b'{"texts": ["crash"]}': (500, {"error": "prediction failed: RuntimeError: the model broke",
                                           "field": None}),
            b"{not json": (400, {"error": "the body is not JSON (Expecting property name enclosed in double quotes: "
                                          'line 1 column 2 (char 1)); send {"texts": ["..."]}', "field": "body"}),
            b'{"texts": []}': (422, {"error": "'texts' must be a non-empty list, got []", "field": "texts"}),
            b'{"texts": ["good"], "extra": 1}': (422, {"error": "the body has the field 'extra', which the server "
                                                               "does not take; send only 'texts'", "field": "extra"}),
            b'{"texts": ["x"]}' * 500: (413, {"error": "the body has 8,000 bytes; at most 4,000 (bertlearn serve "
                                                       "--max-body-bytes)", "field": "body"}),
            b'{"texts": ["a"], "\\ud800": 1}': (422, {"error": "the body has the field '\\ud800', which the server "
                                                              "does not take; send only 'texts'", "field": "\ud800"})}
    assert (status, json.loads(content)) == want[body]


class _FakeNEREncoder:
    problem_type, pairs, multi_label, regression = "token_classification", False, False, False


class _FakeNERPredictor:
    """A token classifier's predictor that returns `self.entities` for every text, whatever they hold."""
    encoder, labels, thresholds = _FakeNEREncoder(), ["O", "B-LOC", "I-LOC"], None

    def __init__(self, entities):
        self.entities = entities

    def predict_batch(self, items):
        return [self.entities for _ in items]


def test_predict_past_the_middleware_writes_what_fastapis_own_encoder_writes(tmp_path, monkeypatch, caplog):
    import numpy as np
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from bertlearn.serve import create_app
    entities = [{"entity_group": "LOC", "word": "São Paulo 😀", "start": 0, "end": 9, "score": 0.5},
                {"entity_group": "LOC", "word": "a", "start": 1, "end": 2, "score": 1.5e-05},  # pydantic: 0.000015
                {"entity_group": "LOC", "word": "b", "start": 3, "end": 4, "score": 3e-08},  # pydantic: 3e-8
                {"entity_group": "LOC", "word": "x", "start": (1, 2), "end": 10, "score": float("nan")},
                {"entity_group": "LOC", "word": "y", "start": 11, "end": 12, "score": float("-inf")},
                {"entity_group": "LOC", "word": "z", "start": 13, "end": 14, "score": float("inf")}]
    plain = FastAPI()  # the endpoint as bertlearn serve's was before: it returns the dict, FastAPI encodes it

    @plain.post("/predict")
    def predict() -> Any:
        return {"predictions": [entities]}

    with TestClient(plain) as client:
        fastapi_bytes = client.post("/predict").content
    seen = _through_fastapi(monkeypatch)
    app = create_app(tmp_path, predictor=_FakeNERPredictor(entities))
    status, _, content = _answer(_asgi_post(app, [{"type": "http.request", "body": b'{"texts": ["a"]}'}]))
    assert status == 200 and content == fastapi_bytes and seen == []
    assert "São Paulo 😀".encode() in content and b'"score":null' in content and b'"score":0.000015' in content
    # a custom predictor's numpy value cannot be written: a JSON 500 that says so, not a bare "Internal Server Error"
    app = create_app(tmp_path, predictor=_FakeNERPredictor([{"score": np.float32(0.5)}]))
    with caplog.at_level("ERROR", logger="bertlearn.serve"):
        status, headers, content = _answer(_asgi_post(app, [{"type": "http.request", "body": b'{"texts": ["a"]}'}]))
    assert (status, headers["content-type"], json.loads(content)) == (500, "application/json", {
        "error": "the prediction could not be written as JSON: TypeError: Object of type float32 is not JSON "
                 "serializable", "field": None})
    assert "the answer could not be written as JSON" in caplog.text


def test_predict_past_the_middleware_bounds_a_chunked_body_and_leaves_a_gone_client_unanswered(tmp_path, caplog,
                                                                                                  monkeypatch):
    from bertlearn.serve import create_app
    seen = _through_fastapi(monkeypatch)
    app = create_app(tmp_path, predictor=_FakeTextPredictor(), limits=ServeLimits(max_body_bytes=100))
    # no Content-Length (chunked): refused once the chunks pass the limit, the rest never read
    chunks = [{"type": "http.request", "body": b'{"texts": ["' + b"x" * 60, "more_body": True}] * 3
    status, _, content = _answer(_asgi_post(app, chunks))
    assert status == 413 and json.loads(content) == {
        "error": "the body has over 100 bytes; at most 100 (bertlearn serve --max-body-bytes)", "field": "body"}
    # a Content-Length over the limit is refused before any chunk is read
    sent = _asgi_post(app, [], [("content-length", "101")])
    assert _answer(sent)[0] == 413 and "the body has 101 bytes; at most 100" in _answer(sent)[2].decode()
    # the body in two chunks is read whole
    halves = [{"type": "http.request", "body": b'{"texts": ["go', "more_body": True},
              {"type": "http.request", "body": b'od"]}'}]
    assert json.loads(_answer(_asgi_post(app, halves))[2])["predictions"][0][0] == {"label": "sí", "score": 0.75}
    # under a root path (uvicorn --root-path, a mount: the path keeps the prefix) /predict is still found directly
    under = _asgi_post(app, [{"type": "http.request", "body": b'{"texts": ["good"]}'}], path="/api/predict",
                       root_path="/api")
    assert json.loads(_answer(under)[2])["predictions"][0][0] == {"label": "sí", "score": 0.75}
    assert seen == []
    # a path that is the root path itself routes as "" for Starlette: FastAPI's own answer (a redirect), not /predict
    itself = _asgi_post(app, [{"type": "http.request", "body": b'{"texts": ["good"]}'}], path="/predict",
                        root_path="/predict")
    assert _answer(itself)[0] == 307  # FastAPI redirects "" to "/"
    # a client that leaves mid-body: nothing sent, nothing logged as a failure
    with caplog.at_level("INFO", logger="bertlearn.serve"):
        assert _asgi_post(app, [{"type": "http.request", "body": b'{"te', "more_body": True}]) == []
    assert "failed" not in caplog.text
    assert seen == []  # every request above went the direct way


def test_a_server_started_as_usual_answers_predict_past_the_middleware(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from bertlearn.serve import create_app
    seen = _through_fastapi(monkeypatch)
    with TestClient(create_app(tmp_path, predictor=_FakeTextPredictor())) as client:
        assert client.post("/predict", json={"texts": ["good"]}).json()["predictions"][0][0] == {"label": "sí",
                                                                                                 "score": 0.75}
        assert client.get("/health").json() == {"status": "ready"}
    assert seen == ["/health"]


@pytest.mark.parametrize("change, reason", [
    ("middleware", "middleware was added"),
    ("handler", "exception handlers were added"),
    ("instrumented", "the middleware stack was replaced"),
    ("patched", "Starlette.__call__ was patched"),
    ("telemetry", "FastAPI's OpenTelemetry telemetry is on"),
])
def test_what_would_act_on_predict_sends_it_through_fastapi_said_once(tmp_path, caplog, monkeypatch, change, reason):
    from fastapi.testclient import TestClient

    from bertlearn.serve import create_app
    app = create_app(tmp_path, predictor=_FakeTextPredictor())
    if change == "middleware":
        @app.middleware("http")
        async def tag(request, call_next):
            response = await call_next(request)
            response.headers["x-seen"] = "yes"
            return response
    elif change == "handler":
        app.add_exception_handler(KeyError, lambda request, exc: None)
    elif change == "instrumented":  # what OpenTelemetry's instrument_app does: the stack built by another function
        build = app.build_middleware_stack
        app.build_middleware_stack = lambda: build()
    elif change == "patched":  # what Sentry's Starlette integration does: Starlette.__call__ replaced for every app
        from starlette.applications import Starlette
        original = Starlette.__call__

        async def patched_call(self, scope, receive, send):
            await original(self, scope, receive, send)
        monkeypatch.setattr(Starlette, "__call__", patched_call)
    else:  # a tracer or meter provider set globally (opentelemetry-instrument): FastAPI traces every request
        monkeypatch.setattr(app._native_telemetry, "enabled", lambda: True)
    seen = _through_fastapi(monkeypatch)
    with caplog.at_level("INFO", logger="bertlearn.serve"), TestClient(app) as client:
        for _ in range(2):
            r = client.post("/predict", json={"texts": ["good"]})
            assert r.status_code == 200 and r.json()["predictions"][0][0] == {"label": "sí", "score": 0.75}
            assert r.headers.get("x-seen") == ("yes" if change == "middleware" else None)
    assert seen == ["/predict", "/predict"]
    said = [r.getMessage() for r in caplog.records if "goes through FastAPI" in r.getMessage()]
    assert said == [f"POST /predict goes through FastAPI's middleware and routing ({reason}): slower per request "
                    "where the model is fast"]


def test_telemetry_switched_on_after_startup_sends_predict_through_fastapi_said_once(tmp_path, caplog, monkeypatch):
    from fastapi.testclient import TestClient

    from bertlearn.serve import create_app
    app = create_app(tmp_path, predictor=_FakeTextPredictor())
    seen = _through_fastapi(monkeypatch)
    with caplog.at_level("INFO", logger="bertlearn.serve"), TestClient(app) as client:
        assert client.post("/predict", json={"texts": ["good"]}).status_code == 200
        assert seen == []
        monkeypatch.setattr(app._native_telemetry, "enabled", lambda: True)  # a provider set while serving
        app.state.serve["telemetry_seen"] = float("-inf")  # the once-a-second look is due
        for _ in range(2):
            assert client.post("/predict", json={"texts": ["good"]}).status_code == 200
    assert seen == ["/predict", "/predict"]
    said = [r.getMessage() for r in caplog.records if "goes through FastAPI" in r.getMessage()]
    assert said == ["POST /predict goes through FastAPI's middleware and routing (FastAPI's OpenTelemetry telemetry "
                    "is on): slower per request where the model is fast"]


def test_a_mounted_server_whose_lifespan_is_forwarded_judges_its_own_middleware(tmp_path, monkeypatch):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from starlette.routing import Mount

    from bertlearn.serve import create_app
    app = create_app(tmp_path, predictor=_FakeTextPredictor())

    @app.middleware("http")
    async def tag(request, call_next):
        response = await call_next(request)
        response.headers["x-seen"] = "yes"
        return response

    # a mounted app's lifespan does not run by itself; the usual recipe forwards it, passing the parent app
    parent = FastAPI(routes=[Mount("/api", app)], lifespan=lambda parent: app.router.lifespan_context(parent))
    with TestClient(parent) as client:
        r = client.post("/api/predict", json={"texts": ["good"]})
    assert r.status_code == 200 and r.headers.get("x-seen") == "yes"
    assert not app.state.serve["direct"]
