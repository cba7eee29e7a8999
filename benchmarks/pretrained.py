"""Train the model the package ships (`make pretrained`): HFS-Net on the mock survey and the real LAMOST DR10 spectra
with LAMOST pipeline labels together, and measure it.

Reproducible (seeded) and resumable (stages cached under benchmarks/cache/pretrained/):
1. a mock survey of N_MOCK stars (cemp_hfs.mock.make_survey, seed 11) built into a dataset with its *true* labels
   (every label, carbon included);
2. the 1,424 DR10 spectra of ../shared/data/lamost/dr10_labeled with their LASP labels (Teff, log g, [Fe/H]; no
   carbon), split by star (80/10/10, seed 0; the test split is never trained or tuned on);
3. the two merged (cemp_hfs.dataset.merge_datasets) and HFS-Net `small` trained on both at once with the masked loss
   (carbon is learnt from the mock alone, Teff, log g and [Fe/H] from both);
4. measured: against LASP on the real test split (4000-6500 K, S/N_g > 30, and all), against the truth on the mock
   test split ([C/Fe] MAE, CEMP completeness and purity for S/N_g >= 20), the false-CEMP rate on real stars with
   LASP [Fe/H] > -1.5, and the five pseudo-LAMOST benchmark stars (benchmarks/pseudo_lamost.py);
5. the calibration of its uncertainties (cemp_hfs.calibrate.calibrate_uncertainties; run before the measurements of
   step 4, which use the calibrated model, the file that is shipped) fitted on the merged dataset's validation split
   (mock and real; never the test split) together with a calibration-only mock set of metal-poor stars (the
   validation split holds too few of them: ~150 below [Fe/H] = -1; `draw_population` seed 31,
   `mp_tail=0.2`, every star below [Fe/H] = -1.5 of 10,000 drawn, never trained on, other seeds than the uncertainty
   benchmark's test stars), and its repeat factors fitted on the real DR8 repeat observations of ../shared
   (cemp_hfs.calibrate.repeat_factors: what two real observations of one star add to each other's differences, which
   the mock cannot show; applied by `predict` to every spectrum, left out where mock spectra are measured), stored in
   the model file (cached as `*_cal.pt`);
6. with `--ship` (`make pretrained SHIP=1`) only: the calibrated weights copied to cemp_hfs/models/ (package data,
   loaded with weights_only=True) with its entry in cemp_hfs/models/models.yaml, and the numbers written to
   benchmarks/results/pretrained.md/.json (the model card's source). Without it (the default) the run is a candidate:
   the model stays in the cache and its numbers go to benchmarks/results/pretrained_TAG.md/.json (and
   pseudo_lamost_TAG.*; `--tag`, default `candidate`), to be compared with the shipped model's before anyone ships it.
   Settings other than the defaults (`--n-mock`, `--mp-tail`, `--mp-boost`, `--real-weight`, `--config`, `--epochs`,
   `--hb-feh`, `--balanced`) need their own `--cache`.
7. with `--members K`: a deep ensemble (`cemp_hfs.train.ensemble_models`) of the model of step 3 and K - 1 more trained
   the same way from seeds 1 to K - 1 (cached as `*_seedN.pt`; the same cache, the same datasets), calibrated like one
   model (step 5) and measured the same way (step 4). Shipped under its own name (`hfsnet-small-mock-dr10-x5` for K = 5)
   beside the single network, with its numbers in pretrained_xK.md/.json and pseudo_lamost_xK.*.

The shipped file is this script's output: `make pretrained SHIP=1` on a fresh clone trains, calibrates and measures
the same model (same seeds; torch's CPU kernels may differ in the last digits between machines).
The mock population (`mp_tail`, the weight of the metal-poor tail of `cemp_hfs.mock.draw_population`) was chosen on
the validation split among three candidates, each run as `benchmarks/pretrained.py --n-mock N --mp-tail X --cache DIR`
(the table is in docs/model_card.md): 6,000 stars with mp_tail 0.06 (the survey's default), 12,000 with 0.2, and
6,000 with 0.2, which was best on the DR10 validation stars and keeps the mock's CEMP stars (several times more of
them, and of metal-poor giants, than at 0.06).
Three later candidates were not shipped (numbers in pretrained_mp_boost.*, pretrained_hetero.* and pretrained_real2.*,
and the model card): `--mp-boost 2000` (2,000 extra mock stars below [Fe/H] = -2, for the network's bias on metal-poor
mock giants), `--config benchmarks/configs/small_hetero.yaml` (a heteroscedastic head trained with the Gaussian NLL)
and `--real-weight 2` (each real training spectrum twice); nor was `--hb-feh 0` (the mock's H-beta [Fe/H] slope set
to 0, an experiment on why real metal-poor stars read too metal-rich: pretrained_hb0.*, it made them read worse).
To calibrate another model file alone: `cemp-hfs calibrate MODEL DATASET [CALIB_DATASET] --out MODEL2`.
"""
from __future__ import annotations
import argparse, json, os, shutil, sys, time
from pathlib import Path

