"""Mutation check (`make mutants`): do the tests catch small, plausible bugs?

Each mutant is (notebook, exact snippet of one export cell, replacement, the tests that should catch it). For each, a
scratch copy of the repository's files (tracked and untracked-but-not-ignored) is made under /tmp, the snippet is
replaced in the notebook (it must occur exactly once in that notebook, in an export cell: a mutant whose code moved
fails loudly), the package is exported there with nbdev-export, and the named notebook tests (nbdev-test) and pytest
files/nodes run there with PYTHONPATH pointing at the scratch copy (checked: the mutated module is the one imported),
each under a time limit. A mutant is caught when a test fails; a time-out counts as caught only when the mutant says
so (`timeout_ok`), and is reported as such. Before the mutants, every test command runs once on the unmutated copy and
must pass (else a "caught" would mean nothing).

Results: benchmarks/results/mutants.json and mutants.md, with the hardware. A developer check, not part of `make test`.

    python benchmarks/mutants.py [--only ID[,ID]] [--jobs 2] [--list] [--no-baseline] [--all-tests]
"""
from __future__ import annotations
import argparse, json, os, platform, shutil, signal, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardware import cpu_model

BIN = Path(sys.executable).parent
RESULTS = ROOT / 'benchmarks' / 'results'

def nb(name): return ('nb', name)
def py(node): return ('py', node)

