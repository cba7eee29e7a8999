"""Survey-scale benchmark (issue 13, item 5): spectra/s of each stage of `predict` on real LAMOST DR10 files, `predict`
end to end in one process and on a Dask `LocalCluster` of 1 and 2 workers, the overhead per task and the chunk size
chosen from it, the memory per worker, and a projection to LAMOST DR10 (11.4 million spectra) on nodes of 32 cores.

    make bench-scale         # or: nice -n 10 .venv/bin/python benchmarks/scale.py [--n 300] [--only one-process]

Writes benchmarks/results/scale.md and scale.json. Everything runs with one torch thread per process (a worker is one
core), with the shipped model and the default 16 Monte-Carlo draws. On a machine shared with other jobs every number
is slowed down and the 2-worker speed-up is not the code's: the load average is recorded before and after each
measurement, and a ratio measured under load is marked as contaminated. No GPU is measured here: a GPU number needs a
machine with one (benchmarks/inference.py measures the network alone there).
"""
from __future__ import annotations
import argparse, datetime, json, os, platform, shutil, sys, tempfile, time
from pathlib import Path

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE'); os.environ.setdefault('OMP_NUM_THREADS', '1')
import numpy as np
import torch

from hardware import cpu_model
import cemp_hfs.io as cio
from cemp_hfs.io import read_lamost, _file_bytes
from cemp_hfs.preprocess import preprocess
from cemp_hfs.dataset import network_inputs
from cemp_hfs.select import load_criteria
from cemp_hfs.predict import (predict, load_hfs_model, head_features, dropout_draws, summarize_samples, spectrum_seed,
                              _label_chunk, _write_part, FileSource)
from cemp_hfs.scale import dask_client, assemble_parts

DR10 = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'lamost' / 'dr10_labeled'
OUT = Path(__file__).resolve().parent / 'results'
DR10_SPECTRA = 11.4e6
MC = 16

def load() -> list: return [round(x, 2) for x in os.getloadavg()]

def timed(f, *a, **k):
    "Result and wall seconds of f(*a, **k)."
    t = time.perf_counter(); r = f(*a, **k); return r, time.perf_counter() - t

