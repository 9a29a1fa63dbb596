"""`jax`: an instruct LLM (Llama / SmolLM2 / Qwen2.5 / Gemma-3, from a Hugging Face folder or a GGUF file)
grading stories inside the program, on the student's devices, with the grades read from its logits.

The prompt is the `openai` teacher's rubric, wrapped in the model's own chat template. Everything before
`{story}` (chat header, rubric, opening line) is the same for every story of an opening: its K/V are
computed once and cached, and every story attends to that single copy (see `teachers.lm`). Each story's
own tokens (its text, the rest of the template, the assistant header) run as right-padded micro-batches of
stories of similar length (`micro_batches`), each rounded up to a bucket of rows and tokens, so a run
compiles a handful of shapes and ragged stories are not padded to the longest.

The answer "d d d" is teacher-forced: at each digit position the teacher's distribution over the tokens
for 0..3 is read off; `grading=expected` gives its mean (renormalised over 0..3), `greedy` the most
likely digit, `sample` a digit drawn at `temperature`; the next position conditions on the most likely
(or the sampled) digit. The probability mass on 0..3 is recorded per position: below `min_digit_mass`
the teacher was not answering the question, and the story is unscorable. Nothing is parsed, so nothing
fails to parse.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from storyjax import memory_plan
from storyjax.profiling import planned_bytes
from storyjax.teachers import lm_weights
from storyjax.teachers.lm_batching import BUCKET, micro_batches, padded_shape
from storyjax.teachers.lm_passes import PREFIX_BUCKET, passes, placer, resolve_cpu_kernels, teacher_mesh
from storyjax.teachers.kinds.jax_kind import GRADINGS
from storyjax.teachers.base import Grades, GradingCancelled, Preferences, Teacher
from storyjax.teachers.prompt_templates import ANSWER, PAIRWISE_TEMPLATE, load_template

_STORY = "\u2063<storyjax-story>\u2063"  # where the story goes in the rendered chat prompt
CPU_MICRO = 32                            # stories a pass on CPU where teacher.jax.batch_size=0
PREFIX_CACHE = 4                          # openings whose prefix K/V are kept


class AnswerFormat(NamedTuple):
    """How the answer "d d d" tokenizes: the token ids with digits at `digit_at`, and per digit position
    the ids of the tokens for 0, 1, 2, 3 there (e.g. "1" first, then " 1" where a vocabulary merges the
    space into the digit)."""
    ids: tuple
    digit_at: tuple
    candidates: tuple  # 3 × 4 ids


def answer_format(tok) -> AnswerFormat:
    encode = lambda s: tok.encode(s, add_special_tokens=False)
    base = encode("0 0 0")
    digit_at, candidates = [], []
    for k in range(3):
        ids_d, where = [], set()
        for d in range(4):
            digits = ["0"] * 3
            digits[k] = str(d)
            ids = encode(" ".join(digits))
            if len(ids) != len(base):
                raise ValueError(f"the teacher's tokenizer splits the answer {' '.join(digits)!r} into {len(ids)} "
                                 f"tokens but '0 0 0' into {len(base)}: grades cannot be read off its logits.")
            diff = [i for i, (a, b) in enumerate(zip(ids, base)) if a != b]
            if len(diff) > 1:
                raise ValueError(f"the teacher's tokenizer merges the digits of {' '.join(digits)!r} with their "
                                 "neighbours: grades cannot be read off its logits.")
            where.update(diff)
            ids_d.append(ids)
        if len(where) != 1:
            raise ValueError("the teacher's tokenizer gives no single token per grade digit.")
        j = where.pop()
        digit_at.append(j)
        candidates.append(tuple(ids[j] for ids in ids_d))
    if any(len(set(c)) != 4 for c in candidates) or sorted(digit_at) != digit_at:
        raise ValueError("the teacher's tokenizer does not give four distinct digit tokens per grade.")
    return AnswerFormat(tuple(base), tuple(digit_at), tuple(candidates))


class PromptParts(NamedTuple):
    prefix: str   # the shared text: chat header, rubric, opening line
    tail: str     # after the story: the rest of the rubric, the assistant header


def prompt_parts(tok, template: str, prompt: str) -> PromptParts:
    question, _, lead = template.partition(ANSWER)
    lead = lead.split("\n")[0]  # the rest of its line (a trailing space too) opens the model's own answer
    content = question.rstrip("\n").format(prompt=prompt, story=_STORY)
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                       add_generation_prompt=True) + lead
    else:
        text = content + "\n" + lead
    prefix, tail = text.split(_STORY)
    return PromptParts(prefix, tail)


class JaxTeacher(Teacher):
    name = "jax"

    def __init__(self, cfg, log_path: str = ""):
        """`cfg`: a parsed teacher section (GraderSettings); its own settings are `cfg.jax.*`, as on the command
        line (`teacher.jax.grading`)."""
        own = cfg.jax
        grading = own.grading
        if grading not in GRADINGS:
            raise ValueError(f"teacher.jax.grading={grading!r}: choose one of {GRADINGS}.")
        self.cfg, self.grading = cfg, grading
        self.min_mass = float(own.min_digit_mass)
        self.micro = int(own.batch_size)  # 0: planned per opening (_planned_micro)
        self.memory_gb = float(own.memory_gb)
        self._plans: dict = {}
        self.share_opening = True  # the opening's tokens join the shared prefix (_shared_opening)
        if self.micro < 0 or not 0.0 <= self.min_mass <= 1.0:
            raise ValueError(f"teacher.jax.batch_size={self.micro} must be >= 0 and teacher.jax.min_digit_mass="
                             f"{self.min_mass} in 0..1.")
        self.template = load_template(cfg.template)
        self.pairwise_template = load_template(own.pairwise_template or PAIRWISE_TEMPLATE)
        kernels = resolve_cpu_kernels(own.cpu_kernels)  # settings first, then seconds of loading
        self.mesh = teacher_mesh(int(own.devices), int(own.model_parallel))
        platform = self.mesh.devices.flat[0].platform
        self.kernels = kernels if platform == "cpu" else platform
        dtype = own.compute_dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
        t0 = time.time()
        self.lm_cfg, self.params, self.tok = lm_weights.load(own.weights, dtype, placer(self.mesh))
        self.passes = passes(platform, kernels)
        self.memory_logged = False
        self.answer = answer_format(self.tok)
        self.weights_id = _weights_id(own.weights)
        self.log_path = log_path
        self._prefixes: collections.OrderedDict = collections.OrderedDict()
        self._rng = jax.random.key(int(cfg.seed))
        self.truncated = 0
        self.last_problem = ""
        logging.info("JAX teacher: %s (%s, %d layers, %s, %s kernels) loaded in %.1f s; grades read as %s.",
                     own.weights, self.lm_cfg.family, self.lm_cfg.num_layers, dtype, self.kernels, time.time() - t0,
                     grading)
        if grading == "expected":
            logging.warning("grading='expected': as a training teacher it rewards the student with its output "
                            "distribution, which BabyLM's rules forbid in a run that claims compliance (use 'greedy' "
                            "or 'sample' there); as a judge of held-out stories it is allowed.")

    # -- pieces ------------------------------------------------------------------------------------------
    def _prefix_ids(self, prompt: str, template: str, opening: tuple = ()) -> tuple:
        """(the shared prefix's token ids, the template's tail ids) of an opening under a template (the
        rubric's or the pairwise one), the prefix followed by `opening` (token ids every story starts with)."""
        parts = prompt_parts(self.tok, template, prompt)
        ids = self.tok.encode(parts.prefix, add_special_tokens=False)
        bos = self.tok.bos_token_id
        if bos is not None and self.tok.encode("a")[:1] == [bos] and ids[:1] != [bos]:
            ids = [bos] + ids  # a tokenizer that starts every text with BOS (e.g. a base model's)
        return ids + list(opening), self.tok.encode(parts.tail, add_special_tokens=False)

    def _prefix(self, prompt: str, template: str, opening: tuple = ()):
        """(prefix K/V, its length, tail ids) of `_prefix_ids`, computed once and kept while it is among the
        PREFIX_CACHE most recently used (the training prompt, every batch; held-out openings come and go)."""
        key = (template, prompt, opening)
        if key in self._prefixes:
            self._prefixes.move_to_end(key)
        else:
            ids, tail = self._prefix_ids(prompt, template, opening)
            # padded to a bucket of slots (no token sees the padding): openings of other lengths compile nothing
            padded = ids + [0] * (-len(ids) % PREFIX_BUCKET)
            k, v = self.passes.prefill(self.lm_cfg, self.params, jnp.asarray([padded], jnp.int32))
            self._prefixes[key] = (k, v, len(ids), tail)
            while len(self._prefixes) > PREFIX_CACHE:
                self._prefixes.popitem(last=False)
        return self._prefixes[key]

    def _suffix_ids(self, story: str, tail: list, room: int) -> list:
        ids = self.tok.encode(story, add_special_tokens=False)
        keep = room - len(tail)
        if len(ids) > keep:  # longer than the teacher's context: keep the story's end, count it
            self.truncated += 1
            logging.warning("A story of %d tokens does not fit the teacher's context; its first %d tokens were cut.",
                            len(ids), len(ids) - keep)
            ids = ids[len(ids) - keep:]
        return ids + tail

    def key(self, prompt: str, story: str) -> str:
        return hashlib.sha256(json.dumps([self.weights_id, self.template, self.grading, prompt, story]).encode()
                              ).hexdigest()

    # -- grading -----------------------------------------------------------------------------------------
    def grade_batch(self, prompts: list, stories: list) -> Grades:
        n = len(stories)
        expected, argmax, chosen = np.zeros((n, 3), np.float32), np.zeros((n, 3), np.int32), np.zeros((n, 3))
        mass = np.zeros((n, 3), np.float32)
        for prompt, prefix, idx, rows, pad_to in self._micro_batched(prompts, stories, self.template):
            e, a, c, m = self._grade_rows(prompt, prefix, rows, [stories[i] for i in idx], pad_to)
            expected[idx], argmax[idx], chosen[idx], mass[idx] = e, a, c, m
        scored = mass.min(1) >= self.min_mass
        values = {"expected": expected, "greedy": argmax, "sample": chosen}[self.grading]
        scores = np.where(scored[:, None], values, np.nan).astype(np.float32)
        answers = [" ".join(map(str, row)) for row in (argmax if self.grading != "sample" else chosen.astype(int))]
        details = [{"expected": [round(float(x), 6) for x in e], "argmax": [int(x) for x in a],
                    "digit_mass": [round(float(x), 6) for x in m]} for e, a, m in zip(expected, argmax, mass)]
        if not scored.all():
            self.last_problem = (f"{int((~scored).sum())} of {n} stories got less than teacher.jax.min_digit_mass="
                                 f"{self.min_mass} of the teacher's probability on the digits 0-3")
        statuses = ["ok" if ok else f"digit mass {m.min():.3f} < teacher.jax.min_digit_mass={self.min_mass}"
                    for ok, m in zip(scored, mass)]
        self._log(prompts, stories, scores, answers, details, statuses)
        return Grades(scores, answers, details)

    def _micro_batched(self, prompts: list, texts: list, template: str):
        """(prompt, its prefix, indices, their token ids, the (rows, tokens) to pad them to or None) per
        micro-batch. Texts of one opening share a prefix. Where the memory plan sizes the passes
        (`_planned`), an opening's texts go in equal parts of one shape (the fewest passes over the weights,
        one compiled pass); otherwise, sorted by length, they are cut into the micro-batches that compute the
        fewest padded tokens (ragged texts are not padded to the longest). Stops at once when grading is
        cancelled."""
        groups: dict = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(prompt, []).append(i)
        for prompt, rows in groups.items():
            prefix_ids, tail = self._prefix_ids(prompt, template)
            ids = {i: self._suffix_ids(texts[i], tail, self._room(len(prefix_ids))) for i in rows}
            opening, ids = self._shared_opening(prompt, ids)
            prefix = self._prefix(prompt, template, opening)
            rows.sort(key=lambda i: len(ids[i]))
            lengths = [len(ids[i]) for i in rows]
            if self._planned():
                most = self._planned_micro(prefix, len(rows), lengths[-1])
                parts = [slice(s, s + most) for s in range(0, len(rows), most)]
                pad_to = self._padded(most, lengths[-1], prefix[2])
            else:
                parts, pad_to = micro_batches(lengths, self.micro or CPU_MICRO, self._row_step(), BUCKET,
                                              self._room(prefix[2]), self.mesh.shape["data"]), None
            for part in parts:
                if self._cancelled:
                    raise GradingCancelled("grading was cancelled (SIGTERM).")
                idx = rows[part]
                yield prompt, prefix, idx, [ids[i] for i in idx], pad_to

    def _shared_opening(self, prompt: str, ids: dict) -> tuple:
        """Every story of an opening begins with the opening itself: where all their token ids start with the
        opening's, those tokens join the shared prefix (computed once, not once per story) and the stories
        keep the rest. The token sequence the teacher reads is the same, so are its grades (to float32
        round-off of the attention split into other segments). (the opening's ids or (), the stories' ids)"""
        opening = tuple(self.tok.encode(prompt, add_special_tokens=False)) if self.share_opening else ()
        n = len(opening)
        if not n or any(len(row) <= n or tuple(row[:n]) != opening for row in ids.values()):
            return (), ids
        return opening, {i: row[n:] for i, row in ids.items()}

    def _planned(self) -> bool:
        """`teacher.jax.batch_size=0` on a device whose memory is known (an accelerator's report or
        `teacher.jax.memory_gb`): passes sized from XLA's memory plan."""
        return not self.micro and bool(memory_plan.device_bytes(self.mesh.devices.flat[0], self.memory_gb))

    def _planned_micro(self, prefix, n: int, longest: int) -> int:
        """`teacher.jax.batch_size=0`: the most stories of an opening a pass may take, from XLA's memory plan
        of the story pass (weights included) against the device's memory: all `n` in one pass if they fit,
        else half in each of two, and so on; each pass reads every weight once, so fewer passes are faster on
        an accelerator. On a CPU (no memory reported, none given) CPU_MICRO, the fastest measured there."""
        limit = memory_plan.device_bytes(self.mesh.devices.flat[0], self.memory_gb)
        if not limit:
            return CPU_MICRO
        k, v, P, _ = prefix
        for parts in range(1, n + 1):
            rows = -(-n // parts)
            shape = self._padded(rows, longest, P)
            if (shape, k.shape) not in self._plans:
                spec = lambda dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=self._sharding("data"))
                self._plans[shape, k.shape] = planned_bytes(self.passes.suffix.lower(
                    self.lm_cfg, self.params, k, v, jnp.int32(P), spec(jnp.int32), spec(jnp.bool_)).compile())
            if self._plans[shape, k.shape] <= memory_plan.HEADROOM * limit:
                return rows
        logging.warning("Not even one story's pass fits the teacher's %.1f GiB by XLA's plan; grading one at a time.",
                        limit / 2**30)
        return 1

    def _padded(self, rows: int, longest: int, prefix_len: int) -> tuple:
        """(rows, tokens) a micro-batch of `rows` stories, the longest `longest` tokens, is padded to."""
        return padded_shape(rows, longest, self._row_step(), BUCKET, self._room(prefix_len), self.mesh.shape["data"])

    def _room(self, prefix_len: int) -> int:
        """Tokens a story (with the template's tail) may take: the context after the prefix and the answer."""
        return self.lm_cfg.max_len - prefix_len - len(self.answer.ids)

    def _row_step(self) -> int:
        """Micro-batches are padded to a multiple of this many rows: a multiple of the device count, so a
        run compiles a few batch shapes."""
        data = self.mesh.shape["data"]
        return data * max(1, 8 // data)

    def _grade_rows(self, prompt: str, prefix, rows: list, stories: list, pad_to=None):
        """Grades of one micro-batch: `rows` are the stories' own token ids (story, then the template's tail)."""
        k, v, P, _ = prefix
        B = len(rows)
        logits_BxV, sk, sv, valid = self._suffix_pass(prefix, rows, pad_to)
        B_pad = valid.shape[0]
        # `sample` draws with a key of each story's own text: its grades do not depend on the batch it
        # landed in, and a resumed run draws them again exactly.
        seeds_B = np.asarray([_text_seed(prompt, st) for st in stories], np.uint32)
        keys_B = jnp.concatenate([_story_keys(self._rng, seeds_B), jnp.stack([self._rng] * (B_pad - B))]) \
            if B_pad > B else _story_keys(self._rng, seeds_B)
        answer = np.tile(np.asarray(self.answer.ids, np.int32), (B_pad, 1))
        expected, argmax, chosen, mass = [], [], [], []
        for pos in range(3):
            if pos:  # the whole answer, its digits so far chosen, read after the first digit_at[pos] tokens
                logits_BxV = self.passes.extend(self.lm_cfg, self.params, k, v, jnp.int32(P), sk, sv, valid,
                                                jax.device_put(answer, self._sharding("data")),
                                                jnp.int32(self.answer.digit_at[pos]))
            cand = jnp.asarray(self.answer.candidates[pos])
            p_Bx4 = np.asarray(jax.nn.softmax(logits_BxV, -1)[:, cand], np.float64)
            m_B = p_Bx4.sum(1)
            q_Bx4 = p_Bx4 / np.maximum(m_B[:, None], 1e-30)
            top_B = q_Bx4.argmax(1)
            temp = max(float(self.cfg.temperature), 1e-6)
            logq_Bx4 = jnp.log(jnp.asarray(q_Bx4, jnp.float32) + 1e-30) / temp
            drawn_B = np.asarray(_draw_digits(keys_B, logq_Bx4, pos))
            pick_B = drawn_B if self.grading == "sample" else top_B
            answer[:, self.answer.digit_at[pos]] = np.asarray(self.answer.candidates[pos])[pick_B]
            expected.append((q_Bx4 * np.arange(4)).sum(1))
            argmax.append(top_B)
            chosen.append(pick_B)
            mass.append(m_B)
        cut = lambda cols: np.stack(cols, 1)[:B]
        return cut(expected), cut(argmax), cut(chosen), cut(mass)

    def _suffix_pass(self, prefix, rows: list, pad_to=None):
        """The next-token logits after each row (its own token ids) against a prefix: (logits_BxV, the rows'
        K/V, valid) for the rows padded to `pad_to` (rows, tokens) or else the micro-batch's own shape
        (padded rows repeat the last row)."""
        k, v, P, _ = prefix
        B = len(rows)
        B_pad, S = pad_to or self._padded(B, max(map(len, rows)), P)
        toks, valid = np.zeros((B_pad, S), np.int32), np.zeros((B_pad, S), bool)
        for b in range(B_pad):
            row = rows[min(b, B - 1)]
            toks[b, :len(row)], valid[b, :len(row)] = row, True
        toks, valid = jax.device_put((toks, valid), self._sharding("data"))
        if not self.memory_logged:
            self._log_memory(k, v, P, toks, valid)
        logits_BxV, sk, sv = self.passes.suffix(self.lm_cfg, self.params, k, v, jnp.int32(P), toks, valid)
        return logits_BxV, sk, sv, valid

    # -- pairwise judging --------------------------------------------------------------------------------
    def prefer(self, prompts: list, stories_a: list, stories_b: list) -> Preferences:
        """Which of two stories from one opening is the better, read off the logits of the answer "1" or
        "2" (renormalised over the two) under the pairwise prompt (`pairwise_template`), asked in both
        orders so that a preference for a slot cancels. A pair with less than `min_digit_mass` of the
        probability on "1" and "2" in either order is unscorable (NaN)."""
        template = self.pairwise_template
        one, two = self.answer.candidates[0][1], self.answer.candidates[0][2]
        first_a = self._first_of_two(prompts, [_pair(a, b) for a, b in zip(stories_a, stories_b)], template,
                                     one, two)
        first_b = self._first_of_two(prompts, [_pair(b, a) for a, b in zip(stories_a, stories_b)], template,
                                     one, two)
        (q_a_first, m_first), (q_b_first, m_second) = first_a, first_b
        ok = np.minimum(m_first, m_second) >= self.min_mass
        p_first, p_second = q_a_first, 1.0 - q_b_first
        p_a = np.where(ok, (p_first + p_second) / 2, np.nan)
        details = [{"p_a_first": round(float(f), 6), "p_a_second": round(float(s), 6),
                    "mass": [round(float(x), 6), round(float(y), 6)]}
                   for f, s, x, y in zip(p_first, p_second, m_first, m_second)]
        return Preferences(p_a, np.where(ok, p_first, np.nan), np.where(ok, p_second, np.nan), details)

    def _first_of_two(self, prompts: list, texts: list, template: str, one: int, two: int):
        """Per text, (the probability that the answer is "1" given "1" or "2", the mass on the two)."""
        q, mass = np.zeros(len(texts)), np.zeros(len(texts))
        for _, prefix, idx, rows, pad_to in self._micro_batched(prompts, texts, template):
            logits_BxV = self._suffix_pass(prefix, rows, pad_to)[0]
            p_Bx2 = np.asarray(jax.nn.softmax(logits_BxV, -1)[:, jnp.asarray([one, two])], np.float64)[:len(idx)]
            mass[idx] = p_Bx2.sum(1)
            q[idx] = p_Bx2[:, 0] / np.maximum(mass[idx], 1e-30)
        return q, mass

    def _sharding(self, *axes):
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(*axes))

    def _log_memory(self, k, v, P: int, toks, valid) -> None:
        """The teacher's device memory as XLA plans its largest call (a micro-batch of stories against the
        prefix), per device: the weights' share plus that call's activations and K/V."""
        self.memory_logged = True
        compiled = self.passes.suffix.lower(self.lm_cfg, self.params, k, v, jnp.int32(P), toks, valid).compile()
        total = planned_bytes(compiled)
        weights = sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(self.params))
        self.memory = {"weights_bytes_per_device": int(weights), "story_pass_bytes": total}
        if total is not None:
            logging.info("JAX teacher memory per device (XLA's plan for %d stories of %d tokens): %.2f GiB, of which "
                         "weights %.2f GiB.", toks.shape[0], toks.shape[1], total / 2**30, weights / 2**30)

    # -- bookkeeping -------------------------------------------------------------------------------------
    _cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def _log(self, prompts, stories, scores, answers, details, statuses) -> None:
        if not self.log_path:
            return
        with open(self.log_path, "a") as f:
            for p, s, sc, a, d, st in zip(prompts, stories, scores, answers, details, statuses):
                f.write(json.dumps({"time": time.time(), "key": self.key(p, s), "status": st, "answer": a,
                                    "scores": [None if np.isnan(x) else float(x) for x in sc], **d,
                                    "model": self.cfg.jax.weights, "prompt": p, "story": s}) + "\n")


def _pair(first: str, second: str) -> str:
    """The two stories as the pairwise prompt shows them."""
    return f"Story 1:\n{first}\n\nStory 2:\n{second}"


@jax.jit
def _story_keys(rng, seeds_B):
    """fold_in(rng, seed) of every story at once (one call, not one per story)."""
    return jax.vmap(jax.random.fold_in, (None, 0))(rng, seeds_B)


@jax.jit
def _draw_digits(keys_B, logq_Bx4, pos):
    """Each story's digit at answer position `pos`, drawn from its own key."""
    return jax.vmap(lambda key, lq: jax.random.categorical(jax.random.fold_in(key, pos), lq))(keys_B, logq_Bx4)


def _text_seed(prompt: str, story: str) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps([prompt, story]).encode()).digest()[:4], "little") >> 1


def _weights_id(path: str) -> str:
    """Names the weights in cache keys: the path with the size and time of the file(s)."""
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith((".gguf", ".safetensors")))
    return "|".join(f"{f}:{os.path.getsize(f)}:{int(os.path.getmtime(f))}" for f in files)
