"""Continual learning: class-incremental scenarios, accuracy-matrix metrics, lr schedules.

``schedules`` imports torch; import it from ``components.continual.schedules`` directly.
"""

from components.continual.metrics import (
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    summary,
)
from components.continual.scenarios import Task, class_incremental, seen_classes

__all__ = [
    "Task",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "class_incremental",
    "forgetting",
    "forward_transfer",
    "seen_classes",
    "summary",
]
