"""Learning curve on real stars (`make bench-learning`, issue 12 deliverable 3): how the real-star accuracy of HFS-Net
`small` grows with the number of REAL training stars, for four ways of training it, and whether its carbon skill survives.

Reproducible (seeded) and resumable (every dataset and every model is a cached stage under
benchmarks/cache/learning_curve/; a killed run resumes at the first stage without its `done` marker).

Data: the cached datasets of benchmarks/pretrained.py (run `make pretrained` first if benchmarks/cache/pretrained/ is
missing): `mock_ds`, the mock survey with its true labels (carbon included), and `real_ds`, the LAMOST DR10 spectra with
LASP Teff, log g and [Fe/H] (no carbon), split by star (seed 0). The real test split is the one of `real_ds`, the same
for every model, and it is never trained or tuned on (it is not even written into a training dataset).

1. real training subsets: the unique stars of the real training split in one seeded permutation, the first N of them
   (N = 30, 100, 300 and all), so the subsets are nested; each with the whole real validation split (for choosing the
   best epoch) and no test rows;
2. a mock training sample (whole stars, seeded) and a mock validation sample, the same for every model that sees mock data;
3. four ways of training HFS-Net `small`:
   (a) real-only: from scratch on the real subset (Teff, log g, [Fe/H]: the real data has no carbon);
   (b) mock-only: from scratch on the mock sample (one model: a flat line);
   (c) fine-tuned: (b), then trained on the real subset at a lower learning rate, with a small mock "replay" sample
       (as many mock spectra as real ones, at least 64) so that [C/Fe] keeps known values (`train_hfsnet` refuses a label
       with fewer than 2 known values, and a 4-output model cannot be trained on 3 labels); the network's last layer is
       rescaled beforehand so that it predicts the same physical labels under the label scaler the fine-tune fits;
   (d) co-trained: from scratch on the mock sample and the real subset merged (`merge_datasets`; masked loss);
4. measured: MAE and bias against LASP on the real test split (4000-6500 K and S/N_g > 30, and all), with bootstrap
   68% intervals; [C/Fe] MAE and CEMP completeness and purity against the truth on the mock test split (S/N_g >= 20),
   and on a larger held-out mock set (the test split plus the mock training stars no model here trained on), which holds
   several times more CEMP stars;
5. written to benchmarks/results/learning_curve.md/.json/.png.
"""
from __future__ import annotations
import argparse, json, math, os, platform, resource, shutil, sys, time, warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'benchmarks'))
import torch  # noqa: E402
torch.set_num_threads(1)
try: torch.set_num_interop_threads(1)
except RuntimeError: pass
from hardware import cpu_model  # noqa: E402
from cemp_hfs.core import UNITS  # noqa: E402
from cemp_hfs.dataset import ARRAYS, LabelScaler, label_matrix, load_dataset, merge_datasets, split_rows, write_dataset  # noqa: E402
from cemp_hfs.hfsnet import load_model  # noqa: E402
from cemp_hfs.train import train_hfsnet  # noqa: E402
from cemp_hfs.predict import predict  # noqa: E402
from cemp_hfs.select import evaluate  # noqa: E402

SRC, OUT = ROOT / 'benchmarks' / 'cache' / 'pretrained', ROOT / 'benchmarks' / 'results'
REAL_LABELS, ALL_LABELS = ('teff', 'logg', 'feh'), ('teff', 'logg', 'feh', 'cfe')
TARGETS = dict(teff=100., logg=0.15, feh=0.10)  # the real-star targets (4000-6500 K, S/N_g > 30)
WAYS = {'real': '(a) real-only', 'mock': '(b) mock-only', 'finetune': '(c) mock-pretrained, fine-tuned', 'cotrain': '(d) co-trained'}
FULL = dict(n_real=[30, 100, 300, 0], n_mock=2000, n_mock_valid=200, config='small', bs=64, lr=3e-3, lr_ft=1e-3,
            epochs=12, epochs_real=24, min_steps_real=300, epochs_ft=8, min_steps_ft=100, min_replay=64,
            seed=0, subset_seed=0, mock_seed=1, n_boot=1000)  # n_real 0: every real training star
TINY = dict(FULL, n_real=[10, 30], n_mock=192, n_mock_valid=48, epochs=2, epochs_real=2, min_steps_real=4, epochs_ft=1,
            min_steps_ft=3, n_boot=100)


