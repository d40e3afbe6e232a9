"""`bertlearn serve`: any saved model folder behind an HTTP API that batches concurrent requests.

FastAPI on uvicorn (`pip install 'bertlearn[serve]'`). The model is opened with `load_predictor` (PyTorch or ONNX,
classifier or token classifier) and warmed up before `/health` says ready. Requests that arrive together are
predicted as one batch: a single worker takes the first waiting request, gathers others until `max_batch_size`
texts (every request that queued while the last batch ran joins; under load the batch waits briefly for as many as
the last one held, `max_wait_ms="auto"`, or a fixed time, a number), and runs
the predictor in a worker thread, so the event loop keeps accepting. A failure
inside a batch fails that batch's requests only. Bodies, texts per request and characters per text are bounded; bad
requests get a 4xx with a JSON message naming the field. uvicorn handles SIGTERM: it stops accepting, answers every
request in flight, then exits.

Endpoints: `POST /predict` (`{"texts": [...]}`, or `{"pairs": [[a, b], ...]}` for a pair model), `GET /health`,
`GET /info`, `GET /` (a page to try the model), and FastAPI's `/docs` and `/openapi.json`. POST /predict goes from
uvicorn straight to its handler, past FastAPI's middleware and routing, which cost more CPU per request than a
one-text request's own work where the model is fast; the answers are the same bytes (`create_app`'s `fast_path`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import operator
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import numpy as np

from .errors import BertLearnError, ModelError
from .saved import json_ready

try:  # the `serve` extra; FastAPI resolves the endpoints' annotations by name, so Request must be a module global
    from fastapi import Request
except ImportError:  # create_app says what to install
    Request = None  # type: ignore[assignment,misc]
try:  # what FastAPI encodes with (pydantic 2); 6x json.dumps on a prediction
    from pydantic_core import to_json as _to_json
except ImportError:  # pydantic 1: json.dumps
    _to_json = None

__all__ = ["ServeLimits", "Batcher", "create_app", "serve", "predictions_for", "check_max_wait_ms", "check_positive"]

_log = logging.getLogger("bertlearn.serve")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may hold.

    Args:
        max_body_bytes: the largest request body.
        max_texts: texts (or pairs) per request.
        max_chars: characters per text.
    """

    max_body_bytes: int = 1_000_000
    max_texts: int = 256
    max_chars: int = 20_000

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_texts", "max_chars"):  # kept as plain ints (/info puts them in JSON)
            object.__setattr__(self, name, check_positive(name, getattr(self, name)))


def check_positive(name: str, value: Any) -> int:
    """`value` as a whole number >= 1 (a batch size or a limit); anything else raises `ModelError` naming the option.

    Args:
        name: the option (`max_batch_size`, `max_texts`...); the message names its CLI flag too.
        value: what the caller passed.
    """
    try:
        whole = None if isinstance(value, bool) else operator.index(value)  # int, numpy integers; not 2.5 or True
    except TypeError:
        whole = None
    if whole is None or whole < 1:
        raise ModelError(f"{name}={value!r}: expected a whole number >= 1 (bertlearn serve --{name.replace('_', '-')})")
    return whole


def check_max_wait_ms(value: float | str) -> float | str:
    """`max_wait_ms` as the server takes it: "auto" or a number of milliseconds >= 0; anything else raises
    `ModelError` naming the value.

    Args:
        value: what the caller passed (the CLI passes a string).
    """
    if value == "auto":
        return value
    try:
        ms = float(value)
    except (TypeError, ValueError):
        ms = float("nan")
    if not ms >= 0 or ms == float("inf"):
        raise ModelError(f"max_wait_ms={value!r}: expected \"auto\" or a number of milliseconds >= 0 (0: a batch "
                          "takes what is queued and goes; auto: it waits, briefly, for as many texts as the last "
                          "batch held)")
    return ms


