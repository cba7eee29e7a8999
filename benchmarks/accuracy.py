"""Accuracy benchmark: HFS-Net against The Cannon, chi-square template matching and the Cramer-Rao floor, on one mock
train / test split (test stars never seen in training).

    make bench-accuracy SIZE=small|default       # or: .venv/bin/python benchmarks/accuracy.py --size small

Writes benchmarks/results/accuracy.json and accuracy.md (the latest run, read by nbs/08_results.ipynb), the same as
accuracy_<size>.json/.md (kept per size), and the figures accuracy_<size>_*.png. Every expensive stage (the mock spectra and
their preprocessing, each trained model, each method's predictions) is cached under benchmarks/cache/accuracy_<size>/
and reused by the next run, so an interrupted run resumes where it stopped (`--fresh` starts over).

Design (numbers per size in SIZES):
* one mock population (cemp_hfs.mock.draw_population, metal-poor tail enriched with mp_tail so that the [Fe/H] < -3
  bin holds enough test stars); one spectrum per star, so star-grouped splits (cemp_hfs.dataset.assign_splits, [Fe/H]
  stratified, 80/10/10) keep every test star out of training;
* spectra are synthesised with cemp_hfs.mock.synth_spectrum (noise, ivar, sky, tellurics, cosmics, bad pixels,
  calibration distortion, extinction, velocity) and preprocessed in memory with cemp_hfs.preprocess.preprocess, then
  written with cemp_hfs.dataset.write_dataset, the layout build_dataset writes (no FITS round trip: same model, same
  pipeline, less I/O);
* HFS-Net (cemp_hfs.train.train_hfsnet; 'small' config on CPU, 'paper' on a GPU) on the full training split; the
  ablations (no continuum branch, one expert instead of the MoE, no wavelet denoising) and a reference model are all
  trained on the same smaller training subset with the same epochs, so they compare with each other;
* The Cannon (cemp_hfs.baselines) trained on a random subset of the training split, tested on every test star;
* chi-square template matching on a random subset of the test stars (it is by far the slowest method);
* the Cramer-Rao bound at every test star's true labels and S/N.
"""
from __future__ import annotations
import argparse, datetime, json, os, platform, shutil, subprocess, sys, time
from pathlib import Path

import numpy as np
from astropy.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt

from hardware import cpu_model
from metrics import robust_scatter, label_stats
from cemp_hfs.core import LABELS, UNITS, atomic_path, check_manifest
from cemp_hfs.mock import draw_population, synth_spectrum
from cemp_hfs.preprocess import preprocess, load_preprocess_config, output_grid
from cemp_hfs.dataset import write_dataset, load_dataset, split_rows, assign_splits, label_matrix, SpectraDataset
from cemp_hfs.hfsnet import load_config
from cemp_hfs.train import train_hfsnet
from cemp_hfs.predict import HFSModel, load_hfs_model, predictive_samples
from cemp_hfs.select import evaluate, load_criteria
from cemp_hfs.baselines import train_cannon, cannon_labels, normalized_ivar, template_grid, chi2_match, cramer_rao

SIZES = {
    'tiny': dict(n_stars=400, epochs=1, ablation_train=150, ablation_epochs=1, cannon_train=250, chi2_test=10,
                 crb_test=None, bs=32, mp_tail=0.2),  # a smoke test of the whole pipeline (seconds), not a result
    # n_stars: one spectrum per star, split 80/10/10; ablation_train: training spectra of each ablation model
    'small': dict(n_stars=3000, epochs=6, ablation_train=1200, ablation_epochs=6, cannon_train=2000, chi2_test=100,
                  crb_test=None, bs=64, mp_tail=0.2),
    'default': dict(n_stars=26000, epochs=20, ablation_train=6000, ablation_epochs=8, cannon_train=8000, chi2_test=600,
                    crb_test=None, bs=64, mp_tail=0.2),
}
SNR_BINS = [('<10', 0, 10), ('10-20', 10, 20), ('20-50', 20, 50), ('50-100', 50, 100), ('>100', 100, np.inf)]
FEH_BINS = [('> -1', -1, np.inf), ('-2..-1', -2, -1), ('-3..-2', -3, -2), ('< -2', -np.inf, -2), ('< -3', -np.inf, -3)]
CEMP_FEH_EDGES = np.array([-4.0, -3.5, -3.0, -2.5, -2.0])
METHODS = ('hfsnet', 'cannon', 'chi2')
NAMES = dict(hfsnet='HFS-Net', cannon='The Cannon', chi2='chi-square matching', crb='Cramer-Rao floor')
ABLATIONS = {
    'reference': 'full model (same budget as the ablations)',
    'no_continuum': 'no continuum branch (continuum_branch: null)',
    'one_expert': 'one expert instead of the MoE (n_experts 1, k 1)',
    'no_denoise': 'no wavelet denoising (preprocess threshold: none)',
}


def log(*a):
    print(f"[{datetime.datetime.now(datetime.timezone.utc).strftime('%H:%M:%S')}]", *a, flush=True)


def hardware() -> dict:
    "CPU, GPU, threads and versions."
    cpu = cpu_model()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return dict(cpu=cpu, logical_cpus=os.cpu_count(), gpu=gpu, torch=torch.__version__, numpy=np.__version__,
                python=platform.python_version(), torch_threads=torch.get_num_threads(),
                load_average_start=list(os.getloadavg()))


