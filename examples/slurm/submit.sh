#!/usr/bin/env bash
# Submit the whole meerkat job to SLURM: createdocs -> preprocess (job array) -> train.
# Edit the two places marked EDIT (or set the same names in the environment), then:
#   bash submit.sh              the whole job
#   bash submit.sh rerun 2 5    only preprocess tasks 2 and 5 again (after they failed), then train
#   bash submit.sh scan         apply OUTPUT/model to the videos in VIDEOS (an array of TASKS tasks)
#   bash submit.sh scan 3       only scan task 3 again; videos already scanned are reused
#   bash submit.sh detections   apply the model to MegaDetector's boxes in DETECTIONS (TASKS tasks)
#   bash submit.sh detections 3 only that task again; the shares already done are reused
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# EDIT 1: paths. Samples holds Training/ (and Testing/); everything meerkat writes goes to OUTPUT,
# SLURM's logs to OUTPUT/slurm-logs. SIF empty: use the `meerkat` on PATH instead of the container.
SAMPLES="${SAMPLES:-/path/to/Samples}"
OUTPUT="${OUTPUT:-/path/to/Output}"
SIF="${SIF-/path/to/meerkat.sif}"
# EDIT 2: where to run. PARTITION empty: the cluster's default partition. GPUS=1 adds --gres=gpu:1
# and apptainer --nv. TASKS: how many array tasks split the preprocessing.
PARTITION="${PARTITION:-}"
GPUS="${GPUS:-0}"
TASKS="${TASKS:-8}"
# EDIT 3 (scan only): the videos to scan, where the results go, and the model (default: this job's).
VIDEOS="${VIDEOS:-/path/to/Videos}"
SCANS="${SCANS:-$OUTPUT/scans}"
MODEL="${MODEL:-$OUTPUT/model}"
# EDIT 4 (detections only): MegaDetector's results file, the folder its paths start from (empty:
# the file's folder) and where its classified copy and scan.csv go. The model is MODEL above.
DETECTIONS="${DETECTIONS:-/path/to/megadetector.json}"
IMAGE_ROOT="${IMAGE_ROOT:-}"
CLASSIFIED="${CLASSIFIED:-$OUTPUT/classified}"

# sbatch runs a copy of each script, so they find meerkat.sh through MEERKAT_EXAMPLES.
export MEERKAT_SAMPLES="$SAMPLES" MEERKAT_OUTPUT="$OUTPUT" MEERKAT_SIF="$SIF" MEERKAT_TASKS="$TASKS" \
  MEERKAT_GPUS="$GPUS" MEERKAT_EXAMPLES="$here"
logs="$OUTPUT/slurm-logs"
mkdir -p "$logs"
common=(--parsable --export=ALL --chdir="$OUTPUT")
[ -n "$PARTITION" ] && common+=(--partition="$PARTITION")
[ "$GPUS" -gt 0 ] && gres=(--gres="gpu:$GPUS") || gres=()

if [ "${1:-}" = scan ]; then
  export MEERKAT_SCAN_MODEL="$MODEL" MEERKAT_VIDEOS="$VIDEOS" MEERKAT_SCAN_OUTPUT="$SCANS"
  indices="${2:-0-$((TASKS - 1))}"
  scan="$(sbatch "${common[@]}" "${gres[@]}" --array="$indices" --output="$logs/%x-%A_%a.out" "$here/scan.sbatch")"
  echo "scan $scan (array $indices)"
  exit 0
fi

if [ "${1:-}" = detections ]; then
  export MEERKAT_SCAN_MODEL="$MODEL" MEERKAT_DETECTIONS="$DETECTIONS" MEERKAT_SCAN_OUTPUT="$CLASSIFIED"
  [ -n "$IMAGE_ROOT" ] && export MEERKAT_IMAGE_ROOT="$IMAGE_ROOT"
  indices="${2:-0-$((TASKS - 1))}"
  job="$(sbatch "${common[@]}" "${gres[@]}" --array="$indices" --output="$logs/%x-%A_%a.out" "$here/detections.sbatch")"
  echo "detections $job (array $indices)"
  exit 0
fi

if [ "${1:-}" = rerun ]; then
  shift
  indices="$(IFS=,; echo "$*")"
  pre="$(sbatch "${common[@]}" "${gres[@]}" --array="$indices" --output="$logs/%x-%A_%a.out" "$here/preprocess.sbatch")"
  train="$(sbatch "${common[@]}" "${gres[@]}" --dependency="afterok:$pre" --output="$logs/%x-%j.out" "$here/train.sbatch")"
  echo "preprocess $pre (array $indices)"
  echo "train $train"
  exit 0
fi

docs="$(sbatch "${common[@]}" --output="$logs/%x-%j.out" "$here/createdocs.sbatch")"
pre="$(sbatch "${common[@]}" "${gres[@]}" --dependency="afterok:$docs" --array="0-$((TASKS - 1))" \
  --output="$logs/%x-%A_%a.out" "$here/preprocess.sbatch")"
train="$(sbatch "${common[@]}" "${gres[@]}" --dependency="afterok:$pre" --output="$logs/%x-%j.out" "$here/train.sbatch")"
echo "createdocs $docs"
echo "preprocess $pre (array 0-$((TASKS - 1)))"
echo "train $train"
echo "watch: squeue -u $(id -un); logs in $logs; curves: meerkat tensorboard $OUTPUT, or open $OUTPUT/report/index.html"
