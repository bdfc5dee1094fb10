"""Paper-scale benchmark: the three stages at SD v1.4 size (or SD 2.1's, SDXL's), with random weights.

    python -m b2diffurl.bench --small          # CPU: SD v1.4's networks at 64 x 64 pixels, a few minutes
    python -m b2diffurl.bench                  # GPU: 512 x 512, fp16, the paper's batch sizes
    python -m b2diffurl.bench --backbone sdxl  # GPU: SDXL base's networks at 1024 x 1024 (sd21: SD 2.1's, 768)

It builds, from configs written here (:mod:`~b2diffurl.bench.shapes`; nothing is downloaded), a
diffusers folder with exactly SD v1.4's UNet2DConditionModel, AutoencoderKL and CLIP ViT-L/14 text
encoder (``--backbone sd21``: SD 2.1's UNet and OpenCLIP ViT-H text encoder, v-prediction; ``sdxl``:
SDXL base's UNet, VAE and both text encoders), and an open_clip ViT-H-14 checkpoint (open_clip's own
config), all with random weights (:mod:`~b2diffurl.bench.models`): shapes, FLOPs, memory and load
times are the real ones. It then runs ``run_sample.py``, ``run_select.py`` and ``run_train.py`` as a
user does (own processes, the default config, the paper's settings) on one round
(:mod:`~b2diffurl.bench.stages`), and times the bare UNet in a tight batched loop at the same batch
sizes (:mod:`~b2diffurl.bench.bare`). Per stage it reports seconds, model load seconds, process
start-up, UNet image-forwards per second, **efficiency** (the stage's UNet (or CLIP) work at the bare
rate, divided by the stage's seconds), peak memory (CUDA max allocated on a GPU, peak RSS on the CPU)
and bytes written; then the bytes a round keeps at paper scale, and the projected wall time of a
default run's 25.6k reward queries (:mod:`~b2diffurl.bench.projections`).

Instead of the stages it can time the speed levers (:mod:`~b2diffurl.bench.levers`), training memory
against forward_chunk (:mod:`~b2diffurl.bench.memory`) and a round in one process against three
(:mod:`~b2diffurl.bench.one_process`); :mod:`~b2diffurl.bench.cli` is the command line.

Models are built once under ``model/bench/`` and reused (delete it to rebuild; its size:
docs/PERFORMANCE.md).
"""
