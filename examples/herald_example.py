"""What the examples share: a demo backend's HS256 tokens, and the secret and API key of a development
node (scripts/run prints them). Standard library only."""
import base64
import hashlib
import hmac
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def issue_token(secret, user, ttl=3600):
    """An HS256 JWT for `user`, as the app's backend would issue one (docs/protocol.md §2)."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": user, "exp": int(time.time()) + ttl}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(signature)}"


def token_user(secret, token):
    """The `sub` of a token signed with `secret` that has not expired; None otherwise."""
    try:
        header, claims, signature = token.split(".")
        expected = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(b64url(expected), signature):
            return None
        payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        return payload["sub"] if payload.get("exp", 0) > time.time() else None
    except (ValueError, KeyError, TypeError):
        return None


def development_credentials(path, patience=900):
    """The secret and API key a --dev node printed (scripts/run builds first: that may take minutes)."""
    deadline = time.time() + patience
    while True:
        try:
            text = open(path, encoding="utf-8", errors="replace").read()
        except FileNotFoundError:
            text = ""
        secret = re.search(r"HERALD_JWT_SECRET=(\S+)", text)
        key = re.search(r"HERALD_API_KEYS=(\S+)", text)
        if secret and key:
            return secret.group(1), key.group(1)
        if time.time() > deadline:
            sys.exit(f"{path} shows no HERALD_JWT_SECRET= and HERALD_API_KEYS= lines: is scripts/run writing to it?")
        time.sleep(0.2)


class ExampleHandler(BaseHTTPRequestHandler):
    """The examples' request handler: uncached answers, and no access log on the terminal."""

    def send(self, status, body, content_type="application/json"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass
