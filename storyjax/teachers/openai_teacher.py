"""`openai`: a teacher LLM behind any OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama).

Each story is one request built from our rubric template (`templates/rubric_prompt.txt`, or your own
with `{prompt}` and `{story}` placeholders). Requests run concurrently (asyncio) up to
`teacher.openai.concurrency`, each with a timeout and retries with exponential backoff on connection errors,
timeouts, 429 and 5xx; `cancel()` (SIGTERM) abandons a batch within a tenth of a second. The response is
checked before it is read, and the answer must be exactly three integers 0–3; anything else is
unscorable (NaN), never a default score. Optional constrained decoding makes well-formed answers likely
where the server supports it.

Every answer (and every failure, with the first bytes of an unusable body) is appended to
`answers.jsonl`; well-formed answers alone are also the content-hash cache, so a resumed run or a `replay`
teacher gets the same grades without the server, and a fixed server is asked again for the rest.
The API key is read from the environment variable named by `teacher.openai.api_key_env` and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import threading
import time

import httpx
import numpy as np
from absl import logging

from storyjax.teachers.answer_log import answer_records
from storyjax.teachers.kinds.openai_kind import CONSTRAINTS
from storyjax.teachers.base import Grades, GradingCancelled, Teacher, scored
from storyjax.teachers.prompt_templates import load_template

_ANSWER = re.compile(r"\s*([0-3])\s+([0-3])\s+([0-3])\s*")
BODY_HEAD = 200      # bytes of an unusable response body kept in the answer log
CANCEL_POLL_S = 0.1  # how often grading looks for a cancellation (SIGTERM)


def parse_answer(text: str) -> np.ndarray:
    """Exactly three integers 0–3 separated by whitespace → float32[3]; anything else → NaN[3]."""
    m = _ANSWER.fullmatch(text or "")
    return np.asarray([float(g) for g in m.groups()], np.float32) if m else np.full(3, np.nan, np.float32)


class OpenAITeacher(Teacher):
    name = "openai"

    def __init__(self, cfg, log_path: str = ""):
        """`cfg`: a parsed teacher section (GraderSettings); the server's settings are `cfg.openai.*`, as on the
        command line (`teacher.openai.base_url`)."""
        server = cfg.openai
        if server.constrain not in CONSTRAINTS:
            raise ValueError(f"teacher.openai.constrain={server.constrain!r}: choose one of {sorted(CONSTRAINTS)}.")
        for field in ("concurrency", "timeout_s"):
            if not getattr(server, field) > 0:
                raise ValueError(f"teacher.openai.{field}={getattr(server, field)!r} must be positive.")
        if server.retries < 0 or server.backoff_s < 0:
            raise ValueError(f"teacher.openai.retries={server.retries} and teacher.openai.backoff_s={server.backoff_s} must "
                             "be >= 0.")
        self.cfg = cfg
        self.template = load_template(cfg.template)
        self.base_url = cfg.openai.base_url.rstrip("/")
        key = os.environ.get(cfg.openai.api_key_env, "") if cfg.openai.api_key_env else ""
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.log_path = log_path
        self.cache = self._load_cache(log_path)
        self.failures = 0          # requests that got no answer (transport errors, HTTP errors, bad bodies)
        self.last_problem = ""     # the newest status other than "ok"/"cached", for a health stop's message
        self._cancel = threading.Event()

    # -- setup -------------------------------------------------------------------------------------------
    def check_reachable(self) -> None:
        """Fails before any work if the server does not answer (a clear error beats 1,000 NaN batches)."""
        try:
            r = httpx.get(f"{self.base_url}/models", headers=self.headers, timeout=min(self.cfg.openai.timeout_s, 10.0))
            r.raise_for_status()
        except httpx.HTTPError as e:
            raise ValueError(f"teacher.openai.base_url={self.base_url} is unreachable ({type(e).__name__}: {e}). Start "
                             "the "
                             "server (see launch/) or fix --config.teacher.openai.base_url; nothing was run.") from None

    @staticmethod
    def _load_cache(path: str) -> dict:
        """Well-formed answers of a run's answer log and of its per-host siblings (see answer_logs). Only
        answers that parse count: a log written before answers were validated may hold an "ok" that is not."""
        cache = {}
        for rec in answer_records(path):
            answer = rec.get("answer")
            if rec.get("status") == "ok" and isinstance(answer, str) and not np.isnan(parse_answer(answer)).any():
                cache[rec["key"]] = answer
        return cache

    # -- cancellation (SIGTERM) ----------------------------------------------------------------------------
    def cancel(self) -> None:
        """Asks a grade_batch in progress (in another thread, or the signal handler's) to stop at once: the
        requests in flight are abandoned, no retry starts, and grade_batch raises GradingCancelled."""
        self._cancel.set()

    # -- one request ---------------------------------------------------------------------------------------
    def _messages(self, prompt: str, story: str) -> list:
        # A chat API cannot portably start the answer for the model: the answer's lead closes the question.
        return [{"role": "user", "content": self.template.format(prompt=prompt, story=story, answer="")}]

    def _body(self, prompt: str, story: str) -> dict:
        body = {"model": self.cfg.openai.model, "messages": self._messages(prompt, story),
                "temperature": self.cfg.temperature, "max_tokens": self.cfg.openai.max_tokens}
        if self.cfg.seed >= 0:
            body["seed"] = self.cfg.seed
        body.update(CONSTRAINTS[self.cfg.openai.constrain])
        return body

    def key(self, prompt: str, story: str) -> str:
        return hashlib.sha256(json.dumps(self._body(prompt, story), sort_keys=True).encode()).hexdigest()

    async def _request(self, client: httpx.AsyncClient, prompt: str, story: str) -> tuple[str, str, str]:
        """(answer text, status, first bytes of an unusable body); retries transient failures (transport
        errors, timeouts, 429, 5xx) with exponential backoff. Statuses: "ok", "unparsable" (an answer that
        is not three grades), "bad response: ..." (not retried), "failed after N attempts: ..."."""
        error, head = "", ""
        for attempt in range(self.cfg.openai.retries + 1):
            if attempt:
                await asyncio.sleep(self.cfg.openai.backoff_s * 2 ** (attempt - 1))
            try:
                r = await client.post(f"{self.base_url}/chat/completions", json=self._body(prompt, story))
            except (httpx.TimeoutException, httpx.TransportError) as e:
                error = type(e).__name__
                continue
            head = r.text[:BODY_HEAD]
            if r.status_code == 429 or r.status_code >= 500:
                error = f"HTTP {r.status_code}"
                continue
            if r.status_code != 200:
                return "", f"bad response: HTTP {r.status_code}", head
            answer, problem = answer_of(r)
            if problem:
                return "", f"bad response: {problem}", head
            return answer, "ok" if not np.isnan(parse_answer(answer)).any() else "unparsable", ""
        return "", f"failed after {self.cfg.openai.retries + 1} attempts: {error}", head

    async def _grade_one(self, client, limit: asyncio.Semaphore, prompt: str, story: str) -> tuple[str, str]:
        key = self.key(prompt, story)
        if key in self.cache:
            return self.cache[key], "cached"
        async with limit:
            answer, status, head = await self._request(client, prompt, story)
        if status == "ok":
            self.cache[key] = answer  # only well-formed answers: a fixed server is asked again for the rest
        else:
            self.last_problem = status + (f" (body: {head!r})" if head else "")
            self.failures += status != "unparsable"
        if self.log_path:
            record = {"time": time.time(), "key": key, "status": status, "answer": answer,
                      "model": self.cfg.openai.model, "prompt": prompt, "story": story}
            if head:
                record["body_head"] = head
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return answer, status

    async def _grade_all(self, prompts: list, stories: list) -> list[tuple[str, str]]:
        limit = asyncio.Semaphore(self.cfg.openai.concurrency)
        async with httpx.AsyncClient(headers=self.headers, timeout=self.cfg.openai.timeout_s) as client:
            jobs = asyncio.gather(*(self._grade_one(client, limit, p, s) for p, s in zip(prompts, stories)))
            while not self._cancel.is_set():
                done, _ = await asyncio.wait({jobs}, timeout=CANCEL_POLL_S)
                if done:
                    return jobs.result()
            jobs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await jobs
        raise GradingCancelled("grading was cancelled (SIGTERM); the batch is neither charged nor applied.")

    def grade_batch(self, prompts: list, stories: list) -> Grades:
        if self._cancel.is_set():
            raise GradingCancelled("grading was cancelled (SIGTERM) before this batch.")
        results = asyncio.run(self._grade_all(list(prompts), list(stories)))
        answers = [a for a, _ in results]
        scores = np.stack([parse_answer(a) for a in answers]) if answers else np.zeros((0, 3), np.float32)
        bad = int((~scored(scores)).sum())
        if bad:
            logging.warning("teacher: %d of %d answers unscorable (statuses: %s)", bad, len(answers),
                            sorted({s for _, s in results if s not in ("ok", "cached")}))
        return Grades(scores.astype(np.float32), answers)


def answer_of(response: httpx.Response) -> tuple[str, str]:
    """(message content, "") of a chat-completions body, or ("", what is wrong with it)."""
    try:
        body = response.json()
    except ValueError:
        return "", "body is not JSON"
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return "", "no choices[0].message.content in the body"
    if content is None:
        return "", "choices[0].message.content is null"
    if not isinstance(content, str):
        return "", f"choices[0].message.content is a {type(content).__name__}, not text"
    return content, ""


def reachable_teacher(cfg, log_path: str = "") -> OpenAITeacher:
    """The teacher of an `openai` section, its server asked once before any other work (not there: refused)."""
    teacher = OpenAITeacher(cfg, log_path)
    teacher.check_reachable()
    return teacher
