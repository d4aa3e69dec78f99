#!/usr/bin/env bash
# One short GPU session (about 9 minutes on one H100/H200), run as one script so that a lent card is used
# well: CUDA throughput (bench_gpu.py), issue 4's quality runs at a GPU budget, DDP with one rank under
# fp16 + GradScaler, and the training tests with CUDA present. Every phase has its own time limit, so a
# slow phase costs itself and not the ones after it.
#
# Usage (repo root; the project's packages importable by $PY):
#   PY=python3 RESULTS=out/gpu bash studies/gpu_sessions/gpu_session.sh
# Writes out/gpu/log.txt, bench/results/gpu.md and reports/gpu/KIND/ (table.md, figure.png, per_image.csv);
# checkpoints land in out/gpu/KIND/runs/MODE/best.pt, and weights only (no optimizer state) in weights.pt.
# Optional: ON_DONE, a shell command run after each kind (e.g. to copy reports/gpu/$kind off the machine);
# SAMPLES, N_TRAIN, KINDS, MODES and AMP override the budget; PHASES picks phases (default "1 2 3 4");
# REPORTS moves reports/gpu. The detector-only push for issue 4's Dice >= 0.90 (4x the windows; run on an
# H200 in 9.8 minutes with TRAIN_LIMIT=140, which stopped two of the three runs 1 and 3 epochs short):
#   KINDS="vascular_flow body_marker radial_line" PHASES=3 MODES=seg SAMPLES=196608 TRAIN_LIMIT=140 \
#   RESULTS=out/gpu_dice REPORTS=reports/gpu_dice bash studies/gpu_sessions/gpu_session.sh
#
# CLEAN and CLEAN_TEST (folders of clean scans) paste the training / test annotations on real scans instead
# of phantoms, as `just real-backgrounds` does on the CPU (validation stays on phantoms). The dev scans do not
# travel to a lent card by themselves: copy the split into an ignored folder of the checkout and carry it.
#   CLEAN=.devscans/clean_even CLEAN_TEST=.devscans/clean_odd PHASES=3 MODES=seg SAMPLES=196608 \
#   RESULTS=out/gpu_realbg REPORTS=reports/gpu_realbg bash studies/gpu_sessions/gpu_session.sh
# SEG_ARGS adds options to the seg runs only: SEG_ARGS="--hard-negatives 0.25" (the CPU's best lever on real
# backgrounds, README "Hard negatives").
# BUILD_ARGS adds options to the training shards' build only: BUILD_ARGS="--phantom-chrome --phantom-reflectors"
# (phantoms closer to real scans, README "Phantoms closer to real scans").
# SIZE=512 builds the phase-3 shards at 512 px instead of 256 (strokes twice as many pixels wide; the mask's edge
# is a smaller share of it, README "The same task at 512 px"), e.g. the radial_line detector push at the paper's size:
#   KINDS=radial_line PHASES=3 MODES=seg SIZE=512 SAMPLES=196608 TRAIN_LIMIT=140 RESULTS=out/gpu_512 \
#   REPORTS=reports/gpu_512 bash studies/gpu_sessions/gpu_session.sh
# FILL_SAMPLES (and FILL_LIMIT, its seconds) give the n2n/n2c runs of phase 3 their own budget, e.g. a 4x detector
# with a 1x filler: MODES="seg n2n" SAMPLES=196608 FILL_SAMPLES=49152.
# PHASES=5 runs as much of the paper's full study as STUDY_MINUTES (default 6) of shards and training allow, into
# reports/study (STUDY_REPORT moves it; STUDY_ARGS adds `train study` options, e.g. "--only V-VI"):
#   PHASES=5 STUDY_MINUTES=7 RESULTS=out/gpu_study bash studies/gpu_sessions/gpu_session.sh
# DEADLINE (seconds from the script's start) shortens STUDY_MINUTES to what is left of it after the earlier phases,
# keeping STUDY_RESERVE (default 90) seconds for the evaluation and tables. Phase 3's 512 px training and validation
# shards of 8,192 / 64 samples are the study's own (same kind, size, counts and seeds): phase 5 links them instead of
# building them again. The 512 px detector push and as much of the study as the rest of a 10-minute call allows
# (the third H200 session, README "The 512 px detector push"; its seg run diverged at 37k windows, hence the
# --clip-grad 1 for the next one):
#   KINDS=radial_line PHASES="3 5" MODES="seg n2n" SIZE=512 SAMPLES=196608 TRAIN_LIMIT=205 FILL_SAMPLES=49152 \
#   SEG_ARGS="--time-limit 180 --clip-grad 1" DEADLINE=545 RESULTS=out/g REPORTS=reports/gpu_512 bash studies/gpu_sessions/gpu_session.sh
#
# Quality recipe per kind, the CPU quality recipe scaled up: 8,192 training samples at 256 px (CPU: 4,096),
# the same 64 validation and 128 test samples (seeds 1 and 2: the very test shards of reports/quality),
# n2n_unet at its full width 48 (CPU: 16), 49,152 windows of 128 px per model (CPU: 8,192), batch 32, bf16.
set -uo pipefail
PY=${PY:-python3}
RES=${RESULTS:-out/gpu}
SAMPLES=${SAMPLES:-49152}
N_TRAIN=${N_TRAIN:-8192}
AMP=${AMP:-bf16}
KINDS=${KINDS:-body_marker vascular_flow radial_line}
MODES=${MODES:-seg n2n n2c}
PHASES=${PHASES:-1 2 3 4}
REPORTS=${REPORTS:-reports/gpu}
TRAIN_LIMIT=${TRAIN_LIMIT:-$(( 70 * SAMPLES / 49152 + 10 ))}  # seconds per training run: 80 s at the default budget
FILL_SAMPLES=${FILL_SAMPLES:-$SAMPLES}  # windows per n2n/n2c run of phase 3
# n2n/n2c read three images per window, 4x the bytes at 512 px: on an H200 host the 512 px N2N run waited on data
# 60 % of the time (740-1,140 windows/s), so its limit doubles there
FILL_LIMIT=${FILL_LIMIT:-$(( FILL_SAMPLES == SAMPLES ? TRAIN_LIMIT : (70 * FILL_SAMPLES / 49152) * (SIZE > 256 ? 2 : 1) + 10 ))}
CLEAN=${CLEAN:-} CLEAN_TEST=${CLEAN_TEST:-}
SEG_ARGS=${SEG_ARGS:-}  # more `train run` options for the seg runs, e.g. "--hard-negatives 0.25"
SIZE=${SIZE:-256}  # image side of the phase-3 shards (the paper's and the full study's: 512)
SCALE=$(( (SIZE * SIZE + 256 * 256 - 1) / (256 * 256) ))  # build time limits grow with the pixels
BUILD_ARGS=${BUILD_ARGS:-}  # more `synth build` options for the training shards, e.g. "--phantom-chrome --phantom-reflectors"
for d in $CLEAN $CLEAN_TEST; do [ -d "$d" ] || { echo "CLEAN/CLEAN_TEST: no folder $d" >&2; exit 2; }; done
phase() { [[ " $PHASES " == *" $1 "* ]]; }
case $PY in /*) ;; */*) PY=$PWD/$PY ;; esac  # phase 1 runs from bench/
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$RES"
LOG=$(realpath -m "$RES/log.txt")  # absolute: phase 1 runs from bench/
W=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
START=$SECONDS
say() { echo "[$(( SECONDS - START ))s] $*" | tee -a "$LOG"; }
run() { local limit=$1; shift; say "\$ $*"; timeout "$limit" "$@" >>"$LOG" 2>&1; local rc=$?; say "rc=$rc"; return $rc; }