# (id, notebook, snippet, replacement, tests, what the bug is[, options]) -- tests run in the order given (fast first)
MUTANTS = [
    # ---- reader (00_io) ----
    dict(id='io_dr1_wave_offset', nb='00_io', find="10 ** (float(c0) + float(c1) * np.arange(n))",
         repl="10 ** (float(c0) + float(c1) * (np.arange(n) + 1))",
         tests=[nb('00_io'), py('tests/test_io_real.py::test_dr1_wavelength_and_lamost_normalisation')],
         what='DR1 log-linear wavelengths start one pixel late (issue 17 table)'),
    dict(id='io_nan_flux_keeps_ivar', nb='00_io', find="bad = ~np.isfinite(flux) | ~np.isfinite(ivar) | (ivar < 0)",
         repl="bad = ~np.isfinite(ivar) | (ivar < 0)", tests=[nb('00_io'), py('tests/test_io_robust.py')],
         what='a NaN flux pixel keeps its inverse variance (counted as good)'),
    dict(id='io_catalog_fill_unmasked', nb='00_io', find="for fv in fill_values: t[c].mask |= np.asarray(t[c].data.data == fv)",
         repl="for fv in fill_values: pass", tests=[nb('00_io'), py('tests/test_catalogues.py')],
         what="read_catalog leaves LAMOST's -9999 fill unmasked"),
    dict(id='io_header_fill_kept', nb='00_io',
         find="if v in ('', 'NULL') or (isinstance(v, (int, float)) and not isinstance(v, bool) and v == _FILL): return default",
         repl="if v in ('', 'NULL'): return default", tests=[nb('00_io')],
         what="a header card's -9999 fill read as a value (S/N of -9999)"),
    dict(id='io_mrs_accepted', nb='00_io', find="return bool(names & {'COADD_B', 'COADD_R'}) or Path(path).name.startswith('med-')",
         repl="return Path(path).name.startswith('med-')", tests=[nb('00_io'), py('tests/test_io_real.py::test_mrs_refused')],
         what='a medium-resolution file (COADD_B/R extensions) is not refused'),
    # ---- dataset (01a_dataset) ----
    dict(id='dataset_label_mask_ignored', nb='01a_dataset',
         find="cols = [np.ma.filled(np.ma.asarray(t[l], dtype=float), np.nan) for l in labels]",
         repl="cols = [np.asarray(t[l], dtype=float) for l in labels]", tests=[nb('01a_dataset')],
         what='label_matrix ignores the mask: a masked label becomes its fill value'),
    dict(id='dataset_split_ignores_star', nb='01a_dataset', find="groups = np.asarray([str(g) for g in groups]); feh = np.asarray(feh, float)",
         repl="groups = np.arange(len(groups)).astype(str); feh = np.asarray(feh, float)",
         tests=[nb('01a_dataset'), py('tests/test_preprocess_mock.py::test_build_dataset_from_a_mock_survey')],
         what="splits by spectrum, not by star: repeat visits of one star leak across train/test"),
    dict(id='dataset_scaler_variance', nb='01a_dataset', find="std = np.nanstd(y, 0)", repl="std = np.nanvar(y, 0)",
         tests=[nb('01a_dataset')], what='labels standardised by the variance instead of the standard deviation'),
    # ---- preprocessing (01_preprocess) ----
    dict(id='pre_continuum_residual_sign', nb='01_preprocess', find="r = f - cont", repl="r = cont - f",
         tests=[py('tests/test_preprocess_real.py::test_continuum_sits_above_the_lines'), nb('01_preprocess')],
         what='continuum clipping residual sign flipped: absorption kept, the upper envelope clipped (issue 17 table)'),
    dict(id='pre_clip_bounds_swapped', nb='01_preprocess',
         find="keep = good & (r > -c.clip_low * sig) & (r < c.clip_high * sig)",
         repl="keep = good & (r > -c.clip_high * sig) & (r < c.clip_low * sig)",
         tests=[nb('01_preprocess'), py('tests/test_preprocess_real.py::test_continuum_sits_above_the_lines')],
         what='asymmetric clipping bounds swapped'),
    dict(id='pre_rest_frame_wrong_way', nb='01_preprocess', find="rest = s.wave.astype(np.float64) / (1 + z)",
         repl="rest = s.wave.astype(np.float64) * (1 + z)", tests=[nb('01_preprocess')],
         what='shift to the rest frame multiplies by (1 + z)'),
    # ---- losses (05_train) ----
    dict(id='loss_mask_skipped', nb='05_train',
         find="per_label = torch.where(present, per_label, torch.zeros_like(per_label))", repl="per_label = per_label",
         tests=[nb('05_train')], what='masked loss: missing labels count as 0 (issue 17 table)'),
    dict(id='loss_nll_precision_sign', nb='05_train', find="** 2 * torch.exp(-logvar))", repl="** 2 * torch.exp(logvar))",
         tests=[nb('05_train')], what='Gaussian NLL multiplies the squared error by the variance, not the precision'),
    dict(id='loss_per_star_count', nb='05_train', find="n = present.sum(1).clamp_min(1)",
         repl="n = torch.full_like(present.sum(1), present.shape[1])", tests=[nb('05_train')],
         what='the per-star mean divides by all labels, known or not (missing labels shrink the loss)'),
    # ---- routing (02_moe_branch) ----
    dict(id='moe_topk_smallest', nb='02_moe_branch', find="top_val, top_idx = logits.topk(self.k, dim=1)",
         repl="top_val, top_idx = logits.topk(self.k, dim=1, largest=False)", tests=[nb('02_moe_branch')],
         what='the k least probable experts chosen (issue 17 table)'),
    dict(id='moe_weights_not_renormalised', nb='02_moe_branch', find="return logits.softmax(1), top_idx, top_val.softmax(1)",
         repl="return logits.softmax(1), top_idx, logits.softmax(1).gather(1, top_idx)", tests=[nb('02_moe_branch')],
         what='the chosen experts weighted by their full-softmax probability (weights do not sum to 1)'),
    dict(id='moe_balance_fraction', nb='02_moe_branch', find="sum((0, 1)).to(probs.dtype) / top_idx.numel()",
         repl="sum((0, 1)).to(probs.dtype) / top_idx.shape[0]", tests=[nb('02_moe_branch')],
         what='load-balancing loss divides the routing counts by B, not B x k'),
    # ---- prediction (06_predict) and its resume ----
    dict(id='predict_resume_never_recognised', nb='06_predict',
         find="pending = pending_chunks([part(k) for k in range(len(plan))]) if parts_dir is not None else list(range(len(plan)))",
         repl="pending = list(range(len(plan)))",
         tests=[py('tests/test_predict_resume.py::test_stepwise_run_and_rerun_of_a_finished_run'), nb('06_predict')],
         what='finished chunks never recognised: every rerun redoes everything (issue 17 table)'),
    dict(id='predict_stale_tmp_kept', nb='00_core', find="for p in [*Path(folder).glob('.*.tmp'), *Path(folder).glob('.*.tmp.*')]:",
         repl="for p in []:", tests=[nb('00_core')], what="a killed run's half-written temporary files are never removed"),
    dict(id='predict_seed_by_position', nb='06_predict', find='return int.from_bytes(hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()[:8], \'little\') >> 1',
         repl='return int(seed)', tests=[nb('06_predict')],
         what="every spectrum gets the same dropout stream (the seed ignores the spectrum's identity)"),
    dict(id='predict_err_from_point', nb='06_predict',
         find="out[l], out[f'{l}_err'] = p[l], v.std(0) if len(v) > 1 else np.full(v.shape[1:], np.nan)",
         repl="out[l], out[f'{l}_err'] = p[l], v.std(0) if len(v) > 1 else np.zeros(v.shape[1:])",
         tests=[nb('06_predict')], what='one Monte-Carlo draw reports an uncertainty of 0 instead of none'),
    dict(id='predict_flagged_all', nb='06_predict', find="out['flagged'] = np.any([out[f] for f in FLAGS], axis=0) if n else np.zeros(0, bool)",
         repl="out['flagged'] = np.all([out[f] for f in FLAGS], axis=0) if n else np.zeros(0, bool)",
         tests=[nb('06_predict'), py('tests/test_predict_real.py::test_hot_pixel_is_flagged')],
         what="'flagged' only when every trust flag is set, not any"),
    # ---- selection (06a_select) ----
    dict(id='select_mask_ignored', nb='06a_select', find="return np.ma.filled(np.ma.asarray(t[name], dtype=float), np.nan)",
         repl="return np.asarray(t[name], dtype=float)",
         tests=[py('tests/test_select_known.py'), nb('06a_select')],
         what='classify ignores the column mask: a masked [Fe/H] of -9999 becomes CEMP and EMP (issue 17 table)'),
    dict(id='select_masked_key_matches', nb='06a_select',
         find="if not m}  # a masked key matches nothing\n    ip = np.array([i for i, k in enumerate(pk) if not pm[i] and k in tr], int)",
         repl="}\n    ip = np.array([i for i, k in enumerate(pk) if k in tr], int)",
         tests=[py('tests/test_select_known.py'), nb('06a_select')],
         what='evaluate joins rows whose key (obsid) is masked: spectra without an obsid matched with each other'),
    dict(id='select_strict_bound', nb='06a_select', find="'>': np.greater,", repl="'>': np.greater_equal,",
         tests=[nb('06a_select')], what="'[C/Fe] > +0.7' applied as >= (a star at exactly +0.7 becomes CEMP)"),
    dict(id='select_purity_denominator', nb='06a_select',
         find="res['purity'] = res['n_true_positive'] / res['n_selected'] if res['n_selected'] else float('nan')",
         repl="res['purity'] = res['n_true_positive'] / res['n_true_cemp'] if res['n_true_cemp'] else float('nan')",
         tests=[py('tests/test_select_known.py'), nb('06a_select')], what='purity divided by the true CEMP count'),
    dict(id='select_flagged_kept', nb='06a_select', find="c = t[sel & ~flagged]", repl="c = t[sel]",
         tests=[nb('06a_select')], what='candidates keep predictions that carry a trust flag'),
    dict(id='select_pcemp_never_recomputed', nb='06a_select', find="    if old == rule: return t\n", repl="    return t\n",
         tests=[nb('06a_select')], what='P(CEMP) of one CEMP rule kept when classifying with another'),
    # ---- baselines (07_baselines) ----
    dict(id='cannon_ivar_mean_continuum', nb='07_baselines', find="sig = noise[:, seg] / np.clip(continuum, 1e-3, None)",
         repl="sig = noise[:, seg] / np.clip(continuum.mean(1, keepdims=True), 1e-3, None)", tests=[nb('07_baselines')],
         what="normalised-flux ivar from the continuum's mean, not pixel by pixel"),
    dict(id='cannon_segments_unassigned', nb='07_baselines', find="for k, (lo, hi) in enumerate(segments): seg[(wave >= lo) & (wave < hi)] = k",
         repl="for k, (lo, hi) in enumerate(segments): seg[(wave >= lo) & (wave < hi)] = 0", tests=[nb('07_baselines')],
         what="every pixel gets the first segment's noise"),
    dict(id='cannon_quadratic_no_cross', nb='07_baselines', find="i, j = np.triu_indices(L)\n    return",
         repl="i, j = np.diag_indices(L)\n    i, j = np.r_[i, i][:len(np.triu_indices(L)[0])], np.r_[j, j][:len(np.triu_indices(L)[0])]\n    return",
         tests=[nb('07_baselines')], what="The Cannon's quadratic terms lose the cross terms (squares repeated instead)"),
    # ---- the CLI's error paths (90_cli) ----
    dict(id='cli_user_error_exit_1', nb='90_cli', find="print(f\"{name}: error: {_message(e)}\", file=err); return 2",
         repl="print(f\"{name}: error: {_message(e)}\", file=err); return 1", tests=[nb('90_cli')],
         what='a user error exits 1 like a bug, not 2'),
    dict(id='cli_swallowed_ctrl_c_lost', nb='90_cli', find="            ctrl_c.check()  # a Ctrl-C that a finalizer swallowed",
         repl="            pass  # a Ctrl-C that a finalizer swallowed", tests=[nb('90_cli')],
         what='a Ctrl-C swallowed by a finalizer is lost: the command goes on and exits 0'),
    dict(id='cli_overwrite_inverted', nb='90_cli', find="if p.exists() and not overwrite: raise FileExistsError",
         repl="if p.exists() and overwrite: raise FileExistsError", tests=[nb('90_cli')],
         what='an existing output is replaced without --overwrite'),
    dict(id='cli_integer_zero_accepted', nb='90_cli', find="if x < lo: raise argparse.ArgumentTypeError(f\"must be at least {lo}, got {x}\")",
         repl="if x < lo - 1: raise argparse.ArgumentTypeError(f\"must be at least {lo}, got {x}\")", tests=[nb('90_cli')],
         what='--epochs 0 (a count below its minimum) accepted'),
    dict(id='cli_oserror_message', nb='90_cli', find="elif isinstance(e, OSError) and e.strerror and e.filename: msg = f\"{e.filename}: {e.strerror}\"",
         repl="elif isinstance(e, OSError) and e.strerror and e.filename: msg = f\"{e.strerror}\"", tests=[nb('90_cli')],
         what="a file error's message loses the file name"),
    # ---- more, across the modules ----
    dict(id='io_snr_cut_and', nb='00_io', find="if snri_min is not None: ok |= _col(t, 'snri', name) > snri_min",
         repl="if snri_min is not None: ok &= _col(t, 'snri', name) > snri_min", tests=[nb('00_io')],
         what="quality cut 'snrg > 20 or snri > 20' applied as snrg alone"),
    dict(id='dataset_error_without_value', nb='01a_dataset',
         find="if l in out.colnames and f'{l}_err' in out.colnames: out[f'{l}_err'][~np.isfinite(out[l])] = np.nan",
         repl="pass", tests=[nb('01a_dataset')], what='an error kept for a label whose value was removed'),
    dict(id='train_mae_in_scaled_units', nb='05_train',
         find="self.total += float((p[ok] - y[ok]).abs().sum()) * self.scaler.std[self.j]",
         repl="self.total += float((p[ok] - y[ok]).abs().sum())", tests=[nb('05_train')],
         what='the MAE metric reported in standardised units, not K / dex'),
    dict(id='predict_physical_lower_only', nb='06_predict',
         find="if l in t.colnames: out['flag_physical'] |= ~((val(l) >= lo) & (val(l) <= hi))",
         repl="if l in t.colnames: out['flag_physical'] |= val(l) < lo", tests=[nb('06_predict')],
         what='the physical-range flag checks only the lower bound'),
    dict(id='core_manifest_never_compared', nb='00_core',
         find="if diff: raise ValueError(f\"{folder}: holds a {what} with different {diff}; {hint}\")", repl="pass",
         tests=[nb('00_core'), py('tests/test_predict_resume.py::test_other_inputs_in_the_same_folder_are_refused')],
         what="a rerun into a folder holding another job's chunks is not refused (chunks of two jobs mixed)"),
    dict(id='select_gaussian_unknown_kept', nb='06a_select', find="return np.where(known, p, np.nan)", repl="return p",
         tests=[nb('06a_select')], what='a recomputed P(CEMP) with an unknown uncertainty is a number, not masked'),
    dict(id='select_candidates_ascending', nb='06a_select',
         find="return c[np.argsort(-np.ma.filled(np.ma.asarray(c['p_cemp'], dtype=float), -1.), kind='stable')]",
         repl="return c[np.argsort(np.ma.filled(np.ma.asarray(c['p_cemp'], dtype=float), -1.), kind='stable')]",
         tests=[nb('06a_select')], what='candidates least probable first'),
    dict(id='calibrate_width_weight_ignored', nb='06b_calibrate', find="return cover ** (1 - width_weight) * width ** width_weight",
         repl="return cover", tests=[nb('06b_calibrate')],
         what="the calibration's bin factors ignore the robust width (the coverage factor alone, whatever width_weight says)"),
    dict(id='repeat_factor_below_one', nb='06b_calibrate', find="out['factors'][l] = max(1., out['fitted'][l]) if ok.sum() >= min_pairs else 1.",
         repl="out['factors'][l] = out['fitted'][l] if ok.sum() >= min_pairs else 1.", tests=[nb('06b_calibrate')],
         what='a repeat factor below 1 kept: repeat pairs shrink the truth-fitted errors'),
    dict(id='repeat_factor_total_unchanged', nb='06b_calibrate', find="return np.sqrt(tot ** 2 + (k ** 2 - 1) * stat ** 2), k * stat",
         repl="return tot, k * stat", tests=[nb('06b_calibrate')],
         what="the repeat factor widens the statistical error but not the total"),
    dict(id='repeat_pairs_flagged_kept', nb='06b_calibrate', find="use = good[I] & good[J]",
         repl="use = np.ones(len(I), bool)", tests=[nb('06b_calibrate')],
         what='pairs with a flagged spectrum fitted with the others'),
    dict(id='percentiles_swapped', nb='06b_calibrate', find="return point + p.get('z16', -1.) * sigma, point + p.get('z84', 1.) * sigma",
         repl="return point - p.get('z84', 1.) * sigma, point - p.get('z16', -1.) * sigma", tests=[nb('06b_calibrate')],
         what="the 16th/84th percentiles mirrored: a skewed error gives an interval skewed the wrong way"),
    dict(id='train_never_calibrates', nb='09_pipeline', find="if not cal['params']: return",
         repl="if True: return", tests=[nb('09_pipeline'), py('tests/test_cli.py::test_train_calibrates_on_the_validation_split')],
         what="`train` never stores the calibration it fitted: a user's model reports the raw Monte-Carlo spread"),
    dict(id='members_kept_whatever_the_settings', nb='09_pipeline',
         find="same = resume and sfile.exists() and json.loads(sfile.read_text()) == settings",
         repl="same = resume and sfile.exists()", tests=[nb('09_pipeline')],
         what="a rerun with other settings (another learning rate, dataset, config) reuses the networks of the earlier run"),
    dict(id='ensemble_of_one_seed', nb='09_pipeline', find="seeds = out.parent / f'{out.stem}_members', [int(seed) + i for i in range(n)]",
         repl="seeds = out.parent / f'{out.stem}_members', [int(seed)] * n",
         tests=[nb('09_pipeline'), py('tests/test_cli.py::test_train_calibrates_on_the_validation_split')],
         what="every network of the default ensemble trained from the same seed: five copies of one network, no variance reduction"),
    dict(id='cli_number_strict_ignored', nb='90_cli', find="if lo is not None and (x <= lo if strict else x < lo)",
         repl="if lo is not None and x < lo", tests=[nb('90_cli')],
         what='a number that must be > its bound (e.g. a learning rate of 0) accepted at the bound'),
]

