"""``engine serve``: the repository as an HTTP service (FastAPI on uvicorn) with a web page.

The model, the repository index and the Tanimoto map are opened once (:class:`~engine.jobs.lookup.
RepositorySearcher`) and shared by all requests. Every lookup runs in one worker thread, which takes
the requests waiting at that moment and answers those with equal settings together (one embedding
call and one batched index search for many spectra), so concurrent clients add throughput rather
than contention. The event loop only parses, validates and waits, so a client that sends its body
slowly delays no one else.

Endpoints: ``GET /health``; ``POST /lookup`` (JSON ``{"peaks": [[mz, intensity], ...], "precursor_mz",
"ion_mode", "mode", "top_k", "cross_mode"}``, or MGF text with the settings as query parameters);
``GET /lookup?usi=...``; ``GET /structure?smiles=...&adduct=...``; ``GET /spectrum/{usi}``; the OpenAPI
schema at ``/openapi.json`` with its docs page at ``/docs`` (assets served locally); the web page at ``/``.

Limits (:class:`ServiceLimits`): body size (413), time to receive the body (408), ``top_k`` (422), lookup
time (503), pending lookups (503). Bad input is a 4xx JSON ``{"error": "...", "status": N}`` naming the
problem; the service is read-only and binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from engine.core.errors import EngineError, InvalidInputError
from engine.jobs.lookup import MAX_PEAKS, RepositorySearcher, query_spectrum, read_query_text
from engine.queries.lookup import LookupSettings, UnknownSpectrumError, hit_records

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[1] / "data" / "web"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask of the service."""

    max_body_bytes: int = 1_000_000
    body_timeout_s: float = 10.0
    lookup_timeout_s: float = 30.0
    max_top_k: int = 100
    max_pending: int = 512
    max_batch: int = 64
    batch_wait_s: float = 0.002


