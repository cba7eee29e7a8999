"""The mock against real stars (issue 12, item 2): real LAMOST DR10 FGK spectra at their LASP labels, and the five
high-resolution metal-poor benchmark stars at their JINAbase labels; calibration of the mock's label-dependent line
strengths on a tuning part of both.

1. **Realism table** (DR10): every F and G star of ../shared/data/lamost/dr10_labeled (LAMOST gives no K subclass
   there) is compared with the mock at its LASP labels ([C/Fe] = 0), both through the training preprocessing
   (`cemp_hfs.preprocess`; Na D and the Ca triplet, outside the training segments, through the same steps on extra
   segments 5750-6000 and 8400-8900 A). The mock spectrum is put on the real star's own continuum
   (`native_continuum`) at its LASP radial velocity, so continuum shape cancels and what is left is lines. Per
   wavelength region and star group: rms of (real - mock) over the rms of the noise, where the noise is the
   difference between two preprocessed mock spectra, one noiseless and one with the real star's per-pixel noise
   (ratio 1: the mock is as close as the noise allows). Stars are split by the *model's* split of
   `benchmarks/pretrained.py` (`assign_splits`, seed 0, by star): the calibration tunes on the training split's
   stars only, the table reports on the validation and test splits' stars (never tuned on).
2. **Band depths** (`cemp_hfs.pseudo.band_depth`) of the benchmark stars degraded to LAMOST (noise-free) against the
   mock's normalised model at their JINAbase labels, for Ca II H&K, the Ca triplet, Mg b, H-delta/gamma/beta/alpha,
   Fe-peak blends and the CH G band. HD 122563 is never used by the calibration (reported out of sample).
3. `--calibrate`: fit the label slopes of the line groups (`cemp_hfs.mock.STRENGTH`: log strength per dex of log g
   and of [Fe/H]) by least squares on the tuning stars (DR10 training-split FGK stars and four benchmark stars), and
   write them to cemp_hfs/data/mock_calibration.json (key `label_slopes`).

    python benchmarks/mock_realism_real.py [--calibrate] [--tag before|after]
Results: benchmarks/results/mock_realism_real.md and .json (the tagged runs are kept side by side).
"""
from __future__ import annotations
import argparse, json, os, sys, time
from pathlib import Path

import numpy as np
from astropy.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / 'benchmarks'))
from cemp_hfs import mock  # noqa: E402
from cemp_hfs.core import LABELS, atomic_path  # noqa: E402
from cemp_hfs.io import read_lamost, LamostSpectrum  # noqa: E402
from cemp_hfs.preprocess import preprocess, native_continuum, load_preprocess_config  # noqa: E402
from cemp_hfs.dataset import assign_splits  # noqa: E402
from cemp_hfs.pseudo import degrade_to_lamost, band_depth, jinabase_labels  # noqa: E402

DATA = Path(os.environ.get('CEMP_HFS_DATA', ROOT / '..' / 'shared' / 'data')).resolve()
OUT = ROOT / 'benchmarks' / 'results'
CALIB_FILE = ROOT / 'cemp_hfs' / 'data' / 'mock_calibration.json'
EXTRA = load_preprocess_config(segments=((5750., 6000.), (8400., 8900.)), max_bad_frac=0.9)  # Na D and the Ca triplet, same steps
REPORT_OUT_STAR = 'HD 122563'  # benchmark star never used by the calibration
# rest-frame vacuum windows (A)
REGIONS = {
    'all (training segments)': [(3800., 5700.), (5900., 8000.)],
    'Ca II H&K': [(3920., 3980.)],
    'CN 3883': [(3850., 3890.)],
    'H-delta': [(4092., 4112.)],
    'CH G band': [(4285., 4320.)],
    'H-gamma': [(4330., 4352.)],
    'H-beta': [(4852., 4872.)],
    'Mg b': [(5160., 5190.)],
    'Fe 5270/5335': [(5262., 5278.), (5322., 5340.)],
    'Na D': [(5885., 5902.)],
    'H-alpha': [(6555., 6575.)],
    'Ca triplet': [(8492., 8506.), (8536., 8550.), (8656., 8670.)],
    'continuum windows': [(6020., 6050.), (6600., 6640.), (7020., 7060.), (7860., 7900.)],
}
BANDS = {'Ca II K': (3925., 3945.), 'Ca II H': (3962., 3977.), 'CH G band': (4290., 4320.), 'H-delta': (4094., 4110.),
         'H-gamma': (4334., 4348.), 'H-beta': (4850., 4875.), 'Mg b': (5160., 5190.), 'Fe 5270': (5263., 5277.),
         'Fe 5335': (5323., 5340.), 'H-alpha': (6556., 6572.), 'Ca II 8498': (8493., 8505.),
         'Ca II 8542': (8535., 8550.), 'Ca II 8662': (8656., 8670.)}