# the six bugs of issue 17's table, which the suite must catch
ISSUE_TABLE = ('io_dr1_wave_offset', 'pre_continuum_residual_sign', 'loss_mask_skipped', 'select_mask_ignored',
               'moe_topk_smallest', 'predict_resume_never_recognised')

def _files(root: Path) -> list[str]:
    "The repository's tracked files and untracked files git does not ignore."
    out = subprocess.run(['git', 'ls-files', '-z', '-co', '--exclude-standard'], cwd=root, capture_output=True, check=True).stdout
    return [f for f in out.decode().split('\0') if f and (root / f).is_file()]

def make_copy(dest: Path, src: Path = ROOT):
    "Copy the repository's files to `dest`."
    for f in _files(src):
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / f, dest / f)

def _module_of(nb_json) -> str:
    for c in nb_json['cells']:
        for line in ''.join(c['source']).splitlines():
            if line.strip().startswith('#| default_exp'): return line.split()[-1]
    raise ValueError('notebook has no default_exp')

def apply_mutant(root: Path, m: dict) -> Path:
    "Put the mutant into `root`'s notebook and export; the module file it changed. Errors (loudly) when it no longer applies."
    path = root / 'nbs' / f"{m['nb']}.ipynb"
    j = json.loads(path.read_text())
    hits = [(i, ''.join(c['source']).count(m['find'])) for i, c in enumerate(j['cells'])]
    n = sum(k for _, k in hits)
    if n != 1: raise RuntimeError(f"mutant {m['id']}: snippet found {n} times in {path.name} (want exactly 1): the code moved; update the mutant")
    i = next(i for i, k in hits if k)
    src = ''.join(j['cells'][i]['source'])
    if '#| export' not in src and '#|export' not in src: raise RuntimeError(f"mutant {m['id']}: snippet is not in an export cell of {path.name}")
    j['cells'][i]['source'] = src.replace(m['find'], m['repl'])
    path.write_text(json.dumps(j, indent=1, ensure_ascii=False))
    mod = root / 'cemp_hfs' / f"{_module_of(j).replace('.', '/')}.py"
    before = mod.read_text()
    r = subprocess.run([str(BIN / 'nbdev-export')], cwd=root, capture_output=True, text=True, timeout=300)
    if r.returncode: raise RuntimeError(f"mutant {m['id']}: nbdev-export failed: {r.stderr[-500:]}")
    after = mod.read_text()
    if after == before or m['repl'] not in after: raise RuntimeError(f"mutant {m['id']}: the export of {mod.name} does not carry the change")
    return mod