class RequestError(BertLearnError):
    """A request the server refuses: its HTTP status, the field it names and why."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(message)
        self.status, self.field = status, field


class Batcher:
    """Gathers the items of concurrent requests into batches for one predict function run off the event loop.

    With `max_wait_ms="auto"` a batch that starts right after the last one (within its run time or 20 ms: the
    server is busy) waits until it holds as many requests as the server held when the last one ended (its
    requests and those queued behind it) or `max_batch_size` items, for at most `AUTO_WAIT_SHARE` of the last
    one's run time and `AUTO_WAIT_MAX_MS`. Why: clients answered together
    send their next requests together, but those arrive over a few milliseconds after their answers go out; a
    batch that takes only what is queued at that moment takes the others' requests and leaves its own clients'
    to the next, so under steady load two half-size batches alternate, each costing more per text (padding and a
    fixed cost per pass). A lone client (one request in the server, however many texts) and a server that was
    idle wait for nobody.

    Args:
        predict: takes a list of items, returns one result per item, in order.
        max_batch_size: items per batch (a larger request is predicted alone).
        max_wait_ms: "auto" (above), or how long the first request of every batch waits for others beyond those
            already queued (0: take what is queued and go).
        max_queue: requests waiting at most; beyond, `submit` raises `RequestError` (503).
    """

    AUTO_WAIT_SHARE = 0.25
    AUTO_WAIT_MAX_MS = 20.0

    def __init__(self, predict: Callable[[list], list], *, max_batch_size: int = 64,
                 max_wait_ms: float | str = "auto", max_queue: int = 4096):
        self.predict, self.max_batch_size = predict, check_positive("max_batch_size", max_batch_size)
        self.auto = check_max_wait_ms(max_wait_ms) == "auto"
        self.max_wait = 0.0 if self.auto else float(max_wait_ms) / 1000
        self.max_queue = int(max_queue)
        self.queue: asyncio.Queue | None = None
        self._held: tuple | None = None  # a request that did not fit the last batch: the next one starts with it
        # the last batch's requests plus those waiting when it ended, its run time and when it ended (what "auto"
        # waits by)
        self._last_requests, self._last_run, self._last_end = 0, 0.0, float("-inf")
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertlearn-predict")
        self.batches = self.items = 0
        self.waited = 0.0  # seconds batches spent waiting for more requests (what the waits cost in latency)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self.queue = asyncio.Queue(maxsize=self.max_queue)
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Stop the worker (after the server has answered what it accepted)."""
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False)

    async def submit(self, items: list) -> list:
        """Queue one request's items; returns their results when their batch has run.

        Args:
            items: the request's texts (or pairs).
        """
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((items, future))
        except asyncio.QueueFull:
            raise RequestError(503, "body", f"the server has {self.max_queue} requests waiting; retry later") from None
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first, self._held = (self._held, None) if self._held is not None else (await self.queue.get(), None)
            target, wait = self._goal(loop.time())  # requests to wait for, and how long
            batch, size, deadline = [first], len(first[0]), loop.time() + wait
            # everything that queued while the last batch ran joins at once (under load batches fill by themselves,
            # a lone request waits for nobody), as long as it fits; one that does not starts the next batch
            while not self.queue.empty() and self._take(batch, self.queue.get_nowait(), size):
                size += len(batch[-1][0])
            while self._held is None and size < self.max_batch_size and len(batch) < target:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                waiting_since = loop.time()
                try:
                    nxt = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                finally:
                    self.waited += loop.time() - waiting_since
                if not self._take(batch, nxt, size):
                    break
                size += len(nxt[0])
            await self._run(loop, batch)

    def _goal(self, now: float) -> tuple[float, float]:
        """The requests the next batch waits for (up to `max_batch_size` texts), and for how long (seconds)."""
        if not self.auto:
            return float("inf"), self.max_wait
        if now - self._last_end > max(self._last_run, self.AUTO_WAIT_MAX_MS / 1000):
            return 1, 0.0  # idle for longer than a batch takes (and 20 ms): nobody is about to send
        wait = min(self.AUTO_WAIT_SHARE * self._last_run, self.AUTO_WAIT_MAX_MS / 1000)
        return self._last_requests, wait

    def _take(self, batch: list, request: tuple, size: int) -> bool:
        if size + len(request[0]) > self.max_batch_size:
            self._held = request
            return False
        batch.append(request)
        return True

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list) -> None:
        live = [(its, f) for its, f in batch if not f.done()]  # a client that went away is not predicted for
        if not live:
            return
        items = [x for its, _ in live for x in its]
        started = loop.time()
        try:
            results = await loop.run_in_executor(self.executor, self.predict, items)
            if len(results) != len(items):
                # answered by position: a predictor giving another count would shift answers between requests
                raise RuntimeError(f"the predictor returned {len(results)} answers for {len(items)} texts; a "
                                   "predictor returns one answer per text, in order")
        except Exception as e:  # noqa: BLE001 - a batch's failure must reach only the request that caused it
            if len(live) == 1:
                if not live[0][1].done():  # its client may have gone away meanwhile
                    live[0][1].set_exception(e)
            else:
                for request in live:  # each alone: the others get their answers
                    await self._run(loop, [request])
            return
        self.batches, self.items = self.batches + 1, self.items + len(items)
        self._last_end = loop.time()
        # the requests in the server when this batch ended, its own included: its clients are about to send again
        self._last_requests = len(live) + self.queue.qsize() + (self._held is not None)
        self._last_run = self._last_end - started
        start = 0
        for its, future in live:
            if not future.done():
                future.set_result(results[start:start + len(its)])
            start += len(its)


