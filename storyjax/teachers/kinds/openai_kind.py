"""An OpenAI-compatible server (vLLM, llama.cpp, Ollama) serving an instruct model: its own section holds
where it is and how it is asked."""

from __future__ import annotations

import dataclasses

from storyjax.setting_checks import count, finite
from storyjax.teachers.kinds.kind import Kind, model_name

# Constrained decoding, per server family: the answer grammar "d d d" with d in 0..3.
_REGEX = r"[0-3] [0-3] [0-3]"
CONSTRAINTS = {
    "none": {},
    "vllm": {"structured_outputs": {"regex": _REGEX}},
    "vllm_legacy": {"guided_regex": _REGEX},
    "llama_cpp": {"grammar": 'root ::= [0-3] " " [0-3] " " [0-3]'},
}


@dataclasses.dataclass(frozen=True)
class OpenAISettings:
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never logged
    max_tokens: int = 6                  # the paper's teacher answers three digits
    constrain: str = "none"              # none | vllm | vllm_legacy | llama_cpp: the server's grammar for them
    concurrency: int = 16
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 1.0


RULES = (
    ("openai", "base_url", lambda x: str(x).startswith(("http://", "https://")),
     "give the server's URL, e.g. http://127.0.0.1:8000/v1"),
    ("openai", "constrain", lambda x: x in CONSTRAINTS, f"choose one of {sorted(CONSTRAINTS)}"),
    ("openai", "concurrency", lambda x: count(x, 1), "use 1 or more requests"),
    ("openai", "timeout_s", lambda x: finite(x) and x > 0, "use a positive number of seconds"),
    ("openai", "retries", lambda x: count(x, 0), "use 0 or more"),
    ("openai", "backoff_s", lambda x: finite(x) and x >= 0, "use 0 or more seconds"),
    ("openai", "max_tokens", lambda x: count(x, 1), "use 1 or more (paper: 6)"),
)


def identity(cfg) -> set:
    server = cfg.openai
    return {f"server {str(server.base_url).rstrip('/')} model {server.model}", f"model {model_name(server.model)}"}


KIND = Kind(
    name="openai", build="storyjax.teachers.openai_teacher:reachable_teacher", section="openai",
    settings=OpenAISettings, reads=("openai",), rules=RULES,
    grades_alike=("base_url", "model", "template", "temperature", "constrain"), identity=identity,
    model=lambda cfg: cfg.openai.model,
    needs=lambda cfg, key: f"OpenAI-compatible server {cfg.openai.base_url} serving {cfg.openai.model}",
    fix_dead=lambda cfg, key: (f"the server at {key}.openai.base_url={cfg.openai.base_url} serving "
                               f"{key}.openai.model={cfg.openai.model}, and the server's log"))