class LookupRequest(BaseModel):
    """A spectrum lookup (the JSON body of ``POST /lookup``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    peaks: list[tuple[float, float]] = Field(min_length=1, max_length=MAX_PEAKS,
                                             description="[[m/z, intensity], ...]")
    precursor_mz: float = Field(gt=0, lt=100_000)
    ion_mode: Literal["positive", "negative"] | None = None
    mode: Literal["identity", "analogue"] = "analogue"
    top_k: int = Field(10, ge=1)
    cross_mode: bool = False
    precursor_tolerance_ppm: float = Field(20.0, gt=0, le=1e5)
    max_mass_difference: float | None = Field(None, gt=0, lt=1e6)
    library_matches: int = Field(3, ge=0, le=20)


# ------------------------------------------------------------------------------------------ worker

@dataclass
class _Job:
    kind: str  # "spectra" | "usis" | "structures"
    payload: Any
    settings: LookupSettings
    library_k: int = 0
    future: concurrent.futures.Future[dict[str, Any]] = field(default_factory=concurrent.futures.Future)


class LookupWorker:
    """One thread that answers lookups, batching spectrum and USI queries that share their settings."""

    def __init__(self, searcher: RepositorySearcher, limits: ServiceLimits) -> None:
        self.searcher = searcher
        self.limits = limits
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="engine-lookup", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> concurrent.futures.Future[dict[str, Any]]:
        if self._queue.qsize() >= self.limits.max_pending:
            raise _BusyError(f"{self._queue.qsize()} lookups waiting; try again shortly")
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.perf_counter() + self.limits.batch_wait_s
            stop = False
            while len(jobs) < self.limits.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(deadline - time.perf_counter(), 0.0))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            groups: dict[tuple[str, LookupSettings, int], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.kind, job.settings, job.library_k), []).append(job)
            for group in groups.values():
                self._answer(group)
            if stop:
                return

    def _answer(self, jobs: list[_Job]) -> None:
        try:
            results = self._lookup(jobs)
        except Exception as exc:  # each job gets the error (a batch fails only for its own bad member)
            if len(jobs) > 1:
                for job in jobs:
                    self._answer([job])
                return
            jobs[0].future.set_exception(exc)
            return
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)

    def _lookup(self, jobs: list[_Job]) -> list[dict[str, Any]]:
        kind, settings = jobs[0].kind, jobs[0].settings
        s = self.searcher
        if kind == "structures":
            return [dict(_split(s.structures(job.payload, settings), [job.payload])[0], library_matches=[])
                    for job in jobs]
        if kind == "usis":
            unique = list(dict.fromkeys(u for job in jobs for u in job.payload))
            rows = hit_records(s.usis(unique, settings))
            return [{"hits": [r for r in rows if r["query_id"] in set(job.payload)], "library_matches": []}
                    for job in jobs]
        # one internal id per query spectrum (request number and position), mapped back after the search
        names = [[f"{j}#{i}" for i in range(job.payload.num_rows)] for j, job in enumerate(jobs)]
        flat = [n for ns in names for n in ns]
        batch = pa.concat_tables([pa.Table.from_batches([job.payload]) for job in jobs])
        ids = dict(zip(flat, (str(x) for x in batch.column("spectrum_id").to_pylist()), strict=True))
        batch = batch.set_column(0, "spectrum_id", pa.array(flat, pa.string()))
        hits, emb = s.spectra_with_embeddings(batch, settings)
        library: list[dict[str, Any]] = []
        k = max(job.library_k for job in jobs)
        if k and s.reference is not None:
            library = s.library_matches(batch, emb, top_k=k)
        per_request = _split(hits, names)
        for j, result in enumerate(per_request):
            for row in result["hits"]:
                row["query_id"] = ids[row["query_id"]]
            mine = [dict(m, query_id=ids[m["query_id"]]) for m in library
                    if m["query_id"] in set(names[j]) and m["rank"] <= jobs[j].library_k]
            result["library_matches"] = mine
        return per_request


class _BusyError(EngineError):
    """Too many lookups are waiting."""


def _split(hits: pa.Table, names: list[list[str]]) -> list[dict[str, Any]]:
    rows = hit_records(hits)
    owner = {n: j for j, ns in enumerate(names) for n in ns}
    out: list[dict[str, Any]] = [{"hits": []} for _ in names]
    for row in rows:
        out[owner[row["query_id"]]]["hits"].append(row)
    return out


# ------------------------------------------------------------------------------------------ limits

class BodyLimit:
    """ASGI middleware: reads a request body under a size and a time limit before the app sees it.

    A declared or actual body over ``max_bytes`` gets 413; a body not complete within ``timeout_s``
    gets 408. Waiting on a slow client is an ``await``, so other requests go on meanwhile.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, max_bytes: int,
                 timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_error(send, 413, f"request body larger than {self.max_bytes} bytes")
            return
        body = bytearray()
        deadline = time.monotonic() + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.0))
            except asyncio.TimeoutError:
                await _send_error(send, 408, f"request body not received within {self.timeout_s:g} s")
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _send_error(send, 413, f"request body larger than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_error(send: Send, status: int, message: str) -> None:
    payload = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


# ------------------------------------------------------------------------------------------ app

def _validation_message(errors: Any) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def _settings(**kwargs: Any) -> LookupSettings:
    return LookupSettings(**{k: v for k, v in kwargs.items() if v is not None})


def create_app(repo: str | Path | RepositorySearcher, library: str | Path | None = None, *,
               model_path: str | Path | None = None, limits: ServiceLimits | None = None) -> FastAPI:
    """The FastAPI application over ``repo`` (a path, or an opened searcher to share)."""
    limits = limits or ServiceLimits()
    searcher = repo if isinstance(repo, RepositorySearcher) else RepositorySearcher(repo, library=library,
                                                                                    model_path=model_path)
    worker = LookupWorker(searcher, limits)
    stack = http_stack()

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(lifespan=lifespan, title="MS annotation engine: repository lookups", version="1",
                  docs_url=None, redoc_url=None,
                  description="Where else in the repository does this spectrum, an analogue of it, or this "
                              "structure occur? Read-only.")
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    app.state.searcher = searcher
    app.state.worker = worker
    app.state.limits = limits

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, _validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error: %s", exc)
        return error(500, f"internal error ({type(exc).__name__})")

    async def run(job: _Job) -> JSONResponse:
        start = time.perf_counter()
        try:
            future = worker.submit(job)
            result = await asyncio.wait_for(asyncio.wrap_future(future), timeout=limits.lookup_timeout_s)
        except _BusyError as exc:
            return error(503, str(exc))
        except asyncio.TimeoutError:
            return error(503, f"lookup took longer than {limits.lookup_timeout_s:g} s")
        except UnknownSpectrumError as exc:
            return error(404, str(exc))
        except (InvalidInputError, ValueError) as exc:
            return error(422, str(exc))
        except EngineError as exc:
            return error(400, str(exc))
        result["seconds"] = round(time.perf_counter() - start, 4)
        return JSONResponse(result)

    def checked(top_k: int, **kwargs: Any) -> LookupSettings:
        if top_k > limits.max_top_k:
            raise InvalidInputError(f"top_k: at most {limits.max_top_k} (got {top_k})", reason="invalid_top_k")
        return _settings(top_k=top_k, **kwargs)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Service state: repository size, model, whether structure lookups are available."""
        return {"status": "ok", **searcher.info(), "limits": limits.__dict__, "process": os.getpid(),
                "http": stack}

    @app.post("/lookup", responses={200: {"description": "hits per query"}},
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": LookupRequest.model_json_schema()},
                  "text/plain": {"schema": {"type": "string", "description": "MGF text"}}}, "required": True}})
    async def lookup_spectrum(request: Request, mode: Literal["identity", "analogue"] = "analogue",
                              top_k: int = Query(10, ge=1), cross_mode: bool = False) -> JSONResponse:
        """Repository hits of a spectrum: JSON (peaks, precursor_mz, ion_mode, mode, top_k, cross_mode) or MGF
        text (settings as query parameters)."""
        body = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype in ("", "application/json") and not body.lstrip().upper().startswith(b"BEGIN IONS"):
                try:
                    data = json.loads(body or b"null", parse_constant=_reject_constant)
                except (ValueError, UnicodeDecodeError) as exc:
                    return error(400, f"malformed JSON: {exc}")
                if not isinstance(data, dict):
                    return error(422, "the JSON body must be an object with peaks and precursor_mz")
                req = LookupRequest.model_validate(data)
                settings = checked(req.top_k, mode=req.mode, cross_mode=req.cross_mode,
                                   precursor_tolerance_ppm=req.precursor_tolerance_ppm,
                                   max_mass_difference=req.max_mass_difference)
                batch = query_spectrum(req.peaks, precursor_mz=req.precursor_mz, ion_mode=req.ion_mode)
                library_k = req.library_matches
            else:
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    return error(400, "MGF body is not UTF-8 text")
                settings = checked(top_k, mode=mode, cross_mode=cross_mode)
                batch = read_query_text(text)
                library_k = 3
        except ValidationError as exc:
            return error(422, _validation_message(exc.errors()))
        except InvalidInputError as exc:
            return error(422, str(exc))
        return await run(_Job("spectra", batch, settings, library_k=library_k))

    @app.get("/lookup")
    async def lookup_usi(usi: str = Query(..., min_length=1, max_length=1000),
                         mode: Literal["identity", "analogue"] = "analogue", top_k: int = Query(10, ge=1),
                         cross_mode: bool = False) -> JSONResponse:
        """Repository hits of a spectrum held in the repository, by its USI."""
        try:
            settings = checked(top_k, mode=mode, cross_mode=cross_mode)
        except InvalidInputError as exc:
            return error(422, str(exc))
        return await run(_Job("usis", [usi], settings))

    @app.get("/structure")
    async def lookup_structure(smiles: str = Query(..., min_length=1, max_length=2000),
                               adduct: Annotated[list[str] | None, Query()] = None,
                               mode: Literal["identity", "analogue"] = "analogue",
                               top_k: int = Query(10, ge=1)) -> JSONResponse:
        """Repository spectra of a structure through the joint space (``adduct`` windows, repeatable)."""
        if not searcher.can_search_structures:
            return error(400, "this repository's model has no structure encoder")
        try:
            settings = checked(top_k, mode=mode, adducts=tuple(adduct or ()))
        except InvalidInputError as exc:
            return error(422, str(exc))
        return await run(_Job("structures", [smiles], settings))

    @app.get("/spectrum/{usi:path}")
    async def spectrum(usi: str) -> JSONResponse:
        """Peaks and precursor of a repository spectrum."""
        try:
            return JSONResponse(await asyncio.to_thread(searcher.spectrum, usi))
        except UnknownSpectrumError as exc:
            return error(404, str(exc))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    swagger = _swagger_dir()
    if swagger is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="engine repository API",
                                       swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                       swagger_css_url="/docs-assets/swagger-ui.css",
                                       swagger_favicon_url="/docs-assets/favicon-32x32.png")

    return app


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _swagger_dir() -> Path | None:
    """Swagger UI assets from the ``swagger-ui-bundle`` package (None when it is not installed)."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").is_file() else None


#: uvicorn settings shared by the one-process and the multi-process service.
UVICORN_OPTIONS: dict[str, Any] = {"log_level": "warning", "timeout_keep_alive": 5, "limit_concurrency": 1024,
                                   "backlog": 2048, "access_log": False, "lifespan": "on"}


def http_stack() -> dict[str, Any]:
    """uvicorn's HTTP parser and event loop: the compiled ones (httptools, uvloop) where installed.

    They are dependencies of the engine: with uvicorn's pure-Python fallbacks (h11, asyncio) the HTTP
    layer alone costs about as much CPU as a lookup, and a 1M repository answered 122 spectrum lookups/s
    at 8 clients instead of 208 (``benchmarks/serve``), so the fallback is named in a warning."""
    import importlib.util

    stack: dict[str, Any] = {"http": "httptools" if importlib.util.find_spec("httptools") else "h11",
                             "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"}
    if stack != {"http": "httptools", "loop": "uvloop"}:
        log.warning("serving with uvicorn's %s parser and %s loop (install httptools and uvloop for about 1.7x "
                    "the lookups per second)", stack["http"], stack["loop"])
    return stack
#: Environment variable through which ``engine serve --workers N`` hands its settings to the worker processes.
CONFIG_ENV = "ENGINE_SERVE_CONFIG"


