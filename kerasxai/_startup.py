"""The command line's start: TensorFlow loaded without its start-up lines.

Importing TensorFlow prints lines a user of ``kerasxai`` did not ask for and
cannot act on: which CPU instructions it was built for, that oneDNN is on, and on
a machine without an NVIDIA GPU a false ``E0000 ... failed call to cuInit: CUDA
error`` (TensorFlow 2.21 writes most of them before its own log level is read, so
``TF_CPP_MIN_LOG_LEVEL`` alone does not silence them). :func:`start_tensorflow`
imports TensorFlow with the process's error stream captured, then writes back
every line that is not one of those: a real error still shows, and the CUDA line
shows on a machine that has a GPU, where it means something.

Only the commands call it (``kerasxai ...``, ``python -m kerasxai.demo``,
``python -m kerasxai.train``); importing kerasxai as a library changes no log
level and no environment variable.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} .*\b(port\.cc|cudart_stub\.cc|cpu_feature_guard\.cc)"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)"
)
_NO_GPU = re.compile(r"^E\d{4} .*failed call to cuInit")


def has_nvidia_device() -> bool:
    """Whether this machine shows an NVIDIA device to processes (Linux device nodes, WSL's GPU)."""
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))


def is_noise(line: str, gpu: bool = False) -> bool:
    """Whether ``line`` is one of TensorFlow's start-up lines that say nothing to a user.

    Examples:
        >>> is_noise("I0000 00:00:1.5   42 cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...")
        True
        >>> is_noise("E0000 00:00:1.5   42 cuda_platform.cc:52] failed call to cuInit: INTERNAL"), \\
        ...     is_noise("E0000 00:00:1.5   42 cuda_platform.cc:52] failed call to cuInit: INTERNAL", gpu=True)
        (True, False)
        >>> is_noise("E0000 00:00:1.5   42 some_kernel.cc:9] a real error")
        False
    """
    return bool(_NOISE.match(line) or (not gpu and _NO_GPU.match(line)))


def start_tensorflow() -> None:
    """Imports TensorFlow (and finds its devices) with its start-up lines filtered out of stderr."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the lines TensorFlow writes after reading it
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # a required dependency: imported here so that its start is captured

            tf.config.list_physical_devices()  # CUDA's initialisation writes its lines now
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", errors="replace")
    gpu = has_nvidia_device()
    kept = [line for line in text.splitlines() if line.strip() and not is_noise(line, gpu)]
    if kept:
        print("\n".join(kept), file=sys.stderr)
