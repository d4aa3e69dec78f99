"""Bit-identical maths on every x86-64 CPU, so a seed renders the same shards on any machine.

Three libraries pick their code by processor at run time, and the variants round differently in the last bit:
numpy's exp/log/sin/... (AVX-512, AVX2 or SSE loops), glibc's libm behind Python's `math` (FMA or not), and
OpenCV's float kernels (AVX-512/AVX2 dispatch, Intel IPP). A last-bit difference in a phantom's speckle or in a
box outline flips a grey level or a mask pixel now and then, so the same seed gave shards that differed by a few
grey levels between two machines.

The fix has two parts:
- the transcendental functions below are built from + - * / sqrt, rint, frexp and ldexp, which IEEE 754 rounds
  the same everywhere; numpy never fuses its separate ufunc calls into FMAs. They take numpy arrays or Python
  floats and work in float64 (within 2e-14 of numpy's, relative; tanh near 0: absolute), returning the
  input's kind;
- `opencv_baseline()` runs OpenCV without its run-time dispatched SIMD and without IPP (`cv2.setUseOptimized`),
  i.e. on the SSE baseline every x86-64 build has. A whole build costs 7-11 % more (bench/bench_exactmath.py).

OpenCV's 8-bit resize and blur are bit-exact by design; its float kernels (remap, GaussianBlur, pow) are the
ones that differed.
The check is tests/test_exactmath.py: it renders shards under every dispatch level numpy, glibc and OpenCV allow
to be switched off and compares them bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading

import numpy as np

# Cody-Waite splits: the high parts have trailing zero bits, so k * HI is exact for the |k| we meet
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_PIO2_1 = 1.57079632673412561417e00
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_3 = 2.02226624871116645580e-21
_TWO_OVER_PI = 6.36619772367581382433e-01
PI = 3.141592653589793

# Taylor coefficients 1/n!, evaluated by Horner; enough terms for < 1e-16 on the reduced ranges
_EXP = [1.0 / math.factorial(n) for n in range(14)]


class _Numpy:
    """Array operations for the algorithms below (float64 arrays)."""

    rint = staticmethod(np.rint)
    sqrt = staticmethod(np.sqrt)
    abs = staticmethod(np.abs)
    clip = staticmethod(np.clip)
    frexp = staticmethod(np.frexp)
    where = staticmethod(np.where)

    @staticmethod
    def ldexp(m, k):
        return np.ldexp(m, np.nan_to_num(k, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int32))  # m is nan there


class _Python:
    """The same operations on Python floats: no numpy call overhead for the many scalar uses, and the
    same IEEE results (round() is half-to-even like np.rint; frexp/ldexp/sqrt are exact or correctly rounded)."""

    sqrt = staticmethod(math.sqrt)
    abs = staticmethod(abs)
    frexp = staticmethod(math.frexp)

    @staticmethod
    def rint(v):
        return float(round(v)) if math.isfinite(v) else v

    @staticmethod
    def clip(v, lo, hi):
        return min(max(v, lo), hi)

    @staticmethod
    def where(c, a, b):
        return a if c else b

    @staticmethod
    def ldexp(m, k):
        return math.ldexp(m, int(k)) if math.isfinite(k) else math.nan


def _horner(coeffs, r):
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * r + c
    return acc


def _exp(x, B):
    x = B.clip(x, -708.0, 709.0)
    k = B.rint(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= 0.35
    return B.ldexp(_horner(_EXP, r), k)


_LOG = [1.0, 1 / 3, 1 / 5, 1 / 7, 1 / 9, 1 / 11, 1 / 13, 1 / 15, 1 / 17, 1 / 19]


def _log(x, B):
    """Natural log of x > 0 (x <= 0 gives -inf / nan like numpy)."""
    m, e = B.frexp(B.where(x > 0, x, 1.0))  # x = m * 2**e, m in [0.5, 1)
    low = m < 0.7071067811865476
    m = B.where(low, m * 2.0, m)
    e = e - low
    f = (m - 1.0) / (m + 1.0)  # |f| <= 0.1716
    y = e * _LN2_HI + (2.0 * f * _horner(_LOG, f * f) + e * _LN2_LO)
    return B.where(x > 0, y, B.where(x == 0, -math.inf, math.nan))


# fdlibm's minimax polynomials for |r| <= pi/4 (k_sin.c, k_cos.c), in z = r * r
_SIN = [1.0, -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
        2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10]
_COS = [1.0, -0.5, 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
        -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11]


def _sincos(x, B):
    k = B.rint(x * _TWO_OVER_PI)
    r = ((x - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3  # |r| <= pi/4; accurate for |x| < ~1e6, deterministic for any x
    z = r * r
    s = r * _horner(_SIN, z)
    c = _horner(_COS, z)
    q = k % 4.0  # quadrant, 0..3 also for negative k: sin = s, c, -s, -c and cos = c, -s, -c, s
    odd = q % 2.0 == 1.0
    sin = B.where(odd, c, s) * B.where(q >= 2.0, -1.0, 1.0)
    cos = B.where(odd, s, c) * B.where((q == 1.0) | (q == 2.0), -1.0, 1.0)
    return sin, cos


_ATAN = [(-1.0) ** n / (2 * n + 1) for n in range(12)]


def _atan2(y, x, B):
    ax, ay = B.abs(x), B.abs(y)
    big, small = B.where(ax > ay, ax, ay), B.where(ax > ay, ay, ax)
    t = small / B.where(big > 0, big, 1.0)  # in [0, 1]
    for _ in range(2):  # half-angle steps bring t under tan(pi/16) ~ 0.199, where the series is short
        t = t / (1.0 + B.sqrt(1.0 + t * t))
    a = 4.0 * t * _horner(_ATAN, t * t)
    a = B.where(ay > ax, PI / 2 - a, a)
    a = B.where(x < 0, PI - a, a)
    return B.where((x != x) | (y != y), math.nan, B.where(y < 0, -a, a))  # x != x: NaN


def _tanh(x, B):
    e = _exp(-2.0 * B.abs(x), B)
    t = (1.0 - e) / (1.0 + e)
    return B.where(x < 0, -t, t)


def _power(x, p, B):
    at_zero = 0.0 if p > 0 else (1.0 if p == 0 else math.inf)
    return B.where(x > 0, _exp(p * _log(B.where(x > 0, x, 1.0), B), B), B.where(x == 0, at_zero, math.nan))


def _scalar(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating))


_SMALL = 8  # arrays up to this size go element by element through the Python path: ~2 us an element
# against ~20 us of numpy call overhead per function; both paths give the same bits (tests/test_exactmath.py)


def _apply(fn, *args):
    """fn on Python floats if every argument is a scalar (returns a float), else on float64 arrays
    (returns the first array argument's float dtype, float64 otherwise)."""
    if all(_scalar(a) for a in args):
        return fn(*(float(a) for a in args), _Python)
    arrays = [np.asarray(a, dtype=np.float64) for a in args]
    if len(arrays) > 1 and any(a.shape != arrays[0].shape for a in arrays):
        arrays = np.broadcast_arrays(*arrays)
    if 0 < arrays[0].size <= _SMALL:
        values = [fn(*v, _Python) for v in zip(*(a.ravel().tolist() for a in arrays))]
        shape = arrays[0].shape
        if isinstance(values[0], tuple):
            y = tuple(np.array(part, np.float64).reshape(shape) for part in zip(*values))
        else:
            y = np.array(values, np.float64).reshape(shape)
    else:
        y = fn(*arrays, _Numpy)
    dtypes = [a.dtype for a in args if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating)]
    if not dtypes:
        return y
    if isinstance(y, tuple):
        return tuple(v.astype(dtypes[0], copy=False) for v in y)
    return y.astype(dtypes[0], copy=False)


