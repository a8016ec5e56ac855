"""Write Tests/EvalTests/Fixtures/frechet_reference.json: reference Frechet distances for
RepTokEval's `Frechet`, computed the way pytorch-fid's `calculate_frechet_distance` does
(numpy mean, np.cov(rowvar=False), scipy.linalg.sqrtm of sigma1 @ sigma2 with its eps fallback,
real part), on small deterministic feature sets.

Run from the repository root (numpy and scipy):
    python3 python/scripts/frechet_reference.py

Cases: different means and covariances, nearly equal distributions (small distance), and a
rank-deficient one (fewer samples than dimensions: singular covariances). Features are rounded
to 6 decimals before anything is computed, and stored as rounded, so Swift reads exactly the
numbers the reference used.
"""
import json
from pathlib import Path

import numpy as np
import scipy
from scipy import linalg


def frechet(mu1, s1, mu2, s2, eps=1e-6):
    # pytorch-fid 0.3.0, fid_score.calculate_frechet_distance
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))  # pytorch-fid passes disp=False (deprecated in scipy 1.17)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def features(rng, n, d, shift, mix):
    base = rng.standard_normal((n, d))
    a = np.eye(d) + mix * rng.standard_normal((d, d))
    return np.round(base @ a + shift, 6)


def main():
    rng = np.random.default_rng(20251014)
    cases = []
    for name, n, d, shift_b, mix_a, mix_b in [
        ("different", 60, 6, 0.5, 0.3, 0.6),
        ("medium", 200, 24, 0.2, 0.2, 0.4),
        ("near_equal", 300, 16, 0.0, 0.2, 0.2),
        ("rank_deficient", 30, 40, 0.3, 0.3, 0.5),
    ]:
        a = features(rng, n, d, 0.0, mix_a)
        if name == "near_equal":
            b = np.round(a + 0.01 * rng.standard_normal(a.shape), 6)
        else:
            b = features(rng, n, d, shift_b, mix_b)
        mu1, mu2 = a.mean(0), b.mean(0)
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        cases.append({"name": name, "n": n, "dim": d, "a": a.ravel().tolist(), "b": b.ravel().tolist(),
                      "frechet": frechet(mu1, s1, mu2, s2),
                      "trace_a": float(np.trace(s1)), "trace_b": float(np.trace(s2))})
    out = {"generator": "python/scripts/frechet_reference.py", "numpy": np.__version__, "scipy": scipy.__version__,
           "cases": cases}
    path = Path("Tests/EvalTests/Fixtures/frechet_reference.json")
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    for c in cases:
        print(f"{c['name']}: n={c['n']} d={c['dim']} frechet={c['frechet']:.9g}")


if __name__ == "__main__":
    main()