def _env(root: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), MPLBACKEND='Agg', OMP_WAIT_POLICY='PASSIVE', PYTHONDONTWRITEBYTECODE='1')
    data = (ROOT / '..' / 'shared' / 'data').resolve()
    if 'CEMP_HFS_DATA' not in env and data.is_dir(): env['CEMP_HFS_DATA'] = str(data)
    return env

def check_import(root: Path, mod: Path):
    "The scratch copy's module is the one Python imports there (not the editable install)."
    name = 'cemp_hfs.' + mod.relative_to(root / 'cemp_hfs').with_suffix('').as_posix().replace('/', '.')
    r = subprocess.run([sys.executable, '-c', f"import importlib; print(importlib.util.find_spec('{name}').origin)"],
                       cwd=root, env=_env(root), capture_output=True, text=True, timeout=120)
    if Path(r.stdout.strip()).resolve() != mod.resolve(): raise RuntimeError(f"{name} imports from {r.stdout.strip()!r}, not {mod}: {r.stderr[-300:]}")

def _command(test) -> list[str]:
    kind, what = test
    if kind == 'nb': return [str(BIN / 'nbdev-test'), f'nbs/{what}.ipynb', '--n-workers', '1']
    return [sys.executable, '-m', 'pytest', '-x', '-q', '-p', 'no:cacheprovider', what]

