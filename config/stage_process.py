"""Configuration of one B2-DiffuRL round (sample -> select -> train).

Read by every stage script through absl's ``config_flags``::

    .venv/bin/python run_sample.py --config config/stage_process.py            # the paper's setup
    .venv/bin/python run_sample.py --config config/stage_process.py:toy        # CPU demo (the toy world)
    .venv/bin/python run_sample.py --config config/stage_process.py:tiny       # random tiny model: tests
    .venv/bin/python run_sample.py --config config/stage_process.py:ddpo --config.seed 301

Any field can be overridden with ``--config.<field> <value>`` (names as in the official code).
Presets are small functions on top of :func:`base_config`; pick one with ``:NAME``.
Values are the paper's (Table 6) and, where it is silent, the official ``run_process.sh``.
"""

import os

import ml_collections

from b2diffurl.configs import REPO_ROOT  # noqa: F401 - the repository this config belongs to (tests use it)


def base_config():
    config = ml_collections.ConfigDict()

    ###### General ######
    # experiment folder name: everything of a run lives in <save_path>/<exp_name>/.
    config.exp_name = "exp_B2DiffuRL"
    # round folder name inside the experiment: <save_path>/<exp_name>/<run_name>/. The driver passes
    # round_000, round_001, ...
    config.run_name = "round_000"
    # random seed of this round. The driver passes seed + r for round r, so (seed, round, batch index)
    # fixes every random draw; a round's samples do not depend on the number of processes.
    config.seed = 300
    # top-level output directory.
    config.save_path = "./model/lora"
    # "fp16", "bf16" or "no". Frozen weights (VAE, text encoder, base UNet) are cast to this dtype for
    # inference; LoRA weights, the optimizer and the DDIM step math always stay in fp32.
    # fp16 needs a GPU.
    config.mixed_precision = "fp16"
    # allow TF32 matmuls on Ampere+ GPUs (faster, slightly less precise) for the UNet: sampling, training
    # and evaluation's sampling, as the official code does. Reward scoring (selection, evaluation) always
    # runs at full fp32 precision, since branches differ by < 0.01 CLIPScore. No effect on the CPU.
    config.allow_tf32 = True
    # directory holding the previous round's LoRA (pytorch_lora_weights.safetensors, diffusers format).
    # Empty for round 0 (sample with the base model). Set by the driver to round r-1's lora/ folder.
    config.resume_from = ""
    # training interval length k (number of final denoising steps trained on; 1..sample.num_steps).
    # Branching happens at step index num_steps - split_step. BPT grows it over rounds (see process.*).
    config.split_step = 14
    # number of branches per latent at the branch point (>= 1; 1 = no branching, as in DDPO).
    # Each round writes sample.batch_size * sample.num_batches_per_epoch * split_time trajectories.
    config.split_time = 3
    # one prompt used for every sample instead of prompt_file (empty: use prompt_file).
    config.prompt = ""
    # JSON list of prompts (see prompts/: template{1,2,3}_{train,test}.json).
    config.prompt_file = "prompts/template1_train.json"
    # 1: each sample draws its prompt uniformly at random (seeded); 0: go through the list in order.
    config.prompt_random_choose = 1
    # experiment log of every round (b2diffurl.tracking): "" (off), "tensorboard", "wandb" or
    # "tensorboard,wandb". Each round logs its reward, selection, training metrics and a grid of its
    # first 16 images at step = round number. tensorboard needs no network; wandb needs the wandb
    # package and a login (or WANDB_MODE=offline). run_name must end with the round number.
    config.log_with = ""
    # folder of the experiment log (empty: <save_path>/<exp_name>/logs). View it with
    # `tensorboard --logdir <save_path>/<exp_name>/logs`.
    config.logging_dir = ""

    ###### Pretrained model ######
    config.pretrained = pretrained = ml_collections.ConfigDict()
    # local diffusers folder or a Hugging Face hub id (downloaded by diffusers on first use).
    pretrained.model = "CompVis/stable-diffusion-v1-4"
    # hub revision of the model.
    pretrained.revision = "main"
    # build b2diffurl.tiny's random pipeline at pretrained.model when it is missing (tiny preset only).
    pretrained.build_tiny = False

    ###### LoRA ######
    config.lora = lora = ml_collections.ConfigDict()
    # LoRA rank on the UNet attention projections.
    lora.rank = 4
    # UNet modules that get LoRA adapters (all attention projections of the UNet).
    lora.target_modules = ("to_q", "to_k", "to_v", "to_out.0")

    ###### Sampling ######
    config.sample = sample = ml_collections.ConfigDict()
    # DDIM steps T of the whole denoising process.
    sample.num_steps = 20
    # classifier-free guidance weight (1.0 = no guidance; > 1 runs the UNet on [uncond, cond]).
    sample.guidance_scale = 5.0
    # DDIM eta: 0 deterministic, 1.0 as DDPM. Must be > 0: the policy needs a density.
    sample.eta = 1.0
    # prompts per sampling batch (before branching: each batch yields batch_size * split_time
    # trajectories that go through the UNet together).
    sample.batch_size = 8
    # prompt batches per round, in total over all processes (sharded across ranks).
    sample.num_batches_per_epoch = 32
    # dtype of the interval latents on disk: "fp16" (default), "bf16" or "fp32". From the branch point on
    # the sampling chain itself is rounded to this dtype after every step, and each recorded log-prob is
    # that of the rounded latent, so training recomputes it exactly (ratio 1 at the first step) while
    # the files are half the size of fp32. How far the rounding moves a latent: docs/PERFORMANCE.md,
    # "Disk per round"; bf16's 8-bit mantissa rounds 8x coarser than fp16.
    sample.latent_dtype = "fp16"
    # final latents decoded by the VAE per call, on the sampling device (0: all of a batch at once).
    sample.decode_batch_size = 8

    ###### Training ######
    config.train = train = ml_collections.ConfigDict()
    # trajectories per train batch, per process.
    train.batch_size = 2
    # AdamW settings.
    train.learning_rate = 1e-4
    train.adam_beta1 = 0.9
    train.adam_beta2 = 0.999
    train.adam_weight_decay = 1e-4
    train.adam_epsilon = 1e-8
    # train batches (each with all its interval timesteps) per optimizer step. Effective batch is
    # train.batch_size * num_processes * gradient_accumulation_steps trajectories: 32 is the paper's
    # value (Table 6; 64 trajectories per step on one GPU); the official run_process.sh uses 64 (preset
    # `official`). Divide it by the number of processes to keep the batch.
    train.gradient_accumulation_steps = 32
    # the round's last accumulation when it has fewer than gradient_accumulation_steps batches:
    # "scale" applies it as a full step (the mean gradient of its trajectories, like every other step);
    # "drop" discards it, as the official trainer does (with fewer selected trajectories than one step
    # needs, a round then makes no update at all). Preset `official` uses "drop".
    train.partial_step = "scale"
    # a process's last train batch of an epoch when it holds fewer than train.batch_size trajectories:
    # "weight" trains on it, weighted by its size (every step is the mean over its trajectories); "drop"
    # leaves it out. With batch_size 2 (the official value) "drop" is the official trainer, whose
    # range(0, N // 2 * 2, batch_size) leaves out the last trajectory when N is odd (with a larger batch
    # size the official loop keeps a short batch, at full weight). Preset `official` uses "drop".
    train.partial_batch = "weight"
    # gradient clipping (global L2 norm).
    train.max_grad_norm = 1.0
    # passes over the round's selected trajectories.
    train.num_epochs = 2
    # PPO clip range: ratio is clipped to [1 - eps, 1 + eps]. 0.1 is the official B2-DiffuRL code's, for
    # every method (the presets ddpo and bpt_only keep it, so only BPT and BS differ); DDPO's own release
    # uses 1e-4 (preset ddpo_release).
    train.eps = 0.1
    # advantages (normalised scores) are clipped to [-adv_clip_max, adv_clip_max].
    train.adv_clip_max = 5.0
    # advantage weight of positive (beta1) and negative (beta2) samples.
    train.beta1 = 1.0
    train.beta2 = 1.0
    # objective in b2diffurl.objectives (paper Sec. 4.5, App. D.1): "ppo" (clipped, the default), "pg"
    # (no clipping), "dpok" (clamped policy term + KL to the base model, Eq. 7) or "dpo" (preference loss
    # on the contrastive pairs against the base model, Eq. 8).
    train.algorithm = "ppo"
    # DPOK (Fan et al. 2023), as released (google-research/google-research dpok/): loss = dpok_reward_weight
    # * policy term + dpok_kl_weight * KL(policy || base model) per step, the base model being the UNet with
    # its LoRA disabled (one extra forward, no gradient). Weights 1000 / 0.1: the release's multi-prompt
    # command (this paper trains on prompt lists; its single-prompt command uses 10 / 0.01). Policy term:
    # -A * clamp(ratio, 1 - dpok_ratio_clip, 1 + dpok_ratio_clip), the release's hard clamp (its
    # --ratio_clip 1e-4, the "clipping" App. D.1 keeps; no gradient once a ratio has left the range);
    # dpok_ratio_clip 0 uses clipped PPO with train.eps instead. The KL here is the Gaussian KL of the two
    # DDIM steps; the release's is the squared difference of the noise predictions, which is this KL
    # divided by c_t^2 / (2 sigma_t^2) (its values on SD v1.4's schedule: docs/CONFIGURATION.md, "Objectives").
    train.dpok_reward_weight = 1000.0
    train.dpok_kl_weight = 0.1
    train.dpok_ratio_clip = 1e-4
    # DPO, as D3PO (Yang et al. 2024) releases it: -log sigmoid(dpo_beta * margin) per interval step of a
    # contrastive pair, margin = log(p(w) / p_ref(w)) - log(p(l) / p_ref(l)), each ratio clamped to
    # [1 - dpo_ratio_clip, 1 + dpo_ratio_clip] (D3PO's eps 0.1; 0 = no clamp). dpo_reference: "base" (the
    # frozen pretrained UNet, LoRA adapters disabled: one extra forward per pair, as D3PO) or "sampling"
    # (the log-probs recorded at sampling). beta 0.1 as D3PO. Pairs: best and worst of a branch group,
    # both selected; vanilla DPO (presets ddpo,dpo) samples 2 branches from one x_T (k = T), as D3PO's
    # pairs share their initial noise.
    train.dpo_beta = 0.1
    train.dpo_reference = "base"
    train.dpo_ratio_clip = 0.1
    # start AdamW from zero in this round instead of continuing resume_from's state (for a LoRA from
    # elsewhere, or a lost optimizer.safetensors). Without it a missing state is an error, never a
    # silent reset. run_process.sh sets it for one round with FreshOptimizer=<round>.
    train.fresh_optimizer = False
    # (trajectory, timestep) pairs per UNet forward/backward (x2 rows with CFG). Memory only: the
    # gradient is the same for any value. 4 fits a 24 GB card at 512 x 512 in half precision with room
    # to spare, 8 would not (the activations per pair: docs/PERFORMANCE.md, "Memory").
    train.forward_chunk = 4
    # recompute each UNet block's activations in the backward pass instead of storing them (diffusers'
    # enable_gradient_checkpointing): about half the activations per pair for about a third more time
    # (docs/PERFORMANCE.md, "Memory"). The gradient is the same (tests/test_performance.py). For cards
    # under 16 GB.
    train.gradient_checkpointing = False

    ###### How the UNet runs (speed only: same math, no effect on resuming) ######
    config.runtime = runtime = ml_collections.ConfigDict()
    # UNet (and VAE) weights and activations in channels-last memory layout (often faster convolutions
    # with fp16/bf16 on recent GPUs; slower on the CPU: docs/PERFORMANCE.md, "Speed levers").
    runtime.channels_last = False
    # torch.compile the UNet (nn.Module.compile, in place). On the CPU it compiles for minutes per stage
    # and batch shape and then runs slower; unmeasured on a GPU (docs/PERFORMANCE.md, "Speed levers",
    # has the numbers and says how to measure it).
    runtime.compile_unet = False
    # attention implementation of the UNet: "sdpa" (torch's scaled_dot_product_attention: flash /
    # memory-efficient kernels) or "math" (diffusers' plain AttnProcessor: materialises the attention
    # matrix: more training memory and time than sdpa, docs/PERFORMANCE.md, "Speed levers").
    runtime.attention = "sdpa"
    # seconds a process waits in a collective (gather, barrier, gradient all-reduce) for the others
    # before it stops with one line: how soon a machine that died without closing its connections
    # (power, network) is noticed by the rest (a killed process's peers notice at once). torch's default.
    runtime.dist_timeout = 1800

    ###### Evaluation & selection ######
    config.eval = evaluation = ml_collections.ConfigDict()
    # in each branch group keep the best trajectory if its normalised score >= pos_threshold and the
    # worst if its normalised score < neg_threshold.
    evaluation.pos_threshold = 0.5
    evaluation.neg_threshold = -0.5
    # earlier rounds whose scores join this round's in the per-prompt normalisation.
    evaluation.history_cnt = 8

    ###### Reward ######
    config.reward = reward = ml_collections.ConfigDict()
    # reward name in b2diffurl.rewards' registry.
    reward.name = "clipscore"
    # open_clip architecture and pretrained tag (or a local checkpoint path) for clipscore.
    reward.clip_model = "ViT-H-14"
    reward.clip_pretrained = "laion2b_s32b_b79k"
    # images scored per forward pass.
    reward.batch_size = 32
    # open_clip precision of clipscore: "fp32" (default, as the official code scores), "fp16" or "bf16".
    # fp32 because the branches of one latent differ by < 0.01 CLIPScore (paper App. F.1), so fp16
    # rounding could flip which branch is kept as best or worst; "fp16" is faster on a GPU.
    reward.precision = "fp32"
    # bertscore, the paper's second reward (Sec. 4.1): a LLaVA caption of each image (greedy, so a rerun
    # gives the same words) against reward.caption_reference by BERTScore recall (DeBERTa-xlarge-MNLI,
    # layer 40, no idf), as the release the paper follows scores it. The captioner: a transformers
    # LLaVA folder or hub id (the paper: LLaVA v1.5 7B); its question and answer length (tokens).
    reward.captioner = "llava-hf/llava-1.5-7b-hf"
    reward.caption_question = "Answer concisely: what is going on in this image?"
    reward.caption_max_tokens = 64
    reward.caption_reference = "The image contains {prompt}"
    # the captioner's precision: "auto" = fp16 on a GPU (the paper's), fp32 on the CPU; or fp32 / fp16 / bf16.
    reward.caption_precision = "auto"
    reward.bertscore_model = "microsoft/deberta-xlarge-mnli"
    reward.bertscore_layer = 40
    # build b2diffurl.tiny_text's random captioner and encoder at those paths when missing (tiny,bertscore only).
    reward.build_tiny_text = False

    ###### Evaluation (python -m b2diffurl.evaluate; run_process.sh's EvalInterval) ######
    config.evaluate = evaluate = ml_collections.ConfigDict()
    # prompt sets to evaluate, comma-separated (paper Sec. 4.1): "train" = the training prompt list
    # (prompt_file, or prompt), what Figs. 5/7/8 and Tables 1-2 are drawn from; "test" = the template's
    # held-out list, used only for the generalisation study (Table 3). Each set is its own
    # <round>/eval/<set>.json.
    evaluate.prompt_sets = "train,test"
    # the held-out prompt file; empty: prompt_file with its "_train" replaced by "_test"
    # (prompts/template1_train.json -> prompts/template1_test.json).
    evaluate.test_prompt_file = ""
    # images per prompt set, spread over its prompts: prompt i of P gets num_images // P images, the
    # first num_images % P prompts one more, each image from its own fixed seed (the same for the base
    # model and every round). 1,600 is the paper's Table 3 (1,600 images per template; template 1 has 90
    # held-out prompts, template 3 30). At least 2 per prompt (the per-prompt Inception Score).
    evaluate.num_images = 1600
    # seed of the evaluation noise: batch b of a set's (prompt, image) list draws from (seed, b).
    evaluate.seed = 10_000
    # (prompt, image) items per sampling batch (fixes which noise each image gets: keep it across a run).
    evaluate.batch_size = 8
    # pooled Inception Score (CLIP zero-shot over the ImageNet-1k class names, b2diffurl.metrics): number
    # of chunks of the images (in a fixed shuffled order, so each chunk mixes all prompts; sizes differ by
    # at most one, no image left out); the score is their mean (std over chunks also reported). The
    # per-prompt Inception Score (each prompt's images alone, averaged over prompts) needs no splits.
    evaluate.is_splits = 1
    # prompts (rows) of the image grid; its columns are the first (up to 8) seeds.
    evaluate.grid_prompts = 8
    # run_process.sh's EvalInterval: after training round r, evaluate its LoRA when (r + 1) % interval
    # == 0 and after the last round (and the base model before round 0). 0 = off.
    evaluate.interval = 0
    # independent alignment metric added to each evaluation: "" (none) or "toyworld" (the toy world's
    # object detector: alignment mean / sem, background and size entropy; b2diffurl.toyworld.score).
    evaluate.alignment = ""
    # extra scores of each evaluation besides CLIPScore (always) and the training reward: reward names,
    # comma-separated ("bertscore": Fig. 7a's second panel). Each is scored with the reward's own
    # settings (config.reward.*: captioner, encoder, ...) and written as <name>_mean / <name>_sem and
    # per prompt; a name that is the training reward (or one of its weighted parts) reuses its scores.
    evaluate.metrics = ""

    ###### Rounds (read by run_process.sh) ######
    config.process = process = ml_collections.ConfigDict()
    # number of rounds; k grows from split_step_left to split_step_right over them (BPT).
    process.stage_cnt = 100
    process.split_step_left = 14
    process.split_step_right = 20
    # keep the interval latents (samples/ and selected.safetensors, the largest outputs, read only by
    # selection and training) of every save_interval-th round (rounds 0, n, 2n, ...); the other rounds'
    # are deleted once the round is trained. 0 (default) keeps none, 1 keeps every round's. Images,
    # prompts, scores, the LoRA, the optimizer state and the metrics of every round are always kept.
    process.save_interval = 0
    # 1: each round's three stages run in one launched process (python -m b2diffurl.round), which
    # imports the libraries and builds the accelerator once instead of three times; same files, byte
    # for byte. 0 (default): one process per stage script, as the official driver. run_process.sh's OneProcess.
    process.one_process = 0
    return config


