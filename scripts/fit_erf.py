#!/usr/bin/env python3
"""Fit the coefficients of `erf` in src/ops/math.rs and check them in f32.

The runtime's erf (for GELU) must be cheap when auto-vectorized and give the same bits at every
SIMD width: no division, no exp, no FMA, no table lookups; multiplies, adds and masks. Form, on
a = |x| (the sign bit of x is put back afterwards, so erf is exactly odd):

    a < SPLIT:         y = a * P(a*a - S0)        P of degree N: y is odd of degree 2N+1 in a
    SPLIT <= a <= HI:  y = Q0 + t * Q(t)          t = a - MID, Q of degree N: degree N+1 in a
    a > HI = 3.92:     y = 1                      (1 - erf(3.92) < 2^-25: erf rounds to 1 in f32)

P and Q have the same degree, so one evaluation serves both pieces with each coefficient picked
by a bit mask. It is Horner's scheme split in two, r(v) = E(v*v) + v * O(v*v): the runtime loop
is bound by the latency of this chain more than by its arithmetic. Both pieces are expanded
about the middle of their range (a*a = S0 = SPLIT^2/2, a = MID): in plain monomials of a, the
terms of erf on [0, 4] reach 1e4 and cancel, which f32 cannot afford.

Each piece is a minimax fit (Remez exchange on a dense grid, absolute error, f64 with
math.erf as the reference) in a scaled basis, converted to the evaluated form and rounded to
f32, then nudged by an ulp or two where that lowers the error of the f32 evaluation. That
evaluation is done exactly as the Rust code does it (numpy float32: one rounding per * and +,
no fusion) and compared with math.erf on every f32 in [2^-16, 4] (`--exhaustive`, about a
minute) or on a dense sample (default). Below 2^-16, a*a - S0 rounds to -S0, so y = a * P(-S0)
there: relative error |P(-S0) / (2/sqrt(pi)) - 1| plus rounding, printed too.

Usage: python3 scripts/fit_erf.py [--exhaustive]   (needs numpy)
Prints the constants for src/ops/math.rs and the measured maximum error.
"""
import math
import sys

import numpy as np

N = 8  # degree of P and Q (even: see erf_f32)
SPLIT = 1.875  # a < SPLIT: first piece (where both pieces come out about as accurate)
S0 = SPLIT * SPLIT / 2  # its centre in a*a (exact in f32): a*a - S0 is in [-S0, S0]
HI = float(np.float32(3.92))  # a > HI: erf(a) = 1 in f32 (1 - erf(3.92) = 3.0e-8 < 2^-25)
MID = float(np.float32((SPLIT + HI) / 2))  # centre of the second piece, exact in f32
HALF = (HI - SPLIT) / 2

erf64 = np.frompyfunc(math.erf, 1, 1)


def erf_ref(x):
    return erf64(np.asarray(x, dtype=np.float64)).astype(np.float64)


def remez(basis, target, lo, hi, npts=20000, iters=60):
    """Minimax (absolute error) fit of target on [lo, hi] by sum_k c_k basis[k](x)."""
    xs = (lo + hi) / 2 - (hi - lo) / 2 * np.cos(np.pi * np.arange(npts) / (npts - 1))
    mat = np.stack([g(xs) for g in basis], 1)
    fx = target(xs)
    n = len(basis)
    ref = np.round((npts - 1) * (1 - np.cos(np.pi * np.arange(n + 1) / n)) / 2).astype(int)
    best = None
    for _ in range(iters):
        sys_mat = np.hstack([mat[ref], ((-1.0) ** np.arange(n + 1))[:, None]])
        sol = np.linalg.solve(sys_mat, fx[ref])
        coef, level = sol[:n], abs(sol[n])
        err = mat @ coef - fx
        worst = np.abs(err).max()
        if best is None or worst < best[1]:
            best = (coef, worst)
        if worst - level < 1e-6 * worst:
            break
        # New reference: the extremum of each run of equal sign, trimmed to n+1 from the ends.
        sign = np.where(err >= 0, 1, -1)
        runs = np.split(np.arange(npts), np.flatnonzero(np.diff(sign)) + 1)
        ext = [r[np.argmax(np.abs(err[r]))] for r in runs]
        while len(ext) > n + 1:
            ext = ext[1:] if abs(err[ext[0]]) < abs(err[ext[-1]]) else ext[:-1]
        if len(ext) < n + 1:
            break
        ref = np.array(ext)
    return best


