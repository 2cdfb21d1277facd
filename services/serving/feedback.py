"""Delayed labels for the occupancy endpoint: signed prediction ids and ``POST /feedback/occupancy``.

Every answer of ``POST /serve/occupancy`` carries a ``prediction_id``: a token that holds what the
server predicted and who predicted it, signed with HMAC-SHA256, so no server keeps any state::

    base64url(JSON {"e": endpoint, "a": arm, "v": model version, "m": model id,
                    "n": readings, "p": base64url(packed occupied bits), "t": issued-at unix s,
                    "r": 48 random bits, so that every answer's id is its own})
    + "." + base64url(HMAC-SHA256(secret, the part before the dot))

When the true labels are known (hours later, say), the client posts them with the id; any worker of
any replica sharing the secret verifies the token and counts, per labeled reading, whether the
prediction was right (``occupancy_serving_feedback_total{..., correct}``). The canary controller
compares the arms' accuracy from that counter.

Settings (environment of the inference server):

- ``OCCUPANCY_SERVING_FEEDBACK_SECRET``: the signing key, at least 16 bytes. Every worker and every
  replica must share it (a Kubernetes Secret, say); ``python -m services.serving run`` generates one
  for its workers when it is unset. Changing it invalidates the ids issued before.
- ``OCCUPANCY_SERVING_FEEDBACK_MAX_AGE_SECONDS``: feedback is accepted this long after the
  prediction (default 86400, one day).

A token proves that this service made the prediction; it does not prove the labels true, and one
token can be posted more than once until it expires (there is no server-side memory to stop it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

import numpy as np

log = logging.getLogger("occupancy.serving")

SECRET_ENV = "OCCUPANCY_SERVING_FEEDBACK_SECRET"
MAX_AGE_ENV = "OCCUPANCY_SERVING_FEEDBACK_MAX_AGE_SECONDS"
DEFAULT_MAX_AGE_SECONDS = 86400.0
MAX_MAX_AGE_SECONDS = 366 * 86400.0
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 4096
"""A token for 1440 readings takes about 450 characters."""
FEEDBACK_MAX_BODY_BYTES = 1 << 16
"""64 KiB: 1440 labels and their token take about 10 kB."""
FIELD_ID = "prediction_id"
FIELD_LABELS = "occupied"
SIGNATURE_CHARS = 43  # base64url of 32 bytes, unpadded
_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,4000}\.[A-Za-z0-9_-]{43}\Z")
_ONE = {True: "gA", False: "AA"}  # packed bits of a one-reading prediction


class FeedbackError(ValueError):
    """Feedback that cannot be counted; ``message`` starts with the field path."""

    def __init__(self, message: str, cause: str = "validation", status: int = 422) -> None:
        super().__init__(message)
        self.message, self.cause, self.status = message, cause, status


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _describe(value: Any, limit: int = 40) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("nan", "NaN").replace("inf", "Infinity")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Prediction:
    """What a token says: who predicted what, when."""

    endpoint: str
    arm: str
    model_version: str
    model_id: str | None
    occupied: tuple[bool, ...]
    issued_at: int


def parse_secret(value: str | None) -> bytes:
    """The configured secret as bytes; ValueError naming the variable when it is too short."""
    data = (value or "").encode()
    if len(data) < MIN_SECRET_BYTES:
        raise ValueError(f"{SECRET_ENV}: at least {MIN_SECRET_BYTES} bytes, got {len(data)}")
    return data


def parse_max_age(value: str | None) -> float:
    """The configured max age in seconds (default one day); ValueError naming the variable."""
    if value is None or not value.strip():
        return DEFAULT_MAX_AGE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{MAX_AGE_ENV}: a number of seconds, got {value[:40]!r}") from None
    if not 1 <= seconds <= MAX_MAX_AGE_SECONDS:
        raise ValueError(f"{MAX_AGE_ENV}: must be within 1..{MAX_MAX_AGE_SECONDS:.0f} s, got {value[:40]}")
    return seconds


def new_secret() -> str:
    """A random secret (what the launcher gives its workers when none is configured)."""
    return secrets.token_urlsafe(32)


class TokenSigner:
    """Issues and verifies prediction ids with one secret."""

    def __init__(
        self,
        secret: bytes,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the feedback secret must have at least {MIN_SECRET_BYTES} bytes")
        self.secret = secret
        self.max_age = float(max_age_seconds)
        self.clock = clock

    def _sign(self, payload: str) -> str:
        return _b64(hmac.digest(self.secret, payload.encode("ascii"), "sha256"))

    def issuer(self, endpoint: str, arm: str, model_version: str, model_id: str | None) -> Issuer:
        """Issues the ids of one endpoint's answers (the constant part is encoded and hashed once)."""
        return Issuer(self, endpoint, arm, model_version, model_id)

    def issue(
        self,
        endpoint: str,
        arm: str,
        model_version: str,
        model_id: str | None,
        occupied: Sequence[bool] | np.ndarray,
        issued_at: float | None = None,
    ) -> str:
        """The prediction id of one answer (``occupied``: the predicted class per reading)."""
        return self.issuer(endpoint, arm, model_version, model_id).issue(occupied, issued_at)

    def verify(self, token: Any, now: float | None = None) -> Prediction:
        """The prediction a token holds; :class:`FeedbackError` on ``prediction_id`` otherwise."""
        if not isinstance(token, str):
            raise FeedbackError(
                f"{FIELD_ID}: must be the string a prediction answered with, got {_describe(token)}"
            )
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN.match(token):
            raise FeedbackError(
                f"{FIELD_ID}: not a prediction id (the value of prediction_id in an answer of /serve/)",
                "invalid_token",
            )
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise FeedbackError(
                f"{FIELD_ID}: signature does not match: not issued by this service, altered, or signed "
                f"with another {SECRET_ENV}",
                "invalid_token",
            )
        try:
            body = json.loads(_unb64(payload))
            n, bits = body["n"], _unb64(body["p"])
            if type(n) is not int or n < 1 or len(bits) != (n + 7) // 8:
                raise ValueError("bad reading count")
            prediction = Prediction(
                endpoint=str(body["e"]),
                arm=str(body["a"]),
                model_version=str(body["v"]),
                model_id=None if body["m"] is None else str(body["m"]),
                occupied=tuple(np.unpackbits(np.frombuffer(bits, dtype=np.uint8))[:n].astype(bool).tolist()),
                issued_at=int(body["t"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            # only a holder of the secret can get here: a token format this version does not know
            raise FeedbackError(f"{FIELD_ID}: unreadable prediction id", "invalid_token") from None
        age = (self.clock() if now is None else now) - prediction.issued_at
        if age > self.max_age:
            raise FeedbackError(
                f"{FIELD_ID}: issued {age:.0f} s ago; feedback is accepted for {self.max_age:.0f} s "
                f"({MAX_AGE_ENV})",
                "expired_token",
            )
        return prediction


class Issuer:
    """The ids of one endpoint's answers, a few microseconds each: the JSON of the constant fields
    is padded with spaces to a multiple of 3 bytes, so its base64 is computed once and the rest is
    appended, and the HMAC continues from a copy of the state that has already hashed it."""

    def __init__(
        self, signer: TokenSigner, endpoint: str, arm: str, model_version: str, model_id: str | None
    ) -> None:
        self.clock = signer.clock
        head = json.dumps({"e": endpoint, "a": arm, "v": model_version, "m": model_id}, separators=(",", ":"))
        head = head[:-1] + ","
        head += " " * (-len(head.encode()) % 3)
        self.prefix = _b64(head.encode())
        self.mac = hmac.new(signer.secret, self.prefix.encode("ascii"), hashlib.sha256)
        # its own generator, seeded from the OS: ClearML seeds the global one with a constant in every
        # worker (Task.init), which would give two workers the same sequence
        self._random = Random(os.urandom(16))

    def issue(self, occupied: Sequence[bool] | np.ndarray, issued_at: float | None = None) -> str:
        n = len(occupied)
        if n == 1:
            bits = _ONE[bool(occupied[0])]
        else:
            bits = _b64(np.packbits(np.asarray(occupied, dtype=bool)).tobytes())
        t = int(self.clock() if issued_at is None else issued_at)
        tail = _b64(f'"n":{n},"p":"{bits}","t":{t},"r":{self._random.getrandbits(48)}}}'.encode())
        mac = self.mac.copy()
        mac.update(tail.encode("ascii"))
        return f"{self.prefix}{tail}.{_b64(mac.digest())}"


def parse_labels(value: Any, expected: int) -> list[bool | None]:
    """``occupied``: one ``true``/``false``/``null`` per predicted reading."""
    if not isinstance(value, list):
        raise FeedbackError(
            f"{FIELD_LABELS}: must be a list of true, false or null (one per predicted reading), "
            f"got {_describe(value)}"
        )
    if len(value) != expected:
        raise FeedbackError(
            f"{FIELD_LABELS}: {len(value)} labels for {expected} predicted "
            f"reading{'s' if expected != 1 else ''}"
        )
    for i, label in enumerate(value):
        if label is not None and type(label) is not bool:
            raise FeedbackError(f"{FIELD_LABELS}[{i}]: must be true, false or null, got {_describe(label)}")
    return value


def parse_feedback(body: Any, signer: TokenSigner, endpoint: str) -> tuple[Prediction, list[bool | None]]:
    """A decoded ``POST /feedback/<endpoint>`` body → the verified prediction and its labels."""
    if not isinstance(body, dict):
        raise FeedbackError(
            f'body: must be a JSON object {{"{FIELD_ID}": ..., "{FIELD_LABELS}": [...]}}, '
            f"got {_describe(body)}"
        )
    for key in body:
        if key not in (FIELD_ID, FIELD_LABELS):
            shown = json.dumps(str(key), ensure_ascii=True)[1:-1][:40] or '""'
            raise FeedbackError(f"{shown}: unknown field (expected {FIELD_ID}, {FIELD_LABELS})")
    for key in (FIELD_ID, FIELD_LABELS):
        if key not in body:
            raise FeedbackError(f"{key}: missing")
    prediction = signer.verify(body[FIELD_ID])
    if prediction.endpoint != endpoint:
        raise FeedbackError(
            f"{FIELD_ID}: issued by endpoint {prediction.endpoint[:40]!r}, not {endpoint!r}", "invalid_token"
        )
    return prediction, parse_labels(body[FIELD_LABELS], len(prediction.occupied))


def score(prediction: Prediction, labels: Sequence[bool | None]) -> tuple[int, int]:
    """(labeled readings, correctly predicted ones)."""
    labeled = correct = 0
    for predicted, label in zip(prediction.occupied, labels, strict=True):
        if label is not None:
            labeled += 1
            correct += predicted == label
    return labeled, correct


_SIGNER: TokenSigner | None = None


def signer_from_env(environ: dict[str, str] | None = None) -> TokenSigner:
    """The signer the environment configures. Without a secret: a random one for this process only,
    with a warning (other workers and replicas would refuse its ids)."""
    env = os.environ if environ is None else environ
    max_age = parse_max_age(env.get(MAX_AGE_ENV))
    raw = env.get(SECRET_ENV)
    if not raw:
        log.warning(
            "%s is not set: prediction ids are signed with a secret of this process only; with several "
            "workers or replicas, set one shared secret (python -m services.serving run does)",
            SECRET_ENV,
        )
        raw = new_secret()
    return TokenSigner(parse_secret(raw), max_age)


def get_signer() -> TokenSigner:
    """The process's signer (the Preprocess issues with it, the middleware verifies with it)."""
    global _SIGNER
    if _SIGNER is None:
        _SIGNER = signer_from_env()
    return _SIGNER
