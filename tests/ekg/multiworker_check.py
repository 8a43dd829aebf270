"""The cases of `distributed_cases` under MultiWorkerMirroredStrategy on 2 local CPU worker processes
(TF_CONFIG on loopback ports), against one process on the same global batches.

    python -m tests.ekg.multiworker_check            # starts the 2 workers; prints one JSON line
    python -m tests.ekg.multiworker_check worker     # one worker (TF_CONFIG set by the launcher)

Each worker runs one fine-tuning update (with the memory bank's loss) and one search iteration under
the strategy; worker 0 then runs them without distribution and reports the differences. The launcher
prints {"workers": [worker 0's line, worker 1's line]}, or exits 1 with the failing worker's stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

TIMEOUT_S = 900  # a worker left alone waits for its peer: bounded (~30 s on an idle machine)


def worker() -> None:
    from shared import tf_train

    strategy = tf_train.make_strategy("multiworker")  # before anything starts TensorFlow's runtime
    import numpy as np

    from tests.ekg.distributed_cases import compare, finetune, reference, search

    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    f2, moved = finetune(strategy)
    s2 = search(strategy, bank=False)  # the bank's pass is the search's forward (checked by replica_check)
    out = {"task": task, "chief": tf_train.is_chief(strategy), "replicas": strategy.num_replicas_in_sync}
    # what each worker holds after the update and the search: the same on both
    checksum = float(sum(np.abs(w).sum() for w in f2))
    out.update(finetune_moved=moved, finetune_checksum=checksum, search_scores=s2["info"]["scores"])
    if task == 0:  # the reference: one process, no distribution, eager (worker 1 has nothing to compare)
        f1, s1 = reference(bank=False)
        out.update(compare(f1, f2, s1, s2))
    print(json.dumps(out))


def launch() -> int:
    from tests.background import free_ports

    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs, files = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(2):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            out, err = (open(os.path.join(tmp, f"w{index}.{s}"), "w+") for s in ("out", "err"))
            files.append((out, err))
            cmd = [sys.executable, "-m", "tests.ekg.multiworker_check", "worker"]
            procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True))
        try:
            codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
        except subprocess.TimeoutExpired:
            codes = [p.poll() if p.poll() is not None else "timed out" for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        lines = []
        for index, ((out, err), code) in enumerate(zip(files, codes)):
            out.seek(0), err.seek(0)
            text, errors = out.read(), err.read()
            out.close(), err.close()
            if code != 0:
                print(f"worker {index} exited {code}:\n{errors[-3000:]}", file=sys.stderr)
                return 1
            lines.append(json.loads(text.strip().splitlines()[-1]))
    print(json.dumps({"workers": lines}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        worker()
    else:
        sys.exit(launch())