RUNNING = set()  # test processes (each its own process group), killed if this script is stopped

def _kill_running(*_):
    for p in list(RUNNING):
        try: os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError: pass
    if _: sys.exit(f"stopped by signal {_[0]}")

def run_test(root: Path, test, timeout: float) -> dict:
    "Run one test command in `root`: passed / failed / timeout, with the time and the tail of its output."
    t0 = time.time()
    p = subprocess.Popen(_command(test), cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    RUNNING.add(p)
    try:
        out, _ = p.communicate(timeout=timeout)
        # pytest: 1 = tests failed; 2-5 = interrupted, internal or usage error, no tests collected: not a catch
        status = ('passed' if p.returncode == 0 else 'failed' if p.returncode == 1 or test[0] == 'nb'
                  else f'broken (exit {p.returncode})')
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); out, _ = p.communicate(); status = 'timeout'
    finally: RUNNING.discard(p)
    return dict(test=':'.join(test), status=status, seconds=round(time.time() - t0, 1), tail=(out or '')[-1500:])

def run_mutant(m: dict, base: Path, timeout: float, all_tests=False) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"mutant_{m['id']}_", dir=base.parent))
    res = dict(id=m['id'], notebook=m['nb'], what=m['what'], find=m['find'], repl=m['repl'], runs=[])
    try:
        shutil.copytree(base, work, dirs_exist_ok=True, symlinks=True)
        mod = apply_mutant(work, m)
        check_import(work, mod)
        for t in m['tests']:
            r = run_test(work, t, timeout)
            res['runs'].append(r)
            if r['status'] != 'passed' and not all_tests: break
        st = [r['status'] for r in res['runs']]
        if any(s.startswith('broken') for s in st): raise RuntimeError(f"a test command did not run: {res['runs'][-1]['tail'][-300:]}")
        res['status'] = ('caught' if 'failed' in st else 'caught (timeout)' if 'timeout' in st and m.get('timeout_ok')
                         else 'timeout (not counted)' if 'timeout' in st else 'survived')
        if res['status'] == 'survived' and m.get('equivalent'): res['status'], res['equivalent'] = 'equivalent', m['equivalent']
        res['caught_by'] = next((r['test'] for r in res['runs'] if r['status'] == 'failed'), None)
    except Exception as e:
        res['status'], res['error'] = 'error', f"{type(e).__name__}: {e}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"  {res['id']}: {res['status']}" + (f" by {res.get('caught_by')}" if res.get('caught_by') else '')
          + (f" ({res['error']})" if 'error' in res else ''), file=sys.stderr, flush=True)
    return res

