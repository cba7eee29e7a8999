"Real LAMOST files of every layout in ../shared/data: they read, the MRS file is refused, the DR7/DR9 pair agrees."
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from cemp_hfs.io import (read_lamost, read_many, lamost_files, LamostFormatError, META_KEYS, read_catalog, crossmatch,
                         quality_cuts, write_lamost)

LRS_DIRS = ['dr1_labeled', 'formats/dr1_v264_image', 'formats/dr2_v275_image_f8', 'formats/dr6_v297_image_gz',
            'formats/dr7_v297_image', 'formats/pair_101001', 'formats/dr9_table', 'dr8_repeats', 'dr7_sbc', 'dr10_table']

def _lrs_files(data_dir):
    files = [f for d in LRS_DIRS for f in lamost_files(data_dir / 'lamost' / d)]
    assert len(files) >= 400, len(files)
    return files

def test_every_lrs_file_reads(data_dir):
    releases = set()
    for f in _lrs_files(data_dir):
        s = read_lamost(f)
        n = len(s)
        assert 3700 <= n <= 3950, (f, n)
        for k in ('wave', 'flux', 'ivar', 'andmask', 'ormask'): assert len(getattr(s, k)) == n
        assert s.wave.dtype == np.float32 and s.flux.dtype == np.float32
        assert np.all(np.diff(s.wave) > 0) and 3600 < s.wave[0] < 3800 and 8800 < s.wave[-1] < 9200, f
        assert set(s.meta) == set(META_KEYS)
        assert np.isfinite(s.meta['ra']) and np.isfinite(s.meta['dec'])
        assert np.isfinite(s.meta['z']) or s.meta['class'] == 'Unknown', f  # LAMOST fills z = -9999 when it found none
        assert s.meta['designation'].startswith('J') and s.meta['filename'] == f.name
        assert (s.ivar >= 0).all() and s.good.sum() > 500, f
        releases.add(s.meta['release'])
    assert {'DR1', 'DR2', 'DR6', 'DR7', 'DR8', 'DR9', 'DR10'} <= releases

def test_mrs_refused(data_dir, tmp_path):
    (f,) = lamost_files(data_dir / 'lamost/formats/mrs_not_lrs')
    with pytest.raises(LamostFormatError, match='medium-resolution'): read_lamost(f)
    # told by its content (COADD_B/COADD_R extensions), not only by its med- name
    (tmp_path / 'spec-renamed.fits').write_bytes(f.read_bytes())
    with pytest.raises(LamostFormatError, match='medium-resolution'): read_lamost(tmp_path / 'spec-renamed.fits')
    spectra, rejects = read_many(data_dir / 'lamost/formats', progress=False)
    # every other file of the folder reads: the count comes from the directory listing
    assert [r[0] for r in rejects] == [str(f)] and len(spectra) == len(lamost_files(data_dir / 'lamost/formats')) - 1
    assert sorted(s.meta['filename'] for s in spectra) == sorted(g.name for g in lamost_files(data_dir / 'lamost/formats') if g != f)

def test_dr7_dr9_pair_identical(data_dir):
    d = data_dir / 'lamost/formats/pair_101001'
    a = read_lamost(next(d.glob('dr7_image_*'))); b = read_lamost(next(d.glob('dr9_table_*')))
    for k in ('wave', 'flux', 'ivar', 'andmask', 'ormask'): np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert (a.meta['release'], b.meta['release']) == ('DR7', 'DR9')
    for k in META_KEYS:
        if k in ('release', 'filename'): continue
        x, y = a.meta[k], b.meta[k]
        assert x == y or (isinstance(x, float) and np.isnan(x) and np.isnan(y)), (k, x, y)
    assert a.meta['obsid'] == 101001

def test_dr1_wavelength_and_lamost_normalisation(data_dir):
    for f in lamost_files(data_dir / 'lamost/dr1_labeled')[:20]:
        s = read_lamost(f)
        assert s.meta['release'] == 'DR1'
        np.testing.assert_allclose(s.wave[0], 10 ** 3.5682, rtol=1e-6)
        np.testing.assert_allclose(np.log10(s.wave.astype(float))[1:] - np.log10(s.wave.astype(float))[:-1], 1e-4, atol=1e-7)
        assert s.norm_lamost is not None and 0.8 < np.median(s.norm_lamost[s.good]) < 1.2

def test_snr_cards_and_fiberid_types(data_dir):
    s2 = read_lamost(lamost_files(data_dir / 'lamost/formats/dr2_v275_image_f8')[0])  # string FIBERID, SN_* cards
    assert s2.meta['release'] == 'DR2' and isinstance(s2.meta['fiberid'], int) and s2.meta['obsid'] is None
    h2 = fits.getheader(lamost_files(data_dir / 'lamost/formats/dr2_v275_image_f8')[0])  # the values as the file states them
    assert s2.meta['snrg'] == h2['SN_G'] and s2.meta['fiberid'] == int(h2['FIBERID']) and 'OBSID' not in h2
    assert np.isfinite(s2.meta['snrg']) and s2.wave.dtype == np.float32
    f6 = lamost_files(data_dir / 'lamost/formats/dr6_v297_image_gz')[0]  # gzipped, OBSID and SNRG cards
    s6, h6 = read_lamost(f6), fits.getheader(f6)
    assert isinstance(h6['OBSID'], int) and s6.meta['obsid'] == h6['OBSID'] and s6.meta['snrg'] == h6['SNRG'] and s6.meta['snri'] == h6['SNRI']

def test_real_spectrum_roundtrip(data_dir, tmp_path):
    for f in [lamost_files(data_dir / 'lamost/dr1_labeled')[0], lamost_files(data_dir / 'lamost/dr10_table')[0]]:
        s = read_lamost(f)
        for layout in ('image', 'table'):
            b = read_lamost(write_lamost(s, tmp_path / f'{layout}_{f.name}', layout=layout))
            for k in ('wave', 'flux', 'ivar', 'andmask', 'ormask'): np.testing.assert_array_equal(getattr(s, k), getattr(b, k))
            for k in META_KEYS:
                if k in ('filename', 'release'): continue
                x, y = s.meta[k], b.meta[k]
                assert x == y or (isinstance(x, float) and np.isnan(x) and np.isnan(y)), (k, x, y)

def test_lasp_labels_crossmatch_headers(data_dir):
    lab = read_catalog(data_dir / 'lamost/dr1_labeled/lasp_labels.csv')
    assert len(lab) == 100 and 'teff' in lab.colnames
    spectra, rejects = read_many(data_dir / 'lamost/dr1_labeled', progress=False)
    assert not rejects
    hdr = Table(rows=[(s.meta['filename'], s.meta['ra'], s.meta['dec']) for s in spectra], names=('file', 'ra', 'dec'))
    m = crossmatch(lab, hdr, radius=1, verbose=False)
    assert len(m) == 100 and m.meta['n_unmatched'] == 0
    assert (m['sep_arcsec'] < 1).all()
    assert (m['filename'] == m['file']).all()  # each label row matches its own file
    kept, funnel = quality_cuts(lab)
    assert funnel['remaining'][-1] == len(kept) and funnel['remaining'][0] == 100
    assert np.all(np.asarray(kept['snrg']) > 20) or np.all((np.asarray(kept['snrg']) > 20) | (np.asarray(kept['snri']) > 20))
