"""How the calibration's bin factors weigh coverage against robust width (`width_weight` of cemp_hfs.calibrate.fit_calibration),
chosen on the calibration stars alone (`make bench-calibration-choice`, ~3 min on 2 CPUs).

The stars `make pretrained` calibrates the shipped model on (the validation split of its mock + DR10 dataset and the
calibration-only metal-poor mock set) are split in two halves at random (seed 0). The calibration is fitted on one half
with each `width_weight` and judged on the other, and then the other way round. In every S/N_g bin with at least 30
stars, it measures two things: the robust pull width (astropy `mad_std`, target 0.85-1.15) and the fraction of stars
within 1 sigma (target 0.63-0.73). The score of a bin is the larger of two deviations, each in units of its tolerance:
|log width| / log 1.15 and |coverage - 0.683| / 0.05. A score of 1 or less meets both targets. The weight chosen is
the one whose worst bin is best. The unseen mock stars of `make bench-uncertainty` play no part. Writes
benchmarks/results/calibration_choice.md and .json.
"""
from __future__ import annotations
import json, sys, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'benchmarks'))
from hardware import cpu_model  # noqa: E402
from uncertainty import pull_stats  # noqa: E402
from cemp_hfs.core import LABELS  # noqa: E402
from cemp_hfs.calibrate import calibration_data, fit_calibration, calibrated_sigma, snr_bins, Q68, SNR_EDGES  # noqa: E402

PRE, OUT = ROOT / 'benchmarks' / 'cache' / 'pretrained', ROOT / 'benchmarks' / 'results'
MODEL = PRE / 'hfsnet-small-mock-dr10_e24.pt'
WEIGHTS = (0., 0.25, 0.5, 0.75, 1.)
WIDTH, COVER = (0.85, 1.15), (0.63, 0.73)


def main():
    t0 = time.time()
    if not MODEL.exists(): raise SystemExit(f"{MODEL}: missing; run `make pretrained` first")
    ds = []
    for name in ('both_ds', 'calib_mock_ds'):
        f = PRE / f'calibration_choice_{name}.npz'
        if not f.exists():
            d = calibration_data(MODEL, PRE / name, 'valid', 16, 0)
            np.savez(f, **{k: np.asarray(d[k], float) for k in ('point', 'err_mc', 'truth', 'snr')})
        ds.append(dict(np.load(f)))
    P, E, T, S = (np.concatenate([d[k] for d in ds]) for k in ('point', 'err_mc', 'truth', 'snr'))
    half = np.random.default_rng(0).random(len(S)) < 0.5
    rows = []
    for w in WEIGHTS:
        scores, bins = [], []
        for fit in (half, ~half):
            cal, judge = fit_calibration(P[fit], E[fit], T[fit], S[fit], width_weight=w), ~fit
            for j, l in enumerate(LABELS):
                sig = calibrated_sigma(cal, l, E[judge, j], S[judge], P[judge, LABELS.index('feh')])[0]
                p, b = (P[judge, j] - T[judge, j]) / sig, snr_bins(S[judge])
                for k in range(len(SNR_EDGES) + 1):
                    m = np.isfinite(p) & (b == k)
                    if m.sum() < 30: continue
                    ps = pull_stats(p[m]); width, cover = ps['width'], ps['cover68']
                    scores.append(max(abs(np.log(width)) / np.log(WIDTH[1]), abs(cover - Q68) / (COVER[1] - Q68)))
                    bins.append(dict(label=l, bin=k, n=int(m.sum()), width=width, cover=cover))
        s = np.array(scores)
        rows.append(dict(width_weight=w, n_bins=len(s), n_out=int((s > 1).sum()), worst=float(s.max()), mean=float(s.mean()), bins=bins))
    best = min(rows, key=lambda r: r['worst'])
    res = dict(hardware=cpu_model(), n_stars=int(len(S)), rows=rows, chosen=best['width_weight'], seconds=round(time.time() - t0, 1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / 'calibration_choice.json').write_text(json.dumps(res, indent=1))
    L = ['# The calibration\'s bin factors: coverage against robust width', '',
         f"Written by `benchmarks/calibration_choice.py` in {res['seconds']:.0f} s on {res['hardware']}. {res['n_stars']} calibration stars of "
         "`make pretrained` (validation split and the calibration-only metal-poor mock set), split into two random halves; each half's fit is judged on "
         "the other half. Bins: S/N_g < 10, 10-20, 20-40, 40-80, > 80 for each label, with at least 30 stars. A bin's score is the larger of "
         "|log robust width| / log 1.15 and |68% coverage - 0.683| / 0.05, so 1 or less meets both targets.", '',
         '| width_weight | bins judged | bins over 1 | worst score | mean score |', '| ---: | ---: | ---: | ---: | ---: |']
    L += [f"| {r['width_weight']:.2f} | {r['n_bins']} | {r['n_out']} | {r['worst']:.2f} | {r['mean']:.2f} |" for r in rows]
    L += ['', f"Chosen: width_weight = {res['chosen']} (the best worst bin). 0 is the 68% coverage factor alone, 1 the robust-width factor alone. "
          'Half the calibration stars leave few per bin, so the scores are noisy: the choice is a compromise, not an optimum.']
    (OUT / 'calibration_choice.md').write_text('\n'.join(L) + '\n')
    print('\n'.join(L))


if __name__ == '__main__':
    main()
