"""A fake OpenAI-compatible chat server on 127.0.0.1 for teacher tests, with scheduled faults.

The answer to a request is a pure function of (model, system message, prompt), so two runs
can be compared; with `upstream` (a base URL) it is a fault-injecting proxy instead, passing
"ok" requests on to a real server. `faults(prompt, attempt)` chooses what the n-th request (0-based) for a
prompt gets: "ok", "429", "500", "drop" (connection closed with no response), "malformed"
(200 with a non-JSON body), "length" (cut off by max_tokens), "filtered" (finish_reason content_filter), "empty" (no content). Every request is logged.
"""

import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer_for(model: str, system: str, prompt: str) -> str:
    return f"[{model}] ({system[:20]}) Let me explain step by step: {prompt[::-1]}"


class FakeOpenAIServer:
    def __init__(self, faults=lambda prompt, attempt: "ok", *, retry_after="0.2", delay_s=0.0,
                 expected_api_key=None, upstream=None):
        self.faults = faults
        self.retry_after = retry_after
        self.delay_s = delay_s
        self.expected_api_key = expected_api_key
        self.upstream = upstream
        self.log = []  # (monotonic arrival time, prompt, action)
        self._lock = threading.Lock()
        self._attempts = {}
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if server.expected_api_key is not None and \
                        self.headers.get("Authorization") != f"Bearer {server.expected_api_key}":
                    return self._send(401, {"error": {"message": "bad key"}})
                prompt = body["messages"][-1]["content"]
                system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
                with server._lock:
                    attempt = server._attempts.get(prompt, 0)
                    server._attempts[prompt] = attempt + 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.log.append((time.monotonic(), prompt, server.faults(prompt, attempt)))
                    action = server.log[-1][2]
                if server.delay_s:
                    time.sleep(server.delay_s)
                with server._lock:
                    server.in_flight -= 1
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "429":
                    return self._send(429, {"error": {"message": "rate limited"}},
                                      {"Retry-After": server.retry_after})
                if action == "500":
                    return self._send(500, {"error": {"message": "internal"}})
                if action == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Length", "400")
                    self.end_headers()
                    self.wfile.write(b'{"choices": [{"message": {"content": "half')
                    self.close_connection = True
                    return
                if action == "malformed":
                    return self._send_raw(200, b'{"choices": [{"message": ')
                if server.upstream:
                    forwarded = urllib.request.Request(f"{server.upstream}/chat/completions", json.dumps(body).encode(),
                                                       {"Content-Type": "application/json"})
                    with urllib.request.urlopen(forwarded) as r:
                        return self._send_raw(r.status, r.read())
                text = "" if action == "empty" else answer_for(body["model"], system, prompt)
                finish_reason = {"length": "length", "filtered": "content_filter"}.get(action, "stop")
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish_reason}],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                              "total_tokens": len(prompt.split()) + len(text.split())},
                })

            def _send(self, status, obj, headers=None):
                self._send_raw(status, json.dumps(obj).encode(), headers)

            def _send_raw(self, status, data, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def served(self, action="ok") -> list[str]:
        """Prompts that received `action`, one entry per request."""
        with self._lock:
            return [p for _, p, a in self.log if a == action]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()