def log(*a): print(time.strftime('%H:%M:%S'), *a, file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(x.ru_utime + x.ru_stime for x in r)


class Stage:
    "Wall and CPU seconds of a block."
    def __enter__(self): self.w, self.c = time.time(), cpu_seconds(); return self
    def __exit__(self, *a): self.wall, self.cpu = round(time.time() - self.w, 1), round(cpu_seconds() - self.c, 1)


def write_json(path, obj):
    tmp = Path(str(path) + '.tmp'); tmp.write_text(json.dumps(obj, indent=1, default=float)); tmp.replace(path)


# ---------------------------------------------------------------- datasets
def by_star(labels, rows, seed, n_spectra=None):
    "`rows` grouped by star in a seeded order of the stars: (list of star ids, dict star -> its rows), or, with `n_spectra`, the rows of the first stars that reach it."
    sid = np.asarray(labels['star_id']).astype(str)
    stars = np.random.default_rng(seed).permutation(np.unique(sid[rows]))
    groups = {}
    for r in rows: groups.setdefault(sid[r], []).append(int(r))
    if n_spectra is None: return list(stars), groups
    out = []
    for s in stars:
        if len(out) >= n_spectra: break
        out += groups[s]
    return np.sort(np.asarray(out, int))


def subset_dataset(src, rows, out):
    "A dataset of the rows `rows` of dataset `src` (labels, splits and preprocessing config kept); cached by a done marker."
    out = Path(out)
    if (out / 'done.json').exists(): return out
    if out.exists(): shutil.rmtree(out)
    d = load_dataset(src); rows = np.sort(np.asarray(rows, int))
    write_dataset(out, d.wave, {a: np.asarray(getattr(d, a)[rows]) for a in ARRAYS}, d.labels[rows], d.config)
    write_json(out / 'done.json', dict(source=str(src), n=int(len(rows))))
    return out


def merged_dataset(paths, out, names):
    out = Path(out)
    if (out / 'done.json').exists(): return out
    if out.exists(): shutil.rmtree(out)
    merge_datasets(paths, out, names=names)
    write_json(out / 'done.json', dict(sources=[str(p) for p in paths], names=list(names)))
    return out


def plan_data(s, cache):
    "Every training dataset of the benchmark, written once (cached), and the bookkeeping of what went where."
    mock, real = load_dataset(SRC / 'mock_ds'), load_dataset(SRC / 'real_ds')
    ds = cache / 'datasets'; ds.mkdir(parents=True, exist_ok=True)
    # real subsets: nested, by star, each with the whole real validation split and no test row
    rtrain, rvalid = split_rows(real, 'train'), split_rows(real, 'valid')
    stars, groups = by_star(real.labels, rtrain, s['subset_seed'])
    ns = [n if n else len(stars) for n in s['n_real']]
    # the mock sample (training and validation) and the held-out mock pool that no model here trains on
    mtrain = split_rows(mock, 'train')
    msample = by_star(mock.labels, mtrain, s['mock_seed'], s['n_mock'])
    mvalid = by_star(mock.labels, split_rows(mock, 'valid'), s['mock_seed'], s['n_mock_valid'])
    mstars, mgroups = by_star(mock.labels, mtrain, s['mock_seed'])
    held_out = np.sort(np.r_[np.setdiff1d(mtrain, msample), mock.indices('test')])
    info = dict(real_train_stars=len(stars), real_train_spectra=int(len(rtrain)), real_valid_spectra=int(len(rvalid)),
                real_test_spectra=int(len(real.indices('test'))), mock_sample_spectra=int(len(msample)),
                mock_sample_stars=int(len(np.unique(np.asarray(mock.labels['star_id'])[msample]))),
                mock_valid_spectra=int(len(mvalid)), mock_held_out_spectra=int(len(held_out)),
                mock_test_spectra=int(len(mock.indices('test'))), subsets={})
    paths = dict(mock=subset_dataset(mock.path, np.r_[msample, mvalid], ds / 'mock_sample'), real={}, finetune={}, cotrain={})
    for n in ns:
        rows = np.sort(np.asarray([r for st in stars[:n] for r in groups[st]], int))
        paths['real'][n] = subset_dataset(real.path, np.r_[rows, rvalid], ds / f'real_{n}')
        # the fine-tune's mock replay: the first whole stars of the mock sample's order (so within the sample)
        n_replay = max(len(rows), s['min_replay'])
        replay, k = [], 0
        while len(replay) < n_replay: replay += [r for r in mgroups[mstars[k]] if r in set(msample)]; k += 1
        paths[f'replay_{n}'] = subset_dataset(mock.path, np.r_[np.sort(replay), mvalid], ds / f'replay_{n}')
        paths['finetune'][n] = merged_dataset([paths[f'replay_{n}'], paths['real'][n]], ds / f'finetune_{n}', ['mock', 'dr10'])
        paths['cotrain'][n] = merged_dataset([paths['mock'], paths['real'][n]], ds / f'cotrain_{n}', ['mock', 'dr10'])
        info['subsets'][n] = dict(real_stars=n, real_spectra=int(len(rows)), replay_spectra=int(len(replay)))
    assert not set(real.indices('test')) & set(np.r_[rtrain, rvalid]), 'real test rows in a training dataset'
    return mock, real, held_out, ns, paths, info


# ---------------------------------------------------------------- training
def n_epochs(n_train, bs, base, min_steps):
    "At least `base` epochs and at least `min_steps` optimiser steps (one batch per epoch when the split is below a batch)."
    spe = n_train // bs if n_train > bs else 1  # the training loader drops the last partial batch when n > bs
    return max(base, math.ceil(min_steps / spe)), spe


def rescale_head(net, old: LabelScaler, new: LabelScaler):
    "Rescale the last Linear layer so that the network gives the same physical labels under `new` as it did under `old`."
    lin = net.head.ffn[-1]
    a = torch.tensor(old.std / new.std, dtype=lin.weight.dtype)
    b = torch.tensor((old.mean - new.mean) / new.std, dtype=lin.weight.dtype)
    L = len(new.labels)
    with torch.no_grad():
        lin.weight[:L] *= a[:, None]
        lin.bias[:L] = lin.bias[:L] * a + b


def train_stage(name, dataset, s, cache, labels, epochs, lr, init=None):
    "Train one model (cached: the model file and its record, written after training)."
    mdir = cache / 'models'; mdir.mkdir(parents=True, exist_ok=True)
    path, rec_path = mdir / f'{name}.pt', mdir / f'{name}.train.json'
    if rec_path.exists() and path.exists(): return path, json.loads(rec_path.read_text())
    data = load_dataset(dataset)
    n_train = int(len(split_rows(data, 'train')))
    model, check = None, None
    if init is not None:  # fine-tune: start from `init`, its output layer rescaled to the label scaler this training fits
        model, extra = load_model(init)
        old = LabelScaler.from_dict(extra['label_scaler'])
        new = LabelScaler.fit(label_matrix(data.labels, labels)[split_rows(data, 'train')], labels)
        before = predict(init, dataset, mc_samples=1, progress=False)
        rescale_head(model, old, new)
        check = (before, old, new)
    log(f"train {name}: {n_train} training spectra, {epochs} epochs, lr {lr}")
    with Stage() as st, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = train_hfsnet(dataset, s['config'], epochs=epochs, bs=s['bs'], lr=lr, seed=s['seed'], out=path,
                             labels=labels, model=model, progress=False)
    extra = load_model(path)[1]
    h = learn.history
    rec = dict(name=name, dataset=str(Path(dataset).relative_to(ROOT)), n_train=n_train, n_valid=int(len(split_rows(data, 'valid'))),
               labels=list(labels), epochs=int(epochs), lr=lr, best_epoch=int(extra.get('epoch', -1)) + 1,
               valid_loss=float(extra.get('valid_loss', np.nan)), init=str(Path(init).name) if init else None,
               wall=st.wall, cpu=st.cpu, final_train_loss=float(h['train_loss'][-1]) if len(h) else None)
    if check is not None: rec['rescale_check'] = _rescale_check(check, init, dataset, labels)
    write_json(rec_path, rec)
    log(f"  {name}: {st.wall:.0f} s wall, {st.cpu:.0f} s CPU, best epoch {rec['best_epoch']} of {epochs}")
    return path, rec


def _rescale_check(check, init, dataset, labels):
    "Largest difference between the pretrained model's labels and the rescaled network's labels under the new scaler (should be ~0)."
    before, old, new = check
    net, extra = load_model(init)
    rescale_head(net, old, new)
    d = load_dataset(dataset); idx = split_rows(d, 'train')[:16]
    from cemp_hfs.predict import HFSModel
    m = HFSModel(net, new, dict(d.config or {}), {**extra, 'label_scaler': new.to_dict()}, 'rescaled')
    after = predict(m, dataset, mc_samples=1, progress=False)
    return {l: float(np.nanmax(np.abs(np.asarray(after[l], float)[idx] - np.asarray(before[l], float)[idx]))) for l in labels}


# ---------------------------------------------------------------- measuring
def mae_boot(r, n_boot, seed=0):
    r = np.abs(r[np.isfinite(r)])
    if not len(r): return float('nan'), float('nan'), float('nan')
    b = np.random.default_rng(seed).choice(r, (n_boot, len(r))).mean(1)
    return float(r.mean()), float(np.percentile(b, 16)), float(np.percentile(b, 84))


def measure(name, path, mock, real, held_out, s, cache):
    "Real test split against LASP; mock test split and held-out mock set against the truth (cached)."
    rec_path = cache / 'models' / f'{name}.measure.json'
    if rec_path.exists(): return json.loads(rec_path.read_text())
    with Stage() as st, warnings.catch_warnings():
        warnings.simplefilter('ignore')  # masked catalogue values turned into NaN by `predict`
        res = {}
        rt = real.indices('test')
        pr = predict(path, real.path, mc_samples=1, progress=False)
        assert len(pr) == len(real), f'{len(pr)} predictions for {len(real)} rows'
        pr, lab = pr[rt], real.labels[rt]
        teff, snr = np.asarray(lab['teff'], float), np.asarray(lab['snrg'], float)
        sel = (teff > 4000) & (teff < 6500) & (snr > 30)
        res['real_test'] = {}
        for sub, m in (('target', sel), ('all', np.ones(len(rt), bool))):
            res['real_test'][sub] = {}
            for l in REAL_LABELS:
                r = np.asarray(pr[l], float)[m] - np.asarray(lab[l], float)[m]
                mae, lo, hi = mae_boot(r, s['n_boot'])
                res['real_test'][sub][l] = dict(mae=mae, lo=lo, hi=hi, bias=float(np.nanmedian(r)), n=int(m.sum()))
        pm = predict(path, mock.path, mc_samples=1, progress=False)
        assert len(pm) == len(mock)
        if 'cfe' in pm.colnames:
            truth = mock.labels.copy()
            pm['key'] = truth['key'] = np.arange(len(mock))
            hi = np.asarray(truth['snrg'], float) >= 20
            test = np.isin(np.arange(len(mock)), mock.indices('test'))
            held = np.isin(np.arange(len(mock)), held_out)
            res['mock'] = {k: evaluate(pm[m], truth[m], key='key') for k, m in (('test_snr20', test & hi), ('held_out_snr20', held & hi))}
        else: res['mock'] = None
    res['measure_wall'], res['measure_cpu'] = st.wall, st.cpu
    write_json(rec_path, res)
    return res


def cemp_diagnosis(name, path, mock, held_out, cache):
    "Why CEMP stars are missed: on the held-out true CEMP stars (S/N_g >= 20), the median [Fe/H] and [C/Fe] residuals and the share predicted below [Fe/H] -2 and above [C/Fe] 0.7 (cached)."
    rec_path = cache / 'models' / f'{name}.cemp.json'
    if rec_path.exists(): return json.loads(rec_path.read_text())
    with Stage() as st, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        pm = predict(path, mock.path, mc_samples=1, progress=False)
        t = mock.labels
        feh, cfe = np.asarray(t['feh'], float), np.asarray(t['cfe'], float)
        m = np.isin(np.arange(len(mock)), held_out) & (np.asarray(t['snrg'], float) >= 20) & (feh < -2) & (cfe > 0.7)
        pf, pc = np.asarray(pm['feh'], float)[m], np.asarray(pm['cfe'], float)[m]
        res = dict(n=int(m.sum()), feh_bias=float(np.median(pf - feh[m])), cfe_bias=float(np.median(pc - cfe[m])),
                   share_feh_below_m2=float(np.mean(pf < -2)), share_cfe_above_07=float(np.mean(pc > 0.7)))
    res['wall'], res['cpu'] = st.wall, st.cpu
    write_json(rec_path, res)
    return res


# ---------------------------------------------------------------- run
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--tiny', action='store_true', help='a tiny development setting (results in benchmarks/cache/learning_curve/tiny/ only)')
    args = ap.parse_args(argv)
    s = TINY if args.tiny else FULL
    cache = ROOT / 'benchmarks' / 'cache' / 'learning_curve' / ('tiny' if args.tiny else '')
    out_dir = cache if args.tiny else OUT
    if not (SRC / 'mock_ds' / 'done.json').exists() or not (SRC / 'real_ds' / 'done.json').exists():
        sys.exit(f"{SRC}: the cached datasets of benchmarks/pretrained.py are missing; run `make pretrained` first")
    cache.mkdir(parents=True, exist_ok=True)
    t0, c0, load0 = time.time(), cpu_seconds(), os.getloadavg()
    first = not (cache / 'datasets' / 'stage.json').exists()
    with Stage() as st_data:
        mock, real, held_out, ns, paths, info = plan_data(s, cache)
    if first: write_json(cache / 'datasets' / 'stage.json', dict(wall=st_data.wall, cpu=st_data.cpu))
    models, stages = [], dict(data=json.loads((cache / 'datasets' / 'stage.json').read_text()))

    def run(way, n, dataset, labels, epochs, lr, init=None):
        name = way if n is None else f'{way}_{n}'
        path, rec = train_stage(name, dataset, s, cache, labels, epochs, lr, init)
        m = measure(name, path, mock, real, held_out, s, cache)
        if m['mock']: m['mock']['held_out_snr20']['cemp_diagnosis'] = cemp_diagnosis(name, path, mock, held_out, cache)
        models.append(dict(way=way, n_real=0 if n is None else n, name=name, train=rec, **m))
        return path

    # (b) mock-only: one model, the start of every fine-tune
    e_mock, _ = n_epochs(info['mock_sample_spectra'], s['bs'], s['epochs'], 0)
    mock_model = run('mock', None, paths['mock'], ALL_LABELS, e_mock, s['lr'])
    for n in ns:
        sub = info['subsets'][n]
        e, _ = n_epochs(sub['real_spectra'], s['bs'], s['epochs_real'], s['min_steps_real'])
        run('real', n, paths['real'][n], REAL_LABELS, e, s['lr'])
        e, _ = n_epochs(sub['real_spectra'] + sub['replay_spectra'], s['bs'], s['epochs_ft'], s['min_steps_ft'])
        run('finetune', n, paths['finetune'][n], ALL_LABELS, e, s['lr_ft'], init=mock_model)
        e, _ = n_epochs(sub['real_spectra'] + info['mock_sample_spectra'], s['bs'], s['epochs'], 0)
        run('cotrain', n, paths['cotrain'][n], ALL_LABELS, e, s['lr'])
    shipped = json.loads((OUT / 'pretrained.json').read_text()) if (OUT / 'pretrained.json').exists() else None
    res = dict(settings=s, info=info, n_real=ns, models=models, shipped=shipped and dict(
                   name=shipped['name'], settings=shipped['settings'], n_train=shipped['n_train'], real_test=shipped['real_test'],
                   mock_test_snr20=shipped['mock_test']['snr20']),
               hardware=dict(cpu=cpu_model(), n_cpus=os.cpu_count(), torch=torch.__version__, torch_threads=torch.get_num_threads(),
                             python=platform.python_version(), load_start=[round(v, 2) for v in load0],
                             load_end=[round(v, 2) for v in os.getloadavg()]),
               session=dict(wall=round(time.time() - t0, 1), cpu=round(cpu_seconds() - c0, 1)),
               total=dict(wall=round(stages['data']['wall'] + sum(m['train']['wall'] + m['measure_wall'] + (m['mock'] or {}).get('held_out_snr20', {}).get('cemp_diagnosis', {}).get('wall', 0) for m in models), 1),
                          cpu=round(stages['data']['cpu'] + sum(m['train']['cpu'] + m['measure_cpu'] + (m['mock'] or {}).get('held_out_snr20', {}).get('cemp_diagnosis', {}).get('cpu', 0) for m in models), 1)),
               written=time.strftime('%Y-%m-%dT%H:%M:%S%z'), tiny=bool(args.tiny))
    res['recommendation'] = recommend(res)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / 'learning_curve.json', res)
    plot(res, out_dir / 'learning_curve.png')
    (out_dir / 'learning_curve.md').write_text(markdown(res))
    print(markdown(res))


# ---------------------------------------------------------------- report
def score(m, sub='target'):
    "Mean over Teff, log g, [Fe/H] of the real-test MAE in units of the issue's targets (1 = on target; lower is better)."
    return float(np.mean([m['real_test'][sub][l]['mae'] / TARGETS[l] for l in REAL_LABELS]))


def get(res, way, n):
    return next((m for m in res['models'] if m['way'] == way and m['n_real'] == (0 if way == 'mock' else n)), None)


def recommend(res) -> dict:
    "Per N, the best way by `score` on the target subset, and how much carbon skill each way that has it keeps."
    out = {}
    for n in res['n_real']:
        sc = {w: score(get(res, w, n)) for w in WAYS if get(res, w, n)}
        sc_all = {w: score(get(res, w, n), 'all') for w in WAYS if get(res, w, n)}
        carbon = {w: get(res, w, n)['mock']['held_out_snr20'] for w in ('mock', 'finetune', 'cotrain') if get(res, w, n) and get(res, w, n)['mock']}
        out[n] = dict(score_target=sc, score_all=sc_all, best_target=min(sc, key=sc.get), best_all=min(sc_all, key=sc_all.get),
                      cfe_mae_held_out={w: c['mae_cfe'] for w, c in carbon.items()},
                      completeness_held_out={w: c['completeness'] for w, c in carbon.items()},
                      purity_held_out={w: c['purity'] for w, c in carbon.items()})
    return out


def _f(v, l=None, ci=None):
    if v is None or (isinstance(v, float) and not np.isfinite(v)): return 'n/a'
    fmt = (lambda x: f"{x:.0f}") if l == 'teff' else (lambda x: f"{x:.3f}")
    return fmt(v) + (f" [{fmt(ci[0])}-{fmt(ci[1])}]" if ci else '')


def markdown(r) -> str:
    s, info, hw = r['settings'], r['info'], r['hardware']
    nall = info['real_train_stars']
    L = ["# Learning curve on real stars: four ways of training HFS-Net `small`", '',
         f"Written by `benchmarks/learning_curve.py` (`make bench-learning`) on {r['written']}"
         + (' (TINY development setting: the numbers mean nothing)' if r['tiny'] else '') + '.', '',
         '## Hardware and time', '',
         f"* {hw['cpu']} ({hw['n_cpus']} logical CPUs, shared with other jobs; the run was `nice -n 10`), no GPU, torch "
         f"{hw['torch']} with {hw['torch_threads']} thread, Python {hw['python']}; load average at start "
         f"{', '.join(map(str, hw['load_start']))}, at end {', '.join(map(str, hw['load_end']))}.",
         f"* all stages (datasets, {len(r['models'])} trainings, their measurements; some may have come from the cache): "
         f"{r['total']['wall'] / 60:.1f} min wall, {r['total']['cpu'] / 60:.1f} min CPU; this session {r['session']['wall'] / 60:.1f} min wall, "
         f"{r['session']['cpu'] / 60:.1f} min CPU. Per-model times are in the tables below and in learning_curve.json.", '',
         '## Settings', '',
         f"* data: the cached datasets of `benchmarks/pretrained.py`. Real: LAMOST DR10 spectra with LASP Teff, log g, [Fe/H] "
         f"(no carbon), split by star (seed 0): {info['real_train_spectra']} training spectra of {info['real_train_stars']} stars, "
         f"{info['real_valid_spectra']} validation and {info['real_test_spectra']} test spectra. Mock: the mock survey with true labels.",
         f"* real training subsets: the first N of the training stars in one seeded permutation (seed {s['subset_seed']}), so the "
         f"subsets are nested: N = {', '.join(str(n) for n in r['n_real'])} stars "
         f"({', '.join(str(info['subsets'][str(n)]['real_spectra'] if str(n) in info['subsets'] else info['subsets'][n]['real_spectra']) for n in r['n_real'])} spectra). "
         f"Every real subset carries the whole real validation split ({info['real_valid_spectra']} spectra), which picks the best "
         f"epoch (this flatters the small subsets a little: a survey with 30 labelled stars would not have 141 more to validate on).",
         f"* mock sample: {info['mock_sample_spectra']} training spectra ({info['mock_sample_stars']} stars, seed {s['mock_seed']}) and "
         f"{info['mock_valid_spectra']} validation spectra, the same for (b), (c) and (d) (the shipped model used all "
         f"{r['shipped']['n_train']['mock'] if r.get('shipped') else 'its'} mock training spectra).",
         f"* (a) real-only: labels Teff, log g, [Fe/H]; lr {s['lr']}, at least {s['epochs_real']} epochs and {s['min_steps_real']} "
         f"optimiser steps (small subsets need many epochs).",
         f"* (b) mock-only: all four labels, lr {s['lr']}, {s['epochs']} epochs.",
         f"* (c) fine-tuned: (b)'s weights, trained at lr {s['lr_ft']} for at least {s['epochs_ft']} epochs and {s['min_steps_ft']} "
         f"steps on the real subset merged with a mock replay sample of as many spectra as the real subset (at least "
         f"{s['min_replay']}, drawn from (b)'s mock sample) plus the mock validation sample. Why the replay: `train_hfsnet` takes "
         f"the labels from the dataset, and a real-only subset has no known [C/Fe]; asking for `labels=('teff','logg','feh','cfe')` "
         f"fails (`training_labels` wants at least 2 known values per label), and leaving it to choose gives 3 labels, which "
         f"`hfs_learner` refuses for a 4-output model. The replay keeps [C/Fe] supervised, so the carbon output is not left to "
         f"drift while the shared layers move. Before training, the last Linear layer is rescaled to the label scaler the "
         f"fine-tune fits on its own training split (largest change of a predicted label from that: see `rescale_check` in the JSON).",
         f"* (d) co-trained: from scratch on (b)'s mock sample merged with the real subset (`merge_datasets`, masked loss: "
         f"carbon from the mock alone), lr {s['lr']}, {s['epochs']} epochs.",
         f"* all: HFS-Net `{s['config']}`, batch {s['bs']}, one-cycle schedule, seed {s['seed']}, the best epoch by validation loss "
         f"kept; one training seed per model (differences smaller than the bootstrap intervals are not significant).",
         '* measured: MAE against LASP on the real test split (the same stars for every model; never trained or tuned on), '
         '"target" = LASP 4000 K < Teff < 6500 K and S/N_g > 30, "all" = every test spectrum; [68%] = bootstrap interval of '
         'the MAE (test stars resampled). Carbon: [C/Fe] MAE and CEMP completeness/purity (paper criteria, [Fe/H] < -2 and '
         '[C/Fe] > 0.7, from the predicted labels) against the truth for S/N_g >= 20 on the mock test split, and on the '
         f"held-out mock set (the test split plus the {info['mock_held_out_spectra'] - info['mock_test_spectra']} "
         "mock training spectra of stars no model here trained on).", '']
    # the table
    L += ['## Real test stars against LASP', '',
          '| way | N real stars | train spectra | epochs (best) | train CPU (s) | Teff target (K) | log g target | [Fe/H] target | Teff all (K) | log g all | [Fe/H] all | score |',
          '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    order = [('mock', None)] + [(w, n) for n in r['n_real'] for w in ('real', 'finetune', 'cotrain')]
    for w, n in order:
        m = get(r, w, n)
        if m is None: continue
        t, a = m['real_test']['target'], m['real_test']['all']
        L.append(f"| {WAYS[w]} | {'0' if w == 'mock' else n} | {m['train']['n_train']} | {m['train']['epochs']} ({m['train']['best_epoch']}) | "
                 f"{m['train']['cpu']:.0f} | " + ' | '.join(_f(t[l]['mae'], l, (t[l]['lo'], t[l]['hi'])) for l in REAL_LABELS) + ' | '
                 + ' | '.join(_f(a[l]['mae'], l) for l in REAL_LABELS) + f" | {score(m):.2f} |")
    sh = r.get('shipped')
    if sh:
        t, a = sh['real_test']['target'], sh['real_test']['all']
        L.append(f"| shipped `{sh['name']}` (co-trained, reference) | {nall}* | {sh['n_train']['mock'] + sh['n_train']['real']} | "
                 f"{sh['settings']['epochs']} | - | " + ' | '.join(_f(t[l]['mae'], l) for l in REAL_LABELS) + ' | '
                 + ' | '.join(_f(a[l]['mae'], l) for l in REAL_LABELS)
                 + f" | {np.mean([t[l]['mae'] / TARGETS[l] for l in REAL_LABELS]):.2f} |")
    nt = get(r, 'mock', None)['real_test']['target']['teff']['n']
    L += ['', f"Target subset: {nt} test spectra; all: {get(r, 'mock', None)['real_test']['all']['teff']['n']}. score = mean of "
          "MAE/target over the three labels on the target subset (targets 100 K, 0.15 dex, 0.10 dex; below 1 meets them on average). "
          + (f"*The shipped model (`make pretrained`, numbers from benchmarks/results/pretrained.json) trained on all {sh['n_train']['mock']} mock "
             f"training spectra and all real ones for {sh['settings']['epochs']} epochs: a reference, "
             "not one of the four ways." if sh else ''), '',
          '## Carbon skill on mock stars (S/N_g >= 20)', '',
          '| way | N real stars | [C/Fe] MAE test | CEMP completeness test | purity test | [C/Fe] MAE held-out | completeness held-out | purity held-out | [Fe/H] MAE held-out | CEMP stars: [Fe/H] bias | [C/Fe] bias | pred. [Fe/H] < -2 |',
          '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for w, n in order:
        m = get(r, w, n)
        if m is None: continue
        if not m['mock']:
            L.append(f"| {WAYS[w]} | {n} | n/a (no carbon output) | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |"); continue
        te, ho = m['mock']['test_snr20'], m['mock']['held_out_snr20']
        cp = lambda e, k: f"{_f(e[k])} ({e['n_true_positive']}/{e['n_true_cemp'] if k == 'completeness' else e['n_selected']})"
        L.append(f"| {WAYS[w]} | {'0' if w == 'mock' else n} | {_f(te['mae_cfe'])} | {cp(te, 'completeness')} | {cp(te, 'purity')} | "
                 f"{_f(ho['mae_cfe'])} | {cp(ho, 'completeness')} | {cp(ho, 'purity')} | {_f(ho['mae_feh'])} | "
                 f"{ho['cemp_diagnosis']['feh_bias']:+.2f} | {ho['cemp_diagnosis']['cfe_bias']:+.2f} | {ho['cemp_diagnosis']['share_feh_below_m2']:.2f} |")
    if sh:
        e = sh['mock_test_snr20']
        L.append(f"| shipped (reference) | {nall} | {_f(e['mae_cfe'])} | {_f(e['completeness'])} ({e['n_true_positive']}/{e['n_true_cemp']}) | "
                 f"{_f(e['purity'])} ({e['n_true_positive']}/{e['n_selected']}) | n/a (trained on them) | n/a | n/a | n/a | n/a | n/a | n/a |")
    m0 = get(r, 'mock', None)['mock']
    L += ['', f"Counts in brackets: true positives / true CEMP (completeness) or / selected (purity). The mock test split holds only "
          f"{m0['test_snr20']['n_true_cemp']} CEMP stars at S/N_g >= 20 (one star moves completeness by "
          f"{1 / max(m0['test_snr20']['n_true_cemp'], 1):.2f}); the held-out set holds {m0['held_out_snr20']['n_true_cemp']} "
          f"(of {m0['held_out_snr20']['n_matched']} spectra). Last three columns: the held-out true CEMP stars' median residual "
          "(model - truth) of [Fe/H] and [C/Fe], and the share of them predicted below [Fe/H] = -2 (the CEMP bound).", '', '![learning curve](learning_curve.png)', '']
    L += ['## Which way to choose', ''] + advice(r) + ['']
    return '\n'.join(L)


def advice(r) -> list:
    "The recommendation, worded from the numbers."
    rec, ns = r['recommendation'], r['n_real']
    g = lambda w, n: get(r, w, n)
    rc = lambda n: rec[n] if n in rec else rec[str(n)]
    short = lambda w: WAYS[w].split(' ', 1)[0]
    L = []
    for n in ns:
        sc = rc(n)['score_target']
        parts = ', '.join(f"{short(w)} {v:.2f}" for w, v in sorted(sc.items(), key=lambda kv: kv[1]))
        t = {w: g(w, n)['real_test']['target'] for w in ('real', 'finetune', 'cotrain')}
        L.append(f"* N = {n}: score {parts} (best {WAYS[rc(n)['best_target']]}; on all test stars {WAYS[rc(n)['best_all']]}). "
                 "Teff / log g / [Fe/H] target MAE: "
                 + '; '.join(f"{short(w)} {t[w]['teff']['mae']:.0f} K / {t[w]['logg']['mae']:.3f} / {t[w]['feh']['mae']:.3f}"
                             for w in ('real', 'finetune', 'cotrain')) + '.')
    ho = lambda w, n: g(w, n)['mock']['held_out_snr20']
    mk = ho('mock', None)
    comp = {w: [ho(w, n)['completeness'] for n in ns] for w in ('finetune', 'cotrain')}
    keeps = {w: all(np.isfinite(c) and c >= mk['completeness'] - 0.1 for c in comp[w]) for w in comp}
    diag = lambda w, n: ho(w, n).get('cemp_diagnosis', {})
    L.append(f"* carbon (held-out mock, S/N_g >= 20, {mk['n_true_cemp']} CEMP stars): mock-only [C/Fe] MAE {mk['mae_cfe']:.3f}, "
             f"CEMP completeness {mk['completeness']:.2f}, purity {mk['purity']:.2f}. Co-trained: completeness "
             + ', '.join(f"{c:.2f}" for c in comp['cotrain']) + ' and [C/Fe] MAE ' + ', '.join(f"{ho('cotrain', n)['mae_cfe']:.3f}" for n in ns)
             + f" for N = {', '.join(map(str, ns))}; fine-tuned: completeness " + ', '.join(f"{c:.2f}" for c in comp['finetune'])
             + ' and [C/Fe] MAE ' + ', '.join(f"{ho('finetune', n)['mae_cfe']:.3f}" for n in ns) + '. '
             + ("Where the fine-tune loses CEMP stars it is mostly their [Fe/H], not their carbon: median [Fe/H] residual of the "
                "true CEMP stars " + ', '.join(f"{diag('finetune', n).get('feh_bias', np.nan):+.2f}" for n in ns)
                + " dex (co-trained " + ', '.join(f"{diag('cotrain', n).get('feh_bias', np.nan):+.2f}" for n in ns)
                + ", mock-only " + f"{ho('mock', None).get('cemp_diagnosis', {}).get('feh_bias', np.nan):+.2f}"
                + "), share predicted below [Fe/H] = -2 " + ', '.join(f"{diag('finetune', n).get('share_feh_below_m2', np.nan):.2f}" for n in ns)
                + ", share predicted above [C/Fe] = 0.7 " + ', '.join(f"{diag('finetune', n).get('share_cfe_above_07', np.nan):.2f}" for n in ns)
                + ": trained towards the LASP stars (almost all above [Fe/H] = -2) with few mock stars to hold it, the network "
                "moves the most metal-poor stars up across the CEMP bound. " if not keeps['finetune'] else '')
             + 'Real-only has no carbon output at all.')
    last, prev = rc(ns[-1])['score_target'], rc(ns[-2])['score_target'] if len(ns) > 1 else rc(ns[-1])['score_target']
    # the choice: of the ways with a carbon output, those that keep the mock-only CEMP completeness (within 0.1) at every N
    # (else the one that keeps the most), then the lowest mean real-star score over N
    cands = [w for w in ('cotrain', 'finetune') if keeps[w]] or [max(('cotrain', 'finetune'), key=lambda w: min(comp[w]))]
    mean_sc = {w: np.mean([rc(n)['score_target'][w] for n in ns]) for w in ('real', 'finetune', 'cotrain')}
    pick = min(cands, key=mean_sc.get)
    other = 'finetune' if pick == 'cotrain' else 'cotrain'
    best_last = min(last, key=last.get)
    sh = r.get('shipped')
    sh_score = np.mean([sh['real_test']['target'][l]['mae'] / TARGETS[l] for l in REAL_LABELS]) if sh else np.nan
    small = [n for n in ns if rc(n)['best_target'] == other]
    L += ['', f"**Recommendation: {WAYS[pick]}**" + (', which is what `make pretrained` ships. ' if pick == 'cotrain' else '. ')
          + ("It is the only way that keeps the carbon skill of the mock-only model at every N " if keeps[pick] and not keeps[other]
             else "It keeps the carbon skill of the mock-only model " if keeps[pick] else "It loses the least carbon skill ")
          + f"(held-out CEMP completeness {min(comp[pick]):.2f}-{max(comp[pick]):.2f} against {mk['completeness']:.2f} mock-only), "
          f"and its mean real-star score over N is {mean_sc[pick]:.2f} (fine-tuned {mean_sc['finetune']:.2f}, co-trained "
          f"{mean_sc['cotrain']:.2f}, real-only {mean_sc['real']:.2f}); at N = {ns[-2] if len(ns) > 1 else ns[-1]} it scores "
          f"{prev[pick]:.2f} (best {min(prev.values()):.2f}) and at N = {ns[-1]} {last[pick]:.2f} (best {last[best_last]:.2f}, {WAYS[best_last]})"
          + (f"; with the whole mock survey and {sh['settings']['epochs']} epochs the shipped co-trained model reaches {sh_score:.2f}. " if sh else '. ')
          + (f"Real-only is best at N = {ns[-1]} (its [Fe/H] MAE {g('real', ns[-1])['real_test']['target']['feh']['mae']:.3f} dex "
             "against LASP is the lowest of the four) but " if best_last == 'real' else 'Real-only ')
          + "cannot find CEMP stars (no [C/Fe]: LASP has none)"
          + ((", and with fewer real stars it is the weakest of the three that learn from them (score "
              + ', '.join(f"{rc(n)['score_target']['real']:.2f}" for n in ns[:-2]) + f" at N = {', '.join(map(str, ns[:-2]))}). ")
             if ns[:-2] else '. ')
          + (f"{WAYS[other]} is the best for Teff / log g / [Fe/H] when real labels are scarce (N = {', '.join(map(str, small))}: score "
             + ', '.join(f"{rc(n)['score_target'][other]:.2f} against {rc(n)['score_target'][pick]:.2f}" for n in small) + ') '
             + ('but there it costs most of the CEMP completeness; use it for stellar parameters only, or with a larger mock replay. '
                if not keeps[other] else 'and keeps the carbon skill. ') if small else '')
          + "Mock-only is far off on real stars (the mock-to-LASP gap: "
          f"Teff MAE {g('mock', None)['real_test']['target']['teff']['mae']:.0f} K on the target subset), so some real labels are needed in any case.",
          '', '_Caveats_: one training seed per model and one draw of each subset; the target subset holds '
          f"{g('mock', None)['real_test']['target']['teff']['n']} test stars (see the bootstrap intervals: at N = {ns[-2]} the three ways "
          "overlap); the mock sample here is smaller than the shipped model's and trained for fewer epochs; the real validation "
          "split chooses the best epoch for every model that sees real stars."]
    return L


def plot(r, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib import ticker
    fig, axs = plt.subplots(2, 4, figsize=(17, 7.5), layout='constrained')
    ns = r['n_real']
    style = dict(real=('tab:blue', 'o-'), finetune=('tab:orange', 's-'), cotrain=('tab:green', '^-'), mock=('tab:gray', '--'))
    for i, sub in enumerate(('target', 'all')):
        for j, l in enumerate(REAL_LABELS):
            ax = axs[i, j]
            for w in ('real', 'finetune', 'cotrain'):
                ms = [g for g in (get(r, w, n) for n in ns) if g]
                x = [m['n_real'] for m in ms]
                y = [m['real_test'][sub][l]['mae'] for m in ms]
                e = np.array([[m['real_test'][sub][l]['mae'] - m['real_test'][sub][l]['lo'], m['real_test'][sub][l]['hi'] - m['real_test'][sub][l]['mae']] for m in ms]).T
                ax.errorbar(x, y, yerr=e if sub == 'target' else None, fmt=style[w][1], color=style[w][0], label=WAYS[w], capsize=2, ms=5)
            mo = get(r, 'mock', None)['real_test'][sub][l]['mae']
            ax.axhline(mo, color=style['mock'][0], ls='--', label=f"{WAYS['mock']} ({mo:.3g})")
            if sub == 'target': ax.axhline(TARGETS[l], color='k', ls=':', lw=1, label='target')
            if r.get('shipped'): ax.plot([r['info']['real_train_stars']], [r['shipped']['real_test'][sub][l]['mae']], '*', color='tab:red', ms=12, label='shipped model')
            ax.set(xscale='log', yscale='log', xlabel='real training stars N', ylabel=f"MAE {l} ({UNITS[l]})",
                   title=f"{l}, real test {'4000-6500 K, S/N>30' if sub == 'target' else 'all'}")
            ax.set_xticks(ns, [str(n) for n in ns]); ax.xaxis.set_minor_locator(ticker.NullLocator())
            ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5))); ax.yaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
            if i == 0 and j == 0: ax.legend(fontsize=7)
    for i, (key, lab) in enumerate((('mae_cfe', '[C/Fe] MAE (dex)'), ('completeness', 'CEMP completeness / purity'))):
        ax = axs[i, 3]
        for w in ('finetune', 'cotrain'):
            ms = [g for g in (get(r, w, n) for n in ns) if g and g['mock']]
            x = [m['n_real'] for m in ms]
            ax.plot(x, [m['mock']['held_out_snr20'][key] for m in ms], style[w][1], color=style[w][0], label=f"{WAYS[w]} {key}")
            if key == 'completeness':
                ax.plot(x, [m['mock']['held_out_snr20']['purity'] for m in ms], style[w][1][0] + ':', color=style[w][0], label=f"{WAYS[w]} purity")
        mk = get(r, 'mock', None)['mock']['held_out_snr20']
        ax.axhline(mk[key], color='tab:gray', ls='--', label=f"mock-only {key}")
        if key == 'completeness': ax.axhline(mk['purity'], color='tab:gray', ls=':', label='mock-only purity')
        ax.set(xscale='log', xlabel='real training stars N', ylabel=lab, title='held-out mock stars, S/N_g >= 20')
        ax.set_xticks(ns, [str(n) for n in ns]); ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.legend(fontsize=7)
    fig.suptitle('HFS-Net small: real-star accuracy (vs LASP) and mock carbon skill against the number of real training stars')
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == '__main__':
    main()