def git_state() -> dict:
    "The commit the package was run from, and whether the forward model / pipeline had uncommitted changes."
    def run(*a):
        try: return subprocess.run(['git', '-C', str(ROOT), *a], capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception: return ''
    dirty = run('status', '--porcelain', '--', 'cemp_hfs/mock.py', 'cemp_hfs/preprocess.py', 'cemp_hfs/dataset.py',
                'cemp_hfs/baselines.py', 'cemp_hfs/hfsnet.py', 'cemp_hfs/train.py', 'cemp_hfs/predict.py')
    return dict(head=run('rev-parse', '--short', 'HEAD'), uncommitted=[l[3:] for l in dirty.splitlines()])


# ---------------------------------------------------------------- data
def write_folder(out, continuum, normalized, mask, labels, cfg) -> Path:
    "`write_dataset` into a temporary sibling folder that replaces `out` whole once it is complete."
    with atomic_path(out, directory=True) as tmp:
        write_dataset(tmp, output_grid(cfg), dict(continuum=continuum, normalized=normalized, mask=mask), labels, cfg)
        shutil.rmtree(out, ignore_errors=True)
    return Path(out)


def make_data(cache: Path, size: dict, seed: int) -> dict:
    "Mock spectra -> preprocessed datasets (full, ablation subset with and without denoising) + raw test spectra."
    done = cache / 'data' / 'done.json'
    if done.exists(): return json.loads(done.read_text())
    (cache / 'data').mkdir(parents=True, exist_ok=True)
    n = size['n_stars']
    pop = draw_population(n, seed=seed, mp_tail=size['mp_tail'])
    star_id = np.array([f"mock{seed}-{i:06d}" for i in range(n)])
    split = assign_splits(pop['feh'], star_id, (0.8, 0.1, 0.1), seed=seed)
    rng = np.random.default_rng([seed, 7])
    scale = np.exp(rng.normal(np.log(300), 0.8, n))
    train = np.flatnonzero(split == 'train')
    abl_train = np.sort(rng.choice(train, min(size['ablation_train'], len(train)), replace=False))
    in_abl = np.zeros(n, bool); in_abl[abl_train] = True; in_abl[split != 'train'] = True
    cfg, cfg_nd = load_preprocess_config(), load_preprocess_config(threshold='none')
    P = len(output_grid(cfg))
    cont, norm, mask = np.zeros((n, P), np.float32), np.zeros((n, P), np.float32), np.zeros((n, P), bool)
    abl = {k: np.zeros((in_abl.sum(), P), t) for k, t in (('continuum', np.float32), ('normalized', np.float32), ('mask', bool))}
    abl_pos = np.cumsum(in_abl) - 1
    kept = np.zeros(n, bool); kept_nd = np.zeros(n, bool)
    meta = dict(snrg=np.zeros(n), snri=np.zeros(n), cscale=np.zeros(n), noise=np.zeros((n, 2)), noise_nd=np.zeros((n, 2)))
    test_rows = np.flatnonzero(split == 'test')
    raw_flux, raw_ivar = {}, {}
    t_synth = t_pre = 0.; n_pre = 0
    chunk = 500
    for a in range(0, n, chunk):
        sl = np.arange(a, min(a + chunk, n))
        t0 = time.perf_counter()
        sp = synth_spectrum(pop['teff'][sl], pop['logg'][sl], pop['feh'][sl], pop['cfe'][sl], snrg=pop['snrg'][sl],
                            rv=pop['rv'][sl], ebv=pop['ebv'][sl], scale=scale[sl], rng=np.random.default_rng([seed, 11, a]))
        t1 = time.perf_counter()
        pp = preprocess(sp, cfg, errors='collect')
        t2 = time.perf_counter()
        t_synth += t1 - t0; t_pre += t2 - t1; n_pre += len(sl)
        rows = sl[pp.index]; kept[rows] = True
        cont[rows], norm[rows], mask[rows] = pp.continuum, pp.normalized, pp.mask
        meta['cscale'][rows], meta['noise'][rows] = pp.continuum_scale, pp.noise
        for i, s in zip(sl, sp):
            meta['snrg'][i], meta['snri'][i] = s.meta['snrg'], s.meta['snri']
            if split[i] == 'test': raw_flux[i], raw_ivar[i] = s.flux, s.ivar
        sub = np.flatnonzero(in_abl[sl])
        if len(sub):
            pn = preprocess([sp[j] for j in sub], cfg_nd, errors='collect')
            r2 = sl[sub[pn.index]]; kept_nd[r2] = True
            abl['continuum'][abl_pos[r2]], abl['normalized'][abl_pos[r2]], abl['mask'][abl_pos[r2]] = pn.continuum, pn.normalized, pn.mask
            meta['noise_nd'][r2] = pn.noise
        log(f"data: {sl[-1] + 1}/{n} spectra ({t_synth:.0f} s synthesis, {t_pre:.0f} s preprocessing)")

    def table(rows, noise):
        t = Table()
        t['obsid'] = rows.astype(np.int64) + 10 ** 8
        t['designation'] = star_id[rows]; t['ra'] = pop['ra'][rows]; t['dec'] = pop['dec'][rows]
        t['snrg'] = meta['snrg'][rows]; t['snri'] = meta['snri'][rows]
        for l in LABELS: t[l] = pop[l][rows]
        t['ch'] = pop['cfe'][rows] + pop['feh'][rows]
        t['ebv'] = pop['ebv'][rows]; t['rv'] = pop['rv'][rows]; t['snrg_target'] = pop['snrg'][rows]
        t['split'] = split[rows]; t['star_id'] = star_id[rows]; t['filename'] = [f'mock/{s}' for s in star_id[rows]]
        t['continuum_scale'] = meta['cscale'][rows]
        t['noise_seg0'], t['noise_seg1'] = noise[rows, 0], noise[rows, 1]
        t['row'] = rows
        return t

    full = np.flatnonzero(kept)
    write_folder(cache / 'data' / 'full', cont[full], norm[full], mask[full], table(full, meta['noise']), cfg)
    del cont, norm, mask
    ab = np.flatnonzero(in_abl & kept & kept_nd)  # both versions exist for every ablation row
    for name, arr_src, noise, c in (('ablate', None, meta['noise'], cfg), ('ablate_nodenoise', abl, meta['noise_nd'], cfg_nd)):
        if arr_src is None:
            d = load_dataset(cache / 'data' / 'full')
            pos = np.searchsorted(full, ab)
            write_folder(cache / 'data' / name, np.asarray(d.continuum[pos]), np.asarray(d.normalized[pos]),
                         np.asarray(d.mask[pos]), table(ab, noise), c)
        else:
            pos = abl_pos[ab]
            write_folder(cache / 'data' / name, arr_src['continuum'][pos], arr_src['normalized'][pos], arr_src['mask'][pos],
                         table(ab, noise), c)
    tr = np.array(sorted(raw_flux))
    np.savez(cache / 'data' / 'test_raw.npz', rows=tr, flux=np.stack([raw_flux[i] for i in tr]),
             ivar=np.stack([raw_ivar[i] for i in tr]))
    info = dict(n_stars=n, n_kept=int(kept.sum()), n_rejected=int(n - kept.sum()),
                n_train=int(((split == 'train') & kept).sum()), n_valid=int(((split == 'valid') & kept).sum()),
                n_test=int(((split == 'test') & kept).sum()), n_ablation_train=int(((split[ab] == 'train')).sum()),
                synthesis_s=t_synth, preprocess_s=t_pre, preprocess_spectra_per_s=n_pre / max(t_pre, 1e-9),
                mp_tail=size['mp_tail'], seed=seed, git=git_state())
    done.write_text(json.dumps(info, indent=1))
    return info


# ---------------------------------------------------------------- HFS-Net
def predict_rows(model: HFSModel, data, rows, bs=256, device='cpu'):
    "Deterministic labels (physical units) of dataset rows (one eval-mode pass), and the model-only wall time."
    ds, net = SpectraDataset(data, rows), model.net.to(device)
    out, t = [], 0.
    for a in range(0, len(rows), bs):
        c, n = (x.to(device) for x in ds.batch(np.arange(a, min(a + bs, len(rows)))))
        t0 = time.perf_counter()
        out.append(predictive_samples(net, c, n, model.scaler, mc_samples=1)[0])
        t += time.perf_counter() - t0
    return np.concatenate(out), t


def hfs_config(variant: str, base: str) -> dict:
    cfg = load_config(base)
    if variant == 'no_continuum': cfg['continuum_branch'] = None
    if variant == 'one_expert': cfg['continuum_branch'] = {**cfg['continuum_branch'], 'n_experts': 1, 'k': 1}
    return cfg


def train_or_load(cache: Path, name: str, dataset: Path, cfg: dict, epochs: int, bs: int, seed: int, device) -> dict:
    "Train one HFS-Net (or reuse the cached file) and predict its dataset's test split."
    mdir = cache / 'models'; mdir.mkdir(parents=True, exist_ok=True)
    path, info_path = mdir / f'{name}_e{epochs}.pt', mdir / f'{name}_e{epochs}.json'
    if not (path.exists() and info_path.exists()):
        log(f"train {name}: {epochs} epochs on {dataset.name}")
        t0 = time.perf_counter()
        learn = train_hfsnet(dataset, config=cfg, epochs=epochs, bs=bs, lr=2e-3, out=path, balanced=False, seed=seed,
                             device=device, progress=False)
        info = dict(train_s=time.perf_counter() - t0, epochs=epochs, history=[[float(x) for x in row] for row in learn.history],
                    history_names=learn.history.colnames)
        info_path.write_text(json.dumps(info))
        del learn
    info = json.loads(info_path.read_text())
    model = load_hfs_model(path)
    data = load_dataset(dataset)
    rows = split_rows(data, 'test')
    pred, t = predict_rows(model, data, rows, device=device or 'cpu')
    info.update(pred=pred, star_rows=np.asarray(data.labels['row'])[rows], predict_s=t, n_params=sum(p.numel() for p in model.net.parameters()))
    return info


# ---------------------------------------------------------------- baselines
def run_cannon(cache: Path, size: dict, seed: int) -> dict:
    f = cache / 'preds' / f"cannon_n{size['cannon_train']}.npz"
    if f.exists(): return dict(np.load(f, allow_pickle=True))
    f.parent.mkdir(parents=True, exist_ok=True)
    d = load_dataset(cache / 'data' / 'full')
    lab = d.labels
    rng = np.random.default_rng([seed, 3])
    train = d.indices('train')
    tr = np.sort(rng.choice(train, min(size['cannon_train'], len(train)), replace=False))
    te = d.indices('test')
    noise = np.c_[lab['noise_seg0'], lab['noise_seg1']]
    def arrays(rows):
        return (np.asarray(d.normalized[rows], float),
                normalized_ivar(np.asarray(d.continuum[rows]), noise[rows], np.asarray(d.mask[rows]), d.wave))
    log(f"The Cannon: train on {len(tr)} spectra")
    fl, iv = arrays(tr)
    t0 = time.perf_counter()
    model = train_cannon(fl, iv, label_matrix(lab, LABELS)[tr], wave=d.wave)
    t_train = time.perf_counter() - t0
    del fl, iv
    log(f"The Cannon: trained in {t_train:.0f} s; labels of {len(te)} test spectra")
    fl, iv = arrays(te)
    t0 = time.perf_counter()
    pred, rchi2 = cannon_labels(model, fl, iv)
    t_pred = time.perf_counter() - t0
    out = dict(pred=pred, rchi2=rchi2, star_rows=np.asarray(lab['row'])[te], train_s=t_train, predict_s=t_pred, n_train=len(tr),
               median_scatter=float(np.median(model.scatter)))
    np.savez(f, **out)
    return out


def run_chi2(cache: Path, size: dict, seed: int) -> dict:
    f = cache / 'preds' / f"chi2_n{size['chi2_test']}.npz"
    if f.exists(): return dict(np.load(f, allow_pickle=True))
    f.parent.mkdir(parents=True, exist_ok=True)
    raw = np.load(cache / 'data' / 'test_raw.npz')
    rng = np.random.default_rng([seed, 4])
    pick = np.sort(rng.choice(len(raw['rows']), min(size['chi2_test'], len(raw['rows'])), replace=False))
    log("chi-square matching: template grid")
    t0 = time.perf_counter(); grid = template_grid(); t_grid = time.perf_counter() - t0
    log(f"chi-square matching: {len(grid.labels)} templates in {t_grid:.0f} s; fitting {len(pick)} test spectra")
    t0 = time.perf_counter()
    lab, rv, rchi2 = [], [], []
    for a in range(0, len(pick), 50):
        p = pick[a:a + 50]
        l, v, c = chi2_match(grid, raw['flux'][p], raw['ivar'][p])
        lab.append(l); rv.append(v); rchi2.append(c)
        log(f"chi-square matching: {a + len(p)}/{len(pick)}")
    t_fit = time.perf_counter() - t0
    out = dict(pred=np.concatenate(lab), rv=np.concatenate(rv), rchi2=np.concatenate(rchi2), star_rows=raw['rows'][pick],
               grid_s=t_grid, predict_s=t_fit, n_templates=len(grid.labels))
    np.savez(f, **out)
    return out


def run_crb(cache: Path, truth: Table) -> dict:
    f = cache / 'preds' / 'crb.npz'
    if f.exists(): return dict(np.load(f, allow_pickle=True))
    f.parent.mkdir(parents=True, exist_ok=True)
    lab = label_matrix(truth, LABELS).astype(float)
    snr = np.asarray(truth['snrg_target'], float)
    log(f"Cramer-Rao bounds for {len(truth)} test stars")
    t0 = time.perf_counter()
    b = cramer_rao(lab, snr, ebv=np.asarray(truth['ebv'], float), rv=np.asarray(truth['rv'], float))
    b0 = cramer_rao(lab, snr, ebv=np.asarray(truth['ebv'], float), rv=np.asarray(truth['rv'], float), marginalise=False)
    out = dict(bound=b, bound_known_nuisance=b0, star_rows=np.asarray(truth['row']), time_s=time.perf_counter() - t0)
    np.savez(f, **out)
    return out


# ---------------------------------------------------------------- metrics


def bound_stats(bound, sel) -> dict:
    """The floor in the methods' terms: for errors e_i ~ N(0, b_i^2) (an efficient unbiased estimator), the expected MAE
    is sqrt(2/pi) x mean(b_i); its robust scatter is that of simulated errors (200 draws per star, fixed seed)."""
    out = {}
    rng = np.random.default_rng(12345)
    for j, l in enumerate(LABELS):
        b = bound[sel, j]
        e = (rng.standard_normal((200, len(b))) * b).ravel()
        out[l] = dict(median_bound=float(np.median(b)) if len(b) else float('nan'),
                      mae=float(np.sqrt(2 / np.pi) * np.mean(b)) if len(b) else float('nan'),
                      scatter=robust_scatter(e) if len(b) else float('nan'), n=int(len(b)))
    return out


def bins_of(snr, feh):
    out = {'all': np.ones(len(snr), bool)}
    for name, lo, hi in SNR_BINS: out[f'S/N {name}'] = (snr >= lo) & (snr < hi)
    for name, lo, hi in FEH_BINS: out[f'[Fe/H] {name}'] = (feh >= lo) & (feh < hi)
    return out


def label_table(labels) -> Table:
    "(N, L) label rows as a table, keyed by row number for `evaluate`."
    return Table({'row': np.arange(len(labels)), **{l: labels[:, j] for j, l in enumerate(LABELS)}})


def cemp_stats(pred, truth, criteria='paper') -> dict:
    "CEMP completeness, purity and F1 with their counts (`cemp_hfs.select.evaluate`) of predicted against true labels."
    if not len(pred): return dict(completeness=np.nan, purity=np.nan, f1=np.nan, tp=0, fp=0, fn=0, n_true=0, n_selected=0, n=0)
    e = evaluate(label_table(pred), label_table(truth), criteria, key='row')
    tp, n_true, n_sel, comp, pur = e['n_true_positive'], e['n_true_cemp'], e['n_selected'], e['completeness'], e['purity']
    f1 = 2 * comp * pur / (comp + pur) if tp else (0. if n_true else float('nan'))
    return dict(completeness=comp, purity=pur, f1=f1, tp=tp, fp=n_sel - tp, fn=n_true - tp, n_true=n_true, n_selected=n_sel,
                n=e['n_matched'])


def cemp_vs_feh(pred, truth) -> dict:
    "Completeness in bins of true [Fe/H], purity in bins of fitted [Fe/H]."
    comp, pur, nt, ns = [], [], [], []
    for lo, hi in zip(CEMP_FEH_EDGES[:-1], CEMP_FEH_EDGES[1:]):
        bt = (truth[:, 2] >= lo) & (truth[:, 2] < hi); bp = (pred[:, 2] >= lo) & (pred[:, 2] < hi)
        c, p = cemp_stats(pred[bt], truth[bt]), cemp_stats(pred[bp], truth[bp])
        comp.append(c['completeness']); nt.append(c['n_true']); pur.append(p['purity']); ns.append(p['n_selected'])
    return dict(edges=CEMP_FEH_EDGES.tolist(), completeness=comp, purity=pur, n_true=nt, n_selected=ns)


# ---------------------------------------------------------------- figures
def fig_one_to_one(preds, truth_of, path):
    "Fitted against true label: one row per method, one column per label, coloured by S/N."
    ms = [m for m in METHODS if m in preds]
    fig, axs = plt.subplots(len(ms), 4, figsize=(16, 3.7 * len(ms)), squeeze=False)
    for i, m in enumerate(ms):
        tr, pr, snr = truth_of[m], preds[m]['pred'], preds[m]['snr']
        for j, l in enumerate(LABELS):
            ax = axs[i, j]
            sc = ax.scatter(tr[:, j], pr[:, j], c=np.log10(np.clip(snr, 3, 500)), s=4, cmap='viridis', vmin=0.7, vmax=2.5)
            lim = [np.nanmin(tr[:, j]), np.nanmax(tr[:, j])]
            ax.plot(lim, lim, 'k--', lw=0.8)
            r = pr[:, j] - tr[:, j]
            ax.set_xlabel(f'true {l}', fontsize=9)
            ax.set_ylabel(f'{NAMES[m]}\nfitted {l}' if j == 0 else f'fitted {l}', fontsize=9)
            ax.set_title(f"MAE {fmt(np.mean(np.abs(r)), l)}, scatter {fmt(robust_scatter(r), l)} {UNITS[l]}, N={len(r)}", fontsize=8)
    fig.subplots_adjust(hspace=0.45, wspace=0.3, right=0.9)
    fig.colorbar(sc, cax=fig.add_axes([0.92, 0.3, 0.012, 0.4]), label='log10 S/N (g)')
    fig.savefig(path, dpi=80, bbox_inches='tight'); plt.close(fig)


def fig_mae_snr(res, path):
    fig, axs = plt.subplots(1, 4, figsize=(15, 3.5))
    names = [n for n, _, _ in SNR_BINS]
    x = np.arange(len(names))
    for j, l in enumerate(LABELS):
        ax = axs[j]
        for m in METHODS + ('crb',):
            if m not in res['per_method']: continue
            v = [res['per_method'][m]['bins'].get(f'S/N {n}', {}).get(l, {}).get('mae', np.nan) for n in names]
            ax.plot(x, v, 'o-' if m != 'crb' else 'k--', label=NAMES[m] + (' (expected MAE)' if m == 'crb' else ''))
        ax.set_yscale('log'); ax.set_xticks(x, names); ax.set(xlabel='S/N (g)', ylabel=f'MAE {l} ({UNITS[l]})')
    axs[0].legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


def fig_cemp_feh(res, path):
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.5))
    for k, (m, mk) in enumerate(zip(METHODS, ('o-', 's--', '^:'))):
        if m not in res['cemp_vs_feh']: continue
        c = res['cemp_vs_feh'][m]; e = np.array(c['edges']); mid = (e[:-1] + e[1:]) / 2 + 0.03 * (k - 1)  # offsets keep ties visible
        axs[0].plot(mid, c['completeness'], mk, label=NAMES[m]); axs[1].plot(mid, c['purity'], mk, label=NAMES[m])
    axs[0].set(xlabel='true [Fe/H]', ylabel='CEMP completeness', ylim=(-0.05, 1.05))
    axs[1].set(xlabel='fitted [Fe/H]', ylabel='CEMP purity', ylim=(-0.05, 1.05)); axs[0].legend(fontsize=8)
    fig.suptitle("CEMP selection, 'paper' preset ([Fe/H] < -2, [C/Fe] > +0.7)")
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


