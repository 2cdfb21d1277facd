"""The file server: multipart upload (part name = object path), download, delete, on local disk.

Object keys are checked before they touch the disk: no ``..``, no NUL or other control characters,
at most 255 bytes a path segment and 1,024 bytes in all; a key that is not one gets a 400. Symlinks
are never followed out of the root: a key whose real path (links resolved) leaves the root is a 404
on download and delete and a 400 on upload. An upload larger than the limit is refused with 413 as
soon as that is known (Content-Length, or while reading a chunked body); parts are spooled to disk,
never held in memory whole.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Message

MAX_SEGMENT_BYTES = 255
MAX_KEY_BYTES = 1024


class _TooLarge(Exception):
    pass


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot name an object, or None when it can."""
    if any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in key):
        return "control characters are not allowed"
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        return "not UTF-8"
    if len(encoded) > MAX_KEY_BYTES:
        return f"longer than {MAX_KEY_BYTES} bytes"
    parts = PurePosixPath("/" + key.strip()).parts[1:]
    if not parts:
        return "empty path"
    if any(p in ("..", ".") for p in parts):
        return "'.' and '..' are not allowed"
    if any(len(p.encode("utf-8")) > MAX_SEGMENT_BYTES for p in parts):
        return f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


class FileStore:
    def __init__(self, root: Path, max_upload_bytes: int = 4 << 30) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self.max_upload_bytes = max_upload_bytes

    def resolve(self, key: str) -> Path | None:
        """The on-disk path of an object key, or None when the key is malformed or its real path
        (symlinks resolved) is outside the root."""
        if key_problem(key) is not None:
            return None
        parts = PurePosixPath("/" + key.strip()).parts[1:]
        target = self.root.joinpath(*parts)
        try:
            real = Path(os.path.realpath(target))
        except (OSError, ValueError):
            return None
        if real != self.real_root and self.real_root not in real.parents:
            return None
        return target

    async def upload(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > self.max_upload_bytes:
            return _error(413, f"upload too large: the limit is {self.max_upload_bytes} bytes")
        received = 0
        limit = self.max_upload_bytes

        async def receive() -> Message:
            nonlocal received
            message = await request.receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        limited = Request(request.scope, receive)
        base = request.url.path.strip("/")
        try:
            form = await limited.form(max_files=10_000, max_fields=10_000)
        except _TooLarge:
            return _error(413, f"upload too large: the limit is {limit} bytes")
        except Exception as exc:  # malformed multipart bodies
            return _error(400, f"malformed multipart body: {str(exc)[:300]}")
        try:
            return await self._store_parts(base, form.multi_items())
        finally:
            await form.close()

    async def _store_parts(self, base: str, items: list[tuple[str, Any]]) -> Response:
        stored = []
        for name, value in items:
            if not isinstance(value, UploadFile):
                continue
            key = f"{base}/{name.lstrip('/')}" if base else name.lstrip("/")
            problem = key_problem(key)
            target = self.resolve(key)
            if problem is not None or target is None:
                return _error(
                    400, f"invalid object path {name[:300]!r}: {problem or 'outside the file root'}"
                )
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if self.resolve(key) is None:  # a link created meanwhile
                    return _error(400, f"invalid object path {name[:300]!r}: outside the file root")
                # write to a temporary file and rename: a reader never sees half a file
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            except OSError as exc:  # a file where a folder should be, and the like
                return _error(409, f"cannot store {name[:300]!r}: {exc.strerror}")
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := await value.read(1 << 20):
                        out.write(chunk)
                os.replace(tmp, target)
            except IsADirectoryError:
                Path(tmp).unlink(missing_ok=True)
                return _error(409, f"cannot store {name[:300]!r}: a folder has that name")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            stored.append(key)
        if not stored:
            return _error(400, "no file part in the upload")
        return JSONResponse({"stored": stored})

    def _existing_file(self, path: str) -> Path | None:
        target = self.resolve(path)
        try:
            return target if target is not None and target.is_file() else None
        except (OSError, ValueError):
            return None

    async def download(self, request: Request) -> Response:
        target = self._existing_file(request.url.path)
        if target is None:
            return _error(404, f"file not found: {request.url.path[:300]}")
        return FileResponse(target)

    async def delete(self, request: Request) -> Response:
        target = self._existing_file(request.url.path)
        if target is None:
            return _error(404, f"file not found: {request.url.path[:300]}")
        target.unlink()
        return JSONResponse({"deleted": request.url.path})
