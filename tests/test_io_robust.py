"Real LAMOST files, damaged on purpose in tmp_path: the reader refuses what is corrupt and never returns changed numbers."
import gzip, re, resource, time, tracemalloc
import numpy as np
import pytest
from astropy.io import fits
from cemp_hfs.io import read_lamost, lamost_files, LamostFormatError, META_KEYS

ARRAYS = ('wave', 'flux', 'ivar', 'andmask', 'ormask')

def _dr10(data_dir): return lamost_files(data_dir / 'lamost/dr10_labeled')[0]  # a table-layout .fits.gz
def _dr7(data_dir): return lamost_files(data_dir / 'lamost/formats/dr7_v297_image')[0]  # a plain image-layout .fits

def _fits_bytes(f): return gzip.decompress(f.read_bytes()) if f.name.endswith('.gz') else f.read_bytes()

def _save(data: bytes, path):
    "Write FITS bytes to `path`, gzipped (with a valid CRC) when the name ends in .gz."
    path.write_bytes(gzip.compress(data) if path.name.endswith('.gz') else data); return path

def _recard(data: bytes, key, value, start=0) -> bytes:
    "`data` with the first `key` card at or after byte `start` rewritten to hold `value`."
    i = data.index(f'{key:<8}='.encode(), start)
    assert i % 80 == 0, (key, i)  # a card of its own, not text inside another
    return data[:i] + fits.Card(key, value).image.encode() + data[i + 80:]

def _same_meta(a, b):
    return all(a[k] == b[k] or (isinstance(a[k], float) and isinstance(b[k], float) and np.isnan(a[k]) and np.isnan(b[k]))
               for k in META_KEYS)

def _assert_same(s, ref):
    for k in ARRAYS: np.testing.assert_array_equal(getattr(s, k), getattr(ref, k), err_msg=k)

# --- 1. an optional column of the wrong length costs only that column

@pytest.fixture(scope='module')
def short_aux(data_dir):
    "DR10 files whose NORMALIZATION column is shorter than FLUX, found from their table headers: (file, formats)."
    out = []
    for f in lamost_files(data_dir / 'lamost/dr10_labeled'):
        h = fits.getheader(f, 'COADD')
        forms = {h[f'TTYPE{i}']: h[f'TFORM{i}'] for i in range(1, h['TFIELDS'] + 1)}
        if forms.get('NORMALIZATION', forms['FLUX']) != forms['FLUX']: out.append((f, forms))
    return out

def test_short_normalization_reads_with_warning(short_aux):
    assert short_aux, "the README says some DR10 files have a short NORMALIZATION column"
    for f, forms in short_aux:
        n_flux, n_norm = int(forms['FLUX'][:-1]), int(forms['NORMALIZATION'][:-1])
        with pytest.warns(UserWarning, match=rf"{re.escape(f.name)}: optional column NORMALIZATION has {n_norm} pixels against {n_flux}"):
            s = read_lamost(f)
        assert s.norm_lamost is None and len(s) == n_flux
        row = fits.getdata(f, 'COADD')[0]
        np.testing.assert_array_equal(s.flux, row['FLUX'].astype(np.float32))
        np.testing.assert_array_equal(s.wave, row['WAVELENGTH'].astype(np.float32))
        assert np.ptp(s.flux) > 0 and s.good.sum() > 500

@pytest.mark.parametrize('column', ['NORMALIZATION', 'IVAR'])
def test_shortened_column_of_a_real_table(data_dir, tmp_path, column):
    "Shorten one column of a whole DR10 table (TFORMn and NAXIS1 together): NORMALIZATION warns, IVAR is refused."
    f = _dr10(data_dir); raw = _fits_bytes(f)
    h = fits.getheader(f, 'COADD'); start = raw.index(b'XTENSION')
    idx = {h[f'TTYPE{i}']: i for i in range(1, h['TFIELDS'] + 1)}
    i, n_wave = idx[column], int(h[f"TFORM{idx['WAVELENGTH']}"][:-1])
    n = int(h[f'TFORM{i}'][:-1]); cut = n // 40
    raw = _recard(_recard(raw, f'TFORM{i}', f'{n - cut}E', start), 'NAXIS1', h['NAXIS1'] - 4 * cut, start)
    p = _save(raw, tmp_path / f.name)
    if column == 'IVAR':
        with pytest.raises(LamostFormatError, match=rf"{re.escape(f.name)}: `ivar` has {n - cut} pixels but `wave` has {n_wave}"):
            read_lamost(p)
    else:
        with pytest.warns(UserWarning, match=f'optional column NORMALIZATION has {n - cut} pixels'): s = read_lamost(p)
        _assert_same(s, read_lamost(f)); assert s.norm_lamost is None

# --- 2. a corrupted .fits.gz is refused, never read as changed numbers