say "host: $(nproc) cores; $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
$PY -c "import torch, numpy, cv2; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'cv2', cv2.__version__)" | tee -a "$LOG"

# 1. throughput: n2n_unet fp32 b4 vs bf16/fp16 b16 at 512 px, and a streaming train run's data wait
phase 1 && (cd bench && run 150 $PY bench_gpu.py --steps 20 --n 512 --keep ../$RES/bench_shards)

# 2. DDP with one rank (NCCL), fp16 autocast with GradScaler, on phase 1's 512 px shards
if phase 2; then
    run 60 $PY -m torch.distributed.run --standalone --nproc_per_node=1 -m train.cli run --shards $RES/bench_shards \
        --out $RES/ddp_fp16 --preset fast --mode n2n --crop 128 --samples 2048 --batch-size 32 --amp fp16 --workers 8
    $PY -c "import json,sys; r=json.load(open('$RES/ddp_fp16/result.json')); print('ddp fp16 result', r)" >>"$LOG" 2>&1
fi

# 3. quality per kind
phase 3 && for kind in $KINDS; do
    s=$RES/$kind/shards r=$RES/$kind/runs rep=$REPORTS/$kind
    run $(( 60 * SCALE )) $PY -m synth.cli build --type "$kind" --n "$N_TRAIN" --size $SIZE --shard-size 256 --workers $W \
        ${CLEAN:+--clean "$CLEAN"} $BUILD_ARGS --out $s/train
    run $(( 20 * SCALE )) $PY -m synth.cli build --type "$kind" --n 64 --size $SIZE --shard-size 64 --seed 1 --out $s/val
    run $(( 20 * SCALE )) $PY -m synth.cli build --type "$kind" --n 128 --size $SIZE --shard-size 128 --seed 2 \
        ${CLEAN_TEST:+--clean "$CLEAN_TEST"} --out $s/test
    for mode in $MODES; do
        # a run stopped by its limit keeps the best.pt of its last finished epoch (8,192 windows each)
        extra=() n=$FILL_SAMPLES lim=$FILL_LIMIT
        [ "$mode" = seg ] && { read -ra extra <<<"$SEG_ARGS"; n=$SAMPLES lim=$TRAIN_LIMIT; }
        run $lim $PY -m train.cli run --shards $s/train --val-shards $s/val --preset fast --mode $mode --crop 128 \
            --samples "$n" --batch-size 32 --amp "$AMP" --workers 12 --log-every 20 "${extra[@]}" --out $r/$mode
    done
    mkdir -p "$rep"
    budget="$SAMPLES windows of 128 px per model"
    [ "$FILL_SAMPLES" != "$SAMPLES" ] && budget="$SAMPLES windows of 128 px per detector, $FILL_SAMPLES per restoration model"
    runs=()  # the compare rows of the modes trained: each model, and the detector filled by each restoration
    for mode in $MODES; do [ -f $r/$mode/best.pt ] && runs+=(--run "${mode^^}=$r/$mode/best.pt"); done
    for mode in n2n n2c; do
        [ -f $r/seg/best.pt ] && [ -f $r/$mode/best.pt ] && [[ " $MODES " == *" $mode "* ]] \
            && runs+=(--run "SEG+${mode^^}=$r/seg/best.pt+$r/$mode/best.pt")
    done
    run $(( 100 * SCALE )) $PY -m train.cli compare --shards $s/test --out "$rep" \
        --title "$kind${CLEAN:+ pasted on the scans of $CLEAN}${CLEAN_TEST:+ (test: $CLEAN_TEST)}, $SIZE px, $budget, n2n_unet width 48, $AMP on $(nvidia-smi --query-gpu=name --format=csv,noheader)" \
        "${runs[@]}"
    for mode in $MODES; do  # seconds and img/s of each run, beside the table
        [ -f $r/$mode/result.json ] && { echo "$mode $(cat $r/$mode/result.json)"; } >>"$rep/runs.txt"
    done
    # weights only (no optimizer state), small enough to bring back for the real-scan checks
    $PY - "$r" <<'EOF' >>"$LOG" 2>&1
