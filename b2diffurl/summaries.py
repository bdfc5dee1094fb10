"""What each stage reports: typed summaries, written into the stage's marker and read back from it.

A stage builds its summary (:class:`SampleSummary`, :class:`SelectSummary`, :class:`TrainSummary`),
``records.finish_stage`` writes :meth:`record` (the fields in declaration order, then ``extra``) into
``<stage>.done``, and every reader (the driver's progress table and summary line, the stages' print
lines, tracking, the benchmark) gets it back with :func:`read_summary`. A field that a stage writes
only sometimes is ``None`` when absent and left out of the record; what varies with the run's
settings (the peak memory's keys, the objective's extra numbers) goes in ``extra``, after the fields.
"""

import os
from dataclasses import dataclass, field, fields

from b2diffurl import records

# what a stage measures about its own run (differs from run to run, whatever the settings)
MEASURED = ("seconds", "load_seconds", "peak_memory_bytes")


@dataclass
class _Summary:
    def record(self):
        """The marker's summary: {field: value} in declaration order (an optional field's ``None`` left
        out), then ``extra``."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif value is not None or not f.metadata.get("optional"):
                out[f.name] = value
        return out

    @classmethod
    def from_record(cls, record):
        """The summary in a marker (or metrics.json); keys the class does not name go to ``extra``, and a
        field the record lacks (a marker of an older version, a hand-made one) is None."""
        names = [f.name for f in fields(cls) if f.name != "extra"]
        known = {k: record.get(k) for k in names}
        extra = {k: v for k, v in record.items() if k not in names and k not in ("format_version", "files", "config")}
        return cls(**known, extra=extra)


def _optional():
    return field(default=None, metadata={"optional": True})


@dataclass
class SampleSummary(_Summary):
    trajectories: int
    split_step: int
    split_time: int
    images: int
    bytes_written: int
    seconds: float
    load_seconds: float
    num_processes: int
    extra: dict = field(default_factory=dict)  # the peak memory (perf.stage_memory)


@dataclass
class SelectSummary(_Summary):
    trajectories: int
    selected: int
    reward_mean: float
    reward_std: float
    reward_components: dict | None = _optional()  # a combined reward: each component's mean raw score
    history_rounds: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    bytes_written: int = 0
    extra: dict = field(default_factory=dict)  # the peak memory (perf.stage_memory)


@dataclass
class TrainSummary(_Summary):
    algorithm: str
    loss: float
    approx_kl: float
    clipfrac: float
    grad_norm: float
    optimizer_steps: int
    skipped_steps: int = 0
    partial_step: str = ""
    dropped_batches: int = 0
    fresh_optimizer: bool = False
    trajectories_selected: int = 0
    trajectories_used: int = 0
    partial_batch: str = ""
    pairs: int = 0
    first_step_max_ratio_deviation: float = 0.0
    num_processes: int = 1
    lora_checksum_by_rank: list = field(default_factory=list)
    seconds: float = 0.0
    load_seconds: float = 0.0
    # the peak memory, kl_reference (objectives with a reference), the update unit, the fp16 grad
    # scaler's state, bytes_written: in the order the trainer adds them
    extra: dict = field(default_factory=dict)


SUMMARIES = {"sample": SampleSummary, "select": SelectSummary, "train": TrainSummary}


def read_summary(marker, stage):
    """The typed summary of ``stage`` from its marker (a dict as ``records.read_marker`` returns it)."""
    return SUMMARIES[stage].from_record(marker)


def round_finished(round_dir):
    """Whether all three stages of the round have their marker."""
    return all(records.is_done(round_dir, stage) for stage in records.STAGES)


def round_summaries(round_dir):
    """(SampleSummary, SelectSummary, TrainSummary) of a finished round, from its markers."""
    return tuple(read_summary(records.read_marker(round_dir, stage), stage) for stage in records.STAGES)


def round_row(exp_dir, run_name):
    """The progress row of a finished round (progress.csv's columns), from its three markers."""
    sample, select, train = round_summaries(os.path.join(exp_dir, run_name))
    return {
        "run_name": run_name,
        "k": sample.split_step,
        "split_time": sample.split_time,
        "trajectories": select.trajectories,
        "reward_mean": select.reward_mean,
        "reward_std": select.reward_std,
        **{f"reward_{name}_mean": mean for name, mean in (select.reward_components or {}).items()},
        "selected": select.selected,
        "loss": train.loss,
        "approx_kl": train.approx_kl,
        "clipfrac": train.clipfrac,
        "grad_norm": train.grad_norm,
        "optimizer_steps": train.optimizer_steps,
        "seconds": round(sample.seconds + select.seconds + train.seconds, 2),
    }
