"""Which share of the work an array task does (a CSV's rows, the videos), from SLURM's array
variables when no option says so."""

import os

from meerkat.core.errors import UsageError


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(
            f"${name} must be an integer, received {value!r}; pass --shard-index and --num-shards instead"
        ) from None


def array_shard(shard_index: int | None, num_shards: int | None) -> tuple[int, int]:
    """(index, count): the options where given, else this SLURM array task's place in its array.

    Shards count from 0 whatever the array's first id (--array=1-8) and step (--array=0-14:2).
    A sparse array (--array=1,3,5) gives a task no way to know its place, so it is refused.
    """
    if shard_index is not None and num_shards is not None:
        return shard_index, num_shards
    task = _env_int("SLURM_ARRAY_TASK_ID")
    if task is None:
        return (0 if shard_index is None else shard_index), (1 if num_shards is None else num_shards)
    first = _env_int("SLURM_ARRAY_TASK_MIN") or 0
    last = _env_int("SLURM_ARRAY_TASK_MAX")
    step = _env_int("SLURM_ARRAY_TASK_STEP") or 1
    count = _env_int("SLURM_ARRAY_TASK_COUNT") or 1
    if last is not None and ((last - first) % step or (last - first) // step + 1 != count or (task - first) % step):
        raise UsageError(
            f"this SLURM array is not an evenly spaced range (task {task}, ids {first}..{last}, {count} tasks), "
            "so a task cannot tell which shard is its own; submit --array=0-N, or pass --shard-index and --num-shards"
        )
    index = (task - first) // step
    return (index if shard_index is None else shard_index), (count if num_shards is None else num_shards)


def check_shard(shard_index: int, num_shards: int) -> None:
    if num_shards < 1:
        raise UsageError(f"--num-shards must be at least 1, received {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise UsageError(
            f"--shard-index must be in 0..{num_shards - 1} for --num-shards {num_shards}, received {shard_index}"
        )