def predictions_for(predictor: Any) -> Callable[[list], list]:
    """The JSON-ready prediction function of a predictor: per item, `[{"label", "score"}, ...]` highest first
    (classifiers; multi-label: every label's sigmoid and `"predicted"`, whether it passes the saved threshold),
    `{"score": value}` (regression) or the entities (NER).

    Args:
        predictor: what `load_predictor` returned.
    """
    enc = predictor.encoder
    if getattr(enc, "problem_type", None) == "token_classification":
        return lambda items: predictor.predict_batch(items)
    if getattr(enc, "regression", False):
        return lambda items: [{"score": float(v)} for v in predictor.predict_batch(items)]
    if getattr(enc, "multi_label", False):
        # each label's sigmoid, and whether it passes its threshold (tuned ones where the folder saved them)
        # compared in float32, as `decide` (predict_labels) compares: a sigmoid that rounds to the threshold itself
        # is not over it, though the threshold as a Python float may be a hair above
        cut = np.asarray(predictor.thresholds if predictor.thresholds is not None else 0.5, dtype=np.float32)
        cuts = dict(zip(predictor.labels, np.broadcast_to(cut, (len(predictor.labels),))))
        return lambda items: [[{"label": l, "score": float(p), "predicted": bool(np.float32(p) > cuts[l])}
                               for l, p in ranked] for ranked in predictor.predict_batch(items)]
    return lambda items: [[{"label": l, "score": float(p)} for l, p in ranked]
                          for ranked in predictor.predict_batch(items)]


class _ClientGone(Exception):
    """The client closed the connection before its body was read: nobody is left to answer."""


async def _body(declared: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    # read no more than the limit (plus one chunk) of a body, whatever Content-Length says, so a huge or chunked
    # upload is refused before it fills memory
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "body", f"the body has {int(declared):,} bytes; at most {limit:,} "
                                        "(bertlearn serve --max-body-bytes)")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "body", f"the body has over {limit:,} bytes; at most {limit:,} "
                                            "(bertlearn serve --max-body-bytes)")
        parts.append(chunk)
    return b"".join(parts)


async def _asgi_chunks(receive: Callable[[], Awaitable[dict]]) -> AsyncIterator[bytes]:
    """A request body's chunks, straight from the ASGI `receive` channel."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _request_chunks(request: Any) -> AsyncIterator[bytes]:
    """A request body's chunks through Starlette's `Request`."""
    from starlette.requests import ClientDisconnect
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise _ClientGone from None


def _json_bytes(payload: Any) -> bytes:
    """`payload` as compact UTF-8 JSON, the bytes FastAPI's own encoder (pydantic's) writes for it: a number that is
    not finite as null (JSON has no NaN). Text that is not valid Unicode (a lone surrogate, which FastAPI answers
    with a text/plain 500) is written with every non-ASCII character as a \\u escape."""
    try:
        if _to_json is not None:
            return _to_json(payload, inf_nan_mode="null")
        return _dumps(json_ready(payload, numpy_scalars=False), ascii_only=False)  # pydantic 1
    except ValueError:  # pydantic's serialization error, or json's for a lone surrogate (UnicodeEncodeError)
        return _dumps(json_ready(payload, numpy_scalars=False), ascii_only=True)


def _dumps(payload: Any, *, ascii_only: bool) -> bytes:
    return json.dumps(payload, ensure_ascii=ascii_only, allow_nan=False, separators=(",", ":")).encode()


def _encoded(status: int, payload: Any) -> tuple[int, bytes]:
    """An answer's status and body; a payload that cannot be written as JSON (a custom predictor's numpy values)
    becomes a JSON 500 naming why, not a bare 'Internal Server Error'."""
    try:
        return status, _json_bytes(payload)
    except (TypeError, ValueError, RecursionError) as e:
        _log.exception("the answer could not be written as JSON")
        return 500, _json_bytes({"error": f"the prediction could not be written as JSON: {type(e).__name__}: {e}",
                                 "field": None})


def _route_path(scope: dict) -> str:
    """The path the app routes by, without the root path (`uvicorn --root-path`, a mount) that servers put in front
    of it: Starlette's rule (`get_route_path`)."""
    path, root = scope["path"], scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root):] if path[len(root)] == "/" else path