import numpy as np
from astropy.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'benchmarks'))
from hardware import cpu_model  # noqa: E402
from metrics import label_stats  # noqa: E402
from cemp_hfs.core import LABELS, UNITS  # noqa: E402
from cemp_hfs.mock import make_survey  # noqa: E402
from cemp_hfs.dataset import build_dataset, load_dataset, merge_datasets, split_rows  # noqa: E402
from cemp_hfs.train import train_hfsnet, ensemble_models  # noqa: E402
from cemp_hfs.predict import predict, HFSModel  # noqa: E402
from cemp_hfs.select import classify, candidates, evaluate, purity_threshold  # noqa: E402
from cemp_hfs.calibrate import calibrate_model, calibration_summary  # noqa: E402

DATA = Path(os.environ.get('CEMP_HFS_DATA', ROOT.parent / 'shared' / 'data'))
CACHE, OUT, MODELS = ROOT / 'benchmarks' / 'cache' / 'pretrained', ROOT / 'benchmarks' / 'results', ROOT / 'cemp_hfs' / 'models'
NAME = 'hfsnet-small-mock-dr10'
REAL_LABELS = ('teff', 'logg', 'feh')  # what LASP gives
SETTINGS = dict(n_mock=6000, mock_seed=11, mp_tail=0.2, mp_boost=0, real_weight=1, config='small', epochs=24, bs=64, lr=3e-3, seed=0, hb_feh=None, balanced=False)
# the metal-poor boost (`--mp-boost N`): N extra mock stars below [Fe/H] = BOOST['feh_max'], 90% train / 10% valid, own seeds
BOOST = dict(pop_seed=41, mp_tail=0.2, feh_max=-2.0, synth_seed=42, valid_frac=0.1, obsid0=810_000_001)
CALIB = dict(n_draw=10000, pop_seed=31, mp_tail=0.2, feh_max=-1.5, synth_seed=32)  # the metal-poor calibration-only mock set


def log(*a): print(time.strftime('%H:%M:%S'), *a, file=sys.stderr, flush=True)


def datasets(s):
    "The mock and the real dataset, and their merge with the metal-poor boost set when `s['mp_boost']` (cached)."
    mock, real, both = CACHE / 'mock_ds', CACHE / 'real_ds', CACHE / 'both_ds'
    if not (both / 'done.json').exists() and not (both / 'labels.fits').exists():
        if not (mock / 'done.json').exists():
            log(f"mock survey of {s['n_mock']} stars")
            truth = make_survey(s['n_mock'], CACHE / 'mock_survey', seed=s['mock_seed'], mp_tail=s['mp_tail'], progress=False)
            truth = truth[[c for c in truth.colnames if c not in ('ch',)]]
            build_dataset(truth, mock, root=CACHE / 'mock_survey', seed=s['seed'], n_workers=2, progress=False)
        if not (real / 'done.json').exists():
            log('real DR10 dataset')
            lasp = Table.read(DATA / 'lamost' / 'dr10_labeled' / 'lasp_labels.csv', format='ascii.csv')
            lasp['star_id'] = [f"dr10-{v}" for v in lasp['star']]
            build_dataset(lasp, real, root=DATA / 'lamost' / 'dr10_labeled', seed=s['seed'], n_workers=2, progress=False)
        parts, names = [mock, real], ['mock', 'dr10']
        if s.get('mp_boost'):
            b = BOOST
            parts.insert(1, metal_poor_mock(CACHE / 'boost_ds', 10 * s['mp_boost'], b['pop_seed'], b['mp_tail'], b['feh_max'], b['synth_seed'],
                                            b['obsid0'], 'boost', n_keep=s['mp_boost'], valid_frac=b['valid_frac']))
            names.insert(1, 'mock-mp')
        for k in range(2, s.get('real_weight', 1) + 1):  # the real training spectra k times (validation and test once)
            parts.append(train_copy(real, CACHE / 'real_train_ds')); names.append(f'dr10-copy{k}')
        merge_datasets(parts, both, names=names)
    return load_dataset(mock), load_dataset(real), both


def train_copy(src, path):
    "The training rows of dataset `src` alone (cached): a second copy weighs them more in training, never in validation."
    from cemp_hfs.dataset import write_dataset
    if (path / 'labels.fits').exists(): return path
    d = load_dataset(src); r = split_rows(d, 'train')
    return write_dataset(path, d.wave, dict(continuum=np.asarray(d.continuum)[r], normalized=np.asarray(d.normalized)[r], mask=np.asarray(d.mask)[r]),
                         d.labels[r], d.config)


def metal_poor_mock(path, n_draw, pop_seed, mp_tail, feh_max, synth_seed, obsid0, tag, n_keep=None, valid_frac=1.0):
    """Mock stars below `feh_max` of `draw_population(n_draw, pop_seed, mp_tail)` (the first `n_keep` of them), synthesised
    (`synth_spectrum`) and preprocessed straight into a dataset (cached); a `valid_frac` share of them, drawn with
    `synth_seed`, in the 'valid' split and the rest in 'train'."""
    from cemp_hfs.mock import draw_population, synth_spectrum
    from cemp_hfs.preprocess import preprocess
    from cemp_hfs.dataset import write_dataset
    if (path / 'labels.fits').exists(): return path
    pop = draw_population(n_draw, seed=pop_seed, mp_tail=mp_tail)
    keep = np.flatnonzero(pop['feh'] < feh_max)[:n_keep]
    if n_keep and len(keep) < n_keep: raise ValueError(f"{n_draw} drawn stars hold only {len(keep)} below [Fe/H] = {feh_max}")
    split = np.where(np.random.default_rng(synth_seed).random(len(keep)) < valid_frac, 'valid', 'train')
    log(f"{tag} mock set: {len(keep)} stars below [Fe/H] = {feh_max}")
    blocks, rows = [], []
    for a in range(0, len(keep), 250):
        k = keep[a:a + 250]
        meta = [dict(obsid=int(obsid0 + i), filename=f'{tag}-{i}.fits') for i in k]
        sp = synth_spectrum(*(pop[l][k] for l in ('teff', 'logg', 'feh', 'cfe')), snrg=pop['snrg'][k], rv=pop['rv'][k], ebv=pop['ebv'][k],
                            seed=synth_seed + a, meta=meta)
        pre = preprocess(sp, None, errors='collect')
        blocks.append(dict(continuum=pre.continuum, normalized=pre.normalized, mask=pre.mask))
        for j in pre.index: rows.append(dict(obsid=meta[j]['obsid'], filename=meta[j]['filename'], snrg=float(sp[j].meta['snrg']),
                                             **{l: float(pop[l][k[j]]) for l in ('teff', 'logg', 'feh', 'cfe')}, split=str(split[a + j]),
                                             source=f'{tag}-mock'))
        wave = pre.wave
    write_dataset(path, wave, blocks, Table(rows=rows), pre.config)
    return path


def calibration_mock(path):
    "The calibration-only mock set of metal-poor stars, as a dataset whose every row is in the 'valid' split (cached)."
    c = CALIB
    return metal_poor_mock(path, c['n_draw'], c['pop_seed'], c['mp_tail'], c['feh_max'], c['synth_seed'], 800_000_001, 'calib')