def tiny(config):
    """CPU demo and tests: b2diffurl.tiny's random models, a few prompts, seconds per stage."""
    from b2diffurl.tiny import DEFAULT_TINY_DIR, tiny_clip_paths
    from b2diffurl.tiny_text import DEFAULT_TINY_TEXT_DIR

    config.exp_name = "tiny"
    config.save_path = "./model/runs"
    config.mixed_precision = "no"
    config.pretrained.model = DEFAULT_TINY_DIR
    config.pretrained.build_tiny = True
    config.prompt_file = "prompts/template2_train.json"
    config.split_step = 3
    config.split_time = 3
    config.sample.num_steps = 4
    config.sample.batch_size = 8
    config.sample.num_batches_per_epoch = 2
    # a tiny random UNet needs a larger step than SD's LoRA to move in a few rounds
    config.train.learning_rate = 3e-3
    config.train.gradient_accumulation_steps = 2
    # the cheap colour reward (mean image colour vs the colour named in the prompt) learns visibly in
    # a few CPU rounds; clipscore also works with the tiny open_clip model below.
    config.reward.name = "colour"
    config.reward.clip_model, config.reward.clip_pretrained = tiny_clip_paths(DEFAULT_TINY_DIR)
    config.reward.batch_size = 64
    # bertscore (as the reward, ",bertscore", or as evaluate.metrics): b2diffurl.tiny_text's random
    # captioner and encoder, built on first use in model/tiny-text-v1, with 8-token captions
    config.reward.captioner = os.path.join(DEFAULT_TINY_TEXT_DIR, "llava")
    config.reward.bertscore_model = os.path.join(DEFAULT_TINY_TEXT_DIR, "deberta")
    config.reward.bertscore_layer = 3  # of its 4
    config.reward.caption_max_tokens = 8
    config.reward.build_tiny_text = True
    config.evaluate.num_images = 80  # 2 per prompt of template 2's 40 training and 40 held-out prompts
    config.process.stage_cnt = 4
    config.process.split_step_left = 2
    config.process.split_step_right = 4
    return config


