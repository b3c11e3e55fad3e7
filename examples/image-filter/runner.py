#!/usr/bin/env python3
"""The image-filter example: an upload page and a small job runner. The page uploads a PNG; the runner
applies a filter in the background and, when it is done, pushes {"type":"job-done","url":…} to the
uploader through Herald's HTTP API; the page, connected to Herald with the JS client, shows the result
the moment it arrives, without polling.

    scripts/run > herald.log &
    python3 examples/image-filter/runner.py --node-log herald.log

then open http://127.0.0.1:8090/. Standard library only (see pngfile.py for the PNG codec).
"""
import argparse
import json
import os
import queue
import secrets
import sys
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer

import pngfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from herald_example import ExampleHandler, development_credentials, issue_token, token_user  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_UPLOAD = 8 * 1024 * 1024


def sepia(rows):
    """The filter: sepia tone, pixel by pixel."""
    out = []
    for row in rows:
        line = bytearray(len(row))
        for i in range(0, len(row), 3):
            r, g, b = row[i], row[i + 1], row[i + 2]
            line[i] = min(255, int(0.393 * r + 0.769 * g + 0.189 * b))
            line[i + 1] = min(255, int(0.349 * r + 0.686 * g + 0.168 * b))
            line[i + 2] = min(255, int(0.272 * r + 0.534 * g + 0.131 * b))
        out.append(bytes(line))
    return out


class Runner:
    def __init__(self, args):
        self.args = args
        self.jobs = queue.Queue(maxsize=64)
        self.results = {}  # job id → PNG bytes
        self.lock = threading.Lock()

    def work(self):
        while True:
            job, user, data = self.jobs.get()
            try:
                width, height, rows = pngfile.read(data)
                result = pngfile.write(width, height, sepia(rows))
                with self.lock:
                    self.results[job] = result
                self.push(user, {"type": "job-done", "job": job, "url": f"{self.args.public_url}/results/{job}.png",
                                 "width": width, "height": height})
            except pngfile.PNGError as error:
                self.push(user, {"type": "job-failed", "job": job, "error": str(error)})
            except Exception as error:  # the runner keeps serving; the uploader is told
                print(f"job {job} failed: {error}", file=sys.stderr)
                self.push(user, {"type": "job-failed", "job": job, "error": "the filter failed"})

    def push(self, user, data):
        """POST /v1/push: answered once Kafka holds the message, which reaches every node."""
        body = json.dumps({"to": {"users": [user]}, "data": data, "id": f"{data['job']}-{data['type']}"}).encode()
        request = urllib.request.Request(
            f"{self.args.herald_api}/v1/push", data=body, method="POST",
            headers={"Authorization": f"Bearer {self.args.api_key}", "Content-Type": "application/json"},
        )
        for attempt in range(5):
            try:
                with urllib.request.urlopen(request, timeout=15) as response:
                    print(f"pushed {data['type']} of {data['job']} to {user}: {response.status}", flush=True)
                    return
            except OSError as error:  # 503 and connection errors: the same id makes a retry safe
                print(f"push of {data['job']} failed ({error}); retrying", file=sys.stderr, flush=True)
                time.sleep(0.5 * (attempt + 1))


def handler(runner):
    page = open(os.path.join(HERE, "index.html"), encoding="utf-8").read()

    class Handler(ExampleHandler):
        def do_GET(self):
            if self.path == "/":
                html = page.replace("HERALD_PUBLIC_URL", runner.args.herald_public)
                return self.send(200, html, "text/html; charset=utf-8")
            if self.path == "/token":
                # A demo sign-in: each page is a new uploader. A real backend issues the token for its user.
                user = "uploader-" + secrets.token_hex(4)
                return self.send(200, json.dumps({"user": user, "token": issue_token(runner.args.jwt_secret, user)}))
            if self.path.startswith("/results/") and self.path.endswith(".png"):
                with runner.lock:
                    result = runner.results.get(self.path[len("/results/"):-len(".png")])
                if result is not None:
                    return self.send(200, result, "image/png")
            self.send(404, json.dumps({"error": "not found"}))

        def do_POST(self):
            if self.path != "/upload":
                return self.send(404, json.dumps({"error": "not found"}))
            user = token_user(runner.args.jwt_secret, self.headers.get("Authorization", "").removeprefix("Bearer "))
            if user is None:
                return self.send(401, json.dumps({"error": "a valid token is required"}))
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_UPLOAD:
                return self.send(413, json.dumps({"error": f"the upload must be 1 to {MAX_UPLOAD} bytes"}))
            data = self.rfile.read(length)
            job = secrets.token_hex(6)
            try:
                runner.jobs.put_nowait((job, user, data))
            except queue.Full:
                return self.send(503, json.dumps({"error": "too many jobs waiting; try again"}))
            self.send(202, json.dumps({"job": job}))

    return Handler


def main():
    parser = argparse.ArgumentParser(description="The image-filter example's upload page and job runner.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("EXAMPLE_PORT", "8090")))
    parser.add_argument("--jwt-secret", default=os.environ.get("HERALD_JWT_SECRET"), help="the node's HS256 secret")
    parser.add_argument("--api-key", default=os.environ.get("HERALD_API_KEY"), help="an API key of the node")
    parser.add_argument("--node-log", help="the output of scripts/run (herald serve --dev): its random secret and API key are read from it")
    parser.add_argument("--herald-api", default="http://127.0.0.1:8081", help="the node's internal port")
    parser.add_argument("--herald-public", default="http://127.0.0.1:8080", help="the node's public port, as the browser reaches it")
    args = parser.parse_args()
    if args.node_log:
        args.jwt_secret, args.api_key = development_credentials(args.node_log)
    if not args.jwt_secret or not args.api_key:
        parser.error("--jwt-secret and --api-key are required (the node's secret and one of its API keys)")
    runner = Runner(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(runner))
    args.public_url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=runner.work, daemon=True).start()
    print(f"image-filter example on {args.public_url}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
