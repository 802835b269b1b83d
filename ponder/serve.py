"""`ponder serve`: an OpenAI-compatible HTTP server over ponder's rollout engine (standard library only).

    ponder serve runs/r1_zero-.../checkpoints/step-40 --port 8000
    curl localhost:8000/v1/chat/completions -d '{"model": "runs/r1_zero-.../checkpoints/step-40",
        "messages": [{"role": "user", "content": "What is 12 + 30?"}]}'

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions; n, temperature, top_p, top_k,
max_tokens / max_completion_tokens, stop, seed and stream (Server-Sent Events, tokens as they are sampled).
A chat response's `<think>…</think>` block comes back as `message.reasoning_content` (DeepSeek's API) and
the rest, `<answer>` tags removed, as `content` (`ponder/rollout/stream.py`).

This file is the HTTP side and the command; what a request means (validation, the worker thread that
batches requests into engine calls, the OpenAI response shapes) is in `ponder/serve_api.py`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ponder.serve_api import API, APIError, Worker

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ponder.rollout.base import Generator

MAX_BODY = 16 * 2**20


def _json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise APIError(400, f"the request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streams use chunked transfer encoding
    server_version = "ponder"
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        routes = {
            "/v1/models": {"GET": api.models},
            "/v1/chat/completions": {"POST": api.chat},
            "/v1/completions": {"POST": api.completions},
        }
        path = urlsplit(self.path).path.rstrip("/")
        try:
            raw = self._read()  # always: what a refused request sent must not be read as the next request
            if path not in routes:
                raise APIError(
                    404, f"no such endpoint: {method} {path}; see GET /v1/models", code="not_found"
                )
            if method not in routes[path]:
                allowed = ", ".join(routes[path])
                raise APIError(
                    405, f"{method} {path} is not allowed; use {allowed}", code="method_not_allowed"
                )
            result = routes[path][method](_json(raw) if method == "POST" else None)
        except APIError as err:
            self._send_json(err.status, err.body())
            return
        except Exception as err:
            traceback.print_exc()
            self._send_json(500, APIError(500, f"internal error: {err}", kind="server_error").body())
            return
        if isinstance(result, dict):
            self._send_json(200, result)
        else:
            self._send_stream(result)

    def _read(self) -> bytes:
        """The request body (Content-Length bytes; none without the header)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise APIError(400, "chunked request bodies are not supported; send a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True  # the body cannot be skipped reliably: end the connection
            raise APIError(400, f"Content-Length must be a number of bytes up to {MAX_BODY}")
        return self.rfile.read(length)

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 405:
            self.send_header(
                "Allow", "GET" if urlsplit(self.path).path.rstrip("/") == "/v1/models" else "POST"
            )
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: Iterator[dict]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            try:
                for event in events:
                    self._chunk(f"data: {json.dumps(event)}\n\n")
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as err:  # the status line is sent already: report in the stream
                traceback.print_exc()
                body = APIError(500, f"internal error: {err}", kind="server_error").body()
                self._chunk(f"data: {json.dumps(body)}\n\n")
            self._chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # the client left; its job still runs to the end
            self.close_connection = True

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's signature)
        if self.server.verbose:
            super().log_message(format, *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a client holding a keep-alive connection does not block shutdown
    api: API
    verbose: bool


class Server:
    """The HTTP server around an `API`: `serve_forever()` in this thread, or `start()` in a new one."""

    def __init__(self, api: API, host: str = "127.0.0.1", port: int = 8000, verbose: bool = True) -> None:
        self.api = api
        self.httpd = _HTTPServer((host, port), _Handler)
        self.httpd.api, self.httpd.verbose = api, verbose
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API's base URL (what an OpenAI client takes as `base_url`)."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> Server:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ponder-serve-http", daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join()
        self.httpd.server_close()
        self.api.close()


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """MODEL and how to run it: shared by `ponder serve` and `ponder chat`."""
    p.add_argument("model", help="HF directory, .gguf file, hub id, alias (smollm2-135m) or tiny[:preset]")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--autocast", default="none", choices=("none", "bfloat16", "float16"))
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--backend", default="ponder", choices=("ponder", "hf"), help="ponder: the engine")
    p.add_argument(
        "--max-context",
        type=int,
        default=0,
        help="tokens per sequence, prompt + completion (default: the model's limit, at most 2048)",
    )
    p.add_argument(
        "--prefill",
        default="",
        help="text opening every assistant turn, e.g. '<think>' for models trained with ponder's default",
    )


def load_backend(args: argparse.Namespace, sequences: int) -> tuple[PreTrainedTokenizerBase, Generator, int]:
    """(tokenizer, generator, max context) for `add_model_arguments`' options; the KV cache holds
    `sequences` sequences of max context tokens."""
    from ponder.config import ConfigError, RolloutConfig
    from ponder.model import load_model
    from ponder.model.load import resolve_dtype
    from ponder.rollout.factory import make_generator

    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    limit = getattr(model.config, "max_position_embeddings", None) or 2048
    context = args.max_context or min(limit, 2048)
    if context < 2:
        raise ConfigError(f"--max-context {context} is too small; it must be at least 2")
    autocast = None if args.autocast == "none" else resolve_dtype(args.autocast)
    rollout = RolloutConfig(backend=args.backend, max_batch=sequences)
    return tokenizer, make_generator(model, tokenizer, rollout, autocast, sequences, context), context


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 listens on every interface")
    p.add_argument("--port", type=int, default=8000, help="0: any free port")
    p.add_argument("--max-batch", type=int, default=8, help="sequences generated at once")
    p.add_argument("--served-name", help="the model id clients send (default: MODEL as given)")
    p.add_argument("--quiet", action="store_true", help="no line per request")


def run(args: argparse.Namespace) -> int:
    """`ponder serve`: load, listen, print the URL, serve until Ctrl-C."""
    from ponder.config import ConfigError

    if args.max_batch < 1:
        raise ConfigError(f"--max-batch {args.max_batch} must be at least 1")
    tokenizer, generator, context = load_backend(args, args.max_batch)
    name = args.served_name or args.model
    api = API(tokenizer, Worker(generator, args.max_batch), name, context, args.prefill)
    server = Server(api, args.host, args.port, verbose=not args.quiet)
    print(f"ponder serve: {name!r} at {server.url} (max context {context} tokens); Ctrl-C stops", flush=True)
    # `kill PID` (SIGTERM) stops it as Ctrl-C does: a server started in the background by a shell has
    # SIGINT ignored, so Ctrl-C alone would not reach it there
    main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("ponder serve: shutting down", file=sys.stderr, flush=True)
    finally:
        server.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