def real_scores(pr, lab) -> dict:
    "MAE, bias and scatter against LASP (`metrics.label_stats`) of predictions `pr` for dataset rows `lab`: the target stars (4000-6500 K, S/N_g > 30) and all."
    P, T = (np.column_stack([np.asarray(t[l], float) for l in REAL_LABELS]) for t in (pr, lab))
    sel = (T[:, 0] > 4000) & (T[:, 0] < 6500) & (np.asarray(lab['snrg'], float) > 30)
    return {name: label_stats(P, T, m, REAL_LABELS) for name, m in (('target', sel), ('all', np.ones(len(lab), bool)))}


def main(argv=None):
    global CACHE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=SETTINGS['epochs'])
    ap.add_argument('--n-mock', type=int, default=SETTINGS['n_mock'], help='mock stars (a candidate with other settings needs its own --cache)')
    ap.add_argument('--mp-tail', type=float, default=SETTINGS['mp_tail'], help="weight of the mock population's metal-poor tail (cemp_hfs.mock.draw_population)")
    ap.add_argument('--config', default=SETTINGS['config'], help="network config: a shipped name or a YAML file (e.g. benchmarks/configs/small_hetero.yaml)")
    ap.add_argument('--real-weight', type=int, default=SETTINGS['real_weight'], help='each real DR10 training spectrum this many times in training (validation once)')
    ap.add_argument('--mp-boost', type=int, default=SETTINGS['mp_boost'], help=f"extra mock stars below [Fe/H] = {BOOST['feh_max']} (train and valid only)")
    ap.add_argument('--cache', type=Path, default=None, help='stage cache (default benchmarks/cache/pretrained)')
    ap.add_argument('--tag', default='candidate', help="a candidate's results: benchmarks/results/pretrained_TAG.* and pseudo_lamost_TAG.*")
    ap.add_argument('--hb-feh', type=float, default=None, help="an experiment on the mock: its H-beta group's [Fe/H] slope (label_slopes Hb k_feh, "
                    "fitted +0.294 per dex) set to this for every mock set of the run (needs its own --cache)")
    ap.add_argument('--balanced', action='store_true', help="'random mean sampling' of the training split: every 0.5-dex [Fe/H] bin drawn to the mean bin count (`train_hfsnet(balanced=True)`; an experiment against the metal-poor bias)")
    ap.add_argument('--members', type=int, default=1, help='networks in a deep ensemble (seeds 0 to K - 1; 1: one network)')
    ap.add_argument('--ship', action='store_true', help='replace the shipped model and its numbers (default: write a candidate)')
    args = ap.parse_args(argv)
    K = args.members
    if K < 1: raise SystemExit(f"--members must be at least 1, got {K}")
    model_name = NAME if K == 1 else f'{NAME}-x{K}'
    stem = ('pretrained' if K == 1 else f'pretrained_x{K}') if args.ship else f'pretrained_{args.tag}'
    s = dict(SETTINGS, epochs=args.epochs, n_mock=args.n_mock, mp_tail=args.mp_tail, mp_boost=args.mp_boost, real_weight=args.real_weight, config=args.config,
             hb_feh=args.hb_feh, balanced=args.balanced)
    if args.hb_feh is not None:  # in this process and the survey's forked writer processes (Linux): every mock spectrum of the run
        from pseudo_lamost import use_hb_feh
        use_hb_feh(args.hb_feh)
    CACHE = args.cache or CACHE
    was = {**SETTINGS, **json.loads((CACHE / 'settings.json').read_text())} if (CACHE / 'settings.json').exists() else None  # keys added later: defaults
    if was and {k: v for k, v in was.items() if k != 'epochs'} != {k: v for k, v in s.items() if k != 'epochs'}:
        raise SystemExit(f"{CACHE}: cached with other settings ({(CACHE / 'settings.json').read_text().strip()}); give another --cache or remove it")
    t0 = time.time(); CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / 'settings.json').write_text(json.dumps(s))
    model, cal_model = CACHE / f"{NAME}_e{s['epochs']}.pt", CACHE / f"{model_name}_e{s['epochs']}_cal.pt"
    members = [model] + [CACHE / f"{NAME}_e{s['epochs']}_seed{k}.pt" for k in range(1, K)]
    cached = {'data': (CACHE / 'both_ds' / 'labels.fits').exists(), 'train': all(m.exists() for m in members), 'calibrate': cal_model.exists()}
    mock, real, both = datasets(s)
    secs = {'data': round(time.time() - t0, 1)}
    t1 = time.time()
    for k, m in enumerate(members):
        if m.exists(): continue
        log(f"training {s['config']} for {s['epochs']} epochs on {len(load_dataset(both))} spectra (seed {s['seed'] + k})")
        train_hfsnet(both, s['config'], epochs=s['epochs'], bs=s['bs'], lr=s['lr'], seed=s['seed'] + k, out=m, progress=False, balanced=s['balanced'])
        secs['train'] = round(time.time() - t1, 1)
    if K > 1:  # the deep ensemble of the K networks, one model file
        model = CACHE / f"{model_name}_e{s['epochs']}.pt"
        if not model.exists(): ensemble_models(members, model, both)
    # the calibration of the uncertainties, fitted on the validation split (mock and real), stored in the model file;
    # everything below measures the calibrated model, the file that is shipped (its labels are the uncalibrated one's)
    if not cal_model.exists():
        log('calibrating the uncertainties on the validation split')
        t1 = time.time()
        calibrate_model(model, [both, calibration_mock(CACHE / 'calib_mock_ds')], cal_model, split='valid', mc_samples=16, seed=0,
                        repeats=DATA / 'lamost' / 'dr8_repeats')
        secs['calibrate'] = round(time.time() - t1, 1)
    res = dict(name=model_name, members=K, shipped=bool(args.ship), settings=s, hardware=cpu_model(), n_mock=len(mock), n_real=len(real),
               n_train={k: int(len(d.indices('train'))) for k, d in (('mock', mock), ('real', real))})
    if s.get('mp_boost'):
        bl = load_dataset(both).labels
        res['n_train']['mock_mp'] = int(np.sum((np.asarray(bl['source']) == 'mock-mp') & (np.asarray(bl['split']) == 'train')))
    log('measuring')
    # real test split against LASP
    rt = real.indices('test')
    t1 = time.time()
    pall = predict(cal_model, real.path, mc_samples=16, progress=False)  # dataset rows in order
    res['predict_s'] = {model_name: round(time.time() - t1, 2)}  # labelling the preprocessed DR10 dataset (network and draws, no file reading)
    single = CACHE / f"{NAME}_e{s['epochs']}_cal.pt"
    if K > 1 and single.exists():  # the single network on the same spectra in the same run: what the ensemble costs
        t1 = time.time(); predict(single, real.path, mc_samples=16, progress=False); res['predict_s'][NAME] = round(time.time() - t1, 2)
        # and from the files, as `cemp-hfs predict` runs (reading and preprocessing ahead in a reader process), one after the other
        files = sorted((DATA / 'lamost' / 'dr10_labeled').glob('spec-*.fits*'))
        res['predict_files_s'] = {}
        for _ in range(3):  # alternating, the fastest of three rounds each: the machine is shared
            for n_, f_ in ((model_name, cal_model), (NAME, single)):
                t1 = time.time(); pf = predict(f_, files, mc_samples=16, progress=False); dt = round(time.time() - t1, 1)
                res['predict_files_s'][n_] = dict(n=len(pf), s=min(dt, res['predict_files_s'].get(n_, {}).get('s', dt)))
    res['real_test'] = real_scores(pall[rt], real.labels[rt])
    rv = real.indices('valid')  # the validation split: what settings are chosen on (never the test split)
    res['real_valid'] = real_scores(pall[rv], real.labels[rv])
    # false CEMP on every real star with LASP [Fe/H] > -1.5 (test split and all)
    rich = np.asarray(real.labels['feh'], float) > -1.5
    cl = classify(pall)
    for name, m in (('test', np.isin(np.arange(len(real)), rt) & rich), ('all', rich)):
        c = candidates(cl[m]); ck = candidates(cl[m], keep_flagged=True)
        res[f'false_cemp_{name}'] = dict(n=int(m.sum()), selected=len(c), rate=len(c) / max(int(m.sum()), 1),
                                         selected_with_flagged=len(ck), rate_with_flagged=len(ck) / max(int(m.sum()), 1))
    res['flags_real'] = {f: int(np.sum(pall[f])) for f in pall.colnames if f.startswith('flag')}
    # mock test split against the truth
    mt = np.isin(np.arange(len(mock)), mock.indices('test'))
    pm = predict(HFSModel.load(cal_model).without_repeats(), mock.path, mc_samples=16, progress=False)  # mock spectra: no repeat factors
    pm['obsid'] = np.asarray(mock.labels['obsid']); truth = mock.labels
    hi = np.asarray(truth['snrg'], float) >= 20
    res['mock_test'] = {k: evaluate(pm[mt & m], truth[mt & m]) for k, m in (('all', np.ones(len(mock), bool)), ('snr20', hi))}
    # as `cemp-hfs select --purity 0.9` would choose: the P(CEMP) threshold whose expected purity (from the calibrated
    # P(CEMP) of these stars alone, no truth) is 0.9, then scored against the truth
    tm = mt & hi
    th = purity_threshold(np.ma.filled(np.ma.asarray(pm['p_cemp'][tm], dtype=float), np.nan), 0.9)
    res['mock_test']['snr20, select --purity 0.9'] = dict(evaluate(pm[tm], truth[tm], p_min=min(th['p_min'], 1.)), p_min=th['p_min'],
                                                          expected_purity=th['purity'], expected_completeness=th['completeness'])
    mv = np.isin(np.arange(len(mock)), mock.indices('valid')) & hi
    res['mock_valid'] = {'snr20': evaluate(pm[mv], truth[mv])}
    secs['measure'] = round(time.time() - t0 - sum(secs.values()), 1)
    res['seconds'] = secs
    # the pseudo-LAMOST benchmark stars
    import pseudo_lamost
    pseudo_out = ('pseudo_lamost' if K == 1 else f'pseudo_lamost_x{K}') if args.ship else f'pseudo_lamost_{args.tag}'
    pseudo_lamost.main(['--model', str(cal_model), '--out', pseudo_out])
    res['pseudo'] = json.loads((OUT / f'{pseudo_out}.json').read_text()).get('predictions')
    cal = HFSModel.load(cal_model).calibration
    res['calibration'] = dict(summary=calibration_summary(cal), settings=CALIB, **{k: cal.get(k) for k in ('method', 'fitted_on', 'snr_edges', 'feh_edges')},
                              params={l: {k: p.get(k) for k in ('a', 'b', 'c', 'factors', 'feh_factors', 'k95', 'n')} for l, p in cal['params'].items()},
                              p_cemp=cal.get('p_cemp'), repeats=cal.get('repeats'))
    # a stage this run found cached keeps the time it took when it ran (recorded by this run's earlier shipped or candidate run)
    prevs = [json.loads(f.read_text()) for f in dict.fromkeys((OUT / f'{stem}.json', OUT / f'pretrained_{args.tag}.json')) if f.exists()]
    prev = next((p for p in prevs if {**SETTINGS, **p.get('settings', {})} == s and p.get('members', 1) == K), {})  # settings added later: their defaults
    reused = []
    for k, was in cached.items():
        if was and prev.get('seconds', {}).get(k, 0) >= 1 and k not in prev.get('reused', []): secs[k] = prev['seconds'][k]  # under 1 s: it was cached then too
        elif was: reused.append(k); secs.pop(k, None)  # cached by a run whose time is not on record
    res['seconds'] = {k: secs[k] for k in ('data', 'train', 'measure', 'calibrate') if k in secs}
    res['reused'] = reused
    if args.ship:
        MODELS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cal_model, MODELS / f'{model_name}.pt')
    else: log(f'candidate model {cal_model} (not shipped; `make pretrained SHIP=1` ships it); numbers in {OUT / stem}.md')
    (OUT / f'{stem}.json').write_text(json.dumps(res, indent=1, default=float))
    (OUT / f'{stem}.md').write_text(markdown(res))
    print(markdown(res))


