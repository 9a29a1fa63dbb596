"""`replay`: re-grades a run from its `answers.jsonl` with no teacher server present.

Answers are matched by the same content hash the `openai` teacher uses (model, template, story and
sampling settings), so a replayed run with the same config reproduces the original grades exactly; a
story missing from the log is unscorable, as it would be had the server failed.
"""

from __future__ import annotations

import os

from storyjax.teachers.openai_teacher import OpenAITeacher


class ReplayTeacher(OpenAITeacher):
    name = "replay"

    def __init__(self, cfg, source: str, log_path: str = ""):
        if not os.path.isfile(source):
            raise ValueError(f"teacher.replay_from={source!r} is not a file; point it at a run's answers.jsonl.")
        super().__init__(cfg, log_path)
        self.cache.update(self._load_cache(source))

    def check_reachable(self) -> None:
        """Replay needs no server."""

    async def _request(self, client, prompt: str, story: str) -> tuple[str, str, str]:
        return "", "not in the replay log", ""
