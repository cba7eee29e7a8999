"Pseudo-LAMOST spectra of a real metal-poor giant (HD 122563): a real-format file the pipeline reads and preprocesses."
import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

from cemp_hfs.io import read_lamost, write_lamost
from cemp_hfs.mock import lamost_wave
from cemp_hfs.preprocess import preprocess
from cemp_hfs.pseudo import degrade_to_lamost, pseudo_lamost, band_depth, jinabase_labels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
from pseudo_lamost import hires, donor_for  # the benchmark's own readers

def test_hd122563_as_lamost_sees_it(data_dir, tmp_path):
    lab = jinabase_labels(data_dir / 'catalogs/jinabase2018_all_info.txt', ['HD122563'], data_dir / 'catalogs/jinabase2018_limits_key.txt')
    assert -3.2 < lab['feh'][0] < -2.4 and lab['n_feh'][0] >= 5  # a famous very metal-poor giant, many studies
    w, f = hires(data_dir / 'hires_benchmarks/hd122563.fits')
    lasp = Table.read(data_dir / 'lamost/dr10_labeled/lasp_labels.csv', format='ascii.csv')
    donor, row = donor_for(lab['teff'][0], lab['logg'][0], lasp, data_dir / 'lamost/dr10_labeled')
    s = pseudo_lamost(w, f, donor, snrg=50., seed=1, meta={'designation': 'HD 122563'})
    back = read_lamost(write_lamost(s, tmp_path / 'spec-pseudo-hd122563.fits', layout='table'))
    assert abs(back.meta['snrg'] - 50) < 2.5 and back.meta['designation'] == 'HD 122563'
    p = preprocess(back)
    # the pipeline's normalised spectrum shows the real star's bands: depths within the noise of the degraded spectrum
    real = degrade_to_lamost(w, f, lamost_wave())
    for band in ('gband', 'hbeta'):
        want = band_depth(lamost_wave(), real, band)
        assert abs(band_depth(p.wave, p.normalized, band) - want) < 0.02, band
