"""Where prompts come from: seeded generators (`tasks`) and dataset files (`files`), one `TASKS` registry.

`build_task("countdown", num_numbers=4).items(seed, rank, world)` yields `Item(prompt, ref, id)`.
"""

from ponder.data.files import DatasetError, FileTask
from ponder.data.tasks import TASKS, Arithmetic, Countdown, Item, Linear, build_task, register_task

__all__ = [
    "TASKS",
    "Arithmetic",
    "Countdown",
    "DatasetError",
    "FileTask",
    "Item",
    "Linear",
    "build_task",
    "register_task",
]
