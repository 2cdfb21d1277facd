"""A generated corpus of bad posts to ``POST /feedback/occupancy``: each with the status, the field path
its error message must start with and the cause. Built around real prediction ids the server issued
(altered, cut, swapped) and ids signed here with the server's secret (expired, another endpoint)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import time
from typing import Any

from services.serving.feedback import FEEDBACK_MAX_BODY_BYTES, TokenSigner
from tests.serving.corpus import JSON, Case

SECRET = "corpus-feedback-secret-0123456789"
"""The inference server of the corpus test runs with this secret."""


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _flip(text: str, i: int) -> str:
    return text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]


def feedback_corpus(token1: str, token5: str) -> list[tuple[Case, str]]:
    """(case, expected cause). ``token1``/``token5``: ids of a one- and a five-reading answer."""
    labels5: list[Any] = [True, False, None, True, True]
    cases: list[tuple[Case, str]] = []

    def add(
        name: str, body: Any, field: str, cause: str = "validation", status: int = 422, **kw: Any
    ) -> None:
        raw = body if isinstance(body, bytes) else _dump(body)
        cases.append((Case(f"feedback: {name}", raw, status, field, **kw), cause))

    # the body's structure
    for name, body in [
        ("top-level list", [token5, labels5]),
        ("top-level string", token5),
        ("top-level number", 5),
        ("top-level null", None),
        ("top-level true", True),
    ]:
        add(name, body, "body")
    add("empty object", {}, "prediction_id: missing")
    add("no labels", {"prediction_id": token5}, "occupied: missing")
    add("no id", {"occupied": labels5}, "prediction_id: missing")
    for extra in ("x", "", "ü", "Occupied", "prediction_id ", "labels", "readings"):
        shown = json.dumps(extra)[1:-1] or '""'
        add(f"extra field {extra!r}", {"prediction_id": token5, "occupied": labels5, extra: 1}, shown)

    # the labels
    for name, value in [
        ("a string", "true"),
        ("a number", 1),
        ("an object", {"0": True}),
        ("null", None),
        ("true", True),
        ("nested lists", [labels5]),
        ("a list of strings", ["true"] * 5),
    ]:
        add(f"labels {name}", {"prediction_id": token5, "occupied": value}, "occupied")
    for n in (0, 1, 4, 6, 61, 1441):
        add(f"{n} labels for 5 readings", {"prediction_id": token5, "occupied": [True] * n}, "occupied")
    for n in (0, 2):
        add(f"{n} labels for 1 reading", {"prediction_id": token1, "occupied": [False] * n}, "occupied")
    bad_labels: list[tuple[str, Any]] = [
        ("1", 1),
        ("0", 0),
        ("0.5", 0.5),
        ("NaN", float("nan")),
        ("Infinity", float("inf")),
        ("string true", "true"),
        ("string yes", "yes"),
        ("list", []),
        ("object", {}),
        ("huge int", 10**400),
    ]
    for name, value in bad_labels:
        five = list(labels5)
        five[2] = value
        add(f"labels[2] {name}", {"prediction_id": token5, "occupied": five}, "occupied[2]")
        add(f"labels[0] {name} (one reading)", {"prediction_id": token1, "occupied": [value]}, "occupied[0]")
    for token_text in ("NaN", "Infinity", "-Infinity", "1e999"):
        text = json.dumps({"prediction_id": token1, "occupied": [True]}).replace("[true]", f"[{token_text}]")
        add(f"bare {token_text} label", text.encode(), "occupied[0]")

    # the prediction id: not a string, not a token
    for name, value in [
        ("number", 123),
        ("null", None),
        ("true", True),
        ("list", [token5]),
        ("object", {}),
        ("float", 1.5),
    ]:
        add(f"id a {name}", {"prediction_id": value, "occupied": labels5}, "prediction_id")
    payload, signature = token5.split(".")
    other_payload, other_signature = token1.split(".")
    not_tokens = [
        ("empty", ""),
        ("a word", "abc"),
        ("two short parts", "a.b"),
        ("payload only", payload),
        ("signature only", signature),
        ("no dot", payload + signature),
        ("an extra character", token5 + "x"),
        ("padded", token5 + "="),
        ("a space", token5[:20] + " " + token5[20:]),
        ("a newline after", token5 + "\n"),
        ("two dots", payload + "." + signature + "." + signature),
        (
            "standard base64 characters",
            payload.replace("-", "+")[:30] + "+/" + payload[32:] + "." + signature,
        ),
        ("non-ASCII", "é" * 60 + "." + signature),
        ("5000 characters", "A" * 5000 + "." + signature),
        ("cut signature", payload + "." + signature[:-1]),
        ("lowercased", token5.lower()),
        ("the id twice", token5 + token5),
    ]
    for name, value in not_tokens:
        add(f"id {name}", {"prediction_id": value, "occupied": labels5}, "prediction_id", "invalid_token")
    # altered: characters of the payload and of the signature
    for i in sorted({*range(0, len(payload), max(1, len(payload) // 14)), len(payload) - 1}):
        altered = _flip(payload, i) + "." + signature
        add(
            f"payload char {i} altered",
            {"prediction_id": altered, "occupied": labels5},
            "prediction_id",
            "invalid_token",
        )
    for i in (0, 10, 21, 32, 42):
        altered = payload + "." + _flip(signature, i)
        add(
            f"signature char {i} altered",
            {"prediction_id": altered, "occupied": labels5},
            "prediction_id",
            "invalid_token",
        )
    swapped = other_payload + "." + signature
    add(
        "signature of another id",
        {"prediction_id": swapped, "occupied": [True]},
        "prediction_id",
        "invalid_token",
    )
    add(
        "payload of another id",
        {"prediction_id": payload + "." + other_signature, "occupied": labels5},
        "prediction_id",
        "invalid_token",
    )
    # signed, but with another secret, or by this secret for another endpoint, too long ago, garbage
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    wrong = TokenSigner(b"another-secret-0123456789").issue(
        "occupancy", body["a"], body["v"], body["m"], [True] * 5
    )
    add("another secret", {"prediction_id": wrong, "occupied": labels5}, "prediction_id", "invalid_token")
    ours = TokenSigner(SECRET.encode())
    rooms = ours.issue("rooms", body["a"], body["v"], body["m"], [True] * 5)
    add(
        "another endpoint's id",
        {"prediction_id": rooms, "occupied": labels5},
        "prediction_id",
        "invalid_token",
    )
    for age in (86401, 10 * 86400):
        old = ours.issue(
            "occupancy", body["a"], body["v"], body["m"], [True] * 5, issued_at=time.time() - age
        )
        add(
            f"issued {age} s ago",
            {"prediction_id": old, "occupied": labels5},
            "prediction_id",
            "expired_token",
        )
    for name, raw in [
        ("not JSON", b"not json at all"),
        ("no fields", b"{}"),
        ("bad bits", b'{"e":"occupancy","a":"x","v":"1","m":null,"n":5,"p":"!!","t":1}'),
    ]:
        garbage = _b64(raw)
        signed = garbage + "." + _b64(hmac.digest(SECRET.encode(), garbage.encode(), hashlib.sha256))
        add(
            f"signed garbage: {name}",
            {"prediction_id": signed, "occupied": labels5},
            "prediction_id",
            "invalid_token",
        )

    # the transport: JSON, size, content type
    good = _dump({"prediction_id": token5, "occupied": labels5})
    for name, raw in [
        ("empty body", b""),
        ("whitespace body", b" \n "),
        ("malformed {", b"{"),
        ("truncated", good[:50]),
        ("trailing comma", good[:-1] + b",}"),
        ("invalid utf-8", good.replace(b"occupied", b"occ\xffpied")),
        ("utf-8 BOM", b"\xef\xbb\xbf" + good),
        ("nested 30k deep", b"[" * 30_000 + b"]" * 30_000),
    ]:
        add(name, raw, "body", "malformed_body", 400)
    big = b'{"occupied": [' + b" " * FEEDBACK_MAX_BODY_BYTES + b"]}"
    add("over 64 KiB", big, "body", "body_too_large", 413)
    bomb = gzip.compress(b'{"occupied": [' + b" " * (FEEDBACK_MAX_BODY_BYTES * 16) + b"]}")
    gz = {**JSON, "Content-Encoding": "gzip"}
    add("gzip bomb", bomb, "body", "body_too_large", 413, headers=gz)
    add("gzip garbage", b"\x1f\x8b\x08\x00garbage", "body", "malformed_body", 400, headers=gz)
    bad_gz = gzip.compress(_dump({"prediction_id": token5, "occupied": [1] * 5}))
    add("gzip of a bad label", bad_gz, "occupied[0]", headers=gz)
    for name, headers in [
        ("no content type", {}),
        ("text/plain", {"Content-Type": "text/plain"}),
        ("form", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("xml", {"Content-Type": "application/xml"}),
        ("json latin-1", {"Content-Type": "application/json; charset=latin-1"}),
        ("brotli", {**JSON, "Content-Encoding": "br"}),
    ]:
        field = "Content-Encoding" if "Content-Encoding" in headers else "Content-Type"
        add(name, good, field, "content_type", 415, headers=headers)
    return cases