# where FastAPI's and Starlette's request handling live; an instrumentation library that patches the classes
# (Sentry's Starlette integration replaces Starlette.__call__) moves one of them elsewhere
_STACK_METHODS = {("fastapi.applications", "FastAPI"): ("__call__", "build_middleware_stack"),
                  ("starlette.applications", "Starlette"): ("__call__", "build_middleware_stack")}


def _why_not_direct(app: Any, default_handlers: dict) -> str | None:
    """Why POST /predict must go through FastAPI's stack in `app` (None: nothing there would act on it).

    Args:
        app: the served app.
        default_handlers: its exception handlers when it was made (FastAPI's own).
    """
    if app.user_middleware:
        return "middleware was added"
    if "build_middleware_stack" in vars(app):  # an instrumentor (OpenTelemetry's instrument_app) replaced the stack
        return "the middleware stack was replaced"
    for cls in type(app).__mro__[1:]:
        for name in _STACK_METHODS.get((cls.__module__, cls.__name__), ()):
            if _patched(cls, name):
                return f"{cls.__name__}.{name} was patched"
    if dict(app.exception_handlers) != default_handlers:
        return "exception handlers were added"
    if _telemetry_on(app):
        return "FastAPI's OpenTelemetry telemetry is on"
    return None


def _patched(cls: type, name: str) -> bool:
    """Whether `cls.name` is no longer the function its module defined (replaced, or wrapped with functools.wraps)."""
    fn = vars(cls).get(name)
    if fn is None:
        return False
    return (getattr(fn, "__module__", None) != cls.__module__ or getattr(fn, "__qualname__", None) !=
            f"{cls.__name__}.{name}" or hasattr(fn, "__wrapped__"))


def _telemetry_on(app: Any) -> bool:
    """Whether FastAPI traces, meters or logs each request itself (FastAPI >= 0.150, once an OpenTelemetry tracer,
    meter or logger provider is set, as `opentelemetry-instrument` does)."""
    telemetry = getattr(app, "_native_telemetry", None)
    return telemetry is not None and bool(telemetry.enabled())


def _refuse_repeated_keys(pairs: list) -> dict:
    # json.loads keeps a repeated key's last value: {"texts": [a], "texts": [b, c]} answered for b and c only (an
    # object inside the list is refused as not a string, with its place named)
    seen = set()
    for k, _ in pairs:
        if k in seen and k in ("texts", "pairs"):
            raise RequestError(422, k, f"the body has the field {k!r} twice; send it once")
        seen.add(k)
    return dict(pairs)