def toy(config):
    """The toy world (b2diffurl.toyworld): its pretrained 32 x 32 text-to-image model and CLIP reward,
    committed in the package. A few rounds on the CPU raise held-out alignment in minutes."""
    from b2diffurl.toyworld.models import MODEL_DIR, clip_paths

    config.exp_name = "toy"
    config.save_path = "./model/runs"
    config.mixed_precision = "no"
    config.pretrained.model = MODEL_DIR
    config.prompt_file = "prompts/toy2_train.json"
    config.sample.batch_size = 8
    # 8 batches of 8 prompts x SplitTime 3 branches = 192 reward queries a round (docs/TOYWORLD.md)
    config.sample.num_batches_per_epoch = 8
    # picked from 5e-4, 1e-3, 2e-3, 5e-3 by training-prompt alignment after the last round (docs/TOYWORLD.md)
    config.train.learning_rate = 1e-3
    config.train.gradient_accumulation_steps = 4
    config.train.forward_chunk = 64
    config.reward.clip_model, config.reward.clip_pretrained = clip_paths()
    config.reward.batch_size = 128
    config.evaluate.alignment = "toyworld"
    config.evaluate.num_images = 320  # per prompt set: 32 per held-out prompt, 9-10 per training prompt
    config.evaluate.batch_size = 32
    config.evaluate.interval = 3  # the base model, round 2 and round 5 (the last)
    # evaluations also report the toy captioning score (b2diffurl.rewards.toycaption): Fig. 7a's second panel
    config.evaluate.metrics = "toycaption"
    config.process.stage_cnt = 6
    config.process.split_step_left = 14
    config.process.split_step_right = 20
    config.process.one_process = 1  # a round's stages in one process: the libraries start once a round
    return config


