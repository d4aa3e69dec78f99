# Every recipe sets itself up: a fresh machine needs only Python 3.11, pip and `pip install rust-just`.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"
bin := venv / "bin"

# the main job (same as demo)
default: demo

# create .venv and install the project with its dev extras (skipped when pyproject.toml is unchanged)
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x {{py}} ] || python3 -m venv {{venv}}
    stamp={{venv}}/.installed-$(sha256sum pyproject.toml | cut -c1-16)
    if [ ! -f "$stamp" ]; then
        {{py}} -m pip install -q --upgrade pip
        {{py}} -m pip install -q -e ".[dev]"
        touch "$stamp"
    fi

# lint and the test suite (~2.5 min on 2 cores); REQUIRE_DEVDATA=1 turns dev-data skips into failures
test *ARGS: setup
    {{bin}}/ruff check synth train tests bench
    HF_HUB_OFFLINE=1 {{py}} -m pytest -q -m "not slow and not gpu" {{ARGS}}

# slower checks (full-size 512x512 builds)
test-slow *ARGS: setup
    HF_HUB_OFFLINE=1 {{py}} -m pytest -q -m "slow" {{ARGS}}

# benchmarks; writes bench/results/*.md
bench: setup
    cd bench && ../{{py}} bench_build.py && ../{{py}} bench_train.py && ../{{py}} bench_recipes.py

# GPU throughput (fp32 b4 vs bf16/fp16 b16) and data-wait fraction; writes bench/results/gpu.md
bench-gpu: setup
    cd bench && ../{{py}} bench_gpu.py

# the main job end to end on phantoms and shipped icons (~4 min on 2 cores): shards, preview, n2n model, eval, apply
demo: setup
    {{bin}}/synth phantom --n 6 --out out/demo/phantoms --size 384
    {{bin}}/synth build --type body_marker --n 1024 --size 256 --shard-size 128 --workers 2 --out out/demo/shards/train
    {{bin}}/synth build --type body_marker --n 64 --size 256 --shard-size 64 --seed 1 --out out/demo/shards/val
    {{bin}}/synth inspect out/demo/shards/train --verify --preview reports/demo/preview_body_marker.png --k 4
    {{bin}}/train run --shards out/demo/shards/train --val-shards out/demo/shards/val --preset cpu --mode n2n --epochs 1 --out out/demo/runs/n2n
    {{bin}}/train eval --checkpoint out/demo/runs/n2n/best.pt --shards out/demo/shards/val --out reports/demo/eval_n2n --save-examples 4
    {{bin}}/train apply --checkpoint out/demo/runs/n2n/best.pt out/demo/phantoms --out out/demo/applied

lint: setup
    {{bin}}/ruff check synth train tests bench

# the quality runs of issue 4 (~45 min on 2 cores): per kind, 256 px shards, seg/n2n/n2c models, test tables, real scans
quality KINDS="body_marker radial_line vascular_flow" SAMPLES="8192": setup
    #!/usr/bin/env bash
    set -euo pipefail
    for kind in {{KINDS}}; do
        s=out/quality/$kind/shards r=out/quality/$kind/runs
        {{bin}}/synth build --type $kind --n 4096 --size 256 --shard-size 256 --workers 2 --out $s/train
        {{bin}}/synth build --type $kind --n 64 --size 256 --shard-size 64 --seed 1 --out $s/val
        {{bin}}/synth build --type $kind --n 128 --size 256 --shard-size 128 --seed 2 --out $s/test
        for mode in seg n2n n2c; do
            {{bin}}/train run --shards $s/train --val-shards $s/val --preset cpu --mode $mode --crop 128 \
                --samples {{SAMPLES}} --out $r/$mode
        done
    done
