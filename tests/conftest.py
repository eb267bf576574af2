"""Test-session settings: one intra-op thread (the test tensors are small; on a shared 2-core machine
thread hand-offs cost far more than they save) and a non-interactive matplotlib backend."""

import os

import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)