def ddpo(config):
    """DDPO baseline: no branching, whole trajectory every round, every trajectory trained on.

    Choices the paper does not state, kept from this method's setup: per-prompt normalisation with
    history (eval.history_cnt 8), 2 epochs per round, thresholds -inf/+inf (every trajectory selected),
    PPO clip range 0.1 (DDPO's release: 1e-4, preset ddpo_release), 128 accumulation steps (Table 6's
    DDPO column)."""
    config.split_step = config.sample.num_steps
    config.split_time = 1
    config.train.gradient_accumulation_steps = 128
    config.eval.pos_threshold = float("-inf")
    config.eval.neg_threshold = float("inf")
    config.process.split_step_left = config.sample.num_steps
    config.process.split_step_right = config.sample.num_steps
    return config


def bpt_only(config):
    """Ablation (Fig. 7): backward progressive training without branch-based sampling. Not stated by the
    paper: thresholds -inf/+inf (every trajectory selected, as DDPO), 32 accumulation steps and the
    history normalisation of the default. The official driver run with SplitTime=1 would keep its
    thresholds +-0.5 instead (a group of one kept only when |r_hat| >= 0.5): PosThreshold=0.5
    NegThreshold=-0.5 with this preset."""
    config.split_time = 1
    config.eval.pos_threshold = float("-inf")
    config.eval.neg_threshold = float("inf")
    return config


