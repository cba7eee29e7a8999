"Label metrics the benchmarks share (one copy): MAE, bias and robust scatter of residuals per label."
import numpy as np
from astropy.stats import mad_std

from cemp_hfs.core import LABELS


def robust_scatter(r) -> float:
    "1.4826 x the median absolute deviation (astropy's mad_std); NaN for no residual."
    return float(mad_std(r)) if len(r) else float('nan')


def label_stats(pred, truth, sel, labels=LABELS) -> dict:
    "MAE, bias (median residual), robust scatter and N per label for the rows `sel` of (N, L) arrays (residual = pred - truth)."
    out = {}
    for j, l in enumerate(labels):
        r = pred[sel, j] - truth[sel, j]; r = r[np.isfinite(r)]
        out[l] = dict(mae=float(np.mean(np.abs(r))) if len(r) else float('nan'), bias=float(np.median(r)) if len(r) else float('nan'),
                      scatter=robust_scatter(r), n=int(len(r)))
    return out