def baseline(base: Path, mutants, timeout: float, jobs=1) -> list[dict]:
    "Every distinct test command on the unmutated copy: each must pass."
    tests = list(dict.fromkeys(t for m in mutants for t in m['tests']))
    def one(t):
        r = run_test(base, t, timeout)
        print(f"  baseline {r['test']}: {r['status']} ({r['seconds']} s)", file=sys.stderr, flush=True)
        return r
    with ThreadPoolExecutor(max(1, jobs)) as ex: return list(ex.map(one, tests))

def hardware() -> dict:
    import torch
    return dict(cpu=cpu_model(), logical_cpus=os.cpu_count(), python=platform.python_version(), torch=torch.__version__,
                load_average_start=list(os.getloadavg()), platform=platform.platform())

def write_report(res: dict, path_json: Path, path_md: Path):
    path_json.write_text(json.dumps(res, indent=1))
    ms = res['mutants']
    counted = [m for m in ms if m['status'] not in ('error', 'equivalent')]
    caught = [m for m in counted if m['status'].startswith('caught')]
    table = {m['id']: m['status'] for m in ms if m['id'] in ISSUE_TABLE}
    survivors = [m for m in ms if m['status'] in ('survived', 'equivalent') or m['status'].startswith('timeout')]
    lines = [f"# Mutation check ({res['date']}, commit {res['commit']})", "",
             f"{len(caught)} of {len(counted)} mutants caught ({100 * len(caught) / max(len(counted), 1):.0f}%)"
             + (f"; {len(ms) - len(counted)} did not apply (errors below)" if len(ms) > len(counted) else '')
             + f". Wall time {res['wall_s'] / 60:.1f} min on {res['hardware']['cpu']} ({res['hardware']['logical_cpus']} logical CPUs, "
             f"load average {res['hardware']['load_average_start'][0]:.1f} at the start), {res['jobs']} mutant(s) at a time, "
             f"time limit {res['timeout_s']:.0f} s per test command.", "",
             "Each mutant is one small edit of a notebook's export cell, exported in a scratch copy and run against the tests listed "
             "(in that order, stopping at the first failure). Made by `make mutants` (benchmarks/mutants.py).", "",
             "The six bugs of issue 17's table: " + ', '.join(f"`{k}` {v}" for k, v in table.items()) + '.', "",
             "Survivors: " + ('none.' if not survivors else '; '.join(
                 f"`{m['id']}` ({m['status']}{': ' + m['equivalent'] if m.get('equivalent') else ''})" for m in survivors)), "",
             "| mutant | notebook | the bug | result | caught by | tests run (s) |", "|---|---|---|---|---|---|"]
    for m in ms:
        runs = ', '.join(f"{r['test']} {r['status']} ({r['seconds']:.0f})" for r in m.get('runs', []))
        lines.append(f"| `{m['id']}` | {m['notebook']} | {m['what']} | **{m['status']}** | {m.get('caught_by') or ''} | {runs or m.get('error', '')} |")
    if res.get('baseline'):
        lines += ["", "Baseline (unmutated copy): " + ', '.join(f"{r['test']} {r['status']} ({r['seconds']:.0f} s)" for r in res['baseline'])]
    path_md.write_text('\n'.join(lines) + '\n')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', default=None, help='comma-separated mutant ids')
    ap.add_argument('--jobs', type=int, default=2, help='mutants at a time (the machine is shared: 1-2)')
    ap.add_argument('--timeout', type=float, default=900, help='seconds per test command')
    ap.add_argument('--no-baseline', action='store_true', help='skip the run of every test on the unmutated copy')
    ap.add_argument('--all-tests', action='store_true', help="run every listed test, not only up to the first that fails")
    ap.add_argument('--list', action='store_true', help='list the mutants and check that each still applies, then stop')
    ap.add_argument('--out', default=str(RESULTS / 'mutants'), help='results file stem (.json and .md)')
    a = ap.parse_args()
    ms = [m for m in MUTANTS if a.only is None or m['id'] in a.only.split(',')]
    if a.only and len(ms) != len(a.only.split(',')): sys.exit(f"unknown mutant id in {a.only}")
    signal.signal(signal.SIGTERM, _kill_running)
    tmp = Path(tempfile.mkdtemp(prefix='cemp_mutants_'))
    base = tmp / 'base'; base.mkdir()
    try:
        make_copy(base)
        if a.list:
            bad = 0
            for m in ms:
                w = tmp / m['id']; shutil.copytree(base, w)
                try: apply_mutant(w, m); print(f"{m['id']:34s} {m['nb']:14s} applies   {m['what']}")
                except Exception as e: bad += 1; print(f"{m['id']:34s} {m['nb']:14s} ERROR     {e}")
                shutil.rmtree(w, ignore_errors=True)
            sys.exit(1 if bad else 0)
        t0 = time.time()
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(['git', 'status', '--porcelain'], cwd=ROOT, capture_output=True, text=True).stdout.strip())
        res = dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), commit=commit + ('+changes' if dirty else ''),
                   hardware=hardware(), jobs=a.jobs, timeout_s=a.timeout)
        print(f"mutants: {len(ms)}; scratch copies under {tmp}", file=sys.stderr)
        res['baseline'] = [] if a.no_baseline else baseline(base, ms, a.timeout, a.jobs)
        if any(r['status'] != 'passed' for r in res['baseline']):
            sys.exit("baseline: some tests fail on the unmutated code: " + ', '.join(r['test'] for r in res['baseline'] if r['status'] != 'passed'))
        with ThreadPoolExecutor(max(1, a.jobs)) as ex:
            res['mutants'] = list(ex.map(lambda m: run_mutant(m, base, a.timeout, a.all_tests), ms))
        res['wall_s'] = time.time() - t0
        out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
        write_report(res, out.with_suffix('.json'), out.with_suffix('.md'))
        counted = [m for m in res['mutants'] if m['status'] not in ('error', 'equivalent')]
        caught = sum(m['status'].startswith('caught') for m in counted)
        print(f"mutants: {caught} of {len(counted)} caught; {out.with_suffix('.md')}", file=sys.stderr)
        errors = [m['id'] for m in res['mutants'] if m['status'] == 'error']
        if errors: sys.exit(f"mutants that no longer apply (update them): {errors}")
    finally:
        _kill_running()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__': main()
