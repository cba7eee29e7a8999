"""Pseudo-LAMOST spectra of five real metal-poor benchmark stars, and what the mock and a model make of them.

For each star of ../shared/data/hires_benchmarks (R ~ 40,000, normalised): its labels (median over the JINAbase
studies), its spectrum degraded to LAMOST (cemp_hfs.pseudo.degrade_to_lamost) and put on the continuum of the real
LAMOST DR10 star nearest in (Teff, log g) among those with S/N_g > 50 (LASP labels), with LAMOST-like noise at
S/N_g = 20, 50 and 100, written as real-format files into benchmarks/cache/pseudo_lamost/ (with labels.csv).
Then:
* band depths (cemp_hfs.pseudo.band_depth: CH G band, Ca II 8542, H-beta) of the degraded real spectrum against the
  mock's normalised model at the same labels: where the mock departs from real metal-poor stars;
* with --model (a model file; default demo_out/model.pt when it exists): the model's labels for the pseudo-LAMOST
  spectra against the literature, and whether it calls the star CEMP (criteria 'paper').
Writes benchmarks/results/pseudo_lamost.md and .json.  Usage: python benchmarks/pseudo_lamost.py [--model M]
"""
from __future__ import annotations
import argparse, json, os, sys, time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'benchmarks'))
from hardware import cpu_model  # noqa: E402
from cemp_hfs.core import LABELS, UNITS  # noqa: E402
from cemp_hfs.io import read_lamost, write_lamost  # noqa: E402
from cemp_hfs.mock import model_flux, lamost_wave  # noqa: E402
from cemp_hfs.pseudo import degrade_to_lamost, pseudo_lamost, band_depth, jinabase_labels  # noqa: E402

DATA = Path(os.environ.get('CEMP_HFS_DATA', ROOT.parent / 'shared' / 'data'))
OUT, CACHE = ROOT / 'benchmarks' / 'results', ROOT / 'benchmarks' / 'cache' / 'pseudo_lamost'
SNRS = (20, 50, 100)
BANDS = ('gband', 'ca_triplet', 'hbeta')


def use_hb_feh(k):
    "An experiment on the mock: its H-beta group's [Fe/H] slope (`label_slopes` Hb k_feh) set to `k` in this process and the processes it forks."
    import cemp_hfs.mock as mock_module
    mock_module.STRENGTH['Hb']['k_feh'] = k


def hires(path):
    "(air wavelength, normalised flux) of a benchmark star's FITS file (linear CRVAL1/CDELT1 grid)."
    with fits.open(path) as h:
        f, hd = np.asarray(h[0].data, float), h[0].header
    return hd['CRVAL1'] + hd['CDELT1'] * np.arange(len(f)), f


def nearest(lasp, teff, logg, feh=None, snr_min=50., k=1):
    "Rows of the `k` DR10 LASP stars nearest in (Teff / 250 K, log g / 0.5 dex[, [Fe/H] / 0.5 dex]) with S/N_g > `snr_min`."
    d = np.hypot((np.asarray(lasp['teff'], float) - teff) / 250., (np.asarray(lasp['logg'], float) - logg) / 0.5)
    if feh is not None: d = np.hypot(d, (np.asarray(lasp['feh'], float) - feh) / 0.5)
    d[~(np.asarray(lasp['snrg'], float) > snr_min)] = np.inf
    return [lasp[i] for i in np.argsort(d, kind='stable')[:k]]


def donor_for(teff, logg, lasp, folder):
    "The DR10 LASP star nearest in (Teff / 250 K, log g / 0.5 dex) with S/N_g > 50: its spectrum and catalogue row."
    row = nearest(lasp, teff, logg)[0]
    return read_lamost(folder / row['filename']), row


