"""A round's three stages in one process: ``python -m b2diffurl.round`` with a stage script's flags.

    python -m b2diffurl.round --config config/stage_process.py:tiny --config.run_name round_000 ...
    accelerate launch --num_processes 8 -m b2diffurl.round --config ... (the same flags)

Runs sampling, selection and training of ``config.run_name`` one after the other, each as its own
script would (b2diffurl.stages), skipping a stage whose marker exists; the imports, the accelerator
and the run folder's lock are paid for once instead of three times. The files written are the same,
byte for byte, as the three scripts write (every random draw is seeded by the config). run_process.sh
uses it with ``OneProcess=1`` (config ``process.one_process``).
"""

import gc

from b2diffurl import cli, layout

FLAGS = cli.define_config_flag("The round's configuration (as for run_sample.py, run_select.py and run_train.py).")


def main(_):
    from b2diffurl import records, stages

    config = FLAGS.config
    accelerator = cli.make_accelerator(config)
    round_dir = layout.round_dir(config)
    # decided once by every rank, and no rank starts a stage before all have decided (the barrier), so
    # that all run the same stages: a rank that looked later could find a marker another rank has just
    # written, skip that stage and meet the others in the wrong collective. A finished stage is
    # skipped, as the driver skips its script.
    todo = [name for name in stages.STAGES if not records.is_done(round_dir, name)]
    accelerator.wait_for_everyone()
    for name in todo:
        stages.STAGES[name](config, accelerator)
        accelerator.wait_for_everyone()  # the stage's marker is written before the next stage checks it
        # the stage's models go before the next stage loads its own: let the collector see them again
        # (heap.settle froze them) and collect once (free_memory's gc.collect)
        gc.unfreeze()
        accelerator.free_memory()


if __name__ == "__main__":
    cli.run(main)