# ---------------------------------------------------------------- report
def fmt(v, l=None):
    if v is None or not np.isfinite(v): return 'n/a'
    return f"{v:.0f}" if l == 'teff' else f"{v:.3f}"


def markdown(res) -> str:
    L = [f"# Accuracy benchmark ({res['size']} size)", '',
         f"Written by `benchmarks/accuracy.py --size {res['size']}` on {res['finished']}; this session {res['wall_s'] / 60:.1f} min, "
         f"all stages (some may be reused from the cache of earlier sessions) {sum(res.get('stages_s', {}).values()) / 60:.1f} min: "
         + ', '.join(f"{k} {v / 60:.1f}" for k, v in res.get('stages_s', {}).items()) + '.', '',
         f"* hardware: {res['hardware']['cpu']} ({res['hardware']['logical_cpus']} logical CPUs), GPU: {res['hardware']['gpu'] or 'none'}, "
         f"torch {res['hardware']['torch']} with {res['hardware']['torch_threads']} thread(s); load average at start "
         f"{', '.join(f'{v:.1f}' for v in res['hardware']['load_average_start'])}, at end {', '.join(f'{v:.1f}' for v in res['hardware']['load_average_end'])}"
         " (other jobs shared the machine when the load exceeds the CPU count)",
         f"* code: git {res.get('git', {}).get('head', '?')} (data made at {res['data'].get('git', {}).get('head', '?')}; "
         f"uncommitted changes then: {', '.join(res['data'].get('git', {}).get('uncommitted', [])) or 'none'})",
         f"* data: {res['data']['n_stars']} mock stars (one spectrum each, metal-poor tail mp_tail={res['data']['mp_tail']}), "
         f"{res['data']['n_train']} train / {res['data']['n_valid']} valid / {res['data']['n_test']} test, {res['data']['n_rejected']} refused by preprocessing",
         f"* HFS-Net: config `{res['config']['hfsnet_config']}`, {res['config']['epochs']} epochs, batch {res['config']['bs']}; "
         f"The Cannon trained on {res['config']['cannon_train']} training spectra; chi-square matching on {res['per_method'].get('chi2', {}).get('bins', {}).get('all', {}).get('teff', {}).get('n', 0)} random test stars "
         f"({res['config']['n_templates']} templates); the bound at every test star", '']
    L += ['## Accuracy per label (all test stars; chi-square matching on its subset)', '',
          '| method | N | ' + ' | '.join(f'{l} MAE | {l} scatter' for l in LABELS) + ' |',
          '| --- | ---: | ' + ' | '.join('---: | ---:' for _ in LABELS) + ' |']
    for m in METHODS + ('crb',):
        if m not in res['per_method']: continue
        b = res['per_method'][m]['bins']['all']
        L.append(f"| {NAMES[m]} | {b['teff']['n']} | " + ' | '.join(f"{fmt(b[l]['mae'], l)} | {fmt(b[l]['scatter'], l)}" for l in LABELS) + ' |')
    for m in ('hfsnet', 'cannon', 'crb'):
        if m in res.get('on_chi2_subset', {}):
            b = res['on_chi2_subset'][m]
            L.append(f"| {NAMES[m]} on the chi2 subset | {b['teff']['n']} | " + ' | '.join(f"{fmt(b[l]['mae'], l)} | {fmt(b[l]['scatter'], l)}" for l in LABELS) + ' |')
    L += ['', 'Scatter = 1.4826 x MAD of the residuals (astropy.stats.mad_std). For the floor, "MAE" is what an efficient unbiased estimator would reach '
          '(sqrt(2/pi) x mean bound, the expectation of |error| for errors drawn from N(0, bound^2)) and "scatter" the robust scatter of such errors.', '']
    for l in LABELS:
        L += [f'### {l} ({UNITS[l]}): MAE / scatter per bin', '', '| bin | N | ' + ' | '.join(NAMES[m] for m in METHODS + ('crb',) if m in res['per_method']) + ' |',
              '| --- | ---: | ' + ' | '.join('---:' for m in METHODS + ('crb',) if m in res['per_method']) + ' |']
        for k in res['per_method']['hfsnet']['bins']:
            cells = []
            for m in METHODS + ('crb',):
                if m not in res['per_method']: continue
                s = res['per_method'][m]['bins'].get(k, {}).get(l)
                cells.append('n/a' if s is None or s['n'] == 0 else f"{fmt(s['mae'], l)} / {fmt(s['scatter'], l)}" + (f" ({s['n']})" if m == 'chi2' else ''))
            L.append(f"| {k} | {res['per_method']['hfsnet']['bins'][k][l]['n']} | " + ' | '.join(cells) + ' |')
        L.append('')
    L += ["## CEMP selection ('paper' preset: [Fe/H] < -2 and [C/Fe] > +0.7)", '',
          '| method | stars | true CEMP | selected | completeness | purity | F1 |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |']
    for m, c in res['cemp'].items():
        L.append(f"| {m} | {c['n']} | {c['n_true']} | {c['n_selected']} | {fmt(c['completeness'])} | {fmt(c['purity'])} | {fmt(c['f1'])} |")
    L += ['', '### Completeness (by true [Fe/H]) and purity (by fitted [Fe/H])', '',
          '| method | ' + ' | '.join(f"{lo:g}..{hi:g}" for lo, hi in zip(CEMP_FEH_EDGES[:-1], CEMP_FEH_EDGES[1:])) + ' |',
          '| --- | ' + ' | '.join('---:' for _ in CEMP_FEH_EDGES[:-1]) + ' |']
    for m, c in res['cemp_vs_feh'].items():
        L.append(f"| {NAMES[m]} completeness | " + ' | '.join(f"{fmt(v)} ({n})" for v, n in zip(c['completeness'], c['n_true'])) + ' |')
        L.append(f"| {NAMES[m]} purity | " + ' | '.join(f"{fmt(v)} ({n})" for v, n in zip(c['purity'], c['n_selected'])) + ' |')
    L += ['', '(numbers in brackets: true CEMP stars in the bin for completeness, selected stars in the bin for purity)', '',
          f"## HFS-Net ablations ({res['config']['ablation_train']} training spectra, {res['config']['ablation_epochs']} epochs each, same test stars)", '',
          '| variant | ' + ' | '.join(f'{l} MAE' for l in LABELS) + ' | CEMP F1 | train s |', '| --- | ' + ' | '.join('---:' for _ in LABELS) + ' | ---: | ---: |']
    for k, a in res['ablations'].items():
        L.append(f"| {ABLATIONS[k]} | " + ' | '.join(fmt(a['stats'][l]['mae'], l) for l in LABELS) + f" | {fmt(a['cemp']['f1'])} | {a['train_s']:.0f} |")
    L += ['', '## Speed', '', '| method | spectra/s | what is timed |', '| --- | ---: | --- |']
    for k, s in res['speed'].items(): L.append(f"| {k} | {s['spectra_per_s']:.1f} | {s['what']} |")
    L += ['', '## Training time', '', '| model | seconds |', '| --- | ---: |']
    for k, v in res['training_s'].items(): L.append(f"| {k} | {v:.0f} |")
    L += ['', 'Figures: ' + ', '.join(f'`{f}`' for f in res['figures'].values()) + '.', '']
    return '\n'.join(L)


