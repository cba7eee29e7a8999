"""The lean reader (issue 13, item 2) against astropy on real files of every layout in ../shared/data/lamost: the same
arrays, metadata and header cards, or the same refusal; and the files it leaves to astropy are only those it should."""
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import cemp_hfs.io as cio
from cemp_hfs.io import read_lamost, LamostFormatError, LAMOST_PATTERNS, _file_bytes, lean_read

def _files(data_dir):
    every = sorted({f for p in LAMOST_PATTERNS for f in (data_dir / 'lamost').rglob(p)})
    dr10 = [f for f in every if 'dr10_labeled' in f.parts]
    return [f for f in every if 'dr10_labeled' not in f.parts] + dr10[::10]  # every layout, and a tenth of the 1,425 DR10 files

def _read(f, lean, monkeypatch):
    monkeypatch.setattr(cio, 'LEAN_READ', lean)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        try: return read_lamost(f), [str(x.message) for x in w]
        except LamostFormatError as e: return str(e), [str(x.message) for x in w]

def test_lean_reads_what_astropy_reads(data_dir, monkeypatch):
    files = _files(data_dir)
    assert len(files) > 500
    n_lean = 0
    for f in files:
        a, wa = _read(f, False, monkeypatch)
        b, wb = _read(f, True, monkeypatch)
        assert wa == wb, f
        if isinstance(a, str): assert a == b, f; continue
        for k in ('wave', 'flux', 'ivar', 'andmask', 'ormask', 'norm_lamost'):
            x, y = getattr(a, k), getattr(b, k)
            assert (x is None) == (y is None) and (x is None or (x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True))), (f, k)
        assert repr(a.meta) == repr(b.meta), f
        n_lean += lean_read(_file_bytes(f), f) is not None
    assert n_lean >= len(files) - 3, f"only {n_lean} of {len(files)} files took the lean path"

def test_lean_header_cards_are_astropy_s(data_dir):
    "Every keyword card of the primary header, with its type, as astropy parses it."
    for f in _files(data_dir)[::7]:
        r = lean_read(_file_bytes(f), f)
        if r is None: continue
        hdr = r[1]
        with fits.open(f) as h: ref = h[0].header
        keys = [k for k in ref if k not in ('COMMENT', 'HISTORY', '')]
        assert sorted(hdr) == sorted(keys), f
        for k in keys: assert (hdr[k], type(hdr[k])) == (ref[k], type(ref[k])), (f, k)
