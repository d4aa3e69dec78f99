# Every recipe sets itself up: a fresh machine needs only Python 3.11, pip and `pip install rust-just`.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"
bin := venv / "bin"

# the main job (same as demo)
default: demo

# create .venv and install the locked environment (requirements.lock) plus the project; skipped when nothing changed
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
    [ -f "$stamp" ] && exit 0
    [ -x {{py}} ] || python3 -m venv {{venv}}
    echo "setup: installing $(grep -c '^[a-z]' requirements.lock) locked packages into {{venv}} (PyPI's torch $(grep -oP '^torch==\K.*' requirements.lock) with its CUDA libraries: about 6.5 GB and 2-4 minutes on a fresh machine; see README, Set-up)"
    {{py}} -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
    {{py}} -m pip install -q -r requirements.lock 2>&1 | grep -v "is ignored" || true
    {{py}} -m pip install -q --no-deps -e . 2>&1 | grep -v "is ignored" || true
    {{py}} -m pip check -q >/dev/null || { echo "setup: the environment is inconsistent (pip check); delete {{venv}} and rerun"; exit 1; }
    rm -f {{venv}}/.installed-*
    touch "$stamp"
    echo "setup: done, $(du -sh {{venv}} | cut -f1) in {{venv}}"

# refresh requirements.lock from pyproject's ranges and lock-pins.txt (uv pip compile; needs the package index)
lock:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x {{bin}}/uv ] || { [ -x {{py}} ] || python3 -m venv {{venv}}; {{py}} -m pip install -q uv; }
    {{bin}}/uv pip compile -q pyproject.toml --extra dev --extra blosc -c lock-pins.txt --python-version 3.11 \
        --python-platform x86_64-manylinux_2_28 --custom-compile-command "just lock" -o requirements.lock
    echo "requirements.lock: $(grep -c '^[a-z]' requirements.lock) packages; run just setup to install them"

# lint and the test suite (~2.5 min on 2 cores); REQUIRE_DEVDATA=1 turns dev-data skips into failures
test *ARGS: setup
    {{bin}}/ruff check synth train tests bench
    HF_HUB_OFFLINE=1 {{py}} -m pytest -q -m "not slow and not gpu" {{ARGS}}

# slower checks (full-size 512x512 builds)
test-slow *ARGS: setup
    HF_HUB_OFFLINE=1 {{py}} -m pytest -q -m "slow" {{ARGS}}

# benchmarks; writes bench/results/*.md
bench: setup
    cd bench && ../{{py}} bench_build.py && ../{{py}} bench_exactmath.py && ../{{py}} bench_train.py && ../{{py}} bench_recipes.py && ../{{py}} bench_models.py

# what each tuning step buys (~65 min on 2 cores; reuses finished runs); writes bench/results/tuning.md
bench-tuning: setup
    cd bench && ../{{py}} bench_tuning.py

# what the mask rule alone costs in Dice (~1 min); writes bench/results/mask_ceiling.md
bench-mask: setup
    cd bench && ../{{py}} mask_ceiling.py

# GPU throughput (fp32 b4 vs bf16/fp16 b16) and data-wait fraction; writes bench/results/gpu.md
bench-gpu: setup
    cd bench && ../{{py}} bench_gpu.py

# one ~9-min GPU session (H100/H200): throughput, DDP with one rank, the quality runs at a GPU budget (reports/gpu)
gpu-session: setup
    PY={{py}} bash bench/gpu_session.sh

# (The committed run set TRAIN_LIMIT=140 to fit a 15-minute lease; it stopped two runs 1 and 3 epochs short of 24.)
# the detectors alone on 4x the windows (GPU, ~11 min on an H200), issue 4's Dice push: reports/gpu_dice
gpu-dice: setup
    KINDS="vascular_flow body_marker radial_line" PHASES=3 MODES=seg SAMPLES=196608 RESULTS=out/gpu_dice \
        REPORTS=reports/gpu_dice PY={{py}} bash bench/gpu_session.sh

# (the third H200 session ran this call without --clip-grad; its detector diverged, README "The 512 px detector push")
# GPU, ~9 min: the 512 px radial_line detector and N2N filler, then the full study in the time left (reports/gpu_512, study)
gpu-512: setup
    KINDS=radial_line PHASES="3 5" MODES="seg n2n" SIZE=512 SAMPLES=196608 TRAIN_LIMIT=205 FILL_SAMPLES=49152 \
        SEG_ARGS="--time-limit 180 --clip-grad 1" DEADLINE=545 RESULTS=out/gpu_512 REPORTS=reports/gpu_512 \
        PY={{py}} bash bench/gpu_session.sh

