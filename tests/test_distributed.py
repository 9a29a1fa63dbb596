"""Multi-host pretraining on one machine: 2 processes × 2 CPU devices (gloo over 127.0.0.1) against
1 process × 4 devices, same config.

Every process is given 4 fake CPU devices and the 2-process run uses 2 of each (distributed.local_devices):
XLA:CPU compiles the same step differently for 3 and for 4 devices in a process (a jitted gradient on
one device changes in its last bits), which would hide what this test checks, the cross-host path."""

import json
import os
import socket
import subprocess
import sys

from conftest import ROOT
from test_main import base_args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, workdir, devices=4, **extra_env):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
           **extra_env}
    return subprocess.Popen([sys.executable, "-m", "storyjax.main", *args, f"--workdir={workdir}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return out


def test_two_processes_end_with_the_params_of_one(austen_dir, tfds_dir, tmp_path):
    args = base_args(austen_dir, tfds_dir, **{"train.num_steps": 12, "train.grad_reduce": "ordered",
                                              "ledger.milestones": "(5000,)"})
    finish(launch(args, tmp_path / "one"))
    port = free_port()
    procs = [launch(args + [f"--config.distributed.coordinator=127.0.0.1:{port}",
                            "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}",
                            "--config.distributed.local_devices=2"], tmp_path / "two") for i in range(2)]
    outs = [finish(p) for p in procs]
    one, two = (json.load(open(tmp_path / d / "summary.json")) for d in ("one", "two"))
    assert two["param_checksum"] == one["param_checksum"]
    assert two["loss_last"] == one["loss_last"] and two["steps"] == 12
    assert "param_checksum" in outs[0] and "param_checksum" not in outs[1]  # process 0 reports
    # Process 0 alone wrote the logs: one start and one end line in the ledger, one events file.
    events = [json.loads(line)["event"] for line in open(tmp_path / "two" / "ledger.jsonl")]
    assert events.count("start") == 1 and events.count("end") == 1
    assert len(os.listdir(tmp_path / "two" / "tensorboard")) == 1
    assert os.path.isdir(tmp_path / "two" / "milestones" / "chck_5K" / "state")