# band-depth side windows: the default 20 A, 5 A away, except where a neighbour line sits there
BAND_SIDES = {'Ca II K': (10., 3.), 'Ca II H': (10., 3.)}
GROUPS = ('F dwarfs', 'G dwarfs', 'giants (log g < 3.5)', 'metal-poor ([Fe/H] < -1)', 'metal-poor giants')


def log(*a): print(time.strftime('%H:%M:%S'), *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- real stars
def load_dr10(data=DATA):
    "LASP rows of the DR10 F/G stars, their spectra, and the split of `benchmarks/pretrained.py` (by star, seed 0)."
    lasp = Table.read(data / 'lamost' / 'dr10_labeled' / 'lasp_labels.csv', format='ascii.csv')
    specs = [read_lamost(data / 'lamost' / 'dr10_labeled' / f) for f in lasp['filename']]
    p = preprocess(specs)  # the training preprocessing: its rejects are the dataset's rejects
    keep = p.index
    lab = lasp[keep]
    lab['split'] = assign_splits(lab['feh'], [f"dr10-{s}" for s in lab['star']])  # build_dataset's rule and seed
    fg = np.array([str(s)[:1] in 'FGK' for s in lab['subclass']])
    return lab[fg], [specs[i] for i in keep[fg]], p.normalized[fg], p.mask[fg], p.wave


def groups_of(lab):
    "Boolean masks of the star groups of the table."
    t, g, f = (np.asarray(lab[k], float) for k in ('teff', 'logg', 'feh'))
    sub = np.array([str(s)[:1] for s in lab['subclass']])
    return {'F dwarfs': (sub == 'F') & (g >= 3.5), 'G dwarfs': (sub == 'G') & (g >= 3.5), 'giants (log g < 3.5)': g < 3.5,
            'metal-poor ([Fe/H] < -1)': f < -1, 'metal-poor giants': (f < -1) & (g < 3.5)}


def mock_twins(specs, lab, seed=0):
    "For each real spectrum: the mock at its labels on its continuum, noiseless and with its per-pixel noise."
    conts = native_continuum(specs)
    conts_x = []
    for s in specs:  # the dichroic region can be masked out: no continuum there, the Na D region then drops the star
        try: conts_x.append(native_continuum(s, EXTRA))
        except ValueError: conts_x.append(np.full(len(s.wave), np.nan))
    rng = np.random.default_rng(seed)
    c_kms = mock.C_KMS
    z = np.array([s.meta.get('z') or 0. for s in specs])
    cfe = np.asarray(lab['cfe'], float) if 'cfe' in lab.colnames else np.zeros(len(lab))
    inst = np.asarray(lab['instrument'], bool) if 'instrument' in lab.colnames else np.ones(len(lab), bool)
    norm = [mock.model_flux(float(r['teff']), float(r['logg']), float(r['feh']), c, rv=zi * c_kms, wave=s.wave,
                            normalized=True, instrument=i) for r, s, zi, c, i in zip(lab, specs, z, cfe, inst)]
    out0, out1 = [], []
    for s, n, c, cx in zip(specs, norm, conts, conts_x):
        c = np.where(np.isfinite(c), c, cx)
        good = np.isfinite(c)
        c = np.interp(np.arange(len(c)), np.flatnonzero(good), c[good])
        e = (c * n).astype(np.float32)
        sig = np.where(s.ivar > 0, 1 / np.sqrt(np.maximum(s.ivar, 1e-30)), 0.).astype(np.float32)
        for out, f in ((out0, e), (out1, e + rng.standard_normal(len(e)).astype(np.float32) * sig)):
            out.append(LamostSpectrum(s.wave, f, s.ivar, s.andmask, s.ormask, dict(s.meta)))
    return out0, out1


def prep(specs, z=None, cfg=None):
    "Preprocessed normalised flux and mask of every spectrum (a refused spectrum: all pixels masked)."
    p = preprocess(specs, cfg, z=z, errors='collect')
    norm = np.ones((len(specs), len(p.wave)), np.float32); mask = np.ones((len(specs), len(p.wave)), bool)
    norm[p.index], mask[p.index] = p.normalized, p.mask
    return p.wave, norm, mask


def region_masks(wave):
    return {k: np.any([(wave >= lo) & (wave <= hi) for lo, hi in wins], 0) for k, wins in REGIONS.items()}


def realism(specs, lab, real_main=None, real_mask=None):
    "Per star and region: sum of squared (real - mock), of squared noise, sum of (real - mock), and pixel count."
    z = [s.meta.get('z') or 0. for s in specs]
    m0, m1 = mock_twins(specs, lab)
    res = {}
    for cfg in (None, EXTRA):
        if cfg is None and real_main is not None: rn, rm = real_main, real_mask
        else: _, rn, rm = prep(specs, z, cfg)
        (wave, n0, k0), (_, n1, k1) = prep(m0, z, cfg), prep(m1, z, cfg)
        good = ~rm & ~k0 & ~k1
        for k, sel in region_masks(wave).items():
            if not sel.any(): continue
            s = good & sel[None, :]
            d, e = (rn - n0), (n1 - n0)
            res[k] = dict(res2=np.sum(np.where(s, d ** 2, 0), 1), noise2=np.sum(np.where(s, e ** 2, 0), 1),
                          res=np.sum(np.where(s, d, 0), 1), n=s.sum(1))
    return res


def summarise(res, masks):
    "Per group and region: pooled rms of the residual, of the noise, their ratio, and the mean residual (real - mock)."
    out = {}
    for gname, m in masks.items():
        out[gname] = {'n_stars': int(m.sum())}
        for k, r in res.items():
            n = r['n'][m].sum()
            if n == 0: continue
            out[gname][k] = dict(rms=float(np.sqrt(r['res2'][m].sum() / n)), noise=float(np.sqrt(r['noise2'][m].sum() / n)),
                                 ratio=float(np.sqrt(r['res2'][m].sum() / max(r['noise2'][m].sum(), 1e-30))),
                                 mean=float(r['res'][m].sum() / n))
    return out


# ---------------------------------------------------------------- benchmark stars
def load_benchmarks(data=DATA):
    "The benchmark stars: name, JINAbase labels ([C/Fe] NaN -> 0) and the noise-free spectrum degraded to the LAMOST grid."
    from astropy.io import fits
    stars = Table.read(data / 'hires_benchmarks' / 'stars.csv', format='ascii.csv')
    lab = jinabase_labels(data / 'catalogs' / 'jinabase2018_all_info.txt', list(stars['jinabase_name']),
                          data / 'catalogs' / 'jinabase2018_limits_key.txt')
    out = []
    for s, l in zip(stars, lab):
        with fits.open(data / 'hires_benchmarks' / s['file']) as h:
            f, hd = np.asarray(h[0].data, float), h[0].header
        w = hd['CRVAL1'] + hd['CDELT1'] * np.arange(len(f))
        out.append(dict(star=str(s['star']), teff=float(l['teff']), logg=float(l['logg']), feh=float(l['feh']),
                        cfe=float(np.nan_to_num(l['cfe'])), cfe_known=bool(np.isfinite(l['cfe'])),
                        real=degrade_to_lamost(w, f, mock.lamost_wave())))
    return out


def bench_depths(bench):
    "Band depths of each benchmark star, real and mock (noise-free normalised model, LAMOST's blue-arm veiling off)."
    wave = mock.lamost_wave()
    rows = []
    for b in bench:
        m = mock.model_flux(b['teff'], b['logg'], b['feh'], b['cfe'], normalized=True, instrument=False)
        row = dict(star=b['star'], tuning=b['star'] != REPORT_OUT_STAR)
        for k, win in BANDS.items():
            side, gap = BAND_SIDES.get(k, (20., 5.))
            row[k] = (float(band_depth(wave, b['real'], win, side, gap)), float(band_depth(wave, m, win, side, gap)))
        rows.append(row)
    return rows


# ---------------------------------------------------------------- calibration of the label slopes
FIT_PARAMS = (('H', 'k_theta'), ('H', 'k_logg'), ('H', 'k_feh'), ('Hb', 'k_theta'), ('Hb', 'k_logg'), ('Hb', 'k_feh'),
              ('ca2t', 'k_logg'), ('ca2t', 'k_feh'), ('ca2t', 'k_damp'), ('fe1', 'k_logg'), ('fe1', 'k_feh'),
              ('fe2', 'k_logg'), ('fe2', 'k_feh'), ('alpha1', 'k_logg'), ('alpha1', 'k_feh'), ('ca2', 'k_logg'),
              ('ca2', 'k_feh'), ('ca2', 'k_damp'), ('na1', 'k_feh'), ('forest', 'k_logg'), ('forest', 'k_feh'))  # CH is not fitted: the DR10 stars have no carbon labels ([C/Fe] = 0 would be assumed)
BOUNDS = {'k_theta': (-8., 8.), 'k_logg': (-1.2, 0.6), 'k_feh': (-1.2, 0.8), 'k_damp': (0., 1.2)}
MODEL_FLOOR = 0.01  # normalised flux: a model error floor, so that high-S/N stars do not carry the whole fit
BENCH_WEIGHT = 5.   # a benchmark star weighs as ~25 DR10 stars: they are the only metal-poor giants with good labels
N_TUNE_DR10 = 300   # DR10 tuning stars used by the fit (all metal-poor and giant ones, the rest drawn at random)


def pseudo_spectra(bench, snr=100, cache=ROOT / 'benchmarks' / 'cache' / 'pseudo_lamost'):
    "The benchmark stars' pseudo-LAMOST files at S/N `snr` (written by benchmarks/pseudo_lamost.py)."
    out = []
    for b in bench:
        f = sorted(cache.glob(f"spec-pseudo-*-snr{snr}.fits"))
        hit = [x for x in f if read_lamost(x).meta.get('designation') == b['star']]
        if not hit: raise FileNotFoundError(f"{cache}: no pseudo-LAMOST file of {b['star']} at S/N {snr}: run benchmarks/pseudo_lamost.py")
        out.append(read_lamost(hit[0]))
    return out


def get_params():
    return np.array([mock.STRENGTH[g][k] for g, k in FIT_PARAMS], float)


def set_params(x):
    for (g, k), v in zip(FIT_PARAMS, x): mock.STRENGTH[g][k] = float(v)


def rest_norm(lab, instrument, waves):
    "The mock's normalised rest-frame model of each star at the current slopes, on the preprocessing output grids."
    f = np.asarray(mock.model_flux(lab['teff'], lab['logg'], lab['feh'], lab['cfe'], normalized=True, instrument=False))
    f = np.atleast_2d(f)
    if instrument is not None and np.any(instrument):
        v = mock.blue_veiling(mock.lamost_wave())[None, :]
        f = np.where(np.asarray(instrument)[:, None], (f + v) / (1 + v), f)
    return [np.stack([np.interp(w, mock.lamost_wave(), r) for r in f]) for w in waves]


def fit_data(specs, lab, instrument, weight):
    "What the fit needs per star: real and mock-twin preprocessed spectra, good pixels, weights, preprocessing factor."
    z = [s.meta.get('z') or 0. for s in specs]
    m0, m1 = mock_twins(specs, lab)
    d = dict(lab={k: np.asarray(lab[k], float) for k in ('teff', 'logg', 'feh')}, instrument=np.asarray(instrument))
    d['lab']['cfe'] = np.asarray(lab['cfe'], float) if 'cfe' in lab.colnames else np.zeros(len(lab))
    d['waves'], d['real'], d['w'], d['good'], d['twin0'] = [], [], [], [], []
    for cfg in (None, EXTRA):
        wave, rn, rm = prep(specs, z, cfg)
        _, n0, k0 = prep(m0, z, cfg); _, n1, k1 = prep(m1, z, cfg)
        good = ~rm & ~k0 & ~k1
        if cfg is EXTRA: good &= (region_masks(wave)['Ca triplet'] | region_masks(wave)['Na D'])[None, :]
        good[:, 1::2] = False  # every second pixel: the fit's cost halves, the information hardly
        noise = np.sqrt(np.array([np.mean((a - b)[g] ** 2) if g.any() else 1. for a, b, g in zip(n1, n0, good)]))
        d['waves'].append(wave); d['real'].append(rn); d['good'].append(good); d['twin0'].append(n0)
        d['w'].append(np.asarray(weight, float)[:, None] / np.sqrt(noise ** 2 + MODEL_FLOOR ** 2)[:, None] * np.ones_like(rn))
    return d


def join(a, b):
    return {k: (np.r_[a[k], b[k]] if k == 'instrument' else {l: np.r_[a[k][l], b[k][l]] for l in a[k]} if k == 'lab'
                else a[k] if k == 'waves' else [np.concatenate([x, y]) for x, y in zip(a[k], b[k])]) for k in a}


def residuals(x, d, factor):
    set_params(x)
    models = rest_norm(d['lab'], d['instrument'], d['waves'])
    return np.concatenate([((r - m * f) * w)[g] for r, m, f, w, g in zip(d['real'], models, factor, d['w'], d['good'])])


def calibrate(parts, outer=2):
    "Least-squares label slopes on `parts` ((spectra, labels, weight) each); mock twins and the preprocessing factor are remade each round."
    from scipy.optimize import least_squares
    x = get_params()
    lo = np.array([BOUNDS[k][0] for _, k in FIT_PARAMS]); hi = np.array([BOUNDS[k][1] for _, k in FIT_PARAMS])
    x = np.clip(x, lo, hi)
    cost0 = None
    for it in range(outer):
        set_params(x)
        ds = [fit_data(sp, lb, np.asarray(lb['instrument'], bool), np.full(len(lb), w)) for sp, lb, w in parts]
        d = ds[0]
        for e in ds[1:]: d = join(d, e)
        models = rest_norm(d['lab'], d['instrument'], d['waves'])
        factor = [t / np.maximum(m, 1e-3) for t, m in zip(d['twin0'], models)]
        if cost0 is None: cost0 = float(np.sum(residuals(x, d, factor) ** 2))
        r = least_squares(residuals, x, bounds=(lo, hi), args=(d, factor), diff_step=0.02, x_scale=0.3, max_nfev=40, verbose=0)
        x = r.x
        log(f"calibration round {it + 1}: cost {cost0:.4g} -> {2 * r.cost:.4g} ({r.nfev} evaluations)")
    set_params(x)
    return {'slopes': {g: {k: round(float(v), 3) for (gg, k), v in zip(FIT_PARAMS, x) if gg == g}
                       for g in dict.fromkeys(g for g, _ in FIT_PARAMS)}, 'cost_before': cost0, 'cost_after': float(2 * r.cost)}


# ---------------------------------------------------------------- the run
def summarise_stars(res, masks):
    "`summarise` plus the median over stars of each star's ratio over the training segments (robust to a few bad spectra)."
    out = summarise(res, masks)
    r = res['all (training segments)']
    ratio = np.sqrt(r['res2'] / np.maximum(r['noise2'], 1e-30))
    for g, m in masks.items():
        if m.any(): out[g]['median star ratio (training segments)'] = float(np.median(ratio[m]))
    return out


def bench_table(bench):
    t = Table({k: [b[k] for b in bench] for k in ('star', 'teff', 'logg', 'feh', 'cfe')})
    t['instrument'] = False  # degraded high-resolution spectra: no LAMOST blue-arm veiling
    return t


def measure(dr10, bench, pseudo):
    "The realism numbers at the mock's current slopes."
    lab, specs, rn, rm = dr10
    res = realism(specs, lab, rn, rm)
    rep = np.isin(np.asarray(lab['split']), ['valid', 'test'])
    masks = groups_of(lab)
    out = {part: summarise_stars(res, {'all F/G': sel, **{k: v & sel for k, v in masks.items()}})
           for part, sel in (('report', rep), ('tune', ~rep))}
    tun = np.array([b['star'] != REPORT_OUT_STAR for b in bench])
    bres = realism(pseudo, bench_table(bench))
    out['benchmarks'] = summarise_stars(bres, {'4 tuning stars': tun, f'{REPORT_OUT_STAR} (held out)': ~tun})
    out['band_depths'] = bench_depths(bench)
    return out


def write_calibration(cal, path=CALIB_FILE):
    "Put the fitted slopes into the package data under `label_slopes`, keeping every other key."
    d = json.loads(Path(path).read_text())
    d['label_slopes'] = {'about': ["log10 line-strength slopes of the line groups (cemp_hfs.mock.STRENGTH) fitted on real stars by",
                                   "`python benchmarks/mock_realism_real.py --calibrate`: k_logg per dex of log g, k_feh per dex of",
                                   "[Fe/H] (opacity/pressure term on top of the abundance), k_theta per unit 5040/Teff (replaces the",
                                   "synthetic-spectra slope), k_damp: damping per dex of log g. Tuning stars: the DR10 FGK stars of",
                                   "the model's training split and four benchmark stars (HD 122563 held out)."],
                         'slopes': cal['slopes'], 'fit': {k: v for k, v in cal.items() if k != 'slopes'}}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(d, indent=1) + '\n'); os.chmod(tmp, 0o644)