def _deflate_span(gz: bytes):
    "Start and end of the compressed data of a one-member gzip file: after the RFC 1952 header, before the 8-byte trailer."
    flg, i = gz[3], 10
    if flg & 4: i += 2 + int.from_bytes(gz[i:i + 2], 'little')  # FEXTRA
    for bit in (8, 16): i = gz.index(b'\0', i) + 1 if flg & bit else i  # FNAME, FCOMMENT
    return i + (2 if flg & 2 else 0), len(gz) - 8  # FHCRC

def test_bit_flips_in_payload_caught_or_harmless(data_dir, tmp_path):
    f = _dr10(data_dir); gz = f.read_bytes(); ref = read_lamost(f)
    assert np.ptp(ref.flux) > 0
    lo, hi = _deflate_span(gz)
    rng = np.random.default_rng(2024)
    p, caught, n = tmp_path / f.name, 0, 80
    for pos in rng.choice(np.arange(lo, hi), n, replace=False):
        d = bytearray(gz); d[pos] ^= 1 << int(rng.integers(8)); p.write_bytes(bytes(d))
        try: s = read_lamost(p)
        except LamostFormatError: caught += 1; continue
        _assert_same(s, ref); assert _same_meta(s.meta, ref.meta)  # the CRC32 leaves no third outcome
    assert caught > n // 2, caught

def test_every_trailer_bit_flip_refused(data_dir, tmp_path):
    "The CRC32 and ISIZE are checked: a flip in any of their 64 bits is refused, though the data are intact."
    f = _dr10(data_dir); gz = f.read_bytes(); p = tmp_path / f.name
    for byte in range(len(gz) - 8, len(gz)):
        for bit in range(8):
            d = bytearray(gz); d[byte] ^= 1 << bit; p.write_bytes(bytes(d))
            with pytest.raises(LamostFormatError, match='corrupted gzip'): read_lamost(p)

# --- 3. a header that claims more data than the file holds is refused without allocating

@pytest.mark.parametrize('layout,key,expect', [('table', 'NAXIS2', 'truncated file'), ('table', 'NAXIS1', 'impossible header'),
                                               ('image', 'NAXIS1', 'truncated file'), ('image', 'NAXIS2', 'truncated file')])
def test_huge_naxis_refused_fast_and_small(data_dir, tmp_path, layout, key, expect):
    f = _dr10(data_dir) if layout == 'table' else _dr7(data_dir); raw = _fits_bytes(f)
    start = raw.index(b'XTENSION') if layout == 'table' else 0  # the COADD header, or the primary one
    p = _save(_recard(raw, key, 10**9, start), tmp_path / f.name)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start(); t0 = time.perf_counter()
    try:
        with pytest.raises(LamostFormatError, match=f'{re.escape(f.name)}: {expect}'): read_lamost(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally: tracemalloc.stop()
    assert time.perf_counter() - t0 < 2
    assert peak < 100 * 2**20, peak  # numpy's buffers are traced: nothing near the 10^9 x row size was asked for
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 500 * 1024

# --- 4. impossible header values read as missing, the rest unchanged

@pytest.mark.parametrize('card,value,key', [('RA', 999., 'ra'), ('RA', True, 'ra'), ('RA', 'T', 'ra'), ('DEC', -95., 'dec'),
                                            ('SNRG', -5., 'snrg'), ('Z', 3., 'z')])
@pytest.mark.parametrize('layout', ['table', 'image'])
def test_impossible_cards_read_as_missing(data_dir, tmp_path, layout, card, value, key):
    f = _dr10(data_dir) if layout == 'table' else _dr7(data_dir); ref = read_lamost(f)
    assert isinstance(ref.meta[key], float) and np.isfinite(ref.meta[key])  # a real value to damage
    s = read_lamost(_save(_recard(_fits_bytes(f), card, value), tmp_path / f.name))
    assert s.meta[key] is None
    assert _same_meta({**s.meta, key: ref.meta[key]}, ref.meta)
    _assert_same(s, ref)

# --- 5. pixels with no usable value get ivar = 0 (the reader's contract: `ivar > 0` alone is a safe test)

def test_non_finite_pixels_get_zero_ivar(data_dir, tmp_path):
    src = _dr7(data_dir)
    ref = read_lamost(src)
    ok = np.flatnonzero(ref.ivar > 0)
    nan_f, inf_f, neg_iv, nan_iv = ok[[10, 500, 1000, 2000]]  # pixels with information, spoilt one way each
    with fits.open(src) as h:
        d = h[0].data.copy()
        d[0, nan_f], d[0, inf_f], d[1, neg_iv], d[1, nan_iv] = np.nan, np.inf, -1., np.nan
        h[0].data = d; h.writeto(tmp_path / src.name)
    s = read_lamost(tmp_path / src.name)
    bad = [nan_f, inf_f, neg_iv, nan_iv]
    assert (s.ivar[bad] == 0).all() and not s.good[bad].any()
    keep = np.setdiff1d(np.arange(len(s)), bad)
    np.testing.assert_array_equal(s.ivar[keep], ref.ivar[keep])
