#!/usr/bin/env python3
"""The live-comments example: a video page whose comments are a Herald channel, `video:ID`. Signed-in
viewers post comments into the channel from the page (a client publish); anonymous viewers read them
live, and every page that opens shows the last 50 from the channel's history first. This server is
only the app's backend: it serves the page and signs tokens for the demo sign-in. Comments never pass
through it: they go from the page to Herald, through Kafka, to every viewer on every node.

    scripts/run --namespaces 'video subscribe=anonymous publish history=50' > herald.log &
    python3 examples/live-comments/server.py --node-log herald.log

then open http://127.0.0.1:8091/ in two windows, sign in in one, and comment. Standard library only.
"""
import argparse
import json
import os
import re
import sys
import urllib.parse
from http.server import ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from herald_example import ExampleHandler, development_credentials, issue_token  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# A viewer's name is their user id in this demo: what the page shows next to their comments.
NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
VIDEO = re.compile(r"[A-Za-z0-9_-]{1,64}")


def handler(args):
    page = open(os.path.join(HERE, "index.html"), encoding="utf-8").read()

    class Handler(ExampleHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/":
                video = query.get("video", ["big-buck-bunny"])[0]
                if not VIDEO.fullmatch(video):
                    return self.send(400, json.dumps({"error": "video must be 1 to 64 letters, digits, - or _"}))
                html = page.replace("HERALD_PUBLIC_URL", args.herald_public).replace("VIDEO_ID", video)
                return self.send(200, html, "text/html; charset=utf-8")
            if url.path == "/token":
                # A demo sign-in: whoever types a name is that viewer. A real backend signs the token
                # for the user its own session says is signed in.
                name = query.get("name", [""])[0]
                if not NAME.fullmatch(name):
                    return self.send(400, json.dumps({"error": "a name is 1 to 32 letters, digits, - or _"}))
                return self.send(200, json.dumps({"user": name, "token": issue_token(args.jwt_secret, name, ttl=args.token_seconds)}))
            self.send(404, json.dumps({"error": "not found"}))

    return Handler


def main():
    parser = argparse.ArgumentParser(description="The live-comments example's page and demo sign-in.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("EXAMPLE_PORT", "8091")))
    parser.add_argument("--jwt-secret", default=os.environ.get("HERALD_JWT_SECRET"), help="the node's HS256 secret")
    parser.add_argument("--node-log", help="the output of scripts/run (herald serve --dev): its random secret is read from it")
    parser.add_argument("--herald-public", default="http://127.0.0.1:8080", help="the node's public port, as the browser reaches it")
    parser.add_argument("--token-seconds", type=int, default=3600, help="lifetime of the tokens it signs (the page refreshes them in-band)")
    args = parser.parse_args()
    if args.node_log:
        args.jwt_secret, _ = development_credentials(args.node_log)
    if not args.jwt_secret:
        parser.error("--jwt-secret (the node's secret) or --node-log is required")
    if not 10 <= args.token_seconds <= 86400:
        parser.error("--token-seconds must be 10 to 86400")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(args))
    print(f"live-comments example on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
