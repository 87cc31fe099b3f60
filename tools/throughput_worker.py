"""The worker of ``tools/throughput_before.py``: runs inside an earlier commit's exported ``nfrepro``.

Reads lines "model batch_size steps" on stdin and answers each with the seconds those steps took
(fp32, NCHW, one thread), using that commit's own ``nfrepro.bench.throughput._Stepper``.
"""
import sys
import time

import torch

torch.set_num_threads(1)

from nfrepro.bench.throughput import _Stepper  # noqa: E402  (the commit's code, after the thread count)
from nfrepro.data.datasets import load_dataset  # noqa: E402

data = load_dataset(sys.argv[1], train=True, subset=int(sys.argv[2]) if sys.argv[2] != "None" else None)
steppers = {}
print("ready", flush=True)
for line in sys.stdin:
    model, batch_size, steps = line.split()
    key = (model, int(batch_size))
    if key not in steppers:
        steppers[key] = _Stepper(model, data, key[1], torch.device("cpu"), "off", False)
    start = time.perf_counter()
    for _ in range(int(steps)):
        steppers[key].step()
    print(time.perf_counter() - start, flush=True)