def official(config):
    """The official run_process.sh (HEAD e3a9129) where it differs from the paper's Table 6: 5 branches
    (Table 6: 3), 64 accumulation steps (Table 6: 32), and, as its trainer does, the last partial
    accumulation of a round and a last train batch of one trajectory dropped. Thresholds +-0.5 and fp32
    CLIPScore are the defaults already."""
    config.split_time = 5
    config.train.gradient_accumulation_steps = 64
    config.train.partial_step = "drop"
    config.train.partial_batch = "drop"
    config.eval.pos_threshold, config.eval.neg_threshold = 0.5, -0.5
    return config


def ddpo_release(config):
    """DDPO's own release (kvablack/ddpo-pytorch) where it differs from this method's settings: PPO clip
    range 1e-4 (train.eps; this method and the ddpo preset use 0.1). Combine: ddpo,ddpo_release."""
    config.train.eps = 1e-4
    return config


def dpo(config):
    """train.algorithm = 'dpo' (Sec. 4.5, Fig. 8, Table 2). Without branching (after ddpo: vanilla DPO)
    it samples 2 branches from the start (k = T, so both share x_T, as D3PO's pairs do) and keeps both."""
    config.train.algorithm = "dpo"
    if config.split_time == 1:
        config.split_time = 2
    return config


