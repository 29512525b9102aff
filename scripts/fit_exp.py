#!/usr/bin/env python3
# Coefficients of ops::math::exp: python3 scripts/fit_exp.py (needs numpy).
# Minimax-ish fit of e^r ~ 1 + r*(c1 + c2 r + c3 r^2 + c4 r^3 + c5 r^4) on |r| <= ln2/2 (relative error),
# by iteratively reweighted least squares (Lawson), then checked in float32 Estrin evaluation.
import numpy as np
h = np.log(2) / 2
r = np.cos(np.linspace(0, np.pi, 4001)) * h
f = np.exp(r)
A = np.stack([r**k for k in range(1, 6)], axis=1) / f[:, None]  # relative
b = (f - 1) / f
w = np.ones_like(r)
for it in range(300):
    sw = np.sqrt(w)
    c, *_ = np.linalg.lstsq(A * sw[:, None], b * sw, rcond=None)
    err = np.abs(A @ c - b)
    w = w * err
    w /= w.sum()
print("coeffs", [repr(np.float32(x)) for x in c])
print("max rel err (f64 eval)", np.max(np.abs(A @ c - b)))
c32 = [np.float32(x) for x in c]
rr = np.float32(np.linspace(-h, h, 200001))
one = np.float32(1)
r2 = rr * rr
# Estrin: 1 + r*(c1 + c2 r) + r^3 * ((c3 + c4 r) + c5 r^2)
p = (one + rr * (c32[0] + c32[1] * rr)) + (r2 * rr) * ((c32[2] + c32[3] * rr) + c32[4] * r2)
print("max rel err (f32 Estrin)", np.max(np.abs(p.astype(np.float64) / np.exp(rr.astype(np.float64)) - 1)))
