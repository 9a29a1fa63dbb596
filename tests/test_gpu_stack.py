"""The GPU machine's stack (launch/gpu_machine_packages.txt, launch/gpu_bundle.sh): storyjax's jobs and bench
import there with only that machine's packages and the carried wheels."""

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys

import packaging.markers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()


def gpu_machine() -> set:
    with open(os.path.join(ROOT, "launch", "gpu_machine_packages.txt")) as f:
        return {norm(line.strip()) for line in f if line.strip() and not line.startswith("#")}


def bundle() -> set:
    with open(os.path.join(ROOT, "launch", "gpu_bundle.sh")) as f:
        block = re.search(r"PACKAGES=\(\n(.*?)\n\)", f.read(), re.S).group(1)
    return {norm(p.split("==")[0]) for p in block.split()}


def missing_there(root: str = "storyjax") -> set:
    """storyjax's requirements (and theirs, Python 3.12's markers) the GPU machine lacks."""
    have, seen, todo, missing = gpu_machine(), set(), [root], set()
    while todo:
        name = norm(todo.pop())
        if name in seen or name in have:
            continue
        seen.add(name)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        if name != root:
            missing.add(name)
        for req in requires:
            spec, _, marker = req.partition(";")
            if marker and not packaging.markers.Marker(marker).evaluate({"python_version": "3.12", "extra": ""}):
                continue
            todo.append(re.split(r"[ <>=!~\[(]", spec.strip(), maxsplit=1)[0])
    return missing


def test_the_bundle_carries_every_requirement_the_gpu_machine_lacks():
    assert missing_there() <= bundle(), missing_there() - bundle()


def test_jobs_and_bench_import_with_only_the_gpu_machines_packages_and_the_bundle():
    allowed = gpu_machine() | bundle() | {"storyjax"}  # the project itself runs from the checkout
    blocked = sorted(module for module, dists in md.packages_distributions().items()
                     if not any(norm(d) in allowed for d in dists))
    probe = f"""
import importlib.abc, sys
BLOCKED = set({json.dumps(blocked)})
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is not on the GPU machine nor in the bundle", name=name)
sys.meta_path.insert(0, Block())
for job in sys.argv[1:]:
    __import__(job)
print("imported")
"""
    # each entry point defines its own absl flags: one process each
    for jobs in (["storyjax.bench"], ["storyjax.smoke"], ["storyjax.matmul_ceiling"],
                 ["storyjax.main", "storyjax.pretrain", "storyjax.interactive", "storyjax.experiment",
                  "storyjax.grade", "storyjax.evaluate", "storyjax.teachers.jax_teacher", "storyjax.data.prepare"]):
        out = subprocess.run([sys.executable, "-c", probe, *jobs], cwd=ROOT, capture_output=True, text=True,
                             timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})
        assert out.returncode == 0 and "imported" in out.stdout, (jobs, out.stderr[-3000:])
    assert "torch" not in blocked and "ml_collections" not in blocked  # the probe blocks what it should not have
    assert blocked  # ...and something: this machine has packages the GPU machine lacks (pytest's plugins, llama.cpp)
