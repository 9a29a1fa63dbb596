"""`openai`: a teacher LLM behind any OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama).

Each story is one request built from our rubric template (`templates/rubric_prompt.txt`, or your own
with `{prompt}` and `{story}` placeholders). Requests run concurrently up to `teacher.concurrency`, each
with a timeout and retries with exponential backoff on connection errors, timeouts, 429 and 5xx. The
answer must be exactly three integers 0–3; anything else is unscorable (NaN), never a default score.
Optional constrained decoding makes well-formed answers likely where the server supports it.

Every answer (and every failure) is appended to `answers.jsonl`; successful answers are also the
content-hash cache, so a resumed run or a `replay` teacher gets the same grades without the server.
The API key is read from the environment variable named by `teacher.api_key_env` and never logged.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import threading
import time

import httpx
import numpy as np
from absl import logging

from storyjax.teachers.base import Grades, Teacher

_ANSWER = re.compile(r"\s*([0-3])\s+([0-3])\s+([0-3])\s*")
DEFAULT_TEMPLATE = os.path.join(os.path.dirname(__file__), "templates", "rubric_prompt.txt")
# Constrained decoding, per server family: the answer grammar "d d d" with d in 0..3.
_REGEX = r"[0-3] [0-3] [0-3]"
CONSTRAINTS = {
    "none": {},
    "vllm": {"structured_outputs": {"regex": _REGEX}},
    "vllm_legacy": {"guided_regex": _REGEX},
    "llama_cpp": {"grammar": 'root ::= [0-3] " " [0-3] " " [0-3]'},
}


def parse_answer(text: str) -> np.ndarray:
    """Exactly three integers 0–3 separated by whitespace → float32[3]; anything else → NaN[3]."""
    m = _ANSWER.fullmatch(text or "")
    return np.asarray([float(g) for g in m.groups()], np.float32) if m else np.full(3, np.nan, np.float32)


def load_template(path: str) -> str:
    path = path or DEFAULT_TEMPLATE
    if not os.path.isfile(path):
        raise ValueError(f"teacher.template={path!r} does not exist; give a text file with {{prompt}} and {{story}}.")
    with open(path) as f:
        template = f.read()
    missing = [p for p in ("{story}", "{prompt}") if p not in template]
    if missing:
        raise ValueError(f"teacher.template {path} lacks the placeholder(s) {missing}; the teacher would never "
                         "see the story. Add them where the opening line and the story belong.")
    return template


class OpenAITeacher(Teacher):
    name = "openai"

    def __init__(self, cfg, log_path: str = ""):
        if cfg.constrain not in CONSTRAINTS:
            raise ValueError(f"teacher.constrain={cfg.constrain!r}: choose one of {sorted(CONSTRAINTS)}.")
        self.cfg = cfg
        self.template = load_template(cfg.template)
        self.base_url = cfg.base_url.rstrip("/")
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(headers=headers, timeout=cfg.timeout_s)
        self.log_path = log_path
        self.cache = self._load_cache(log_path)
        self._lock = threading.Lock()
        self.failures = 0

    # -- setup -------------------------------------------------------------------------------------------
    def check_reachable(self) -> None:
        """Fails before any work if the server does not answer (a clear error beats 1,000 NaN batches)."""
        try:
            r = self.client.get(f"{self.base_url}/models", timeout=min(self.cfg.timeout_s, 10.0))
            r.raise_for_status()
        except httpx.HTTPError as e:
            raise ValueError(f"teacher.base_url={self.base_url} is unreachable ({type(e).__name__}: {e}). Start the "
                             "server (see launch/) or fix --config.teacher.base_url; nothing was run.") from None

    @staticmethod
    def _load_cache(path: str) -> dict:
        """Successful answers of a run's answer log and of its per-host siblings (see answer_logs)."""
        from storyjax.teachers import answer_logs
        cache = {}
        for log in answer_logs(path) if path else []:
            if os.path.exists(log):
                with open(log) as f:
                    for line in f:
                        rec = json.loads(line)
                        if rec.get("status") == "ok":
                            cache[rec["key"]] = rec["answer"]
        return cache

    # -- one request ---------------------------------------------------------------------------------------
    def _messages(self, prompt: str, story: str) -> list:
        return [{"role": "user", "content": self.template.format(prompt=prompt, story=story)}]

    def _body(self, prompt: str, story: str) -> dict:
        body = {"model": self.cfg.model, "messages": self._messages(prompt, story),
                "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
        if self.cfg.seed >= 0:
            body["seed"] = self.cfg.seed
        body.update(CONSTRAINTS[self.cfg.constrain])
        return body

    def key(self, prompt: str, story: str) -> str:
        return hashlib.sha256(json.dumps(self._body(prompt, story), sort_keys=True).encode()).hexdigest()

    def _request(self, prompt: str, story: str) -> tuple[str, str]:
        """Returns (answer text, status); retries transient failures with exponential backoff."""
        error = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            try:
                r = self.client.post(f"{self.base_url}/chat/completions", json=self._body(prompt, story))
                if r.status_code == 429 or r.status_code >= 500:
                    error = f"HTTP {r.status_code}"
                    continue
                r.raise_for_status()
                return r.json()["choices"][0]["message"]["content"] or "", "ok"
            except (httpx.TimeoutException, httpx.TransportError) as e:
                error = type(e).__name__
            except (httpx.HTTPStatusError, KeyError, IndexError, TypeError, ValueError) as e:
                return "", f"bad response: {type(e).__name__}: {str(e)[:200]}"  # not transient
        return "", f"failed after {self.cfg.retries + 1} attempts: {error}"

    def _grade_one(self, prompt: str, story: str) -> tuple[str, str]:
        key = self.key(prompt, story)
        if key in self.cache:
            return self.cache[key], "cached"
        answer, status = self._request(prompt, story)
        with self._lock:
            if status == "ok":
                self.cache[key] = answer
            else:
                self.failures += 1
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps({"time": time.time(), "key": key, "status": status, "answer": answer,
                                        "model": self.cfg.model, "prompt": prompt, "story": story}) + "\n")
        return answer, status

    def grade_batch(self, prompts: list, stories: list) -> Grades:
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            results = list(pool.map(self._grade_one, prompts, stories))
        answers = [a for a, _ in results]
        scores = np.stack([parse_answer(a) for a in answers]) if answers else np.zeros((0, 3), np.float32)
        bad = int(np.isnan(scores).any(1).sum())
        if bad:
            logging.warning("teacher: %d of %d answers unscorable (statuses: %s)", bad, len(answers),
                            sorted({s for _, s in results if s not in ("ok", "cached")}) or ["unparsable"])
        return Grades(scores.astype(np.float32), answers)

    def close(self) -> None:
        self.client.close()
