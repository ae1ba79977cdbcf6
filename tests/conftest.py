"""Suite-wide settings. The suite runs with ``-n 2`` on 2 cores: each test process keeps to one
intra-op thread (two per process oversubscribe the cores and slow the tiny models several-fold), and
the command-line runs the tests start as subprocesses inherit the same limit."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (after the environment variable, which torch reads at import)

torch.set_num_threads(1)
