"""Prediction ids and feedback bodies without a server: the token round trip, tampering, another
secret, expiry, and the body's refusals naming the field; the launcher's shared secret."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from services.serving.feedback import (
    MAX_AGE_ENV,
    SECRET_ENV,
    FeedbackError,
    TokenSigner,
    parse_feedback,
    parse_max_age,
    score,
    signer_from_env,
)
from services.serving.launcher import RunOptions, server_env

SECRET = b"test-secret-0123456789abcdef"
NOW = 1_700_000_000.0
MODEL = "d8061146c49b42fd897751eda758116d"


def signer(secret: bytes = SECRET, max_age: float = 3600) -> TokenSigner:
    return TokenSigner(secret, max_age, clock=lambda: NOW)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 61, 1440])
def test_round_trip_keeps_who_predicted_what_and_when(n: int) -> None:
    occupied = (np.arange(n) % 3 == 0).tolist()
    token = signer().issue("occupancy", "canary", "7", MODEL, occupied, issued_at=NOW - 5)
    prediction = signer().verify(token)
    assert prediction.occupied == tuple(occupied)
    assert (prediction.endpoint, prediction.arm, prediction.model_version) == ("occupancy", "canary", "7")
    assert (prediction.model_id, prediction.issued_at) == (MODEL, NOW - 5)
    assert len(token) < 240 + n // 4, "compact: under 240 characters and 2 more per 8 readings"
    # the fast issuer of an endpoint gives tokens any signer with the secret accepts
    issuer = signer().issuer("occupancy", "champion", "1", None)
    assert signer().verify(issuer.issue(occupied)).occupied == tuple(occupied)
    assert issuer.issue(occupied) != issuer.issue(occupied), "the same answer twice: two ids"


def _flip(text: str, i: int) -> str:
    swapped = "A" if text[i] != "A" else "B"
    return text[:i] + swapped + text[i + 1 :]


def test_every_altered_character_is_refused() -> None:
    token = signer().issue("occupancy", "canary", "7", MODEL, [True, False, True])
    refused = 0
    for i in range(len(token)):
        if token[i] == ".":
            continue
        with pytest.raises(FeedbackError) as err:
            signer().verify(_flip(token, i))
        assert err.value.message.startswith("prediction_id: ") and err.value.cause == "invalid_token"
        refused += 1
    assert refused == len(token) - 1


def test_a_forged_payload_with_the_old_signature_is_refused() -> None:
    """Changing what was predicted (the attacker's labels would then count as right) breaks the seal."""
    token = signer().issue("occupancy", "canary", "7", MODEL, [False])
    payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["p"], body["a"] = "gA", "champion"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(FeedbackError, match="signature does not match"):
        signer().verify(f"{forged}.{signature}")


def test_another_secret_is_refused() -> None:
    token = signer(b"another-secret-of-24-bytes").issue("occupancy", "canary", "7", MODEL, [True])
    with pytest.raises(FeedbackError, match=f"signed with another {SECRET_ENV}"):
        signer().verify(token)


def test_expiry() -> None:
    s = signer(max_age=3600)
    fresh = s.issue("occupancy", "canary", "7", MODEL, [True], issued_at=NOW - 3599)
    assert s.verify(fresh).issued_at == NOW - 3599
    old = s.issue("occupancy", "canary", "7", MODEL, [True], issued_at=NOW - 3601)
    with pytest.raises(FeedbackError) as err:
        s.verify(old)
    assert err.value.cause == "expired_token" and err.value.status == 422
    assert (
        err.value.message
        == f"prediction_id: issued 3601 s ago; feedback is accepted for 3600 s ({MAX_AGE_ENV})"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "prediction_id: must be the string"),
        (123, "prediction_id: must be the string"),
        ("", "prediction_id: not a prediction id"),
        ("abc.def", "prediction_id: not a prediction id"),
        ("é" * 60 + "." + "a" * 43, "prediction_id: not a prediction id"),
        ("a" * 5000 + "." + "a" * 43, "prediction_id: not a prediction id"),
    ],
)
def test_what_is_not_a_token(value: object, message: str) -> None:
    with pytest.raises(FeedbackError) as err:
        signer().verify(value)
    assert err.value.message.startswith(message)


def test_feedback_body_scores_labels_and_names_bad_fields() -> None:
    token = signer().issue("occupancy", "canary", "7", MODEL, [True, False, True])
    prediction, labels = parse_feedback(
        {"prediction_id": token, "occupied": [True, None, False]}, signer(), "occupancy"
    )
    assert labels == [True, None, False]
    assert score(prediction, labels) == (2, 1), "two labeled readings, the first predicted right"
    TYPES = "must be true, false or null"
    bad = [
        ([], "body: must be a JSON object"),
        ({"prediction_id": token}, "occupied: missing"),
        ({"occupied": [True]}, "prediction_id: missing"),
        ({"prediction_id": token, "occupied": [True], "x": 1}, "x: unknown field"),
        ({"prediction_id": token, "occupied": [True, False]}, "occupied: 2 labels for 3 predicted readings"),
        ({"prediction_id": token, "occupied": True}, "occupied: must be a list"),
        ({"prediction_id": token, "occupied": [True, 1, False]}, f"occupied[1]: {TYPES}, got 1"),
        ({"prediction_id": token, "occupied": [True, float("nan"), None]}, f"occupied[1]: {TYPES}, got NaN"),
        ({"prediction_id": token, "occupied": [True, None, "false"]}, f'occupied[2]: {TYPES}, got "false"'),
    ]  # fmt: skip
    for body, message in bad:
        with pytest.raises(FeedbackError) as err:
            parse_feedback(body, signer(), "occupancy")
        assert err.value.message.startswith(message), (body, err.value.message)
    with pytest.raises(FeedbackError, match="issued by endpoint 'occupancy', not 'rooms'"):
        parse_feedback({"prediction_id": token, "occupied": [None] * 3}, signer(), "rooms")


def test_settings_refuse_bad_values_naming_the_variable() -> None:
    assert parse_max_age(None) == 86400 and parse_max_age("60") == 60
    for bad in ("soon", "0", "-5", "1e12", "nan"):
        with pytest.raises(ValueError, match=MAX_AGE_ENV):
            parse_max_age(bad)
    with pytest.raises(ValueError, match=SECRET_ENV):
        signer_from_env({SECRET_ENV: "short"})
    configured = signer_from_env({SECRET_ENV: SECRET.decode(), MAX_AGE_ENV: "120"})
    assert configured.max_age == 120 and configured.secret == SECRET


def test_the_launcher_gives_all_its_workers_one_secret(tmp_path) -> None:
    options = RunOptions("svc", workers=2, metrics_dir=tmp_path / "m")
    env = server_env(options, base={})
    assert len(env[SECRET_ENV]) >= 32, "a random secret when none is configured"
    assert server_env(options, base={})[SECRET_ENV] != env[SECRET_ENV], "drawn per launcher"
    kept = server_env(options, base={SECRET_ENV: SECRET.decode()})
    assert kept[SECRET_ENV] == SECRET.decode(), "a configured (shared) secret is kept"
    with pytest.raises(ValueError, match=SECRET_ENV):
        server_env(options, base={SECRET_ENV: "short"})
