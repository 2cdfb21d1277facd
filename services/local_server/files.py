"""The file server: multipart upload (part name = object path), download, delete, on local disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def resolve(self, key: str) -> Path | None:
        """The on-disk path of an object key, or None when the key escapes the root."""
        parts = PurePosixPath("/" + key.strip()).parts[1:]
        if not parts or any(p in ("..", ".") for p in parts):
            return None
        return self.root.joinpath(*parts)

    async def upload(self, request: Request) -> Response:
        base = request.url.path.strip("/")
        try:
            form = await request.form(max_files=10_000, max_fields=10_000)
        except Exception as exc:  # malformed multipart bodies
            return JSONResponse({"error": f"malformed multipart body: {exc}"}, status_code=400)
        stored = []
        for name, value in form.multi_items():
            if not isinstance(value, UploadFile):
                continue
            key = f"{base}/{name.lstrip('/')}" if base else name.lstrip("/")
            target = self.resolve(key)
            if target is None:
                return JSONResponse({"error": f"invalid object path {name!r}"}, status_code=400)
            target.parent.mkdir(parents=True, exist_ok=True)
            # write to a temporary file and rename: a reader never sees half a file
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := await value.read(1 << 20):
                        out.write(chunk)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            stored.append(key)
        if not stored:
            return JSONResponse({"error": "no file part in the upload"}, status_code=400)
        return JSONResponse({"stored": stored})

    async def download(self, request: Request) -> Response:
        target = self.resolve(request.url.path)
        if target is None or not target.is_file():
            return JSONResponse({"error": f"file not found: {request.url.path}"}, status_code=404)
        return FileResponse(target)

    async def delete(self, request: Request) -> Response:
        target = self.resolve(request.url.path)
        if target is None or not target.is_file():
            return JSONResponse({"error": f"file not found: {request.url.path}"}, status_code=404)
        target.unlink()
        return JSONResponse({"deleted": request.url.path})
