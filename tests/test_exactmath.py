"""synth/exactmath.py: accurate transcendentals, and shards that do not depend on the processor's SIMD level."""

import os
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest

from synth import exactmath as em

RNG = np.random.default_rng(0)
X = RNG.uniform(-40, 40, 20000)
P = RNG.uniform(1e-6, 1e4, 20000)


@pytest.mark.parametrize("name, ours, ref, arg", [
    ("exp", em.exp, np.exp, X), ("log", em.log, np.log, P), ("sin", em.sin, np.sin, X), ("cos", em.cos, np.cos, X),
    ("tan", em.tan, np.tan, X / 30), ("tanh", em.tanh, np.tanh, X),
    ("power", lambda a: em.power(a, 0.4), lambda a: a**0.4, P),
    ("atan2", lambda a: em.atan2(a, X[::-1]), lambda a: np.arctan2(a, X[::-1]), X),
    ("hypot", lambda a: em.hypot(a, X[::-1]), lambda a: np.hypot(a, X[::-1]), X),
])
def test_functions_match_numpy_to_a_few_ulp(name, ours, ref, arg):
    got, want = ours(arg), ref(arg)
    scale = np.maximum(np.abs(want), 1e-3 if name == "tanh" else 1e-300)  # tanh: absolute error near 0
    assert np.max(np.abs(got - want) / scale) < 2e-14


@pytest.mark.parametrize("fn", [em.exp, em.log, em.sin, em.cos, em.tan, em.tanh, lambda v: em.power(v, 0.37),
                                lambda v: em.atan2(v, 0.7), lambda v: em.hypot(v, 0.7),
                                lambda v: em.sincos(v)[0], lambda v: em.sincos(v)[1]])
def test_scalar_path_equals_array_path_bit_for_bit(fn):
    values = np.concatenate([X[:300], P[:300], [0.0, -0.0, 1.0, -1.0, 1e-9, 700.0]])
    whole = fn(values)
    assert np.array_equal(np.array([fn(float(v)) for v in values]), whole, equal_nan=True)
    assert np.array_equal(fn(values[:5]), whole[:5], equal_nan=True)  # small arrays take the scalar path


@pytest.mark.parametrize("fn", [em.exp, em.log, em.sin, em.cos, em.tan, em.tanh, lambda v: em.power(v, 0.5),
                                lambda v: em.atan2(v, 1.0), lambda v: em.sincos(v)[0]])
def test_nan_gives_nan_on_both_paths_without_raising(fn):
    with np.errstate(all="raise"):  # nor any floating-point warning
        assert np.isnan(fn(float("nan")))
        assert np.isnan(fn(np.array([np.nan, 1.0]))[0])  # small array: the Python path
        assert np.isnan(fn(np.full(20, np.nan))).all()  # the numpy path


def test_kinds_in_kinds_out_and_edge_values():
    assert isinstance(em.exp(1.0), float) and em.exp(1.0) == pytest.approx(np.e, rel=1e-15)
    assert em.exp(np.ones(4, np.float32)).dtype == np.float32
    assert em.sin(np.float32(0.5)) == pytest.approx(np.sin(0.5), rel=1e-15)
    assert em.power(0.0, 0.4) == 0.0 and em.log(0.0) == -np.inf and np.isnan(em.log(-1.0))
    assert em.atan2(1.0, 0.0) == pytest.approx(np.pi / 2) and em.atan2(-1.0, -1.0) == pytest.approx(-3 * np.pi / 4)
    assert em.exp(-1000.0) == pytest.approx(0.0, abs=1e-300) and em.tanh(50.0) == 1.0


@pytest.mark.parametrize("sigma, ksize, border", [(0.7, 0, cv2.BORDER_REFLECT), (2.3, 0, cv2.BORDER_REFLECT_101),
                                                  (1.5, 9, cv2.BORDER_CONSTANT)])