def _setting(field, value, doc):
    """A preset that sets one field (``train.algorithm``, ``prompt_file``) to ``value``."""

    def preset(config):
        *parents, name = field.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[name] = value
        return config

    preset.__doc__ = doc
    return preset


def _algorithm(name):
    return _setting(
        "train.algorithm",
        name,
        f"train.algorithm = {name!r} (paper Sec. 4.5, Fig. 8, Table 2); with ddpo: the vanilla algorithm.",
    )


def _template(number):
    return _setting(
        "prompt_file",
        f"prompts/template{number}_train.json",
        f"prompt template {number} (paper Sec. 4.1, App. H): train on template{number}_train.json, evaluate on its "
        "_test list.",
    )


def bertscore(config):
    """The paper's second reward (LLaVA caption, BERTScore recall): ``reward.name = "bertscore"``. After
    ``tiny`` (``tiny,bertscore``) it uses b2diffurl.tiny_text's random captioner and encoder, built on
    first use in model/tiny-text-v1, with 8-token captions (set by ``tiny``). Evaluations report
    BERTScore (``evaluate.metrics``) beside CLIPScore."""
    config.reward.name = "bertscore"
    config.evaluate.metrics = "bertscore"  # evaluations report it beside CLIPScore: Fig. 7a's two panels
    return config