def fit():
    """Minimax coefficients (f64) of both pieces in the evaluated form, and their errors."""
    # Piece 1 on [0, SPLIT]: a * sum_k p_k (a*a - S0)^k, fitted in the basis a * ((a*a - S0)/S0)^k.
    basis = [lambda x, k=k: x * ((x * x - S0) / S0) ** k for k in range(N + 1)]
    p, err_p = remez(basis, erf_ref, 0.0, SPLIT)
    p = p / S0 ** np.arange(N + 1)
    # Piece 2 on [SPLIT, HI]: sum_k q_k (a - MID)^k, fitted in the basis ((a - MID)/HALF)^k.
    basis = [lambda x, k=k: ((x - MID) / HALF) ** k for k in range(N + 2)]
    q, err_q = remez(basis, erf_ref, SPLIT, HI)
    q = q / HALF ** np.arange(N + 2)
    return p, q, err_p, err_q


def round_to_f32(coef, error_of):
    """Rounds coefficients to f32, then nudges them by up to 2 ulps while the max error of the
    f32 evaluation (error_of) goes down (a greedy search: it only undoes part of what rounding
    and f32 arithmetic cost, which dominate the fit's own error here)."""
    c = coef.astype(np.float32)
    best = error_of(c)
    improved = True
    while improved:
        improved = False
        for k in range(len(c)):
            for steps in (1, 2, -1, -2):
                trial = c.copy()
                for _ in range(abs(steps)):
                    trial[k] = np.nextafter(trial[k], np.float32(np.inf if steps > 0 else -np.inf))
                e = error_of(trial)
                if e < best:
                    best, c, improved = e, trial, True
                    break
    return c, best


def erf_f32(x, p, q):
    """The Rust `erf`, operation for operation, in float32."""
    f = np.float32
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    near = a < f(SPLIT)
    v = np.where(near, a * a - f(S0), a - f(MID)).astype(np.float32)
    coef = [np.where(near, p[k], q[k + 1]).astype(np.float32) for k in range(N + 1)]
    # r = E(v*v) + v * O(v*v), E and O by Horner: two independent chains of half the length.
    w = (v * v).astype(np.float32)
    e, o = coef[N], coef[N - 1]
    for k in range(N - 2, -1, -2):
        e = (coef[k] + w * e).astype(np.float32)
    for k in range(N - 3, 0, -2):
        o = (coef[k] + w * o).astype(np.float32)
    r = (e + v * o).astype(np.float32)
    b = np.where(near, a, v).astype(np.float32)
    c = np.where(near, f(0.0), q[0]).astype(np.float32)
    y = (c + b * r).astype(np.float32)
    y = np.where(a > f(HI), f(1.0), y).astype(np.float32)
    sign = x.view(np.uint32) & np.uint32(0x8000_0000)
    return (y.view(np.uint32) | sign).view(np.float32)


def f32_range(lo, hi):
    """Every f32 in [lo, hi], in chunks."""
    b0 = int(np.float32(lo).view(np.uint32))
    b1 = int(np.float32(hi).view(np.uint32))
    step = 1 << 22
    for s in range(b0, b1 + 1, step):
        yield np.arange(s, min(s + step, b1 + 1), dtype=np.uint32).view(np.float32)


def max_error(xs, p, q):
    """(max |error|, where, max erf) over xs."""
    xs = np.asarray(xs, dtype=np.float32)
    y = erf_f32(xs, p, q)
    e = np.abs(y.astype(np.float64) - erf_ref(xs))
    i = int(np.argmax(e))
    return e[i], float(xs[i]), float(y.max())