def exp(x):
    """e ** x; x is clipped to [-708, 709] (exp(709) ~ 8e307), NaN stays NaN."""
    return _apply(_exp, x)


def log(x):
    return _apply(_log, x)


def sin(x):
    return _apply(lambda v, B: _sincos(v, B)[0], x)


def cos(x):
    return _apply(lambda v, B: _sincos(v, B)[1], x)


def sincos(x):
    """(sin(x), cos(x)) for the price of one."""
    return _apply(_sincos, x)


def tan(x):
    return _apply(lambda v, B: (lambda s, c: s / c)(*_sincos(v, B)), x)


def tanh(x):
    return _apply(_tanh, x)


def power(x, p: float):
    """x ** p for x >= 0 (0 ** p = 0 for p > 0); negative or NaN x gives NaN."""
    return _apply(lambda v, B: _power(v, float(p), B), x)


def atan2(y, x):
    """Angle of (x, y) in [-pi, pi], like numpy.arctan2 (signed zeros aside)."""
    return _apply(_atan2, y, x)


def hypot(x, y):
    return _apply(lambda a, b, B: B.sqrt(a * a + b * b), x, y)


def gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    """cv2.getGaussianKernel(ksize, sigma) (sigma > 0) as float64 (ksize,), with this module's exp:
    OpenCV computes the kernel of float images with the C library's exp."""
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) * 0.5
    g = _exp(x * x * (-0.5 / (sigma * sigma)), _Numpy)
    return g / g.sum()


def gaussian_blur(img: np.ndarray, sigma_x: float, sigma_y: float | None = None, ksize: int = 0,
                  border: int | None = None) -> np.ndarray:
    """cv2.GaussianBlur of a float32 image, with `gaussian_kernel` (ksize 0: OpenCV's choice for float
    images, round(8 sigma + 1) made odd) and cv2.sepFilter2D; run it under `opencv_baseline()`."""
    import cv2

    sigma_y = sigma_x if sigma_y is None else sigma_y
    kx = ksize or (round(sigma_x * 8 + 1) | 1)
    ky = ksize or (round(sigma_y * 8 + 1) | 1)
    border = cv2.BORDER_REFLECT_101 if border is None else border
    return cv2.sepFilter2D(img, -1, gaussian_kernel(kx, sigma_x).astype(np.float32),
                           gaussian_kernel(ky, sigma_y).astype(np.float32), borderType=border)


@contextlib.contextmanager
def opencv_baseline():
    """OpenCV without run-time SIMD dispatch and IPP for the duration; the setting is process-wide, so
    nested and concurrent uses (threads rendering at once) are counted, and the last one out restores
    what was there before the first came in."""
    import cv2

    with _BASELINE_LOCK:
        if _BASELINE_USERS[0] == 0:
            _BASELINE_USERS[1] = cv2.useOptimized()
            cv2.setUseOptimized(False)
        _BASELINE_USERS[0] += 1
    try:
        yield
    finally:
        with _BASELINE_LOCK:
            _BASELINE_USERS[0] -= 1
            if _BASELINE_USERS[0] == 0:
                cv2.setUseOptimized(_BASELINE_USERS[1])


_BASELINE_LOCK = threading.Lock()
_BASELINE_USERS = [0, True]  # [users inside, the setting before the first]


def cpu_exact(fn):
    """Decorator: run fn under `opencv_baseline()`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with opencv_baseline():
            return fn(*args, **kwargs)

    return wrapper