# ---------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--size', default=os.environ.get('SIZE', 'small'), choices=sorted(SIZES))
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--cache', default=None, help='cache folder (default benchmarks/cache/accuracy_<size>)')
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results'))
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: 1 when the machine is busy, else all)')
    ap.add_argument('--fresh', action='store_true', help='delete the cache first')
    ap.add_argument('--epochs', type=int, default=None, help="override the size's HFS-Net epochs")
    ap.add_argument('--ablation-epochs', type=int, default=None, help="override the size's ablation epochs")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    size = dict(SIZES[args.size])
    if args.epochs: size['epochs'] = args.epochs
    if args.ablation_epochs: size['ablation_epochs'] = args.ablation_epochs
    gpu = torch.cuda.is_available()
    device = 'cuda' if gpu else 'cpu'
    if gpu:  # scale up on a GPU: the paper config, more epochs
        size.update(epochs=2 * size['epochs'], ablation_epochs=2 * size['ablation_epochs'])
    threads = args.threads or (1 if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1) else (os.cpu_count() or 1))
    torch.set_num_threads(threads)
    cache = Path(args.cache or ROOT / 'benchmarks' / 'cache' / f'accuracy_{args.size}')
    if args.fresh: shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    (cache.parent / '.gitignore').write_text('*\n')
    # what the cached data depend on (models and predictions are cached under names that carry their own settings)
    manifest = dict(size=args.size, seed=args.seed, **{k: size[k] for k in ('n_stars', 'ablation_train', 'mp_tail')})
    try: check_manifest(cache, manifest, 'run', 'use --fresh or another --cache')
    except ValueError as e: sys.exit(str(e))
    hw = hardware()
    log(f"accuracy benchmark, size {args.size}, cache {cache}, {threads} torch thread(s), device {device}")

    data = make_data(cache, size, args.seed)
    full = load_dataset(cache / 'data' / 'full')
    lab = full.labels
    rows_of = np.asarray(lab['row'])
    split = np.asarray(lab['split']).astype(str)
    test = lab[split == 'test']
    truth_by_row = {int(r): i for i, r in enumerate(test['row'])}
    T = label_matrix(test, LABELS).astype(float)
    snr = np.asarray(test['snrg'], float)

    base = 'paper' if gpu else 'small'
    hfs = train_or_load(cache, 'hfsnet', cache / 'data' / 'full', hfs_config('reference', base), size['epochs'], size['bs'], args.seed, device)
    abl = {}
    for k in ABLATIONS:
        ds = cache / 'data' / ('ablate_nodenoise' if k == 'no_denoise' else 'ablate')
        abl[k] = train_or_load(cache, f'ablation_{k}', ds, hfs_config('reference' if k == 'no_denoise' else k, base),
                               size['ablation_epochs'], size['bs'], args.seed, device)
    cannon = run_cannon(cache, size, args.seed)
    chi2 = run_chi2(cache, size, args.seed)
    crb = run_crb(cache, test)

    def aligned(d):
        idx = np.array([truth_by_row[int(r)] for r in d['star_rows']])
        return idx, np.asarray(d['pred'], float)

    preds, truth_of = {}, {}
    for m, d in (('hfsnet', hfs), ('cannon', cannon), ('chi2', chi2)):
        idx, p = aligned(d)
        preds[m] = dict(pred=p, idx=idx, snr=snr[idx]); truth_of[m] = T[idx]
    cidx = np.array([truth_by_row[int(r)] for r in crb['star_rows']])
    res = dict(size=args.size, seed=args.seed, hardware=hw, data=data, git=git_state(),
               config=dict(hfsnet_config=base, device=device, **size, n_templates=int(chi2['n_templates']),
                           criteria=load_criteria('paper')['description']),
               per_method={}, on_chi2_subset={}, cemp={}, cemp_vs_feh={}, ablations={}, speed={}, training_s={})
    for m in METHODS:
        idx, p = preds[m]['idx'], preds[m]['pred']
        bins = bins_of(snr[idx], T[idx, 2])
        res['per_method'][m] = dict(n=len(idx), bins={k: label_stats(p, T[idx], s) for k, s in bins.items()})
        res['cemp'][NAMES[m]] = cemp_stats(p, T[idx])
        res['cemp_vs_feh'][m] = cemp_vs_feh(p, T[idx])
    bins = bins_of(snr[cidx], T[cidx, 2])
    res['per_method']['crb'] = dict(n=len(cidx), bins={k: bound_stats(np.asarray(crb['bound']), s) for k, s in bins.items()},
                                    known_nuisance={k: bound_stats(np.asarray(crb['bound_known_nuisance']), s) for k, s in bins.items()})
    sub = set(preds['chi2']['idx'].tolist())
    res['on_chi2_subset_bins'] = {}
    for m in ('hfsnet', 'cannon'):
        keep = np.array([i in sub for i in preds[m]['idx']])
        res['on_chi2_subset'][m] = label_stats(preds[m]['pred'][keep], T[preds[m]['idx'][keep]], np.ones(keep.sum(), bool))
        ii = preds[m]['idx'][keep]  # per-bin statistics on exactly the chi-square stars, for like-for-like comparisons
        res['on_chi2_subset_bins'][m] = {k: label_stats(preds[m]['pred'][keep], T[ii], s) for k, s in bins_of(snr[ii], T[ii, 2]).items()}
        res['cemp'][f"{NAMES[m]} (chi2 subset)"] = cemp_stats(preds[m]['pred'][keep], T[preds[m]['idx'][keep]])
    keep = np.array([i in sub for i in cidx])
    res['on_chi2_subset']['crb'] = bound_stats(np.asarray(crb['bound'])[keep], np.ones(keep.sum(), bool))
    for k, a in abl.items():
        idx = np.array([truth_by_row[int(r)] for r in a['star_rows']])
        res['ablations'][k] = dict(description=ABLATIONS[k], stats=label_stats(a['pred'], T[idx], np.ones(len(idx), bool)),
                                   cemp=cemp_stats(a['pred'], T[idx]), train_s=a['train_s'], epochs=a['epochs'],
                                   n_params=int(a['n_params']))
    n_test = len(hfs['pred'])
    res['speed'] = {
        'HFS-Net (model only)': dict(spectra_per_s=n_test / hfs['predict_s'], what=f'forward passes, batch 256, {device}, {threads} thread(s)'),
        'preprocessing (for HFS-Net and The Cannon)': dict(spectra_per_s=data['preprocess_spectra_per_s'], what='rest frame, wavelet denoising, continuum, resampling'),
        'The Cannon (labels)': dict(spectra_per_s=len(cannon['pred']) / float(cannon['predict_s']), what='batched Levenberg-Marquardt from the best of 257 starts, numpy'),
        'chi-square matching': dict(spectra_per_s=len(chi2['pred']) / float(chi2['predict_s']), what=f"CCF velocity, {int(chi2['n_templates'])}-template grid, LM refinement"),
    }
    res['training_s'] = {'HFS-Net (full training set)': hfs['train_s'], 'The Cannon': float(cannon['train_s']),
                         'chi-square template grid (generation)': float(chi2['grid_s']),
                         **{f'ablation: {k}': a['train_s'] for k, a in abl.items()}}
    res['hfsnet_history'] = dict(names=hfs['history_names'], rows=hfs['history'])
    res['cannon_median_scatter'] = float(cannon['median_scatter'])
    res['crb_time_s'] = float(crb['time_s'])
    hw['load_average_end'] = list(os.getloadavg())
    res['wall_s'] = time.perf_counter() - t_start
    # the cost of every stage, whether it ran in this session or was reused from the cache of an earlier one
    res['stages_s'] = dict(data=data['synthesis_s'] + data['preprocess_s'], hfsnet=hfs['train_s'] + hfs['predict_s'],
                           ablations=sum(a['train_s'] + a['predict_s'] for a in abl.values()),
                           cannon=float(cannon['train_s']) + float(cannon['predict_s']),
                           chi2=float(chi2['grid_s']) + float(chi2['predict_s']), crb=float(crb['time_s']))
    res['finished'] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')

    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    res['figures'] = {k: f'accuracy_{args.size}_{k}.png' for k in ('one_to_one', 'mae_snr', 'cemp_feh')}
    fig_one_to_one(preds, truth_of, out / res['figures']['one_to_one'])
    fig_mae_snr(res, out / res['figures']['mae_snr'])
    fig_cemp_feh(res, out / res['figures']['cemp_feh'])
    text = json.dumps(res, indent=1, default=lambda o: o.tolist() if hasattr(o, 'tolist') else str(o))
    # accuracy.json / .md: the latest run (what nbs/08_results reads); accuracy_<size>.*: kept per size
    for name in ('accuracy', f'accuracy_{args.size}'):
        (out / f'{name}.json').write_text(text); (out / f'{name}.md').write_text(markdown(res))
    log(f"done in {res['wall_s'] / 60:.1f} min: {out / 'accuracy.json'}")


if __name__ == '__main__':
    main()