def rust_literal(v):
    """Shortest round-tripping f32 decimal, digits after the point grouped by 3 as in math.rs."""
    s = np.format_float_scientific(np.float32(v), unique=True, trim="-")
    mant, exp = s.split("e")
    exp = int(exp)
    if -4 <= exp < 4:
        s = np.format_float_positional(np.float32(v), unique=True, trim="-")
        if "." not in s:
            s += ".0"
        head, tail = s.split(".")
        return head + "." + "_".join(tail[i:i + 3] for i in range(0, len(tail), 3))
    head, _, tail = mant.partition(".")
    tail = "_".join(tail[i:i + 3] for i in range(0, len(tail), 3))
    return f"{head}.{tail or '0'}e{exp}"


def main():
    p, q, err_p, err_q = fit()
    print(f"minimax error in f64: piece 1 {err_p:.2e}, piece 2 {err_q:.2e}")
    # The pieces are independent: tune each on a dense f32 grid of its own range.
    g1 = np.unique(np.linspace(0, SPLIT, 300_001).astype(np.float32))
    g1 = g1[g1 < SPLIT]
    g2 = np.unique(np.linspace(SPLIT, HI, 200_001).astype(np.float32))
    r1, r2 = erf_ref(g1), erf_ref(g2)
    q0 = q.astype(np.float32)
    p32, e1 = round_to_f32(p, lambda c: np.abs(erf_f32(g1, c, q0) - r1).max())
    q32, e2 = round_to_f32(q, lambda c: np.abs(erf_f32(g2, p32, c) - r2).max())
    print(f"after rounding to f32 and tuning, on the tuning grids: piece 1 {e1:.2e}, piece 2 {e2:.2e}")

    if "--exhaustive" in sys.argv:
        worst, top = (0.0, 0.0), 0.0
        for xs in f32_range(2.0**-16, 4.0):
            e, at, y = max_error(xs, p32, q32)
            worst, top = max(worst, (e, at)), max(top, y)
        what = "every f32 in [2^-16, 4]"
    else:
        xs = np.concatenate([np.linspace(0, 4, 2_000_001), np.float32(2.0) ** -np.arange(1, 40.0)])
        e, at, top = max_error(xs, p32, q32)
        worst = (e, at)
        what = "2e6 points in [0, 4]"
    print(f"f32 evaluation, {what}: max |erf error| = {worst[0]:.3e} at x = {worst[1]!r}, max erf = {top!r}")
    assert top <= 1.0, "erf must not exceed 1"
    small = abs(float(np.float32(p32[0]) + sum(float(p32[k]) * (-S0) ** k for k in range(1, N + 1)))
                / (2 / math.sqrt(math.pi)) - 1)
    print(f"below 2^-16: relative error of a * P(-S0) vs 2a/sqrt(pi): {small:.2e} (+ 1 ulp rounding)")
    print(f"1 - erf({HI}) = {math.erfc(HI):.2e} (error where the result is clamped to 1)")
    checks = np.array([0.0, -0.0, 1e-30, 0.5, -0.5, 1.0, 2.0, -2.0, 3.0, 3.92, 3.9200003, 10.0, np.inf, -np.inf, np.nan],
                      dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        print("spot values:", ", ".join(f"erf({x}) = {y}" for x, y in zip(checks, erf_f32(checks, p32, q32))))

    print("\n// ---- constants for src/ops/math.rs ----")
    print(f"const SPLIT: f32 = {rust_literal(SPLIT)};")
    print(f"const S0: f32 = {rust_literal(S0)};")
    print(f"const MID: f32 = {rust_literal(MID)};")
    print(f"const P: [f32; {N + 1}] = [" + ", ".join(rust_literal(v) for v in p32) + "];")
    print(f"const Q: [f32; {N + 2}] = [" + ", ".join(rust_literal(v) for v in q32) + "];")


if __name__ == "__main__":
    main()
