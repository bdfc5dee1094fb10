"""From the raw measurements to what the report shows (pure arithmetic): each stage's rate and
efficiency against the bare networks, the round's disk against its shapes and at paper scale, and the
projected wall time of a default run's first reward queries at the achieved rates."""

import os

from b2diffurl import records
from b2diffurl.bench.setting import STAGES, default_config
from b2diffurl.perf import (
    PAPER_REWARD_QUERIES,
    disk_per_round,
    rounds_for_queries,
    sampling_forwards,
    schedule_ks,
    training_forwards,
)
from b2diffurl.summaries import read_summary


def stage_rows(setting, stages, bare, imports, guidance):
    """{stage: its work, unit, ideal seconds at the bare rate, bare rate, rate, efficiency, import seconds}."""
    s, k = setting, setting.split_step
    trajectories = read_summary(stages["select"]["marker"], "select").trajectories
    forwards = s.num_batches * sampling_forwards(s.batch_size, s.split_time, s.num_steps, k, guidance)
    ideal_sample = s.num_batches * (
        (s.num_steps - k) * bare["sample_pre_branch_seconds"] + k * bare["sample_branches_seconds"]
    )
    train_forwards = training_forwards(read_summary(stages["train"]["marker"], "train").pairs, guidance)
    ideal_train = train_forwards * bare["train_seconds"] / bare["train_rows"]
    ideal_select = trajectories * bare["clip_seconds"] / bare["clip_rows"]
    rows = {
        "sample": dict(
            work=forwards,
            unit="UNet image-forwards",
            ideal=ideal_sample,
            bare_rate=bare["sample_branches_rows"] / bare["sample_branches_seconds"],
        ),
        "select": dict(
            work=trajectories,
            unit="CLIP images",
            ideal=ideal_select,
            bare_rate=bare["clip_rows"] / bare["clip_seconds"],
        ),
        "train": dict(
            work=train_forwards,
            unit="UNet image-forward+backwards",
            ideal=ideal_train,
            bare_rate=bare["train_rows"] / bare["train_seconds"],
        ),
    }
    for stage, row in rows.items():
        row["rate"] = row["work"] / stages[stage]["seconds"]
        row["efficiency"] = row["ideal"] / stages[stage]["seconds"]
        row["import_seconds"] = imports.get(stage)
    return rows


def _measured_tensor_bytes(round_dir, manifest):
    """Bytes of tensors the round stored: its sample batches and selected.safetensors."""
    measured = sum(
        records.safetensors_payload(os.path.join(round_dir, "samples", b["file"])) for b in manifest["batches"]
    )
    return measured + records.safetensors_payload(os.path.join(round_dir, "selected.safetensors"))


def round_disk(setting, select, round_dir, default):
    """This round's stored tensors against its shapes, then a default round's disk at paper scale."""
    k = setting.split_step
    trajectories, selected = select.trajectories, select.selected
    manifest = records.read_json(os.path.join(round_dir, "samples", "manifest.json"))
    latent_shape = manifest["latent_shape"][1:]
    predicted = trajectories * records.trajectory_nbytes(k, latent_shape, 2) + selected * records.trajectory_nbytes(
        k, latent_shape, 2, selected=True
    )
    image_bytes = (
        sum(os.path.getsize(os.path.join(round_dir, records.image_name(i))) for i in range(trajectories)) / trajectories
    )
    d_sample, d_process = default.sample, default.process
    per_round = d_sample.batch_size * d_sample.num_batches_per_epoch * default.split_time
    fraction = selected / trajectories
    paper_image = image_bytes if setting.resolution == 512 else 512 * 512 * 3  # a PNG is at most about its raw size
    ks = schedule_ks(d_process.stage_cnt, d_process.stage_cnt, d_process.split_step_left, d_process.split_step_right)
    old = [disk_per_round(per_round, kr, [4, 64, 64], 4, fraction, paper_image, keep_latents=True) for kr in ks]
    new = [disk_per_round(per_round, kr, [4, 64, 64], 2, fraction, paper_image, keep_latents=False) for kr in ks]
    return {
        "predicted_tensor_bytes": predicted,
        "measured_tensor_bytes": _measured_tensor_bytes(round_dir, manifest),
        "image_bytes_measured": image_bytes,
        "paper_image_bytes": paper_image,
        "selected_fraction": fraction,
        "paper_round0": {"before": old[0], "now": new[0]},
        "paper_run_kept": {"before": sum(r["kept"] for r in old), "now": sum(r["kept"] for r in new)},
        "paper_rounds": len(ks),
    }


def projected_run(stages, rows, fraction, default):
    """Wall time of a default run's first PAPER_REWARD_QUERIES reward queries at this benchmark's rates."""
    d_sample, d_process = default.sample, default.process
    per_round = d_sample.batch_size * d_sample.num_batches_per_epoch * default.split_time
    rounds = rounds_for_queries(PAPER_REWARD_QUERIES, per_round)
    fixed = sum(stages[st]["startup_seconds"] + stages[st]["load_seconds"] for st, _ in STAGES)
    total = 0.0
    for kr in schedule_ks(rounds, d_process.stage_cnt, d_process.split_step_left, d_process.split_step_right):
        round_forwards = d_sample.num_batches_per_epoch * sampling_forwards(
            d_sample.batch_size, default.split_time, d_sample.num_steps, kr, d_sample.guidance_scale
        )
        round_pairs = fraction * per_round * kr * default.train.num_epochs
        total += round_forwards / rows["sample"]["rate"] + per_round / rows["select"]["rate"]
        total += training_forwards(round_pairs, d_sample.guidance_scale) / rows["train"]["rate"] + fixed
    return {
        "rounds": rounds,
        "reward_queries": rounds * per_round,
        "hours": total / 3600,
        "fixed_seconds_per_round": fixed,
    }


def analyse(setting, stages, bare, round_dir, imports):
    """Rates, efficiencies, disk and the projection from the raw measurements (pure arithmetic)."""
    default = default_config()  # the benchmark changes no sampling or training setting but the setting's own
    rows = stage_rows(setting, stages, bare, imports, default.sample.guidance_scale)
    select = read_summary(stages["select"]["marker"], "select")
    disk = round_disk(setting, select, round_dir, default)
    projection = projected_run(stages, rows, disk["selected_fraction"], default)
    return {"rows": rows, "disk": disk, "projection": projection}