import sys, pathlib, torch
for p in pathlib.Path(sys.argv[1]).glob("*/best.pt"):
    c = torch.load(p, map_location="cpu", weights_only=True)
    c.pop("optimizer", None)
    torch.save(c, p.with_name("weights.pt"))
EOF
    [ -n "${ON_DONE:-}" ] && eval "$ON_DONE"
done

# 4. the training, model, loss and metric tests with CUDA present
par=(); $PY -c "import xdist" 2>/dev/null && par=(-n 8)  # pytest-xdist is not a dependency: serial without it
phase 4 && run 150 $PY -m pytest -q -x -p no:cacheprovider "${par[@]}" tests/test_train.py tests/test_models.py tests/test_losses.py \
    tests/test_metrics.py

# 5. the paper's full study (train study: 512 px, every model at its paper width, bf16), time-boxed to what the
#    lease leaves: shards and training stop after STUDY_MINUTES, then the finished runs are evaluated and the
#    tables written with the card's name (the unfinished runs listed); a rerun continues. Not in the default PHASES.
if phase 5; then
    STUDY_MINUTES=${STUDY_MINUTES:-6} STUDY_REPORT=${STUDY_REPORT:-reports/study}
    if [ -n "${DEADLINE:-}" ]; then
        STUDY_MINUTES=$(awk "BEGIN { m = ($DEADLINE - $SECONDS + $START - ${STUDY_RESERVE:-90}) / 60; \
            print (m < $STUDY_MINUTES ? m : $STUDY_MINUTES) }")
    fi
    plan=$($PY -c "from train.study import PLANS; p = PLANS['full']; print(p.size, p.n_train)")
    if [ "$SIZE $N_TRAIN" = "$plan" ] && [ -z "$CLEAN$BUILD_ARGS" ] && [[ " ${STUDY_ARGS:-} " != *" --quick "* ]]; then
        for kind in $KINDS; do for split in train val; do
            src=$RES/$kind/shards/$split dst=$RES/study/shards/$kind/$split
            [ -f $src/manifest.json ] && [ ! -e $dst ] && mkdir -p "${dst%/*}" && cp -al $src $dst && say "linked $src as $dst"
        done; done
    fi
    after=300; [ -n "${DEADLINE:-}" ] && after=$(( ${STUDY_RESERVE:-90} + 20 ))  # seconds for evaluation and tables
    if awk "BEGIN { exit !($STUDY_MINUTES <= 0) }"; then
        say "phase 5: no time left before DEADLINE"
    else
        run "$(awk "BEGIN { print int($STUDY_MINUTES * 60 + $after) }")" $PY -m train.cli study \
            --minutes "$STUDY_MINUTES" ${STUDY_ARGS:-} --out "$RES/study" --report "$STUDY_REPORT"
        tail -n 40 "$STUDY_REPORT/tables.md" >>"$LOG" 2>&1
    fi
fi

say "done"