def _items(body: bytes, limits: ServeLimits, pairs: bool, tokenizer: Any = None) -> list:
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, "body", f"the body has {len(body):,} bytes; at most {limits.max_body_bytes:,} "
                                        "(bertlearn serve --max-body-bytes)")
    key = "pairs" if pairs else "texts"
    try:
        data = json.loads(body, object_pairs_hook=_refuse_repeated_keys)
    except RequestError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        example = '{"pairs": [["...", "..."]]}' if pairs else '{"texts": ["..."]}'
        raise RequestError(400, "body", f"the body is not JSON ({e}); send {example}") from None
    if not isinstance(data, dict):
        raise RequestError(422, "body", f"the body is a JSON {type(data).__name__}; send an object {{\"{key}\": [...]}}")
    if key not in data:
        other = "texts" if pairs else "pairs"
        hint = f" (this model takes {key}, not {other})" if other in data else ""
        raise RequestError(422, key, f"the body has no {key!r} field{hint}; it has {sorted(data)[:10]}")
    extra = sorted(k for k in data if k != key)
    if extra:  # said, not dropped: a client that sends an option the server does not take expects it to count
        raise RequestError(422, extra[0], f"the body has the field {extra[0]!r}, which the server does not take; send "
                                          f"only {key!r}")
    items = data[key]
    if not isinstance(items, list) or not items:
        raise RequestError(422, key, f"{key!r} must be a non-empty list, got {json.dumps(items)[:60]}")
    if len(items) > limits.max_texts:
        raise RequestError(413, key, f"{key!r} has {len(items)} items; at most {limits.max_texts} a request "
                                     "(bertlearn serve --max-texts)")
    for i, item in enumerate(items):
        texts = item if pairs else [item]
        if pairs and not (isinstance(item, list) and len(item) == 2):
            raise RequestError(422, f"{key}[{i}]", f"{key}[{i}] must be a list of two texts, got "
                                                   f"{json.dumps(item)[:60]}")
        for j, t in enumerate(texts):
            where = f"{key}[{i}]" + (f"[{j}]" if pairs else "")
            if not isinstance(t, str):
                raise RequestError(422, where, f"{where} must be a string, got {json.dumps(t)[:60]}")
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise RequestError(422, where, f"{where} holds a lone surrogate (an escaped half of a UTF-16 pair); "
                                               "send valid Unicode text") from None
            if not t.strip():
                raise RequestError(422, where, f"{where} is empty; send text to predict")
            if len(t) > limits.max_chars:
                raise RequestError(413, where, f"{where} has {len(t):,} characters; at most {limits.max_chars:,} "
                                               "(bertlearn serve --max-chars)")
            if tokenizer is not None and not any(c.isalnum() for c in t) and \
                    not tokenizer(t, add_special_tokens=False)["input_ids"]:
                # zero-width spaces, control characters, a byte-order mark: no token, so the answer was the model's
                # for an empty input (only texts without a letter or digit are tokenized here)
                raise RequestError(422, where, f"{where} holds no character the model reads ({json.dumps(t)[:60]} "
                                               "becomes no token); send text to predict")
    return [tuple(x) for x in items] if pairs else items