def toycaption(config):
    """The toy world's captioning reward (b2diffurl.rewards.toycaption), BERTScore's stand-in on the
    CPU: ``toy,toycaption`` trains on it; evaluations report it beside CLIPScore."""
    config.reward.name = "toycaption"
    config.evaluate.metrics = "toycaption"
    return config


def _backbone(name, model_id, doc):
    """A preset that trains another backbone (b2diffurl.backbones picks it from the checkpoint's own
    model_index.json): ``model_id``, or after ``tiny`` the tiny random model of that backbone."""

    def preset(config):
        if config.pretrained.build_tiny:
            from b2diffurl.tiny import TINY_DIRS, tiny_clip_paths

            config.pretrained.model = TINY_DIRS[name]
            config.reward.clip_model, config.reward.clip_pretrained = tiny_clip_paths(TINY_DIRS[name])
            return config
        config.pretrained.model = model_id
        # the UNet's training activations grow with the pixels; sized for a 24 GB card from the activations
        # per (trajectory, timestep) pair in half precision (docs/PERFORMANCE.md, "Other backbones"):
        if name == "sdxl":
            # 1024 px: checkpointing on, 2 pairs per call. Sampling: 2 prompts x 3 branches x 2 CFG rows per
            # UNet call; 4x the batches keep a round's 256 prompts (the default's reward queries).
            config.train.gradient_checkpointing = True
            config.train.forward_chunk = 2
            config.sample.batch_size = 2
            config.sample.num_batches_per_epoch = 128
            # the VAE decodes in fp32 (force_upcast): its feature maps are large at 1024 px
            config.sample.decode_batch_size = 2
        else:
            # 768 px: 2 pairs per call, no checkpointing
            config.train.forward_chunk = 2
            config.sample.decode_batch_size = 4
        return config

    preset.__doc__ = doc
    return preset


sd21 = _backbone(
    "sd21",
    "stabilityai/stable-diffusion-2-1",
    "Stable Diffusion 2.1 (768 px, OpenCLIP ViT-H text encoder, v-prediction): stabilityai/stable-diffusion-2-1, "
    "forward_chunk 2, decode_batch_size 4. With tiny (tiny,sd21): the tiny random SD 2.x-shaped model.",
)
sdxl = _backbone(
    "sdxl",
    "stabilityai/stable-diffusion-xl-base-1.0",
    "SDXL base 1.0 (1024 px, two text encoders, micro-conditioning): stabilityai/stable-diffusion-xl-base-1.0, "
    "2 prompts per sampling batch x 128 batches (the default's 256 prompts a round), gradient checkpointing, "
    "forward_chunk 2, decode_batch_size 2. With tiny (tiny,sdxl): the tiny random SDXL-shaped model.",
)


PRESETS = {
    "": lambda config: config,
    "tiny": tiny,
    "toy": toy,
    "ddpo": ddpo,
    "bpt_only": bpt_only,
    "official": official,
    "ddpo_release": ddpo_release,
    "pg": _algorithm("pg"),
    "dpok": _algorithm("dpok"),
    "dpo": dpo,
    "bertscore": bertscore,
    "toycaption": toycaption,
    "sd21": sd21,
    "sdxl": sdxl,
    "template1": _template(1),
    "template2": _template(2),
    "template3": _template(3),
}


def get_config(preset=""):
    """Base config, then each preset named in ``preset``, left to right ("tiny", "ddpo", "template2,ddpo,dpok", ...)."""
    config = base_config()
    for name in [p for p in preset.split(",") if p] or [""]:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r} in config/stage_process.py; choose from {sorted(PRESETS)}")
        config = PRESETS[name](config)
    return config