def stages(files, m, bs=64) -> dict:
    "Spectra/s of each stage, one process, one thread."
    crit = load_criteria('paper')
    spectra, t_read = timed(lambda: [read_lamost(f) for f in files])
    _, t_gunzip = timed(lambda: [_file_bytes(f) for f in files])  # the floor: the bytes, read and decompressed
    cio.LEAN_READ = False
    _, t_astropy = timed(lambda: [read_lamost(f) for f in files])  # the reader before the lean path
    cio.LEAN_READ = True
    pres, t_pre = timed(lambda: [preprocess(spectra[i:i + bs], m.preprocess, errors='collect') for i in range(0, len(spectra), bs)])
    inputs = [network_inputs(p.continuum, p.normalized) for p in pres]
    n_ok = sum(len(p.index) for p in pres)
    with torch.no_grad():
        feats, t_net = timed(lambda: [head_features(m.net, c, n) for c, n in inputs])
        seeds = [[spectrum_seed(f'{j}:{i}') for i in range(len(c))] for j, (c, _) in enumerate(inputs)]
        draws, t_mc = timed(lambda: [dropout_draws(m.net, f[1], s, MC)[0] for f, s in zip(feats, seeds)])
    L = len(m.labels)
    _, t_sum = timed(lambda: [summarize_samples(m.scaler.inverse(f[0][:, :L].numpy()), m.scaler.inverse(d[..., :L].numpy()), m.labels, crit)
                              for f, d in zip(feats, draws)])
    src = FileSource([str(f) for f in files])
    cs = min(1024, max(bs, len(files) // 2))  # chunk files of this many spectra, as a survey run writes them
    chunks = [_label_chunk(m, src, a, min(a + cs, len(files)), bs, MC, crit, 0, torch.device('cpu')) for a in range(0, len(files), cs)]
    tmp = Path(tempfile.mkdtemp())
    _, t_write = timed(lambda: [_write_part(t, r, tmp / f'part-{k:05d}.fits', 'bench') for k, (t, r) in enumerate(chunks)])
    _, t_asm = timed(assemble_parts, sorted(tmp.glob('part-*.fits')), src, m, crit, MC, 0, tmp)
    shutil.rmtree(tmp)
    rate = lambda n, t: round(n / t, 1)
    return dict(n_files=len(files), n_labelled=n_ok, read=rate(len(files), t_read), preprocess=rate(len(files), t_pre),
                network_deterministic=rate(n_ok, t_net), mc_draws=rate(n_ok, t_mc), summarize=rate(n_ok, t_sum),
                write_chunks=rate(n_ok, t_write), assemble_catalogue=rate(n_ok, t_asm),
                read_ms_per_file=round(1e3 * t_read / len(files), 2), gunzip_ms_per_file=round(1e3 * t_gunzip / len(files), 2),
                astropy_read_ms_per_file=round(1e3 * t_astropy / len(files), 2), file_chunk=cs)

def one_process(files, chunk, io_workers=None) -> dict:
    "predict in one process; `io_workers`: its reader processes (None: predict's default, 0: read as it goes)."
    from cemp_hfs.predict import _io_workers, FileSource
    import resource
    cpu = lambda: sum(getattr(resource.getrusage(w), a) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for a in ('ru_utime', 'ru_stime'))
    out = Path(tempfile.mkdtemp()) / 'pred'
    before, c0 = load(), cpu()
    _, t = timed(predict, None, [str(f) for f in files], out=out, chunk_size=chunk, bs=64, mc_samples=MC, progress=False, io_workers=io_workers)
    c = cpu() - c0  # the readers are counted once they have ended (predict waits for them)
    shutil.rmtree(out.parent)
    # cores this run obtained (CPU seconds of the process and its readers per wall second): on a machine shared with other
    # jobs (Linux shares the CPU between sessions, not processes) a run that gets under one core cannot gain from overlap
    return dict(io_workers=_io_workers(io_workers, FileSource([str(f) for f in files]), len(files)), seconds=round(t, 2),
                spectra_per_s=round(len(files) / t, 2), cores_obtained=round(c / t, 2), cpu_ms_per_spectrum=round(1e3 * c / len(files), 2),
                load_before=before, load_after=load())

def _noop(x): return x

def _rss():
    import psutil
    return psutil.Process().memory_info().rss

def on_cluster(files, n_workers, chunk) -> dict:
    "predict on a LocalCluster of `n_workers` (after a warm-up that loads the model in every worker)."
    tmp = Path(tempfile.mkdtemp())
    with dask_client('local', n_workers) as c:
        fl = [str(f) for f in files]
        predict(None, fl[:4 * n_workers], out=tmp / 'warm', chunk_size=1, bs=64, mc_samples=MC, progress=False, client=c)
        c.run(_rss)
        before = load()
        _, t = timed(predict, None, fl, out=tmp / 'pred', chunk_size=chunk, bs=64, mc_samples=MC, progress=False, client=c)
        after = load()
        # the catalogue is assembled on the client after the workers are done: timed again alone, to give the workers' rate
        m, src = load_hfs_model(None), FileSource(fl)
        _, t_asm = timed(assemble_parts, sorted((tmp / 'pred' / 'chunks').glob('part-*.fits')), src, m, load_criteria('paper'), MC, 0, tmp / 'asm')
        rss = c.run(_rss)
        # overhead of one task through the scheduler: many trivial tasks
        _, t_noop = timed(lambda: c.gather(c.map(_noop, range(400), pure=False)))
    shutil.rmtree(tmp)
    return dict(n_workers=n_workers, chunk_size=chunk, seconds=round(t, 2), spectra_per_s=round(len(files) / t, 2),
                assemble_seconds=round(t_asm, 2), labelling_spectra_per_s=round(len(files) / max(t - t_asm, 1e-9), 2),
                load_before=before, load_after=after, worker_rss_mb=sorted(round(v / 2 ** 20) for v in rss.values()),
                task_overhead_ms=round(1e3 * t_noop / 400 * n_workers, 2))

def choose_chunk(per_spectrum_s, fixed_s, n_total=DR10_SPECTRA, max_files=20000) -> dict:
    "The smallest power-of-two chunk that keeps the per-chunk cost under 2% of a chunk's work and a release under `max_files` chunk files."
    need = max(50 * fixed_s / per_spectrum_s, n_total / max_files)
    size = int(2 ** np.ceil(np.log2(max(need, 64))))
    return dict(min_for_overhead=round(50 * fixed_s / per_spectrum_s, 1), min_for_file_count=round(n_total / max_files), chosen=size)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=1200, help='DR10 files to use')
    ap.add_argument('--only', choices=['one-process'], help='rerun the stages and predict in one process only, keeping the '
                    'cluster results of the last full run in scale.json (their date kept beside them)')
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = sorted(DR10.glob('spec-*.fits.gz'))[:args.n]
    m = load_hfs_model(None)
    res = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), cpu=cpu_model(),
               cores=os.cpu_count(), python=platform.python_version(), torch=torch.__version__, model=m.name, mc_samples=MC,
               gpu='none lent to this run: no GPU number is given (measured, not projected, where a GPU is lent)')
    res['load_start'] = load()
    stages(files[:32], m)  # warm-up: imports, caches
    res['stages'] = stages(files, m)
    chunk = 64
    # read as it goes, then with reader processes (predict's default), then read as it goes again: the load may change
    seq = [one_process(files, chunk, 0)]
    res['one_process'] = one_process(files, chunk)
    seq.append(one_process(files, chunk, 0))
    res['one_process_sequential'] = max(seq, key=lambda r: r['spectra_per_s'])
    res['one_process_sequential']['runs'] = [r['spectra_per_s'] for r in seq]
    if args.only:
        old = json.loads((OUT / 'scale.json').read_text())
        res['cluster'], res['cluster_date'] = old['cluster'], old.get('cluster_date', old['date'])
        res['speedup_2_vs_1'], res['contaminated'] = old['speedup_2_vs_1'], old['contaminated']
    else:
        res['cluster'], res['cluster_date'] = [on_cluster(files, w, chunk) for w in (1, 2)], res['date']
    r1, r2 = (c['labelling_spectra_per_s'] for c in res['cluster'])
    if not args.only:
        busy = max(max(c['load_before'][0], c['load_after'][0]) for c in res['cluster'])
        res['speedup_2_vs_1'] = round(r2 / r1, 2)
        res['contaminated'] = bool(busy > 2.5)  # more than the two workers (and a little) were running
    op, st = res['one_process'], res['stages']
    # The cores an unshared machine gives the overlapped run: the readers (read + preprocess) and the network side (the
    # network, the MC draws, the summaries, the chunk files) each busy for the share of the time the slower side allows.
    t_rp = 1 / st['read'] + 1 / st['preprocess']
    t_net = 1 / st['network_deterministic'] + 1 / st['mc_draws'] + 1 / st['summarize'] + 1 / st['write_chunks']
    rate = min(op['io_workers'] / t_rp, 1 / t_net) if op['io_workers'] else 1 / (t_rp + t_net)
    op['cores_expected'] = round(min(1 + op['io_workers'], rate * (t_rp + t_net)), 2)
    # a load above the cores this run wants, or fewer cores than the pipeline's balance gives: other jobs shared them
    res['one_process_contaminated'] = bool(max(op['load_before'][0], op['load_after'][0]) > 1.5 + op['io_workers']
                                           or op['cores_obtained'] < 0.85 * op['cores_expected'])
    per_spec = 1 / res['cluster'][0]['labelling_spectra_per_s']
    # per chunk: the scheduler's round trip, plus (an upper bound of the fixed part) writing a chunk file of 64 spectra and
    # reading it twice when the catalogue is assembled
    fixed = res['cluster'][0]['task_overhead_ms'] / 1e3 + chunk * (1 / st['write_chunks'] + 1 / st['assemble_catalogue'])
    res['chunk'] = choose_chunk(per_spec, fixed)
    rp = 1 / (1 / st['read'] + 1 / st['preprocess'])  # reading and preprocessing one after the other, one process
    res['read_plus_preprocess'] = round(rp, 1)
    res['predict_vs_read_preprocess'] = round(res['one_process']['spectra_per_s'] / rp, 2)
    res['sequential_vs_read_preprocess'] = round(res['one_process_sequential']['spectra_per_s'] / rp, 2)
    eff = min(1.0, res['speedup_2_vs_1'] / 2)
    res['projection'] = {f'{n} nodes': dict(hours=round(DR10_SPECTRA / (r1 * 32 * n * eff) / 3600, 2),
                                            hours_ideal=round(DR10_SPECTRA / (r1 * 32 * n) / 3600, 2)) for n in (1, 4, 16, 64)}
    res['load_end'] = load()
    OUT.mkdir(exist_ok=True)
    (OUT / 'scale.json').write_text(json.dumps(res, indent=1))
    (OUT / 'scale.md').write_text(report(res))
    print(report(res))

