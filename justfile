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

# lint and the test suite (~4 min on 2 cores after set-up); REQUIRE_DEVDATA=1 turns dev-data skips into failures
test *ARGS: setup
    {{bin}}/ruff check synth train tests bench studies
    HF_HUB_OFFLINE=1 {{py}} -m pytest -q -m "not slow and not gpu" {{ARGS}}

# slower checks (full-size 512x512 builds)
test-slow *ARGS: setup
    HF_HUB_OFFLINE=1 {{py}} -m pytest -q -m "slow" {{ARGS}}

# benchmarks; writes bench/results/*.md (studies and tuning experiments: studies/justfile)
bench: setup
    cd bench && ../{{py}} bench_build.py && ../{{py}} bench_exactmath.py && ../{{py}} bench_train.py && ../{{py}} bench_recipes.py && ../{{py}} bench_models.py && ../{{py}} bench_apply.py && ../{{py}} bench_audit.py

# GPU throughput (fp32 b4 vs bf16/fp16 b16) and data-wait fraction; writes bench/results/gpu.md
bench-gpu: setup
    cd bench && ../{{py}} bench_gpu.py

# phantom shards, N2N/N2C/seg models and their table checked against reports/demo/table.json; held-out annotated and
# clean phantoms cleaned and scored against truth; everything goes under out/demo, nothing tracked changes
# the main job end to end on built-in phantoms and the shipped icons (7.0 min on 2 cores after set-up)
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

# trained only on built-in phantoms (scanner chrome and bright reflectors never masked) and the shipped icons, with
# annotations of any colour (--palette any); then its Dice etc. on held-out phantoms into docs/model_card/phantom_test
# the ready model in train/weights (~40 min on 2 idle cores): a multi-kind detector and its N2N filler
release-model SEG_WINDOWS="32768" FILL_WINDOWS="8192": setup
    #!/usr/bin/env bash
    set -euo pipefail
    o=out/release s=out/release/shards
    common="--type mixed --palette any --phantom-chrome --phantom-reflectors --size 512"
    {{bin}}/synth build $common --n 1536 --shard-size 128 --workers 2 --out $s/train
    {{bin}}/synth build $common --n 64 --shard-size 64 --seed 1 --out $s/val
    {{bin}}/synth build $common --n 128 --shard-size 128 --seed 2 --out $s/test
    {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu --mode seg --width 16 --full-skip --clip-grad 1 \
        --crop 128 --hard-negatives 0.25 --samples {{SEG_WINDOWS}} --label "release 1/2" \
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

# ruff over the code, tests, benchmarks and studies
lint: setup
    {{bin}}/ruff check synth train tests bench studies

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
# studies/real_backgrounds (width 24, --full-skip, --clip-grad 1, N windows of 128 px), its training samples pasted on the
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
    {{py}} studies/real_backgrounds/split_overlap.py --folder $clean --out $split
    {{bin}}/train apply --checkpoint $run/best.pt $({{just_executable()}} _point $o/sweep) {{DIR}}/annotated --out $o/cleaned
    echo "detector $run/best.pt; operating point $o/sweep/operating_point.md; counts $o/check; near copies across the split $o/split_overlap.md; cleaned scans $o/cleaned"

# CHECKPOINT at the operating point `train check-real --sweep` picked into SWEEP: per-scan counts over both folders
# of the real scans into OUT (its panel.png stays local)
_check-picked CHECKPOINT SWEEP OUT DEVDATA:
    #!/usr/bin/env bash
    set -euo pipefail
    {{bin}}/train check-real --checkpoint {{CHECKPOINT}} $({{just_executable()}} _point {{SWEEP}}) \
        --annotated {{DEVDATA}}/annotated --clean {{DEVDATA}}/clean --out {{OUT}}