def test_gaussian_blur_equals_opencvs(sigma, ksize, border):
    img = RNG.random((40, 50, 4)).astype(np.float32)
    ours = em.gaussian_blur(img, sigma, 1.7 * sigma, ksize=ksize, border=border)
    ref = cv2.GaussianBlur(img, (ksize, ksize), sigmaX=sigma, sigmaY=1.7 * sigma, borderType=border)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_opencv_baseline_restores_the_callers_setting():
    before = cv2.useOptimized()
    with em.opencv_baseline():
        assert not cv2.useOptimized()
    assert cv2.useOptimized() == before


def test_opencv_baseline_holds_while_any_thread_is_inside():
    import threading

    before = cv2.useOptimized()
    inside, leave = threading.Event(), threading.Event()

    def other():
        with em.opencv_baseline():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=other)
    with em.opencv_baseline():  # this thread comes in first and leaves first
        t.start()
        inside.wait(5)
    assert not cv2.useOptimized()  # the other thread is still rendering
    leave.set()
    t.join(5)
    assert cv2.useOptimized() == before


# Every run-time dispatch switch this machine's libraries offer, set to their lowest level at once:
# OpenCV's SIMD dispatch and IPP, numpy's SIMD loops, glibc's FMA/AVX2 libm variants, OpenBLAS's kernel
# and libjpeg-turbo's SIMD. Before synth/exactmath.py, every image array of such a build differed.
_AVX512 = ("AVX512F,AVX512CD,AVX512VPOPCNTDQ,AVX512VL,AVX512BW,AVX512DQ,AVX512VNNI,AVX512IFMA,AVX512VBMI,"
           "AVX512VBMI2,AVX512BITALG,AVX512BF16,AVX512_SKX,X86_V4,AVX512_CLX,AVX512_CNL,AVX512_ICL,AVX512_SPR")
LOW_CPU = {
    "OPENCV_CPU_DISABLE": "AVX512_SKX,AVX2,FP16,AVX,FMA3",
    "OPENCV_IPP": "sse42",
    "NPY_DISABLE_CPU_FEATURES": _AVX512 + ",AVX2,FMA3,X86_V3,AVX,F16C",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F,-AVX512DQ,-AVX512VL,-AVX512BW",
    "OPENBLAS_CORETYPE": "Prescott",
    "JSIMD_FORCESSE2": "1",
}


def _build(out, extra_env, *args):
    env = {**os.environ, **extra_env}
    code = "import sys; from synth.cli import main; sys.argv[0] = 'synth'; main()"
    subprocess.run([sys.executable, "-c", code, "build", "--type", "mixed", "--n", "24", "--size", "160",
                    "--shard-size", "24", "--seed", "3", "--out", str(out), *args],
                   env=env, check=True, capture_output=True)
    with h5py.File(next(out.glob("*.h5"))) as f:
        return {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}


def _assert_same(usual, low):
    assert usual.keys() == low.keys() and {"noisy_a", "noisy_b", "clean", "mask"} <= usual.keys()
    for key in usual:
        assert np.array_equal(usual[key], low[key]), f"{key} depends on the processor's SIMD level"


@pytest.mark.parametrize("extras", [(), ("--phantom-chrome", "--phantom-reflectors")])
def test_shards_are_bit_identical_at_every_simd_level(tmp_path, extras):
    args = ("--phantoms", "6", *extras)
    _assert_same(_build(tmp_path / "usual", {}, *args), _build(tmp_path / "low", LOW_CPU, *args))


def test_shards_on_real_scans_are_bit_identical_at_every_simd_level(tmp_path, devdata):
    # real scans of many sizes: decoding, resizing (both policies) and augmenting them
    for resize in ("letterbox", "crop"):
        args = ("--clean", str(devdata / "clean"), "--resize", resize)
        usual = _build(tmp_path / f"usual_{resize}", {}, *args)
        _assert_same(usual, _build(tmp_path / f"low_{resize}", LOW_CPU, *args))