def report(r) -> str:
    st, c1, c2 = r['stages'], *r['cluster']
    op, sq = r['one_process'], r['one_process_sequential']
    lines = [f"# Survey-scale benchmark ({r['date']})", '',
             f"{r['cpu']}, {r['cores']} cores; Python {r['python']}, torch {r['torch']} (one thread per process); model {r['model']}; "
             f"{r['mc_samples']} Monte-Carlo draws; {st['n_files']} real LAMOST DR10 files ({st['n_labelled']} labelled). "
             f"Load average at the start {r['load_start']}, at the end {r['load_end']}. GPU: {r['gpu']}.", '',
             '## Stages, one process, one thread (spectra/s)', '',
             '| read | preprocess | network, deterministic pass | MC draws (head only) | summaries | write chunk files | assemble catalogue |',
             '|---|---|---|---|---|---|---|',
             f"| {st['read']} | {st['preprocess']} | {st['network_deterministic']} | {st['mc_draws']} | {st['summarize']} | {st['write_chunks']} | {st['assemble_catalogue']} |",
             '', f"Writing and assembling are measured on chunk files of {st['file_chunk']} spectra; the catalogue is assembled by the client "
             f"alone, after the workers: at this rate DR10 takes {DR10_SPECTRA / st['assemble_catalogue'] / 3600:.1f} h to assemble, on top of the labelling.",
             '', f"read_lamost: {st['read_ms_per_file']} ms per DR10 .fits.gz with the lean path (target <= 2 ms), "
             f"{st['astropy_read_ms_per_file']} ms through astropy (the reader before), against a floor of {st['gunzip_ms_per_file']} ms "
             "to read and decompress the bytes.", '',
             '## predict end to end', '',
             f"Chunks of {c1['chunk_size']} spectra on the cluster (enough tasks to share among the workers in a short run). "
             "The workers' rate leaves out the catalogue's assembly, which the client does alone at the end (timed again on its own).", '',
             '| run | spectra/s end to end | seconds | workers\' rate (spectra/s) | assembly (s) | load average before -> after | memory per worker (MB) |',
             '|---|---|---|---|---|---|---|',
             f"| one process, reading as it goes (io_workers=0; best of {len(sq['runs'])}: {sq['runs']}) | {sq['spectra_per_s']} | {sq['seconds']} | - | - | {sq['load_before'][0]} -> {sq['load_after'][0]} | - |",
             f"| one process, {op['io_workers']} reader process(es) ahead (the default) | {op['spectra_per_s']} | {op['seconds']} | - | - | {op['load_before'][0]} -> {op['load_after'][0]} | - |",
             *[f"| LocalCluster, {c['n_workers']} worker(s) | {c['spectra_per_s']} | {c['seconds']} | {c['labelling_spectra_per_s']} | {c['assemble_seconds']} | {c['load_before'][0]} -> {c['load_after'][0]} | {c['worker_rss_mb']} |" for c in (c1, c2)],
             '', f"predict in one process, with its default reader process(es), runs at **{r['predict_vs_read_preprocess']}x** the rate of "
             f"reading + preprocessing alone, one after the other in one thread ({r['read_plus_preprocess']} spectra/s; target >= 0.7x, "
             f"issue 13 item 1); reading as it goes, {r['sequential_vs_read_preprocess']}x. The readers read and preprocess the next "
             "batches while the network labels the current one; a cluster's workers read as they go (each worker is one core)." +
             f" CPU obtained: {sq['cores_obtained']} cores reading as it goes ({sq['cpu_ms_per_spectrum']} ms CPU per spectrum), "
             f"{op['cores_obtained']} cores with the reader(s) ({op['cpu_ms_per_spectrum']} ms CPU per spectrum), where the stages "
             f"above give {op.get('cores_expected', '-')} on an unshared machine (the slower side busy all the time, the other "
             f"for its share); the overlap can only pay where the run gets more than one core." +
             (" -- **contaminated**: the load average was above the cores this run wants (the process and its readers), or the run "
              "got fewer cores than the stages' balance gives, so other jobs shared the cores and the overlapped rate measures "
              "them, not the code." if r.get('one_process_contaminated') else ''),
             '', f"The LocalCluster rows and the ratio below are from the full run of {r.get('cluster_date', r['date'])}."
             if r.get('cluster_date', r['date']) != r['date'] else '',
             '', f"2 workers / 1 worker (the workers' rates): **{r['speedup_2_vs_1']}x** (target >= 1.6x)" +
             (" -- **contaminated**: the machine was shared with other jobs (load average above the two workers' 2), so this ratio "
              "measures the other jobs as much as the code." if r['contaminated'] else '.'), '',
             '## Overhead per task and the chunk size', '',
             f"One task through the scheduler costs {c1['task_overhead_ms']} ms. The chunk size that keeps the per-chunk costs under 2% "
             f"of a chunk's work is at least {r['chunk']['min_for_overhead']} spectra; keeping DR10 under 20,000 chunk files needs "
             f"{r['chunk']['min_for_file_count']}: chosen **{r['chunk']['chosen']}** (predict's default chunk_size is 1024).", '',
             '## DR10 (11.4 million spectra) on nodes of 32 cores', '',
             "From the 1-worker labelling rate, times 32 workers per node, times the measured 2-worker efficiency (and without it: ideal). "
             'Reading from a shared file system and the scheduler at thousands of workers are not measured here; '
             "nor is the assembly, which comes on top (above).", '',
             '| nodes | hours | hours (ideal scaling) |', '|---|---|---|',
             *[f"| {k.split()[0]} | {v['hours']} | {v['hours_ideal']} |" for k, v in r['projection'].items()], '']
    return '\n'.join(lines)

if __name__ == '__main__': main()