# the main job end to end on phantoms and shipped icons (~12 min on 2 cores): shards, N2N/N2C/seg models, their table
# against the committed reference, and held-out annotated and clean phantom scans cleaned and scored; all under out/demo
demo: setup
    #!/usr/bin/env bash
    set -euo pipefail
    s=out/demo/shards r=out/demo/runs
    {{bin}}/synth phantom --n 6 --size 384 --seed 21 --out out/demo/scans/clean
    {{bin}}/synth phantom --n 6 --size 384 --seed 22 --annotate body_marker --truth out/demo/truth/annotated \
        --out out/demo/scans/annotated
    {{bin}}/synth build --type body_marker --n 2048 --size 256 --shard-size 256 --workers 2 --out $s/train
    {{bin}}/synth build --type body_marker --n 64 --size 256 --shard-size 64 --seed 1 --out $s/val
    {{bin}}/synth build --type body_marker --n 128 --size 256 --shard-size 128 --seed 2 --out $s/test
    {{bin}}/synth inspect $s/train --verify --preview out/demo/preview_body_marker.png --k 4
    k=0
    for mode in n2n n2c seg; do
        k=$((k + 1))
        {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu --mode $mode --crop 128 --samples 4096 \
            --label "demo $k/3" --out $r/$mode
    done
    {{bin}}/train compare --shards $s/test --out out/demo/report --title "body_marker, 256 px, 4096 training windows per model" \
        --run N2N=$r/n2n/best.pt --run N2C=$r/n2c/best.pt --run SEG=$r/seg/best.pt \
        --run "SEG+N2N=$r/seg/best.pt+$r/n2n/best.pt" --reference reports/demo/table.json
    {{bin}}/train apply --checkpoint $r/seg/best.pt --fill $r/n2n/best.pt out/demo/scans --out out/demo/applied
    {{bin}}/train score-apply out/demo/applied --truth out/demo/truth
    echo "demo: everything is in out/demo (report/table.md, report/figure.png, applied/score/panels.png)"

# the ready model shipped in train/weights (~70 min on 2 cores): one multi-kind detector and its N2N filler, trained
# only on built-in phantoms (with scanner chrome and bright reflectors, never masked) and the shipped icons, with
# annotations of any colour (--palette any); then its per-kind Dice on held-out phantoms into docs/model_card/
release-model SEG_WINDOWS="65536" FILL_WINDOWS="8192" SEG_SECONDS="3000": setup
    #!/usr/bin/env bash
    set -euo pipefail
    o=out/release s=out/release/shards
    common="--type mixed --palette any --phantom-chrome --phantom-reflectors --size 512"
    {{bin}}/synth build $common --n 1536 --shard-size 128 --workers 2 --out $s/train
    {{bin}}/synth build $common --n 64 --shard-size 64 --seed 1 --out $s/val
    {{bin}}/synth build $common --n 128 --shard-size 128 --seed 2 --out $s/test
    {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu --mode seg --width 16 --full-skip --clip-grad 1 \
        --crop 128 --hard-negatives 0.25 --samples {{SEG_WINDOWS}} --time-limit {{SEG_SECONDS}} --label "release 1/2" \
        --out $o/runs/seg
    {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu --mode n2n --width 16 --crop 128 \
        --samples {{FILL_WINDOWS}} --label "release 2/2" --out $o/runs/n2n
    {{bin}}/train export $o/runs/seg/best.pt train/weights/detector.pt
    {{bin}}/train export $o/runs/n2n/best.pt train/weights/filler.pt
    {{bin}}/train compare --shards $s/test --out docs/model_card/phantom_test --title "shipped model, held-out phantoms, 512 px" \
        --run "detector=train/weights/detector.pt" --run "detector+filler=train/weights/detector.pt+train/weights/filler.pt"

# the paper's study (Tables I-VIII, Figs. 3-6): `just study` on a GPU (est. 47-67 min on an H200), `just study --quick` on a CPU (<30 min)
study *ARGS: setup
    HF_HUB_OFFLINE=1 {{bin}}/train study {{ARGS}}

lint: setup
    {{bin}}/ruff check synth train tests bench

# issue 4's quality runs (~100 min on 2 cores): per kind, seg/n2n/n2c and gated n2n at 256 px, test tables, real-scan checks
quality KINDS="body_marker radial_line vascular_flow" SAMPLES="8192" DEVDATA="../shared/devdata/mmotu": setup
    #!/usr/bin/env bash
    set -euo pipefail
    for kind in {{KINDS}}; do
        s=out/quality/$kind/shards r=out/quality/$kind/runs rep=reports/quality/$kind
        {{bin}}/synth build --type $kind --n 4096 --size 256 --shard-size 256 --workers 2 --out $s/train
        {{bin}}/synth build --type $kind --n 64 --size 256 --shard-size 64 --seed 1 --out $s/val
        {{bin}}/synth build --type $kind --n 128 --size 256 --shard-size 128 --seed 2 --out $s/test
        for mode in seg n2n n2c; do
            {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu --mode $mode --crop 128 \
                --samples {{SAMPLES}} --out $r/$mode
        done
        {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu --mode n2n --crop 128 --gated \
            --samples {{SAMPLES}} --out $r/n2n_gated
        {{bin}}/train compare --shards $s/test --out $rep --title "$kind, 256 px, {{SAMPLES}} training windows per model" \
            --run N2N=$r/n2n/best.pt --run N2C=$r/n2c/best.pt --run N2N-gated=$r/n2n_gated/best.pt --run SEG=$r/seg/best.pt \
            --run "SEG+N2N=$r/seg/best.pt+$r/n2n/best.pt" --run "SEG+N2C=$r/seg/best.pt+$r/n2c/best.pt" \
            --run "SEG+N2N-gated=$r/seg/best.pt+$r/n2n_gated/best.pt"
        if [ -d {{DEVDATA}}/annotated ]; then
            for mode in seg n2n n2n_gated; do
                {{bin}}/train check-real --checkpoint $r/$mode/best.pt --annotated {{DEVDATA}}/annotated \
                    --clean {{DEVDATA}}/clean --out $rep/real_$mode
            done
        fi
    done

# real clean scans as training backgrounds (~30 min per kind on 2 cores, after `just quality`): real vs phantom
real-backgrounds KINDS="body_marker radial_line vascular_flow" MODES="seg n2n n2c" SAMPLES="8192" DEVDATA="../shared/devdata/mmotu": setup
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -d {{DEVDATA}}/clean ] || [ ! -d {{DEVDATA}}/annotated ]; then
        echo "real-backgrounds needs real scans: {{DEVDATA}}/clean and {{DEVDATA}}/annotated (set DEVDATA=...)." >&2; exit 1
    fi
    {{just_executable()}} _clean-split {{DEVDATA}}
    # every phantom-trained model to compare against must exist before minutes go into shards and training
    for kind in {{KINDS}}; do
        for mode in {{MODES}}; do
            if [ ! -f out/quality/$kind/runs/$mode/best.pt ]; then
                echo "$kind: no phantom-trained $mode model at out/quality/$kind/runs/$mode/best.pt; run 'just quality $kind' first." >&2
                exit 1
            fi
        done
    done
    for kind in {{KINDS}}; do
        q=out/quality/$kind o=out/realbg/$kind rep=reports/quality/$kind/real_backgrounds runs=()
        {{bin}}/synth build --type $kind --n 4096 --size 256 --shard-size 256 --workers 2 --clean out/realbg/clean_even \
            --out $o/shards/train
        {{bin}}/synth build --type $kind --n 128 --size 256 --shard-size 128 --seed 2 --clean out/realbg/clean_odd \
            --out $o/shards/test_real_odd
        for mode in {{MODES}}; do
            {{bin}}/train run --shards $o/shards/train --val-shards $q/shards/val --preset cpu --mode $mode --crop 128 \
                --samples {{SAMPLES}} --out $o/runs/$mode
            label=${mode^^}
            runs+=(--run "$label phantom backgrounds=$q/runs/$mode/best.pt" --run "$label real backgrounds=$o/runs/$mode/best.pt")
        done
        {{bin}}/train compare --shards $o/shards/test_real_odd --out $rep "${runs[@]}" \
            --title "$kind pasted on 39 held-out real clean scans (MMOTU, odd positions), 128 samples at 256 px; {{SAMPLES}} windows of 128 px per model, width 16, CPU"
        printf '\n(figure.png is kept local, not committed: its backgrounds are internal development scans. `just real-backgrounds` regenerates it.)\n' >> $rep/table.md
        if [[ " {{MODES}} " == *" seg "* ]]; then
            for which in phantom:$q real:$o; do
                sweep=$rep/sweep_${which%%:*}_trained
                # the sweep (2-3 min) is redone only when the detector is newer than its report
                [ $sweep/operating_point.json -nt ${which#*:}/runs/seg/best.pt ] && continue
                {{bin}}/train check-real --checkpoint ${which#*:}/runs/seg/best.pt --annotated {{DEVDATA}}/annotated \
                    --clean {{DEVDATA}}/clean --sweep --out $sweep
            done
        fi
    done

# the split check-real --sweep uses: the real clean scans by sorted position in the folder, even positions
# into OUT/clean_even (training backgrounds), odd positions into OUT/clean_odd (held out)
_clean-split DEVDATA OUT="out/realbg":
    #!/usr/bin/env bash
    set -euo pipefail
    rm -rf {{OUT}}/clean_even {{OUT}}/clean_odd
    mkdir -p {{OUT}}/clean_even {{OUT}}/clean_odd
    {{py}} -c 'import shutil, sys; from synth.images import find_images, split_halves
    for half, to in zip(split_halves(find_images(sys.argv[1])), sys.argv[2:]): [shutil.copy(p, to) for p in half]' \
        {{DEVDATA}}/clean {{OUT}}/clean_even {{OUT}}/clean_odd

# the operating point `train check-real --sweep` picked into SWEEP, as the options of `train apply` / `check-real`
_point SWEEP:
    @{{py}} -c 'import json, sys; d = json.load(open(sys.argv[1])); print("--threshold", d["threshold"], "--min-area", d["min_area"])' \
        {{SWEEP}}/operating_point.json

# DIR/clean holds scans without annotations, DIR/annotated scans with them. The 512 px radial_line recipe of
# `just real-512` (width 24, --full-skip, --clip-grad 1, N windows of 128 px), its training samples pasted on the
# even-position half of DIR/clean; its operating point picked on DIR's even halves by `check-real --sweep` and
# reported on the odd ones; then per-scan counts over DIR at that point (and a panel to look at) and DIR/annotated
# cleaned. 1.5-2 hours on 2 CPU cores at 98,304 windows (76 min of training on an Intel Xeon, ~104 on an AMD EPYC).
# the recommended detector for your own scans (DIR/clean, DIR/annotated), trained, checked and applied; writes OUT
own-scans DIR N="98304" SEED="2" OUT="out/own": setup
    #!/usr/bin/env bash
    set -euo pipefail
    for need in {{DIR}}/clean {{DIR}}/annotated; do
        [ -d $need ] || { echo "own-scans: no folder $need (give DIR with clean/, scans without annotations, and annotated/)." >&2; exit 1; }
    done
    o={{OUT}} run={{OUT}}/runs/seg512_{{N}}_s{{SEED}}
    {{just_executable()}} _clean-split {{DIR}} $o
    {{bin}}/synth build --type radial_line --n 4096 --size 512 --shard-size 256 --workers $(nproc) \
        --clean $o/clean_even --out $o/shards/train
    {{bin}}/synth build --type radial_line --n 64 --size 512 --shard-size 64 --seed 1 --out $o/shards/val
    [ -f $run/result.json ] || {{bin}}/train run --shards $o/shards/train --val-shards $o/shards/val --preset cpu \
        --mode seg --crop 128 --samples {{N}} --seed {{SEED}} --clip-grad 1 --width 24 --full-skip --out $run
    {{bin}}/train check-real --checkpoint $run/best.pt --sweep --annotated {{DIR}}/annotated --clean {{DIR}}/clean \
        --out $o/sweep
    {{just_executable()}} _check-picked $run/best.pt $o/sweep $o/check {{DIR}}
    # how many held-out clean scans are near copies of a training background
    clean=$(realpath {{DIR}}/clean) split=$(realpath $o)/split_overlap.md
    (cd bench && PYTHONPATH=.. ../{{py}} split_overlap.py --folder $clean --out $split)
    {{bin}}/train apply --checkpoint $run/best.pt $({{just_executable()}} _point $o/sweep) {{DIR}}/annotated --out $o/cleaned
    echo "detector $run/best.pt; operating point $o/sweep/operating_point.md; counts $o/check; near copies across the split $o/split_overlap.md; cleaned scans $o/cleaned"

# the 512 px detector that meets the phantom targets, trained on phantoms and on the 39 even-position real clean
# scans, one seed each, the rest of the recipe identical (width 24, --full-skip, --clip-grad 1, N windows of 128 px;
# ~65 min per run on 2 cores at 98,304); both tested on annotations pasted on the 39 odd-position clean scans and on
# the held-out half of the real scans (check-real --sweep); writes reports/quality/KIND/real_512/
real-512 KIND="radial_line" SEED="2" N="98304" DEVDATA="../shared/devdata/mmotu": setup
    #!/usr/bin/env bash
    set -euo pipefail
    for need in {{DEVDATA}}/clean {{DEVDATA}}/annotated; do
        [ -d $need ] || { echo "real-512 needs real scans: $need is missing (set DEVDATA=...)." >&2; exit 1; }
    done
    {{just_executable()}} _size-budget-shards {{KIND}} 512
    {{just_executable()}} _clean-split {{DEVDATA}}
    s=out/size_budget/{{KIND}}/shards512 o=out/realbg512/{{KIND}} rep=reports/quality/{{KIND}}/real_512
    {{bin}}/synth build --type {{KIND}} --n 4096 --size 512 --shard-size 256 --workers 2 --clean out/realbg/clean_even \
        --out $o/shards/train
    {{bin}}/synth build --type {{KIND}} --n 128 --size 512 --shard-size 128 --seed 2 --clean out/realbg/clean_odd \
        --out $o/shards/test_real_odd
    tag=seg512_{{N}}_s{{SEED}}_clip1_fs_w24  # the name `just full-skip KIND SEED N 24` gives the phantom-trained run
    phantom=out/size_budget/{{KIND}}/runs/$tag real=$o/runs/$tag
    for spec in phantom:$s/train:$phantom real:$o/shards/train:$real; do
        IFS=: read -r name shards run <<< "$spec"
        [ -f $run/result.json ] || {{bin}}/train run --shards $shards --val-shards $s/val --preset cpu --mode seg \
            --crop 128 --samples {{N}} --seed {{SEED}} --clip-grad 1 --width 24 --full-skip --out $run
        # the sweep (about 2 min at 512 px) is redone only when the detector is newer than its report
        [ $rep/sweep_$name/operating_point.json -nt $run/best.pt ] || {{bin}}/train check-real --checkpoint $run/best.pt \
            --sweep --annotated {{DEVDATA}}/annotated --clean {{DEVDATA}}/clean --out $rep/sweep_$name
    done
    # the real-background detector at the point its sweep picked
    {{just_executable()}} _check-picked $real/best.pt $rep/sweep_real $rep/check_real {{DEVDATA}}
    # how many held-out clean scans are near copies of a training background
    clean=$(realpath {{DEVDATA}}/clean); (cd bench && PYTHONPATH=.. ../{{py}} split_overlap.py --folder $clean)
    for test in test_real_odd:$o/shards/test_real_odd phantom_test:$s/test; do
        {{bin}}/train compare --shards ${test#*:} --out $rep/${test%%:*} \
            --run "phantom backgrounds=$phantom/best.pt" --run "real backgrounds=$real/best.pt" \
            --title "{{KIND}} at 512 px, ${test%%:*}: seg detectors (width 24, --full-skip, --clip-grad 1, {{N}} windows of 128 px, seed {{SEED}}) on phantom and on real backgrounds"
    done
    printf '\n(figure.png is kept local, not committed: its backgrounds are internal development scans.)\n' >> $rep/test_real_odd/table.md

# CHECKPOINT at the operating point `train check-real --sweep` picked into SWEEP: per-scan counts over both folders
# of the real scans into OUT (its panel.png stays local)
_check-picked CHECKPOINT SWEEP OUT DEVDATA:
    #!/usr/bin/env bash
    set -euo pipefail
    {{bin}}/train check-real --checkpoint {{CHECKPOINT}} $({{just_executable()}} _point {{SWEEP}}) \
        --annotated {{DEVDATA}}/annotated --clean {{DEVDATA}}/clean --out {{OUT}}

# another seed or window budget of `just real-512`'s real-background detector, against the one it reports (seed 2,
# 98,304 windows): trains it if missing (~76 min at 98,304 windows, ~25 at 32,768 on the Intel Xeon), sweeps its
# operating point on the even half of the real scans, checks it there and compares the two on the same test shards.
# Writes reports/quality/KIND/real_512/real_sSEED_N/. Needs `just real-512 KIND` first (its shards and detector).
real-512-seed SEED N KIND="radial_line" DEVDATA="../shared/devdata/mmotu": setup
    #!/usr/bin/env bash
    set -euo pipefail
    s=out/size_budget/{{KIND}}/shards512 o=out/realbg512/{{KIND}} rep=reports/quality/{{KIND}}/real_512/real_s{{SEED}}_{{N}}
    base=$o/runs/seg512_98304_s2_clip1_fs_w24 run=$o/runs/seg512_{{N}}_s{{SEED}}_clip1_fs_w24
    for need in $base/best.pt $o/shards/train $o/shards/test_real_odd $s/test; do
        [ -e $need ] || { echo "real-512-seed: $need is missing; run 'just real-512 {{KIND}}' first." >&2; exit 1; }
    done
    [ -f $run/result.json ] || {{bin}}/train run --shards $o/shards/train --val-shards $s/val --preset cpu --mode seg \
        --crop 128 --samples {{N}} --seed {{SEED}} --clip-grad 1 --width 24 --full-skip --out $run
    [ $rep/sweep_real/operating_point.json -nt $run/best.pt ] || {{bin}}/train check-real --checkpoint $run/best.pt \
        --sweep --annotated {{DEVDATA}}/annotated --clean {{DEVDATA}}/clean --out $rep/sweep_real
    {{just_executable()}} _check-picked $run/best.pt $rep/sweep_real $rep/check_real {{DEVDATA}}
    for test in test_real_odd:$o/shards/test_real_odd phantom_test:$s/test; do
        {{bin}}/train compare --shards ${test#*:} --out $rep/${test%%:*} \
            --run "seed 2 at 98304=$base/best.pt" --run "seed {{SEED}} at {{N}}=$run/best.pt" \
            --title "{{KIND}} at 512 px, ${test%%:*}: real-background seg detectors (width 24, --full-skip, --clip-grad 1, 128 px windows)"
    done
    printf '\n(figure.png is kept local, not committed: its backgrounds are internal development scans.)\n' >> $rep/test_real_odd/table.md

# one detector for every kind (`--type mixed`) on real clean scans, against the per-kind detectors (~60 min on 2 cores,
# after `just hard-negatives-seeds KIND 0` for the three kinds); writes reports/quality/mixed/real_backgrounds/
real-mixed DEVDATA="../shared/devdata/mmotu": setup
    #!/usr/bin/env bash
    set -euo pipefail
    o=out/realbg/mixed rep=reports/quality/mixed/real_backgrounds kinds="radial_line vascular_flow body_marker"
    for need in out/realbg/clean_even {{DEVDATA}}/annotated {{DEVDATA}}/clean; do
        [ -d $need ] || { echo "real-mixed: $need is missing; run 'just real-backgrounds' first." >&2; exit 1; }
    done
    for k in $kinds; do
        for r in seg_2x seg_2x_hardneg; do
            [ -f out/realbg/$k/runs/$r/best.pt ] || { echo "real-mixed: no out/realbg/$k/runs/$r/best.pt; run 'just hard-negatives-seeds $k 0' first." >&2; exit 1; }
        done
    done
    # the same recipe as the per-kind real-trained detectors: 4,096 samples on the even-position clean scans,
    # validated on phantom shards; complete shards are skipped on a rerun
    {{bin}}/synth build --type mixed --n 4096 --size 256 --shard-size 256 --workers 2 --clean out/realbg/clean_even \
        --out $o/shards/train
    {{bin}}/synth build --type mixed --n 64 --size 256 --shard-size 64 --seed 1 --out $o/shards/val
    # name:windows:hard-negative share:seed
    for spec in 2x:16384::0 2x_hardneg:16384:0.25:0 8x_hardneg:65536:0.25:0 8x_hardneg_seed1:65536:0.25:1 \
            8x_hardneg_seed2:65536:0.25:2; do
        IFS=: read -r name windows hard seed <<< "$spec"
        run=$o/runs/seg_$name sweep=$rep/sweep_real_trained_$name
        [ -f $run/best.pt ] || {{bin}}/train run --shards $o/shards/train --val-shards $o/shards/val --preset cpu \
            --mode seg --crop 128 --samples $windows ${hard:+--hard-negatives $hard} --seed $seed --out $run
        [ $sweep/operating_point.json -nt $run/best.pt ] || {{bin}}/train check-real --checkpoint $run/best.pt \
            --sweep --annotated {{DEVDATA}}/annotated --clean {{DEVDATA}}/clean --out $sweep
    done
    for k in $kinds; do  # Dice on each kind pasted on the held-out real tissue, any annotation class counted
        {{bin}}/train compare --shards out/realbg/$k/shards/test_real_odd --out $rep/compare_$k \
            --run "$k detector=out/realbg/$k/runs/seg_2x/best.pt" \
            --run "$k detector, hard negatives=out/realbg/$k/runs/seg_2x_hardneg/best.pt" \
            --run "mixed detector=$o/runs/seg_2x/best.pt" \
            --run "mixed detector, hard negatives=$o/runs/seg_2x_hardneg/best.pt" \
            --run "mixed detector, hard negatives, 4x windows=$o/runs/seg_8x_hardneg/best.pt" \
            --run "mixed detector, hard negatives, 4x windows, seed 1=$o/runs/seg_8x_hardneg_seed1/best.pt" \
            --run "mixed detector, hard negatives, 4x windows, seed 2=$o/runs/seg_8x_hardneg_seed2/best.pt" \
            --title "$k pasted on 39 held-out real clean scans: its own detector against one for every kind (16384 windows; 65536 for 4x)"
        printf '\n(figure.png is kept local, not committed: its backgrounds are internal development scans.)\n' >> $rep/compare_$k/table.md
    done

# soft seg targets along the mask's edge (--seg-soft LEVELS) against hard ones, per seed, at the quality budget
# (~2 min per run on 2 cores); writes reports/quality/KIND/seg_soft/ and bench/results/seg_soft.md
seg-soft KINDS="radial_line body_marker" LEVELS="0 2 4 8" SEEDS="0 1 2 3" SAMPLES="8192": setup
    #!/usr/bin/env bash
    set -euo pipefail
    for kind in {{KINDS}}; do
        s=out/soft/$kind/shards r=out/soft/$kind/runs runs=()
        {{bin}}/synth build --type $kind --n 4096 --size 256 --shard-size 256 --workers 2 --out $s/train
        {{bin}}/synth build --type $kind --n 64 --size 256 --shard-size 64 --seed 1 --out $s/val
        {{bin}}/synth build --type $kind --n 128 --size 256 --shard-size 128 --seed 2 --out $s/test
        for w in {{LEVELS}}; do
            for seed in {{SEEDS}}; do
                [ -f $r/seg_soft${w}_s$seed/best.pt ] || {{bin}}/train run --shards $s/train --val-shards $s/val \
                    --preset cpu --mode seg --crop 128 --samples {{SAMPLES}} --seed $seed --seg-soft $w --out $r/seg_soft${w}_s$seed
                runs+=(--run "seg-soft $w, seed $seed=$r/seg_soft${w}_s$seed/best.pt")
            done
        done
        {{bin}}/train compare --shards $s/test --out reports/quality/$kind/seg_soft "${runs[@]}" \
            --title "$kind, 256 px, seg detectors at {{SAMPLES}} windows: hard targets (seg-soft 0) and soft ones, per seed"
    done
    cd bench && ../{{py}} seg_soft.py --kinds {{KINDS}} --levels {{LEVELS}} --seeds {{SEEDS}}

# phantoms closer to real scans against plain ones, per seed, at the quality budget (~2 min per run and ~1.5 min per
# real-scan sweep on 2 cores): the scanner's chrome (--phantom-chrome), then also crisp specular reflections and point
# echoes (--phantom-reflectors), and 1,024 phantoms instead of 64. The plain runs are seg-soft's hard ones. Writes
# reports/quality/KIND/phantom_chrome/ and bench/results/phantom_chrome.md
phantom-chrome KINDS="radial_line body_marker" SEEDS="0 1 2 3" SEEDS_1024="0 1" DEVDATA="../shared/devdata/mmotu": setup
    #!/usr/bin/env bash
    set -euo pipefail
    # name | output folder | build options | run name | held-out test set of its own (the 1024-phantom variants
    # are tested on the 64-phantom variants' sets: the same kinds of phantom)
    variants=("plain|out/soft||seg_soft0|yes" "chrome|out/chrome|--phantom-chrome|seg|yes"
              "reflectors|out/chrome_refl|--phantom-chrome --phantom-reflectors|seg|yes"
              "plain1024|out/many|--phantoms 1024|seg|no"
              "reflectors1024|out/many_refl|--phantoms 1024 --phantom-chrome --phantom-reflectors|seg|no")
    for kind in {{KINDS}}; do
        rep=reports/quality/$kind/phantom_chrome val=out/soft/$kind/shards/val runs=() tests=()
        for need in out/realbg/$kind/shards/test_real_odd {{DEVDATA}}/annotated {{DEVDATA}}/clean; do
            [ -d $need ] || { echo "$kind: $need is missing; run 'just real-backgrounds $kind' (and check DEVDATA)." >&2; exit 1; }
        done
        {{bin}}/synth build --type $kind --n 64 --size 256 --shard-size 64 --seed 1 --out $val
        for spec in "${variants[@]}"; do
            IFS='|' read -r name dir flags run own_test <<< "$spec"
            s=$dir/$kind/shards
            {{bin}}/synth build --type $kind --n 4096 --size 256 --shard-size 256 --workers 2 $flags --out $s/train
            if [ $own_test = yes ]; then
                {{bin}}/synth build --type $kind --n 128 --size 256 --shard-size 128 --seed 2 $flags --out $s/test
                tests+=("${name}_test:$s/test")
            fi
            seeds="{{SEEDS}}"; [[ $name == *1024 ]] && seeds="{{SEEDS_1024}}"
            for seed in $seeds; do
                r=$dir/$kind/runs/${run}_s$seed sweep=$rep/sweep_${name}_s$seed
                [ -f $r/best.pt ] || {{bin}}/train run --shards $s/train --val-shards $val --preset cpu --mode seg \
                    --crop 128 --samples 8192 --seed $seed --out $r
                runs+=(--run "$name phantoms, seed $seed=$r/best.pt")
                [ $sweep/operating_point.json -nt $r/best.pt ] || {{bin}}/train check-real --checkpoint $r/best.pt \
                    --sweep --annotated {{DEVDATA}}/annotated --clean {{DEVDATA}}/clean --out $sweep
            done
        done
        for test in "${tests[@]}" real_tissue:out/realbg/$kind/shards/test_real_odd; do
            {{bin}}/train compare --shards ${test#*:} --out $rep/${test%%:*} "${runs[@]}" \
                --title "$kind, ${test%%:*} (128 held-out samples at 256 px): detectors trained on plain or closer-to-real phantoms"
        done
        printf '\n(figure.png is kept local, not committed: its backgrounds are internal development scans.)\n' >> $rep/real_tissue/table.md
    done
    cd bench && ../{{py}} phantom_chrome.py --kinds {{KINDS}} --seeds {{SEEDS}} --seeds-1024 {{SEEDS_1024}}

# does the detector's gain from 512 px images grow with training? seg detectors (width 16, 128 px windows) on the
# same 4,096 phantom samples rendered at each size, at each budget, per seed. The default, radial_line at 256 and
# 512 px, 8,192 and 32,768 windows, seeds 0-1, takes ~46 min on 2 cores (~2 and ~7-10 min per run). Writes
# reports/quality/KIND/size_budget/SIZE/. The body_marker runs: just size-budget body_marker 512 "0 1" 98304
size-budget KIND="radial_line" SIZES="256 512" SEEDS="0 1" BUDGETS="8192 32768": setup
    #!/usr/bin/env bash
    set -euo pipefail
    root=out/size_budget/{{KIND}}
    for size in {{SIZES}}; do
        s=$root/shards$size runs=()
        {{just_executable()}} _size-budget-shards {{KIND}} $size
        for n in {{BUDGETS}}; do
            for seed in {{SEEDS}}; do
                r=$root/runs/seg${size}_${n}_s$seed
                [ -f $r/result.json ] || {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu \
                    --mode seg --crop 128 --samples $n --seed $seed --out $r
                runs+=(--run "$size px, $n windows, seed $seed=$r/best.pt")
            done
        done
        {{bin}}/train compare --shards $s/test --out reports/quality/{{KIND}}/size_budget/$size "${runs[@]}" \
            --title "{{KIND}} at $size px: seg detectors (width 16, 128 px windows) at {{BUDGETS}} windows, per seed"
    done

# the 512 px detectors of `just size-budget KIND 512 SEEDS N` (made there when missing) with their masks filled by an
# N2N model trained on the same shards (width 16, FILL windows of 128 px, seed 0) instead of inpainted: vascular_flow's
# Doppler boxes are too large to inpaint well. As run on 2 cores: just fill-512 (~80 min for the two detectors, ~14 for
# the filler; with FILL=32768 on an AMD EPYC: 45 min per detector, 18 for the filler). Writes
# reports/quality/KIND/size_budget/512_fill_N/ (512_fill_N_fFILL/ for FILL other than 16384)
fill-512 KIND="vascular_flow" SEEDS="0 1" N="98304" FILL="16384": setup
    #!/usr/bin/env bash
    set -euo pipefail
    {{just_executable()}} size-budget {{KIND}} 512 "{{SEEDS}}" {{N}}
    root=out/size_budget/{{KIND}} s=out/size_budget/{{KIND}}/shards512 fill=out/size_budget/{{KIND}}/runs/n2n512_{{FILL}}_s0 runs=()
    [ -f $fill/result.json ] || {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu --mode n2n \
        --crop 128 --samples {{FILL}} --seed 0 --out $fill
    for seed in {{SEEDS}}; do
        r=$root/runs/seg512_{{N}}_s$seed
        runs+=(--run "SEG, seed $seed=$r/best.pt" --run "SEG+N2N, seed $seed=$r/best.pt+$fill/best.pt")
    done
    out=reports/quality/{{KIND}}/size_budget/512_fill_{{N}}
    [ {{FILL}} = 16384 ] || out=${out}_f{{FILL}}  # another filler budget gets its own report
    {{bin}}/train compare --shards $s/test --out $out "${runs[@]}" \
        --title "{{KIND}} at 512 px: seg detectors (width 16, {{N}} windows of 128 px), masks inpainted or filled by N2N (width 16, {{FILL}} windows)"

# the shards of size-budget and clip-grad: 4,096 training, 64 validation and 128 test samples of KIND at SIZE px
_size-budget-shards KIND SIZE:
    {{bin}}/synth build --type {{KIND}} --n 4096 --size {{SIZE}} --shard-size 256 --workers 2 --out out/size_budget/{{KIND}}/shards{{SIZE}}/train
    {{bin}}/synth build --type {{KIND}} --n 64 --size {{SIZE}} --shard-size 64 --seed 1 --out out/size_budget/{{KIND}}/shards{{SIZE}}/val
    {{bin}}/synth build --type {{KIND}} --n 128 --size {{SIZE}} --shard-size 128 --seed 2 --out out/size_budget/{{KIND}}/shards{{SIZE}}/test

# (the unclipped runs are size-budget's, skipped when it made them; ~40 min on 2 cores for all four; 98,304 windows
# with clipping only, as run: just clip-grad radial_line "0 1" 98304 1, ~31 min per seed)
# --clip-grad 1 against no clipping: 512 px seg detectors per seed, into reports/quality/KIND/size_budget/512_clip_N
clip-grad KIND="radial_line" SEEDS="0 1" N="32768" CLIPS="0 1": setup
    #!/usr/bin/env bash
    set -euo pipefail
    root=out/size_budget/{{KIND}} s=out/size_budget/{{KIND}}/shards512 runs=()
    {{just_executable()}} _size-budget-shards {{KIND}} 512
    for clip in {{CLIPS}}; do
        for seed in {{SEEDS}}; do
            r=$root/runs/seg512_{{N}}_s$seed label="no clipping"
            [ $clip = 1 ] && r=${r}_clip1 label="--clip-grad 1"
            [ -f $r/result.json ] || {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu \
                --mode seg --crop 128 --samples {{N}} --seed $seed --clip-grad $clip --out $r
            runs+=(--run "$label, seed $seed=$r/best.pt")
        done
    done
    {{bin}}/train compare --shards $s/test --out reports/quality/{{KIND}}/size_budget/512_clip_{{N}} "${runs[@]}" \
        --title "{{KIND}} at 512 px: seg detectors (width 16, 128 px windows, {{N}} windows) with and without --clip-grad 1, per seed"

# --full-skip against the plain clipped detectors of `just clip-grad` (made here when missing): 512 px seg detectors
# per seed at N windows and WIDTH, into reports/quality/KIND/size_budget/512_fs_N (as run, 2-core CPU:
# just full-skip radial_line 0 32768 16, ~12 min; just full-skip radial_line "0 1" 98304 24, ~60 min per seed)
full-skip KIND="radial_line" SEEDS="0" N="32768" WIDTH="16": setup
    #!/usr/bin/env bash
    set -euo pipefail
    root=out/size_budget/{{KIND}} s=out/size_budget/{{KIND}}/shards512 runs=()
    {{just_executable()}} _size-budget-shards {{KIND}} 512
    tag=$([ {{WIDTH}} = 16 ] && echo _fs || echo _fs_w{{WIDTH}})
    for seed in {{SEEDS}}; do
        for r in $root/runs/seg512_{{N}}_s${seed}_clip1 $root/runs/seg512_{{N}}_s${seed}_clip1$tag; do
            fs=() width=16 label="plain, width 16, seed $seed"
            [[ $r == *_fs* ]] && fs=(--full-skip) width={{WIDTH}} label="--full-skip, width {{WIDTH}}, seed $seed"
            [ -f $r/result.json ] || {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu \
                --mode seg --crop 128 --samples {{N}} --seed $seed --clip-grad 1 --width $width "${fs[@]}" --out $r
            runs+=(--run "$label=$r/best.pt")
        done
    done
    {{bin}}/train compare --shards $s/test --out reports/quality/{{KIND}}/size_budget/512_fs_{{N}} "${runs[@]}" \
        --title "{{KIND}} at 512 px: seg detectors (--clip-grad 1, 128 px windows, {{N}} windows) with and without --full-skip, per seed"

# hard negatives on the real-trained detectors over seeds (~5 min per run on 2 cores, after `just real-backgrounds`):
# 16,384 windows each, with and without --hard-negatives 0.25, and all seeds averaged; writes bench/results/hard_negatives_seeds.md
hard-negatives-seeds KINDS="radial_line vascular_flow body_marker" SEEDS="0 1 2 3" DEVDATA="../shared/devdata/mmotu": setup
    #!/usr/bin/env bash
    set -euo pipefail
    for kind in {{KINDS}}; do
        o=out/realbg/$kind rep=reports/quality/$kind/real_backgrounds runs=()
        declare -A members=()  # "x" / "x_hardneg" -> the seeds' checkpoints, for the ensembles below
        for need in $o/shards/train $o/shards/test_real_odd out/quality/$kind/shards/val {{DEVDATA}}/annotated; do
            [ -d $need ] || { echo "$kind: $need is missing; run 'just real-backgrounds $kind' first." >&2; exit 1; }
        done
        for seed in {{SEEDS}}; do
            sfx=$([ $seed = 0 ] || echo _seed$seed)  # seed 0 keeps the first runs' names (seg_2x, seg_2x_hardneg)
            for hard in "" _hardneg; do
                run=$o/runs/seg_2x$hard$sfx sweep=$rep/sweep_real_trained_2x${hard}_seed$seed
                [ -f $run/best.pt ] || {{bin}}/train run --shards $o/shards/train --val-shards out/quality/$kind/shards/val \
                    --preset cpu --mode seg --crop 128 --samples 16384 --seed $seed \
                    ${hard:+--hard-negatives 0.25} --out $run
                # the sweep (about a minute) is redone only when the detector is newer than its report
                [ $sweep/operating_point.json -nt $run/best.pt ] || {{bin}}/train check-real --checkpoint $run/best.pt \
                    --sweep --annotated {{DEVDATA}}/annotated --clean {{DEVDATA}}/clean --out $sweep
                runs+=(--run "seed $seed${hard:+, hard negatives 0.25}=$run/best.pt")
                members[x$hard]+=" $run/best.pt"
            done
        done
        n=$(wc -w <<< "{{SEEDS}}")
        for hard in "" _hardneg; do  # all seeds' detectors as one: probabilities averaged
            read -ra ckpts <<< "${members[x$hard]}"
            {{bin}}/train check-real $(printf -- '--checkpoint %s ' "${ckpts[@]}") --sweep \
                --annotated {{DEVDATA}}/annotated --clean {{DEVDATA}}/clean --out $rep/sweep_ensemble_${n}seeds$hard
            runs+=(--run "all $n seeds averaged${hard:+, hard negatives 0.25}=$(IFS=,; echo "${ckpts[*]}")")
        done
        {{bin}}/train compare --shards $o/shards/test_real_odd --out $rep/hard_negatives_seeds "${runs[@]}" \
            --title "$kind pasted on 39 held-out real clean scans; real-trained detectors, 16384 windows, with and without hard negatives, per seed"
        printf '\n(figure.png is kept local, not committed: its backgrounds are internal development scans.)\n' >> $rep/hard_negatives_seeds/table.md
    done
    cd bench && ../{{py}} hard_negatives_seeds.py --kinds {{KINDS}} --seeds {{SEEDS}}
