"""JSON error bodies for the API and WebSocket handshakes.

Under `/app/etl/` and `/ws/` every failure answers `{"error": {"code", "message"}}`
with its HTTP status, whether a handler raised `ApiError`, aiohttp raised one of its
HTTP exceptions (unknown route, wrong method, body too large), or something broke.
Unexpected exceptions are logged with their traceback and answered with a bare
500: tracebacks can name files, queries and values a client must not see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from etld.logs import get_logger

log = get_logger(__name__)

# /webhooks/ answers JSON too, and is no page: it proves itself with a webhook secret.
JSON_PREFIXES = ("/app/etl/", "/ws/", "/webhooks/")

CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid",
    500: "internal",
}

# Headers of an aiohttp HTTP exception worth keeping on the JSON answer.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


class ApiError(Exception):
    """Raised by handlers to answer an error; the middleware renders it."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, message)


def invalid(message: str) -> ApiError:
    return ApiError(422, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def forbidden(message: str = "forbidden") -> ApiError:
    return ApiError(403, message)


def unauthorized(message: str = "authentication required") -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": 'Bearer realm="etld"'})


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    code = CODES.get(status, "internal" if status >= 500 else "error")
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _http_exception_message(exc: web.HTTPException) -> str:
    # aiohttp's default text is "404: Not Found"; a specific text (e.g. the body size
    # limit it enforced) is more useful to the client.
    text = exc.text or ""
    if not text or text.startswith(f"{exc.status}: "):
        return exc.reason
    return text


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(JSON_PREFIXES):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k in _KEPT_HEADERS}
        return error_response(exc.status, _http_exception_message(exc), kept)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in request", method=request.method, path=request.path)
        return error_response(500, "internal server error")