def benchmark_tables():
    "The benchmark stars (stars.csv), their JINAbase labels (one row each) and the DR10 LASP catalogue (the donors)."
    stars = Table.read(DATA / 'hires_benchmarks' / 'stars.csv', format='ascii.csv')
    lab = jinabase_labels(DATA / 'catalogs' / 'jinabase2018_all_info.txt', list(stars['jinabase_name']),
                          DATA / 'catalogs' / 'jinabase2018_limits_key.txt')
    return stars, lab, Table.read(DATA / 'lamost' / 'dr10_labeled' / 'lasp_labels.csv', format='ascii.csv')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', help='model file to evaluate (default: demo_out/model.pt if it exists)')
    ap.add_argument('--out', default='pseudo_lamost', help='results file stem in benchmarks/results/ (.json and .md)')
    args = ap.parse_args(argv)
    t0 = time.time()
    stars, lab, lasp = benchmark_tables()
    CACHE.mkdir(parents=True, exist_ok=True); OUT.mkdir(parents=True, exist_ok=True)
    rows, depths = [], []
    wave = lamost_wave()
    for s, l in zip(stars, lab):
        w, f = hires(DATA / 'hires_benchmarks' / s['file'])
        real = degrade_to_lamost(w, f, wave)
        mock = model_flux(l['teff'], l['logg'], l['feh'], np.nan_to_num(l['cfe']), normalized=True).ravel()
        depths.append({'star': s['star'], **{f'{b}_real': float(band_depth(wave, real, b)) for b in BANDS},
                       **{f'{b}_mock': float(band_depth(wave, mock, b)) for b in BANDS}})
        donor, drow = donor_for(l['teff'], l['logg'], lasp, DATA / 'lamost' / 'dr10_labeled')
        for snr in SNRS:
            name = f"spec-pseudo-{s['file'].removesuffix('.fits')}-snr{snr}.fits"
            meta = {'designation': s['star'], 'obsid': None, 'subclass': drow['subclass']}
            write_lamost(pseudo_lamost(w, f, donor, snrg=snr, seed=snr, meta=meta), CACHE / name)
            rows.append({'filename': name, 'star': s['star'], 'snr': snr, **{k: l[k] for k in LABELS},
                         'donor': drow['filename'], 'donor_teff': float(drow['teff']), 'donor_logg': float(drow['logg'])})
    truth = Table(rows=rows); truth.write(CACHE / 'labels.csv', format='ascii.csv', overwrite=True)
    res = dict(hardware=cpu_model(), labels=[dict(r) for r in (dict(zip(lab.colnames, map(lambda v: v.item() if hasattr(v, 'item') else v, r))) for r in lab)],
               band_depths=depths, files=str(CACHE))
    model = args.model or (str(ROOT / 'demo_out' / 'model.pt') if (ROOT / 'demo_out' / 'model.pt').exists() else None)
    if model:
        from cemp_hfs.predict import predict
        from cemp_hfs.select import classify
        pred = classify(predict(model, [CACHE / r['filename'] for r in rows], mc_samples=16, progress=False))
        by = {p['filename']: p for p in pred}
        res['model'] = model
        res['predictions'] = [{'star': r['star'], 'snr': r['snr'], **{f'{k}_lit': float(r[k]) for k in LABELS},
                               **{k: float(by[r['filename']][k]) for k in LABELS if k in pred.colnames},
                               **{f'{k}_err': float(by[r['filename']][f'{k}_err']) for k in LABELS if k in pred.colnames},
                               'cemp': bool(np.ma.filled(by[r['filename']]['cemp'], False)),
                               'flagged': bool(by[r['filename']]['flagged']) if 'flagged' in pred.colnames else None}
                              for r in rows if r['filename'] in by]
    res['seconds'] = round(time.time() - t0, 1)
    (OUT / f'{args.out}.json').write_text(json.dumps(res, indent=1, default=float))
    (OUT / f'{args.out}.md').write_text(markdown(res))
    print(markdown(res))


def markdown(res) -> str:
    L = ['# Pseudo-LAMOST benchmark stars', '',
         'Five real metal-poor stars (high-resolution spectra in `../shared/data/hires_benchmarks`) degraded to LAMOST '
         '(R = 1800, LAMOST pixels), put on the continuum of the real DR10 star nearest in (Teff, log g) with S/N_g > 50, '
         f"with LAMOST-like noise at S/N_g = {', '.join(map(str, SNRS))}. Labels: median over the JINAbase studies. "
         f"Made by `benchmarks/pseudo_lamost.py` in {res['seconds']:.0f} s on {res['hardware']}.", '',
         '| star | Teff | log g | [Fe/H] | [C/Fe] | studies (Fe) |', '| --- | ---: | ---: | ---: | ---: | ---: |']
    for l in res['labels']:
        L.append(f"| {l['name']} | {l['teff']:.0f} | {l['logg']:.2f} | {l['feh']:+.2f} | {l['cfe']:+.2f} | {l['n_feh']} |")
    L += ['', '## Band depths: real star against the mock at the same labels', '',
          'Band depth = 1 - band mean / median of two 20 A side windows 5 A away (`cemp_hfs.pseudo.band_depth`), on the '
          'noise-free degraded spectrum and on the mock\'s normalised model (`cemp_hfs.mock.model_flux(normalized=True)`).', '',
          '| star | CH G band real / mock | Ca II 8542 real / mock | H-beta real / mock |', '| --- | --- | --- | --- |']
    for d in res['band_depths']:
        L.append(f"| {d['star']} | " + ' | '.join(f"{d[b + '_real']:.3f} / {d[b + '_mock']:.3f}" for b in BANDS) + ' |')
    if 'predictions' in res:
        L += ['', f"## `{Path(res['model']).name}` on the pseudo-LAMOST spectra", '',
              '| star | S/N | ' + ' | '.join(f'{k} (lit.)' for k in LABELS) + ' | CEMP called | flagged |',
              '| --- | ---: |' + ' ---: |' * len(LABELS) + ' --- | --- |']
        for p in res['predictions']:
            cells = [f"{p.get(k, float('nan')):.2f} ({p[k + '_lit']:.2f})" if k != 'teff' else f"{p.get(k, float('nan')):.0f} ({p[k + '_lit']:.0f})" for k in LABELS]
            L.append(f"| {p['star']} | {p['snr']} | " + ' | '.join(cells) + f" | {p['cemp']} | {p['flagged']} |")
        fe = [abs(p['feh'] - p['feh_lit']) for p in res['predictions'] if p['snr'] == 50 and p['feh_lit'] > -4 and 'feh' in p]
        L += ['', f"At S/N 50, |[Fe/H] - literature| for the stars with [Fe/H] > -4: max {max(fe):.2f} dex "
              f"(target: within 0.3 for every star)." if fe else '']
    return '\n'.join(L) + '\n'


if __name__ == '__main__':
    main()
