"""Run logging: JSONL metrics (the simulator's diagnostic names), optional TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLogger:
    """Append one JSON object per step to `out_dir/metrics.jsonl` (main process only)."""

    def __init__(self, out_dir, enabled: bool = True, tensorboard: bool = False, resume: bool = False):
        self.enabled, self.tb = enabled, None
        self.path = Path(out_dir, "metrics.jsonl")
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not resume:
            self.path.write_text("")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("run.tensorboard = true needs the tensorboard package") from e
            self.tb = SummaryWriter(str(Path(out_dir, "tb")))

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **clean}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint's step (they will be redone)."""
        if not self.enabled or not self.path.exists():
            return
        lines = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        self.path.write_text("".join(ln + "\n" for ln in lines))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(out_dir) -> list[dict]:
    path = Path(out_dir, "metrics.jsonl")
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln]
