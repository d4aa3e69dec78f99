# Every recipe sets itself up: a fresh machine needs only Python 3.11, pip and `pip install rust-just`.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"
bin := venv / "bin"

# the main job on built-in defaults: phantoms -> shards -> inspect (-> train, eval, apply)
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

# the test suite (about 5-10 min on 2 cores); REQUIRE_DEVDATA=1 turns dev-data skips into failures
test *ARGS: setup
    HF_HUB_OFFLINE=1 {{py}} -m pytest -q -m "not slow and not gpu" {{ARGS}}

# slower checks (bigger builds, longer training)
test-slow *ARGS: setup
    HF_HUB_OFFLINE=1 {{py}} -m pytest -q -m "slow" {{ARGS}}

# benchmarks; writes bench/results/*.md
bench: setup
    cd bench && ../{{py}} bench_build.py && ../{{py}} bench_train.py

# end-to-end demo on phantoms and the shipped icons; writes out/demo and reports/demo
demo: setup
    {{bin}}/synth phantom --n 8 --out out/demo/phantoms
    {{bin}}/synth build --type body_marker --n 512 --size 256 --shard-size 128 --workers 2 --out out/demo/shards/train
    {{bin}}/synth build --type body_marker --n 64 --size 256 --shard-size 64 --seed 1 --out out/demo/shards/val
    {{bin}}/synth inspect out/demo/shards/train --verify --preview reports/demo/preview_body_marker.png

lint: setup
    {{bin}}/ruff check synth train tests bench