def server(app: Any, *, host: str = "127.0.0.1", port: int = 8000) -> Any:
    """A uvicorn server for ``app`` (call ``.run()``), with keep-alive and concurrency limits."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, **UVICORN_OPTIONS, **http_stack()))


@dataclass(frozen=True)
class WorkerConfig:
    """What each process of a multi-process service opens (see :func:`run_workers`)."""

    repo: str
    library: str | None = None
    model_path: str | None = None
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    threads: int = 1

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "limits": self.limits.__dict__})

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        data = json.loads(text)
        return cls(**{**data, "limits": ServiceLimits(**data["limits"])})


def set_threads(threads: int) -> None:
    """Threads of this process for embedding (torch) and index search (FAISS)."""
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def app_from_environment() -> FastAPI:
    """The app of one worker process (uvicorn's factory for ``engine serve --workers N``): each worker
    opens the model and the repository itself, with :data:`CONFIG_ENV` saying which."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start workers through `engine serve --workers N`")
    config = WorkerConfig.from_json(text)
    set_threads(config.threads)
    return create_app(config.repo, config.library, model_path=config.model_path, limits=config.limits)


def run_workers(config: WorkerConfig, *, workers: int, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve with ``workers`` processes on one listening socket (uvicorn's supervisor restarts a worker that
    dies). One process is bound to about one core by Python's interpreter lock; each worker holds its own
    model and in-memory index parts (the memory-mapped files are shared through the page cache)."""
    import uvicorn

    os.environ[CONFIG_ENV] = config.to_json()  # inherited by the spawned workers
    uvicorn.run("engine.jobs.serve:app_from_environment", factory=True, host=host, port=port, workers=workers,
                **UVICORN_OPTIONS, **http_stack())


