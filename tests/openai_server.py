"""A real local HTTP server speaking the OpenAI chat-completions protocol, with scripted faults.

Each story's fate is a function of its text (sha256), so a run is reproducible: most stories get three
integers, some get HTTP 500, garbage, the wrong number of scores, or a reply slower than the client's
timeout. Stories containing FAIL500 / GARBAGE / TWO / HANG / NUMBER (content is a JSON number) / NOTJSON
(an HTML body) / UNAUTH (HTTP 401) get that fault explicitly. Setting `force` to one of those faults
("500", "hang", ...) gives it to every request, and `force = None` heals the server.
"""

import hashlib
import http.server
import json
import threading
import time


class FakeTeacherServer:
    def __init__(self, hang_s=3.0, force=None):
        self.hang_s = hang_s
        self.force = force
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, payload):
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except BrokenPipeError:
                    pass  # the client gave up (its timeout): that is the drill

            def do_GET(self):
                if self.path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                text = body["messages"][-1]["content"]
                # the story exactly: the line(s) between the template's story label and its answer instruction
                story = text.split("The student's story")[-1].split(":\n", 1)[-1]
                story = story.split("Answer with the three grades")[0].strip()
                fault = server.force or server.fault(story)
                if fault == "500":
                    return self._send(500, {"error": "internal"})
                if fault == "401":
                    return self._send(401, {"error": {"message": "Incorrect API key provided"}})
                if fault == "notjson":
                    body = b"<html><body>502 Bad Gateway from the proxy</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if fault == "hang":
                    time.sleep(server.hang_s)
                answer = {"garbage": "What a lovely story!", "two": "2 1", "number": 7}.get(fault)
                if answer is None:
                    digest = hashlib.sha256(story.encode()).digest()
                    answer = " ".join(str(b % 4) for b in digest[:3])
                self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": answer}}]})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def fault(story):
        for marker, fault in (("FAIL500", "500"), ("GARBAGE", "garbage"), ("TWO", "two"), ("HANG", "hang"),
                              ("NUMBER", "number"), ("NOTJSON", "notjson"), ("UNAUTH", "401")):
            if marker in story:
                return fault
        h = int(hashlib.sha256(story.encode()).hexdigest(), 16) % 20
        return {0: "500", 1: "garbage", 2: "two", 3: "hang"}.get(h, "ok")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # serve for a manual drill: python tests/openai_server.py
    with FakeTeacherServer() as s:
        print(s.url, flush=True)
        while True:
            time.sleep(3600)
