"""Where a results set came from: versions, revision, host, time and the configuration."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy
import torch

import vrbench


def git_revision(directory: Path | None = None) -> str | None:
    """The commit of the vrbench checkout, if it is one."""
    directory = directory or Path(vrbench.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(config: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance record stored with every results set."""
    return {
        "vrbench_version": vrbench.__version__,
        "git_revision": git_revision(),
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
        "host": platform.node(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": dict(config),
    }
