"""auth.* and users.*: one local user; tokens are JWTs carrying the claims the SDK reads."""

from __future__ import annotations

import time

import jwt

from ..registry import COMPANY, USER, Context, endpoint
from ..store import Doc

API_VERSION = "2.31"
SERVER_VERSION = "2.0.0"
TOKEN_LIFETIME_S = 30 * 24 * 3600


def make_token(secret: str, expiration_sec: int | None = None) -> str:
    now = int(time.time())
    claims = {
        "user": USER["id"],
        "company": COMPANY,
        "role": "user",
        "iat": now,
        "exp": now + (expiration_sec or TOKEN_LIFETIME_S),
        "env": "local",
        "api_version": API_VERSION,
        "server_version": SERVER_VERSION,
        "server_build": "local",
        "feature_set": "basic",
        "identity": {"user": USER["id"], "company": COMPANY, "role": "user", "user_name": USER["name"]},
    }
    return jwt.encode(claims, secret, algorithm="HS256")


@endpoint("auth.login")
def login(ctx: Context, body: Doc) -> Doc:
    # credentials were checked by the app before dispatch
    return {"token": make_token(ctx.token_secret, body.get("expiration_sec"))}


@endpoint("users.get_current_user")
def get_current_user(ctx: Context, body: Doc) -> Doc:
    return {
        "user": {
            "id": USER["id"],
            "name": USER["name"],
            "company": {"id": COMPANY, "name": "Local"},
            "role": "user",
            "preferences": {},
        },
        "getting_started": {},
        "settings": {"max_download_items": 1000},
    }


@endpoint("users.get_all", "users.get_all_ex")
def users_get_all(ctx: Context, body: Doc) -> Doc:
    return {"users": [{"id": USER["id"], "name": USER["name"], "company": COMPANY}]}


@endpoint("users.get_preferences")
def get_preferences(ctx: Context, body: Doc) -> Doc:
    return {"preferences": {}}


@endpoint("users.get_vaults")
def get_vaults(ctx: Context, body: Doc) -> Doc:
    return {"enabled": False, "vaults": [], "total": 0}
