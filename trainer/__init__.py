"""gpulens.trainer: in-process instrumentation of training loops (StepMonitor), the loss-health
detector (docs/design.md §7), MFU helpers, framework adapters and a reference trainer.

Imports without torch: torch is touched only inside functions that handle a tensor.
"""

from gpulens.trainer.health import Anomaly, HealthConfig, LossHealth, scan
from gpulens.trainer.monitor import Step, StepMonitor

__all__ = ["Anomaly", "HealthConfig", "LossHealth", "Step", "StepMonitor", "scan"]
