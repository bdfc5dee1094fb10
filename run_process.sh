#!/usr/bin/env bash
# B2-DiffuRL driver: rounds of sample -> select -> train with backward progressive training.
#
#   bash run_process.sh                                        # the paper's setup (config defaults)
#   CONFIG=config/stage_process.py:tiny bash run_process.sh    # CPU demo, a few minutes, no downloads
#   NUM_PROCESSES=8 ExpName=exp1 StageCnt=100 bash run_process.sh > log/exp1
#
# Every variable below can be set from the environment; its default comes from the config
# (CONFIG, default config/stage_process.py, optionally :preset), so the config is the one source
# of truth. Round r samples with seed Seed + r and the interval length k_r of the BPT schedule
# (b2diffurl.schedule.interval_length), and starts from round r-1's LoRA and optimizer state.
#
# Resumable: a finished stage (its <stage>.done marker) is skipped, so rerunning after a stop
# continues where it stopped and rewrites nothing that is complete.
#
# NUM_PROCESSES > 1 runs sampling and training under `accelerate launch --multi_gpu` (on a machine
# without a GPU: that many CPU processes with gloo); ACCELERATE_ARGS adds launcher options
# (e.g. "--main_process_port 29501"); with "--config_file my_accelerate.yaml" (several machines) the
# file alone sets processes and machines, and NUM_PROCESSES is not used for launching.
# Selection runs once, in one process. PYTHON picks the interpreter (default: .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")"

CONFIG=${CONFIG:-config/stage_process.py}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
NUM_PROCESSES=${NUM_PROCESSES:-1}
ACCELERATE_ARGS=${ACCELERATE_ARGS:-}

eval "$("$PYTHON" -m b2diffurl.driver defaults "$CONFIG")"
SaveInterval=${SaveInterval:-$Default_SaveInterval}
SavePath=${SavePath:-$Default_SavePath}
PromptFile=${PromptFile:-$Default_PromptFile}
RandomPrompt=${RandomPrompt:-$Default_RandomPrompt}
ExpName=${ExpName:-$Default_ExpName}
Seed=${Seed:-$Default_Seed}
Beta1=${Beta1:-$Default_Beta1}
Beta2=${Beta2:-$Default_Beta2}
BatchCnt=${BatchCnt:-$Default_BatchCnt}
StageCnt=${StageCnt:-$Default_StageCnt}
SplitStepLeft=${SplitStepLeft:-$Default_SplitStepLeft}
SplitStepRight=${SplitStepRight:-$Default_SplitStepRight}
TrainEpoch=${TrainEpoch:-$Default_TrainEpoch}
AccStep=${AccStep:-$Default_AccStep}
LR=${LR:-$Default_LR}
NumStep=${NumStep:-$Default_NumStep}
History_Cnt=${History_Cnt:-$Default_History_Cnt}
PosThreshold=${PosThreshold:-$Default_PosThreshold}
NegThreshold=${NegThreshold:-$Default_NegThreshold}
SplitTime=${SplitTime:-$Default_SplitTime}

if ! [[ "$SaveInterval" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: SaveInterval=$SaveInterval must be an integer >= 1 (1 keeps every round's samples/)" >&2
    exit 2
fi
if [[ " $ACCELERATE_ARGS " == *" --config_file "* ]]; then
    # an accelerate config file (e.g. several machines) defines the processes and machines itself
    # shellcheck disable=SC2206
    LAUNCH=("$PYTHON" -m accelerate.commands.launch $ACCELERATE_ARGS)
elif [ "$NUM_PROCESSES" -gt 1 ]; then
    # shellcheck disable=SC2206
    LAUNCH=("$PYTHON" -m accelerate.commands.launch --multi_gpu --num_processes "$NUM_PROCESSES" --num_machines 1 --dynamo_backend no $ACCELERATE_ARGS)
else
    LAUNCH=("$PYTHON")
fi

Schedule=$("$PYTHON" -m b2diffurl.driver schedule "$StageCnt" "$SplitStepLeft" "$SplitStepRight")
read -r -a Ks <<< "$Schedule"
ExpDir="$SavePath/$ExpName"
echo "experiment $ExpDir: $StageCnt rounds, k ${Ks[0]}..${Ks[$((StageCnt - 1))]}, $SplitTime branches, $NUM_PROCESSES process(es), config $CONFIG"

for ((i = 0; i < StageCnt; i++)); do
    Round=$(printf "round_%03d" "$i")
    RoundDir="$ExpDir/$Round"
    if [ -f "$RoundDir/train.done" ]; then
        continue
    fi
    FLAGS=(
        --config="$CONFIG"
        --config.save_path="$SavePath" --config.exp_name="$ExpName" --config.run_name="$Round"
        --config.seed="$((Seed + i))" --config.split_step="${Ks[$i]}" --config.split_time="$SplitTime"
        --config.prompt_file="$PromptFile" --config.prompt_random_choose="$RandomPrompt"
        --config.sample.num_batches_per_epoch="$BatchCnt" --config.sample.num_steps="$NumStep"
        --config.train.beta1="$Beta1" --config.train.beta2="$Beta2" --config.train.num_epochs="$TrainEpoch"
        --config.train.gradient_accumulation_steps="$AccStep" --config.train.learning_rate="$LR"
        --config.eval.history_cnt="$History_Cnt" --config.eval.pos_threshold="$PosThreshold"
        --config.eval.neg_threshold="$NegThreshold"
    )
    if [ "$i" -gt 0 ]; then
        FLAGS+=(--config.resume_from="$ExpDir/$(printf "round_%03d" $((i - 1)))/lora")
    fi
    echo "||=========== round $i: k = ${Ks[$i]}, seed = $((Seed + i)) ===========||"
    [ -f "$RoundDir/sample.done" ] || "${LAUNCH[@]}" run_sample.py "${FLAGS[@]}"
    [ -f "$RoundDir/select.done" ] || "$PYTHON" run_select.py "${FLAGS[@]}"
    "${LAUNCH[@]}" run_train.py "${FLAGS[@]}"
    if [ $((i % SaveInterval)) -ne 0 ] && [ -d "$RoundDir/samples" ]; then
        rm -rf "$RoundDir/samples"  # trained: nothing reads the interval latents any more
    fi
    "$PYTHON" -m b2diffurl.driver report "$ExpDir" "$Round"
done
echo "all $StageCnt rounds finished; per-round table: $ExpDir/progress.csv"