def markdown(r) -> str:
    boost = f" (and {r['n_train']['mock_mp']} metal-poor boost)" if r['n_train'].get('mock_mp') else ''
    reused = f" ({', '.join(r['reused'])}: reused from a cache, time not on record)" if r.get('reused') else ''
    weight = f"(each {r['settings']['real_weight']} times) " if r['settings'].get('real_weight', 1) > 1 else ''
    k, s0 = r.get('members', 1), r['settings']['seed']
    seeds = f"seed {s0}" if k == 1 else f"seeds {s0} to {s0 + k - 1}"
    L = [f"# The shipped model `{r['name']}`" if r.get('shipped', True) else f"# A candidate for the shipped model (`{r['name']}`, not shipped)", '',
         (f"A deep ensemble of {r['members']} networks, each " if r.get('members', 1) > 1 else '') +
         f"HFS-Net `{r['settings']['config']}` trained {r['settings']['epochs']} epochs ({seeds}, batch "
         f"{r['settings']['bs']}, lr {r['settings']['lr']}) on {r['n_train']['mock']} mock{boost} and {r['n_train']['real']} real DR10 {weight}"
         f"training spectra at once, by `make pretrained` (`benchmarks/pretrained.py`) on {r['hardware']}; "
         f"stages: {', '.join(f'{k} {v:.0f} s' for k, v in r['seconds'].items())}{reused}. Mock population: {r['settings']['n_mock']} stars, "
         f"`mp_tail` {r['settings'].get('mp_tail', 0.06)} (the weight of the metal-poor tail, `cemp_hfs.mock.draw_population`).", '',
         '## Real LAMOST DR10 test stars against the LAMOST pipeline (LASP)', '',
         '| subset | label | N | MAE | bias (median) |', '| --- | --- | ---: | ---: | ---: |']
    for name, d in r['real_test'].items():
        for l, v in d.items(): L.append(f"| {name} | {l} | {v['n']} | {v['mae']:.3g} {UNITS[l]} | {v['bias']:+.3g} |")
    if r.get('predict_s'):
        L += ['', 'Labelling the preprocessed DR10 dataset (' + str(r['n_real']) + ' spectra, 16 draws, network only, no file reading), in one run: '
              + ', '.join(f"`{k}` {v:.1f} s" for k, v in r['predict_s'].items()) + '.']
    if r.get('predict_files_s'):
        L += ['', f"From the {next(iter(r['predict_files_s'].values()))['n']} labelled DR10 files as `cemp-hfs predict` reads them (one process and its reader; the fastest of three alternating rounds): "
              + ', '.join(f"`{k}` {v['s']:.1f} s ({v['n'] / v['s']:.0f} spectra/s)" for k, v in r['predict_files_s'].items()) + '.']
    L += ['', '"target": 4000 K < LASP Teff < 6500 K and S/N_g > 30 (the issue\'s targets: better than 100 K, 0.15 and 0.10 dex).', '',
          '## False CEMP on real stars', '']
    for k in ('test', 'all'):
        f = r[f'false_cemp_{k}']
        L.append(f"* {k} DR10 stars with LASP [Fe/H] > -1.5: {f['selected']} of {f['n']} selected as CEMP candidates "
                 f"({100 * f['rate']:.2f}%; {f['selected_with_flagged']} = {100 * f['rate_with_flagged']:.2f}% if flagged stars were kept)")
    L += [f"* trust flags on the 1,424 DR10 spectra: {r['flags_real']}", '', '## Mock test split against the truth', '',
          '| subset | N | [C/Fe] MAE | [Fe/H] MAE | CEMP completeness | purity |', '| --- | ---: | ---: | ---: | ---: | ---: |']
    for k, e in r['mock_test'].items():
        L.append(f"| {k} | {e['n_matched']} | {e['mae_cfe']:.3f} | {e['mae_feh']:.3f} | {e['completeness']:.2f} | {e['purity']:.2f} |")
    sp = r['mock_test'].get('snr20, select --purity 0.9')
    if sp: L += ['', f"Rows 'all' and 'snr20' select by the `paper` criteria on the point labels. The last row selects as `cemp-hfs select "
                 f"--purity 0.9` would: P(CEMP) >= {sp['p_min']:.3f}, the threshold whose expected purity from the calibrated P(CEMP) of "
                 f"these stars is 0.9 (expected completeness {sp['expected_completeness']:.2f}); {sp['n_true_positive']} of "
                 f"{sp['n_true_cemp']} CEMP stars found among {sp['n_selected']} selected."]
    if r.get('real_valid'):
        v, e = r['real_valid']['target'], r['mock_valid']['snr20']
        L += ['', '## Validation split (what settings are chosen on)', '',
              f"DR10 validation stars, 4000-6500 K and S/N_g > 30 ({v['teff']['n']}): MAE {v['teff']['mae']:.0f} K, {v['logg']['mae']:.3f} dex, "
              f"{v['feh']['mae']:.3f} dex. Mock validation split, S/N_g >= 20 ({e['n_matched']}, {e['n_true_cemp']} CEMP): [C/Fe] MAE "
              f"{e['mae_cfe']:.3f}, CEMP completeness {e['completeness']:.2f} at purity {e['purity']:.2f}."]
    if r.get('pseudo'):
        L += ['', '## Pseudo-LAMOST benchmark stars (S/N 50)', '', '| star | Teff (lit.) | log g (lit.) | [Fe/H] (lit.) | [C/Fe] (lit.) | CEMP called |',
              '| --- | --- | --- | --- | --- | --- |']
        for p in r['pseudo']:
            if p['snr'] != 50: continue
            L.append(f"| {p['star']} | {p['teff']:.0f} ({p['teff_lit']:.0f}) | {p['logg']:.2f} ({p['logg_lit']:.2f}) | "
                     f"{p['feh']:+.2f} ({p['feh_lit']:+.2f}) | {p['cfe']:+.2f} ({p['cfe_lit']:+.2f}) | {p['cemp']} |")
    if r.get('calibration'):
        c = r['calibration']
        L += ['', '## Calibration of the uncertainties (the last step; `cemp_hfs.calibrate`)', '', c['summary'] + '.', '',
              '| label | a | b | c | S/N_g-bin factors (<10, 10-20, 20-40, 40-80, >80) | [Fe/H]-bin factors (<-2, -2 to -1, >-1) | k95 | N |',
              '| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |']
        for l, p in c['params'].items():
            L.append(f"| {l} | {p['a']:.3g} | {p['b']:.3g} | {p['c']:.3g} | {' '.join(f'{x:.2f}' for x in p['factors'])} | "
                     f"{' '.join(f'{x:.2f}' for x in p.get('feh_factors') or [])} | {p['k95']:.2f} | {p['n']} |")
        pm = c.get('p_cemp')
        if pm: L += ['', f"P(CEMP) for '{pm['rule']}': the calibrated Gaussian's, mapped by Platt scaling sigmoid(alpha logit p + beta) with "
                         f"alpha {pm['alpha']:.3f}, beta {pm['beta']:.3f}, fitted on {pm['n']} calibration stars ({pm['n_cemp']} CEMP); Brier score there "
                         f"{pm['brier_before']:.4f} before, {pm['brier_after']:.4f} after."]
        rp = c.get('repeats')
        if rp: L += ['', f"Repeat factors (real observations; `predict` applies them to every spectrum, the mock test numbers above are without them): "
                         + ', '.join(f"{l} x{k:.2f}" for l, k in rp['factors'].items())
                         + f", fitted on {rp['n_pairs_unflagged']} unflagged repeat pairs of {rp['fitted_on']['n_stars']} stars ({rp['fitted_on']['files']})."]
        L += ['', 'sigma^2 = a sigma_MC^2 + (b / SNR_g)^2 + c^2, times the S/N_g- and predicted-[Fe/H]-bin factors; the 95% interval is +-k95 sigma. '
              'Measured in `benchmarks/results/uncertainty.md` (`make bench-uncertainty`).']
    return '\n'.join(L) + '\n'


if __name__ == '__main__':
    main()
