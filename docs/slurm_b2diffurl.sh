#!/bin/bash
# B2-DiffuRL on several nodes with SLURM: one run_process.sh per node, each with its machine rank.
#
#   sbatch docs/slurm_b2diffurl.sh            (from the repository's root, on a shared filesystem)
#
# Set the #SBATCH lines for your cluster (partition, account, time) and the variables below. The run
# folder (SavePath) must be on a filesystem every node mounts at the same path: the driver checks it
# before round 0. docs/RUNNING.md, "Several machines", says who writes what and what happens when a
# node stops; rerunning this script continues a stopped run.
#SBATCH --job-name=b2diffurl
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one driver per node; it launches the node's GPU processes itself
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=48:00:00
#SBATCH --output=b2diffurl_%j.log

set -euo pipefail
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
export NUM_MACHINES=$SLURM_JOB_NUM_NODES
export NUM_PROCESSES=$((NUM_MACHINES * GPUS_PER_NODE))
# the first node of the allocation is machine rank 0; its address is where the others meet it
export MAIN_PROCESS_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MAIN_PROCESS_PORT=${MAIN_PROCESS_PORT:-29500}  # it and the 15 ports above it must be free on the first node
# the run's settings (any of run_process.sh's variables), the same on every node
export ExpName=${ExpName:-b2diffurl_t1}
export SavePath=${SavePath:-$PWD/model/lora}
export AccStep=${AccStep:-2}  # 2 x 16 processes x 2 = the paper's 64 trajectories per optimizer step

# srun starts the command once per node; SLURM_NODEID (0 .. nodes - 1) is the node's machine rank
srun --kill-on-bad-exit=1 bash -c 'MACHINE_RANK=$SLURM_NODEID exec bash run_process.sh'