def create_app(model_dir: str | Path, *, device: str | None = None, max_batch_size: int = 64,
               max_wait_ms: float | str = "auto", limits: ServeLimits | None = None, precision: str = "auto",
               predictor: Any = None, fast_path: bool = True) -> Any:
    """The FastAPI application serving `model_dir` (loaded and warmed up at startup).

    Args:
        model_dir: a folder written by `save_model` or `to_onnx` (any task).
        device: where a PyTorch model runs (None: CUDA when available).
        max_batch_size: texts per batch.
        max_wait_ms: "auto": under load a batch waits briefly for as many texts as the last one held (see
            `Batcher`); a number: how long every batch waits for requests beyond those queued (0: none).
        limits: body, texts and characters per request.
        precision: a PyTorch predictor's precision ("auto", "fp32", "bf16").
        predictor: the folder's predictor, loaded already (`serve` loads it first, so a bad folder fails with its
            message before the server starts); None: loaded at startup.
        fast_path: POST /predict skips FastAPI's middleware and routing (the same answers; about 1.4x the
            requests/s where the model costs nothing); False: it goes through them. The server turns it off by
            itself at startup, and says so, where they would act on /predict: middleware or exception handlers
            added to the app, an instrumented or patched stack, FastAPI's OpenTelemetry telemetry on (also
            looked at once a second while serving).
    """
    try:
        from contextlib import asynccontextmanager

        from fastapi import FastAPI
        from fastapi.responses import HTMLResponse, JSONResponse, Response
    except ImportError as e:
        raise ModelError("bertlearn serve needs FastAPI and uvicorn: pip install 'bertlearn[serve]'") from e
    from .predict import load_predictor
    from .version import __version__

    limits = limits or ServeLimits()
    max_wait_ms = check_max_wait_ms(max_wait_ms)  # refused before the app starts (and loads the model)
    max_batch_size = check_positive("max_batch_size", max_batch_size)
    # "draining": set by `serve` on SIGTERM; "last_arrival": when the latest /predict came (the drain ends after a
    # quiet spell)
    # "direct": POST /predict skips FastAPI's stack (decided at startup)
    state: dict[str, Any] = {"ready": False, "draining": False, "last_arrival": time.monotonic(), "direct": False,
                             "telemetry_seen": time.monotonic()}
    preloaded = predictor

    @asynccontextmanager
    async def lifespan(_: Any):  # Starlette passes the app it was given (a parent app, where one forwards it)
        t0 = time.perf_counter()
        predictor = preloaded if preloaded is not None else await asyncio.get_running_loop().run_in_executor(
            None, lambda: load_predictor(model_dir, device=device, bs=max_batch_size, precision=precision))
        enc = predictor.encoder
        # the request check's own copy: the predictor's worker thread sets truncation on its tokenizer, and a fast
        # tokenizer used from two threads at once fails ("Already borrowed")
        tokenizer = getattr(enc, "tokenizer", None)
        state["check_tokenizer"] = copy.deepcopy(tokenizer) if tokenizer is not None else None
        state.update(predictor=predictor, pairs=bool(getattr(enc, "pairs", False)),
                     task=getattr(enc, "problem_type", "single_label_classification"))
        batcher = Batcher(predictions_for(predictor), max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
        batcher.start()
        state["batcher"] = batcher
        warm = [("warm up", "warm up")] if state["pairs"] else ["warm up"]
        await batcher.submit(warm)  # the first call pays one-time costs; /health waits for it
        batcher.batches, batcher.items, batcher.waited = 0, 0, 0.0  # /info counts clients' texts, not the warm-up
        state["ready"] = True
        slow = _why_not_direct(app, default_handlers) if fast_path else None
        state["direct"] = fast_path and slow is None
        if slow:
            _log.info("POST /predict goes through FastAPI's middleware and routing (%s): slower per request "
                      "where the model is fast", slow)
        _log.info("serving %s (%s) after %.1f s", model_dir, state["task"], time.perf_counter() - t0)
        yield
        state["ready"] = False
        await batcher.stop()

    async def answer(chunks: AsyncIterator[bytes], declared: str | None) -> tuple[int, Any] | None:
        """The status and JSON of one POST /predict, whichever way it came (None: the client is gone)."""
        state["last_arrival"] = time.monotonic()
        if not state["ready"]:
            return 503, {"error": "the model is still loading", "field": None}
        try:
            items = _items(await _body(declared, chunks, limits.max_body_bytes), limits, state["pairs"],
                           state["check_tokenizer"])
            return 200, {"predictions": await state["batcher"].submit(items)}
        except _ClientGone:
            return None
        except RequestError as e:
            return e.status, {"error": str(e), "field": e.field}
        except BertLearnError as e:  # the predictor refused the input (its message names the problem)
            return 422, {"error": str(e), "field": "pairs" if state["pairs"] else "texts"}
        except Exception as e:  # noqa: BLE001 - a failed batch answers its requests and the server goes on
            _log.exception("batch failed")
            return 500, {"error": f"prediction failed: {type(e).__name__}: {e}", "field": None}

    async def predict_asgi(scope: dict, receive: Callable, send: Callable) -> None:
        declared = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-length"), None)
        answered = await answer(_asgi_chunks(receive), declared)
        if answered is None:
            return
        status, body = _encoded(*answered)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    class ServeApp(FastAPI):
        """FastAPI, but POST /predict goes straight to its handler, past the middleware and the routing: /predict
        uses none of them, and they held a server whose model costs nothing to 0.7x the requests/s on one core.
        Decided at startup (`_why_not_direct`, said once when off)."""

        async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
            if (state["direct"] and scope["type"] == "http" and scope["method"] == "POST"
                    and _route_path(scope) == "/predict" and not self._telemetry_came()):
                return await predict_asgi(scope, receive, send)
            await super().__call__(scope, receive, send)

        def _telemetry_came(self) -> bool:
            """Whether FastAPI's telemetry was switched on since startup (looked at once a second: FastAPI looks
            at every request, which costs about as much as 3% of a one-text request)."""
            now = time.monotonic()
            if now - state["telemetry_seen"] < 1.0:
                return False
            state["telemetry_seen"] = now
            if _telemetry_on(self):
                state["direct"] = False
                _log.info("POST /predict goes through FastAPI's middleware and routing (FastAPI's OpenTelemetry "
                          "telemetry is on): slower per request where the model is fast")
                return True
            return False

    app = ServeApp(title="bertlearn serve", version=__version__, lifespan=lifespan,
                   description=f"Predictions of the model in {model_dir}")
    default_handlers = dict(app.exception_handlers)  # FastAPI's own; one added later turns the direct path off

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        """Predict the texts (or pairs) of the body: `{"texts": [...]}` or `{"pairs": [[a, b], ...]}`."""
        answered = await answer(_request_chunks(request), request.headers.get("content-length"))
        status, body = _encoded(*answered) if answered is not None else (
            400, _json_bytes({"error": "the client went away", "field": None}))
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/health")
    async def health() -> Any:
        """Ready (200) once the model is loaded and warmed up; 503 before, and while draining for shutdown."""
        if state["draining"]:  # a load balancer stops sending here; requests that still come are answered
            return JSONResponse({"status": "draining"}, status_code=503)
        if state["ready"]:
            return {"status": "ready"}
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/info")
    async def info() -> Any:
        """The model's task, labels, max length, precision and the versions serving it."""
        import torch
        import transformers
        p = state.get("predictor")
        amp = getattr(p, "amp_dtype", None)
        batcher = state.get("batcher")
        return {"model": str(model_dir), "task": state.get("task"), "labels": list(p.labels) if p else None,
                "maxlen": getattr(getattr(p, "encoder", None), "maxlen", None), "pairs": state.get("pairs"),
                "precision": {None: "fp32"}.get(amp, str(amp).replace("torch.bfloat16", "bf16")),
                "runtime": "onnxruntime" if hasattr(p, "session") else "pytorch",
                "max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms, "limits": limits.__dict__,
                "served": {"batches": batcher.batches, "texts": batcher.items,
                           "waited_ms": round(batcher.waited * 1000, 1)} if batcher else None,
                "versions": {"bertlearn": __version__, "torch": torch.__version__,
                             "transformers": transformers.__version__}}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> Any:
        """A page to try the model: a text box, the labels with score bars (entities marked for NER)."""
        return HTMLResponse(_PAGE)

    app.state.serve = state  # what `serve`'s drain reads and sets
    return app


def _draining_server(config: Any, *, drain_s: float, graceful_s: float) -> Any:
    """A uvicorn server whose first SIGTERM/SIGINT starts a drain instead of closing the listening socket at once.

    Closing it resets the connections the kernel has queued but the server has not accepted yet: clients whose
    requests were sent would see them dropped. So /health turns 503 ("draining", for load balancers), requests go on
    being answered, and uvicorn's own graceful shutdown starts once no request has arrived for `drain_s` (or after
    `graceful_s`); a second signal shuts down at once, as uvicorn does.
    """
    import uvicorn

    class DrainingServer(uvicorn.Server):
        drain_started: float | None = None
        drain_signal: int | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.drain_started is None and not self.should_exit:
                self.drain_started, self.drain_signal = time.monotonic(), sig
                self.config.app.state.serve["draining"] = True
                _log.info("draining: answering requests until none arrives for %.1f s", drain_s)
                return
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if await super().on_tick(counter):
                return True
            if self.drain_started is not None and not self.should_exit:
                now, state = time.monotonic(), self.config.app.state.serve
                quiet = now - max(state["last_arrival"], self.drain_started)
                if quiet >= drain_s or now - self.drain_started >= graceful_s:
                    if quiet < drain_s:  # requests still coming: they meet a closed port from here on
                        _log.warning("drain ended after %.0f s with requests still arriving", graceful_s)
                    # uvicorn's own exit path now: it records the signal and re-raises it after the shutdown
                    super().handle_exit(self.drain_signal, None)
            return self.should_exit

    return DrainingServer(config)


def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          graceful_s: float = 30.0, drain_s: float = 0.5, **options: Any) -> None:
    """Run the server until SIGINT/SIGTERM: the signal starts a drain (/health 503, requests still answered) that
    ends once none has arrived for `drain_s`; then requests in flight are answered and the server exits.

    Args:
        model_dir: the saved folder.
        host, port: where to listen.
        log_level: uvicorn's log level (one access line per request at "info").
        graceful_s: how long the drain, then the shutdown, wait for requests.
        drain_s: the quiet spell (no request arriving) that ends the drain.
        **options: what `create_app` takes.
    """
    try:
        import uvicorn
    except ImportError as e:
        raise ModelError("bertlearn serve needs FastAPI and uvicorn: pip install 'bertlearn[serve]'") from e
    if "max_wait_ms" in options:  # refused before the model loads
        options["max_wait_ms"] = check_max_wait_ms(options["max_wait_ms"])
    options["max_batch_size"] = check_positive("max_batch_size", options.get("max_batch_size", 64))
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), format="%(message)s")
    from .predict import load_predictor
    predictor = load_predictor(model_dir, device=options.get("device"), bs=options.get("max_batch_size", 64),
                               precision=options.get("precision", "auto"))
    config = uvicorn.Config(create_app(model_dir, predictor=predictor, **options), host=host, port=port,
                            log_level=log_level, access_log=True, timeout_graceful_shutdown=graceful_s)
    _draining_server(config, drain_s=drain_s, graceful_s=graceful_s).run()


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bertlearn serve</title>
<style>
body{font:15px system-ui,sans-serif;max-width:760px;margin:2em auto;color:#222}
textarea{width:100%;height:7em;font:inherit}
button{margin-top:.5em;padding:.4em 1.2em;font:inherit}
.row{display:flex;align-items:center;margin:.25em 0}.name{width:12em}
.bar{height:1em;background:#4a7;margin-right:.5em}.score{font-variant-numeric:tabular-nums}
mark{background:#fd6;padding:0 .15em;border-radius:3px}mark small{color:#555;margin-left:.2em}
#info{color:#666;font-size:13px}#error{color:#b00}
</style></head><body>
<h1>bertlearn serve</h1><div id="info"></div>
<textarea id="text" placeholder="Type a text"></textarea><br>
<button id="go">Predict</button><div id="error"></div><div id="out"></div>
<script>
const $ = id => document.getElementById(id);
let info = {};
fetch("/info").then(r => r.json()).then(j => { info = j;
  $("info").textContent = `${j.task} · ${(j.labels || []).length} labels · maxlen ${j.maxlen} · ${j.runtime}`; });
function esc(s) { return s.replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }
$("go").onclick = async () => {
  $("error").textContent = ""; $("out").innerHTML = "";
  const text = $("text").value;
  let body = {texts: [text]};
  if (info.pairs) {
    const lines = text.split("\\n");
    if (lines.length !== 2) { $("error").textContent = "a pair model: the first line is text a, the second text b"; return; }
    body = {pairs: [lines]};
  }
  let r, j;
  try {
    r = await fetch("/predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify(body)});
    j = await r.json();
  } catch (err) { $("error").textContent = `no answer from the server (${err})`; return; }
  if (!r.ok) { $("error").textContent = j.error; return; }
  const p = j.predictions[0];
  if (info.task === "token_classification") {
    const cp = Array.from(text);  // entity offsets count code points, as Python does; JS strings count UTF-16 units
    const part = (a, b) => esc(cp.slice(a, b).join(""));
    let html = "", at = 0;
    for (const e of p) {
      if (e.start < at) continue;
      html += part(at, e.start) + `<mark class="entity">${part(e.start, e.end)}<small>${esc(e.entity_group)}</small></mark>`;
      at = e.end;
    }
    $("out").innerHTML = `<p id="entities">${html + part(at, cp.length)}</p>`;
  } else if (!Array.isArray(p)) {
    $("out").innerHTML = `<div class="row"><span class="name">score</span><span class="score">${p.score.toFixed(4)}</span></div>`;
  } else {
    $("out").innerHTML = p.map(x => `<div class="row label"><span class="name">${esc(x.label)}</span>` +
      `<span class="bar" style="width:${Math.round(x.score * 300)}px"></span>` +
      `<span class="score">${x.score.toFixed(4)}</span></div>`).join("");
  }
};
</script></body></html>
"""
