#!/usr/bin/env bash
# B2-DiffuRL driver: rounds of sample -> select -> train with backward progressive training.
#
#   bash run_process.sh                                        # the paper's setup (config defaults)
#   CONFIG=config/stage_process.py:toy bash run_process.sh     # CPU demo (the toy world), minutes, no downloads
#   CONFIG=config/stage_process.py:tiny bash run_process.sh    # random tiny model: the plumbing in about a minute
#   NUM_PROCESSES=8 ExpName=exp1 StageCnt=100 bash run_process.sh 2>&1 | tee exp1.log
#
# Variables (set them in the environment; unset or empty ones take their default from the config,
# CONFIG, default config/stage_process.py, optionally :preset): the official ones
#   SaveInterval SavePath PromptFile RandomPrompt ExpName Seed Beta1 Beta2 BatchCnt StageCnt
#   SplitStepLeft SplitStepRight TrainEpoch AccStep LR NumStep History_Cnt PosThreshold
#   NegThreshold SplitTime
# and MixedPrecision (no, fp16, bf16), FreshOptimizer (a round number: that round starts AdamW
# from zero instead of continuing the previous round's state), EvalInterval (n > 0: evaluate the
# base model before round 0 and every n-th round's LoRA after training it, on the prompt sets of
# evaluate.prompt_sets (the training and the held-out prompts), with python -m b2diffurl.evaluate;
# 0 = off), EvalImages (evaluate.num_images: images per prompt set and evaluation), EvalSets
# (evaluate.prompt_sets: train, test or train,test), Algorithm (train.algorithm: ppo, pg, dpok,
# dpo), LogWith (tensorboard and/or wandb: per-round metrics and sample grids under ExpDir/logs),
# OneProcess (1: each round's three stages in one launched process, python -m b2diffurl.round,
# which saves the libraries' start-up twice a round and writes the same files; 0 = one per stage),
# NUM_PROCESSES, ACCELERATE_ARGS, PYTHON, and AllowChanges (1: continue a run whose finished rounds
# used other settings; without it such a rerun stops with one line per changed setting).
# A variable that looks like one of these but is not (Lr, SAVEPATH, StageCt) stops the run.
# The run's settings (effective config, variables, package versions, git commit) are recorded in
# ExpDir/settings.json, each stage's in its marker; the run ends with its outcome (base vs best vs
# last evaluated round) and, with evaluations, figures under ExpDir/figures.
# SaveInterval here keeps the interval latents (samples/, selected.safetensors) of every n-th round
# once it is trained; 0 (the default) keeps none, 1 keeps all. Relative paths are taken from the
# folder you run it from.
#
# Everything is checked before round 0 (types, ranges, the whole k schedule, paths, device, model
# and reward): a problem is one line naming the variable, and nothing is written.
# Round r samples with seed Seed + r and the interval length k_r of the BPT schedule
# (b2diffurl.schedule.interval_length), and starts from round r-1's LoRA and optimizer state.
#
# Resumable: a finished stage (its <stage>.done marker) is skipped, so rerunning after a stop (even
# kill -9) continues where it stopped and ends with the same files as an uninterrupted run; every
# run first brings progress.csv and the SaveInterval cleanup up to date. Delete a stage's marker to
# redo that stage (and the later ones) of its round.
#
# NUM_PROCESSES > 1 runs sampling and training under `accelerate launch --multi_gpu` (on a machine
# without a GPU: that many CPU processes with gloo); ACCELERATE_ARGS adds launcher options
# (e.g. "--main_process_port 29501"); with "--config_file my_accelerate.yaml" the file alone sets
# processes and machines, and NUM_PROCESSES is not used for launching.
# Several machines: start this script on every machine with NUM_MACHINES, MACHINE_RANK (0 on the main
# one), MAIN_PROCESS_IP (the main machine's address) and MAIN_PROCESS_PORT (default 29500; the
# launches use it and the 15 ports above it in turn), as
# accelerate's flags of the same names; NUM_PROCESSES is the total over all machines. SavePath must
# be on a filesystem every machine mounts at the same path: that is checked before round 0. Machine
# rank 0 keeps the run folder's books (lock, settings, progress.csv, report); docs/RUNNING.md has the
# details and a SLURM script.
# Selection runs once, in one process (on several machines: launched on all, rank 0 selects).
# PYTHON picks the interpreter (default: .venv/bin/python).
set -euo pipefail
CallerDir=$PWD
cd "$(dirname "$0")"

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
elif [[ "$PYTHON" == */* && "$PYTHON" != /* ]]; then
    PYTHON="$CallerDir/$PYTHON"
fi
ACCELERATE_ARGS=${ACCELERATE_ARGS:-}
export B2DIFFURL_DRIVER=1
trap 'echo "stopped (Ctrl-C): rerun the same command to continue where it stopped" >&2; exit 130' INT

# Checks the whole run and sets every variable above, plus ExpDir, Ks (k of every round) and the
# absolute CONFIG; exits with one line per problem. The checked settings also go to $Prepared, which
# the start and the end of the run read instead of checking everything again.
Prepared=$(mktemp "${TMPDIR:-/tmp}/b2diffurl-run.XXXXXX")
trap 'rm -f "$Prepared"' EXIT
Settings=$(B2DIFFURL_CALLER_DIR="$CallerDir" "$PYTHON" -m b2diffurl.driver prepare "$Prepared")
eval "$Settings"

if [[ " $ACCELERATE_ARGS " == *" --config_file "* ]]; then
    # an accelerate config file (e.g. several machines) defines the processes and machines itself
    # shellcheck disable=SC2206
    LAUNCH=("$PYTHON" -m b2diffurl.driver launch $ACCELERATE_ARGS)
elif [ "$NUM_MACHINES" -gt 1 ]; then
    # several machines: this driver runs on each, with its MACHINE_RANK; NUM_PROCESSES is the total.
    # torch's C++ connection logs (retries while the machines meet) stay out of the output: a failure
    # ends in one error line
    export TORCH_CPP_LOG_LEVEL=${TORCH_CPP_LOG_LEVEL:-FATAL}
    # shellcheck disable=SC2206
    LAUNCH=("$PYTHON" -m b2diffurl.driver launch --multi_gpu --num_processes "$NUM_PROCESSES" --num_machines "$NUM_MACHINES"
            --machine_rank "$MACHINE_RANK" --main_process_ip "$MAIN_PROCESS_IP" --main_process_port "$MAIN_PROCESS_PORT"
            --mixed_precision "$MixedPrecision" --dynamo_backend no $ACCELERATE_ARGS)
elif [ "$NUM_PROCESSES" -gt 1 ]; then
    # shellcheck disable=SC2206
    LAUNCH=("$PYTHON" -m b2diffurl.driver launch --multi_gpu --num_processes "$NUM_PROCESSES" --num_machines 1 --mixed_precision "$MixedPrecision" --dynamo_backend no $ACCELERATE_ARGS)
else
    LAUNCH=("$PYTHON")
fi
# Selection runs in one process; on several machines it is launched on all of them like the other
# stages (rank 0 selects, the others wait), so that every machine goes through the same launches.
# On several machines each launch meets on its own port, MAIN_PROCESS_PORT + 0 .. 15 in turn: a
# machine that finished a launch first can then never reach the previous launch's rendezvous, still
# open on the main machine for a moment. Every machine makes the same launches in the same order.
LaunchCount=0
launch() {
    if [ "$NUM_MACHINES" -gt 1 ] && [[ " $ACCELERATE_ARGS " != *" --config_file "* ]]; then
        local port=$((MAIN_PROCESS_PORT + LaunchCount % 16))
        LaunchCount=$((LaunchCount + 1))
        "${LAUNCH[@]}" --main_process_port "$port" "$@"
    else
        "${LAUNCH[@]}" "$@"
    fi
}
select_stage() { if [ "$NUM_MACHINES" -gt 1 ]; then launch "$@"; else "$PYTHON" "$@"; fi; }
# The run folder's bookkeeping (the lock, settings.json, progress.csv, the cleanup, the report and
# figures) is machine rank 0's; the other machines run the same launches and write only what their
# ranks write.
main_machine() { [ "$MACHINE_RANK" = 0 ]; }

echo "$Header"
# One driver per run folder: fd 9 holds an flock on ExpDir/.run.lock for as long as this script (and
# the stages it starts) runs; a second driver or a stage started by hand stops with one line naming
# this one. Then the settings are compared with the ones the finished rounds used, and recorded.
if main_machine; then
    mkdir -p "$ExpDir"
    exec 9>>"$ExpDir/.run.lock"
    "$PYTHON" -m b2diffurl.driver start "$ExpDir" 9 "$Prepared"
    export B2DIFFURL_RUN_LOCK="$ExpDir"
    "$PYTHON" -m b2diffurl.driver catchup "$ExpDir" "$SaveInterval"
fi
if [ "$NUM_MACHINES" -gt 1 ]; then
    launch -m b2diffurl.nodes "$ExpDir"  # every machine sees the run folder, and they reach each other
fi

# Evaluation of round i is due when EvalInterval > 0 and (i + 1) % EvalInterval == 0, and
# after the last round. python -m b2diffurl.evaluate redoes an evaluation only when its LoRA or
# its settings changed: one call before round 0 brings the base model and every finished due round
# up to date, then each due round is evaluated right after its training.
eval_due() { [ "$EvalInterval" -gt 0 ] && { [ $((($1 + 1) % EvalInterval)) -eq 0 ] || [ "$1" -eq $((StageCnt - 1)) ]; }; }
COMMON_FLAGS=(
    --config="$CONFIG" --config.save_path="$SavePath" --config.exp_name="$ExpName"
    --config.prompt_file="$PromptFile" --config.sample.num_steps="$NumStep" --config.mixed_precision="$MixedPrecision"
    --config.split_time="$SplitTime" --config.train.algorithm="$Algorithm" --config.log_with="$LogWith"
    --config.process.split_step_left="$SplitStepLeft" --config.process.split_step_right="$SplitStepRight"
    --config.evaluate.num_images="$EvalImages" --config.evaluate.prompt_sets="$EvalSets"
)
# the evaluation's config check sees a valid interval length (every round's k lies in the schedule)
EVAL_FLAGS=("${COMMON_FLAGS[@]}" --config.split_step="${Ks[$((StageCnt - 1))]}")
if [ "$EvalInterval" -gt 0 ]; then
    EvalRounds=base
    for ((i = 0; i < StageCnt; i++)); do
        if eval_due "$i" && [ -f "$ExpDir/$(printf "round_%03d" "$i")/train.done" ]; then EvalRounds="$EvalRounds,$i"; fi
    done
    echo "||=========== evaluation: $EvalRounds ===========||"
    launch -m b2diffurl.evaluate "${EVAL_FLAGS[@]}" --rounds "$EvalRounds"
fi

for ((i = 0; i < StageCnt; i++)); do
    Round=$(printf "round_%03d" "$i")
    RoundDir="$ExpDir/$Round"
    if [ -f "$RoundDir/sample.done" ] && [ -f "$RoundDir/select.done" ] && [ -f "$RoundDir/train.done" ]; then
        continue  # (its evaluation, if due, was brought up to date above)
    fi
    FLAGS=(
        "${COMMON_FLAGS[@]}" --config.run_name="$Round"
        --config.seed="$((Seed + i))" --config.split_step="${Ks[$i]}" --config.prompt_random_choose="$RandomPrompt"
        --config.sample.num_batches_per_epoch="$BatchCnt"
        --config.train.beta1="$Beta1" --config.train.beta2="$Beta2" --config.train.num_epochs="$TrainEpoch"
        --config.train.gradient_accumulation_steps="$AccStep" --config.train.learning_rate="$LR"
        --config.eval.history_cnt="$History_Cnt" --config.eval.pos_threshold="$PosThreshold"
        --config.eval.neg_threshold="$NegThreshold"
    )
    if [ "$i" -gt 0 ]; then
        FLAGS+=(--config.resume_from="$ExpDir/$(printf "round_%03d" $((i - 1)))/lora")
    fi
    if [ "$FreshOptimizer" = "$i" ]; then
        FLAGS+=(--config.train.fresh_optimizer=True)
    fi
    echo "||=========== round $i: k = ${Ks[$i]}, seed = $((Seed + i)) ===========||"
    if [ "$OneProcess" = 1 ]; then
        launch -m b2diffurl.round "${FLAGS[@]}"  # the three stages below, in one process
    else
        [ -f "$RoundDir/sample.done" ] || launch run_sample.py "${FLAGS[@]}"
        [ -f "$RoundDir/select.done" ] || select_stage run_select.py "${FLAGS[@]}"
        [ -f "$RoundDir/train.done" ] || launch run_train.py "${FLAGS[@]}"
    fi
    if eval_due "$i"; then
        launch -m b2diffurl.evaluate "${EVAL_FLAGS[@]}" --rounds "$i"
    fi
    if main_machine; then "$PYTHON" -m b2diffurl.driver catchup "$ExpDir" "$SaveInterval" "$Round"; fi
done
if ! main_machine; then
    echo "all $StageCnt rounds finished (machine rank $MACHINE_RANK; machine rank 0 writes the report)"
    exit 0
fi
Figures=""
if [ "$EvalInterval" -gt 0 ]; then
    Figures="$ExpDir/figures"
    "$PYTHON" -m b2diffurl.figures "$ExpDir" --out "$Figures" > /dev/null
fi
echo "all $StageCnt rounds finished"
"$PYTHON" -m b2diffurl.driver report "$ExpDir" "$SaveInterval" "$Prepared" "$Figures"