def markdown(res) -> str:
    b, a = res['before'], res['after']
    L = ['# The mock against real stars (issue 12, item 2)', '',
         f"Written by `benchmarks/mock_realism_real.py` in {res['seconds']:.0f} s. *before*: the mock with its physics "
         "default label slopes (as before this calibration); *after*: with the slopes fitted on real stars "
         "(`label_slopes` in `cemp_hfs/data/mock_calibration.json`).", '',
         '## Realism table: real DR10 FGK stars against the mock at their LASP labels', '',
         "Each real spectrum and the mock at its LASP labels ([C/Fe] = 0, on the real star's own continuum, at its LASP "
         "radial velocity) go through the training preprocessing (`cemp_hfs.preprocess`; Na D and the Ca triplet through "
         "the same steps on extra segments). Numbers: rms of (real - mock) over the rms of the noise (two preprocessed "
         "mock spectra, noiseless and with the real star's per-pixel noise), pooled over the stars and pixels of each "
         "region; 1 = as close as the noise allows. **Reported on the stars of the model's validation and test splits "
         "(never tuned on)**; the slopes were fitted on stars of its training split. LAMOST gives these stars F or G "
         "subclasses only (no K); giants: LASP log g < 3.5, metal-poor: LASP [Fe/H] < -1.", '']
    groups = [g for g in a['report'] if a['report'][g]['n_stars']]
    L += ['| region | ' + ' | '.join(f"{g} ({a['report'][g]['n_stars']})" for g in groups) + ' |',
          '| --- |' + ' --- |' * len(groups)]
    for k in REGIONS:
        cells = []
        for g in groups:
            x, y = b['report'][g].get(k), a['report'][g].get(k)
            cells.append(f"{x['ratio']:.2f} -> {y['ratio']:.2f}" if x and y else '-')
        L.append(f"| {k} | " + ' | '.join(cells) + ' |')
    L.append('| median star ratio, training segments | ' + ' | '.join(
        f"{b['report'][g]['median star ratio (training segments)']:.2f} -> {a['report'][g]['median star ratio (training segments)']:.2f}" for g in groups) + ' |')
    L += ['', 'Mean residual real - mock (normalised flux; > 0: the mock\'s lines are too deep), before -> after:', '',
          '| region | ' + ' | '.join(groups) + ' |', '| --- |' + ' --- |' * len(groups)]
    for k in REGIONS:
        cells = []
        for g in groups:
            x, y = b['report'][g].get(k), a['report'][g].get(k)
            cells.append(f"{x['mean']:+.3f} -> {y['mean']:+.3f}" if x and y else '-')
        L.append(f"| {k} | " + ' | '.join(cells) + ' |')
    L += ['', 'The same ratios on the tuning stars (training split), for comparison:', '',
          '| region | ' + ' | '.join(f"{g} ({a['tune'][g]['n_stars']})" for g in groups) + ' |', '| --- |' + ' --- |' * len(groups)]
    for k in REGIONS:
        cells = []
        for g in groups:
            x, y = b['tune'][g].get(k), a['tune'][g].get(k)
            cells.append(f"{x['ratio']:.2f} -> {y['ratio']:.2f}" if x and y else '-')
        L.append(f"| {k} | " + ' | '.join(cells) + ' |')
    L += ['', '## The benchmark stars (pseudo-LAMOST at S/N 100) through the same table', '',
          f'| region | ' + ' | '.join(a['benchmarks']) + ' |', '| --- |' + ' --- |' * len(a['benchmarks'])]
    for k in REGIONS:
        cells = []
        for g in a['benchmarks']:
            x, y = b['benchmarks'][g].get(k), a['benchmarks'][g].get(k)
            cells.append(f"{x['ratio']:.2f} -> {y['ratio']:.2f}" if x and y else '-')
        L.append(f"| {k} | " + ' | '.join(cells) + ' |')
    L += ['', '## Band depths of the benchmark stars: real / mock before / mock after', '',
          'Band depth (`cemp_hfs.pseudo.band_depth`: 1 - band mean / median of two side windows, 20 A wide and 5 A away; '
          'Ca II H and K: 10 A, 3 A away) of the high-resolution spectrum degraded to LAMOST (noise-free) and of the '
          "mock's normalised model at the star's JINAbase labels (no blue-arm veiling for either). "
          f'{REPORT_OUT_STAR} was not used by the calibration.', '',
          '| band | ' + ' | '.join(d['star'] + ('' if d['tuning'] else ' (held out)') for d in a['band_depths']) + ' |',
          '| --- |' + ' --- |' * len(a['band_depths'])]
    for k in BANDS:
        L.append(f"| {k} | " + ' | '.join(f"{x[k][0]:.3f} / {x[k][1]:.3f} / {y[k][1]:.3f}" for x, y in zip(b['band_depths'], a['band_depths'])) + ' |')
    rel = {}
    for k in BANDS:
        for t in (True, False):
            xs = [(x[k][0], x[k][1], y[k][1]) for x, y in zip(b['band_depths'], a['band_depths']) if x['tuning'] == t]
            rel.setdefault(t, []).extend(xs)
    L += ['', 'Mean |real - mock| band depth over the bands: ' + '; '.join(
        f"{'tuning stars' if t else REPORT_OUT_STAR} {np.mean([abs(r - m0) for r, m0, _ in v]):.3f} before, "
        f"{np.mean([abs(r - m1) for r, _, m1 in v]):.3f} after" for t, v in rel.items()) + '.']
    fit = res.get('calibration') or json.loads(CALIB_FILE.read_text()).get('label_slopes', {}).get('fit', {})
    L += ['', '## The slopes', '', 'Physics default and the package\'s slopes (`label_slopes`), fitted by least squares on the tuning '
          + (f"stars (cost {fit['cost_before']:.4g} -> {fit['cost_after']:.4g})" if 'cost_before' in fit else 'stars')
          + '. CH keeps its physics defaults: the DR10 stars have no carbon labels, and a CH slope fitted with [C/Fe] = 0 '
          'assumed made the G band of metal-poor giants too weak (fitted, not used: '
          + json.dumps(fit.get('CH_fitted_not_used', {})) + ').', '',
          '| group | slope | default | package |', '| --- | --- | ---: | ---: |']
    for g, v in res['slopes_after'].items():
        for k, x in v.items():
            if x != mock.STRENGTH_PHYSICS[g][k]: L.append(f"| {g} | {k} | {mock.STRENGTH_PHYSICS[g][k]:+.3f} | {x:+.3f} |")
    return '\n'.join(L) + '\n'


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--calibrate', action='store_true', help='fit the label slopes and write them to cemp_hfs/data/mock_calibration.json')
    args = ap.parse_args(argv)
    if not DATA.is_dir(): sys.exit(f"real data folder {DATA} not found (set CEMP_HFS_DATA)")
    t0 = time.time()
    lab, specs, rn, rm, _ = load_dr10()
    bench = load_benchmarks(); pseudo = pseudo_spectra(bench)
    log(f"{len(lab)} DR10 F/G stars, {len(bench)} benchmark stars")
    package = {g: dict(v) for g, v in mock.STRENGTH.items()}
    for g in mock.STRENGTH: mock.STRENGTH[g].update(mock.STRENGTH_PHYSICS[g])
    res = {'before': measure((lab, specs, rn, rm), bench, pseudo)}
    log('before measured')
    if args.calibrate:
        tune = np.flatnonzero(np.asarray(lab['split']) == 'train')
        special = np.isin(tune, np.flatnonzero((np.asarray(lab['feh'], float) < -1) | (np.asarray(lab['logg'], float) < 3.5)))
        rng = np.random.default_rng(0)
        pick = np.r_[tune[special], rng.choice(tune[~special], max(N_TUNE_DR10 - special.sum(), 0), replace=False)]
        tl = lab[pick]; tl['instrument'] = True; tl['cfe'] = 0.
        bt = bench_table(bench); keep = np.array([b['star'] != REPORT_OUT_STAR for b in bench])
        cal = calibrate([([specs[i] for i in pick], tl, 1.), ([p for p, k in zip(pseudo, keep) if k], bt[keep], BENCH_WEIGHT)])
        write_calibration(cal)
        res['calibration'] = cal
    else:
        for g in mock.STRENGTH: mock.STRENGTH[g].update(package[g])
    res['after'] = measure((lab, specs, rn, rm), bench, pseudo)
    res['slopes_after'] = {g: {k: mock.STRENGTH[g][k] for k in ('k_theta', 'k_logg', 'k_feh', 'k_damp')} for g in mock.STRENGTH}
    res['seconds'] = round(time.time() - t0, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / 'mock_realism_real.json').write_text(json.dumps(res, indent=1, default=float) + '\n')
    (OUT / 'mock_realism_real.md').write_text(markdown(res))
    print(markdown(res))


if __name__ == '__main__':
    main()
