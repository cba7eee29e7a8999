__version__ = "0.1.0"

# The main entry points, importable from the package: `from cemp_hfs import read_lamost, HFSModel, predict`. Each is
# imported on first use, so that `import cemp_hfs` stays light (no torch, no fastai). `predict` is also the module
# `cemp_hfs.predict`, which is callable as the function of the same name.
_EXPORTS = {
    'read_lamost': 'io', 'LamostSpectrum': 'io', 'LamostFormatError': 'io', 'read_catalog': 'io', 'crossmatch': 'io',
    'make_survey': 'mock', 'synth_spectrum': 'mock',
    'build_dataset': 'dataset', 'load_dataset': 'dataset', 'prepare_catalogue': 'dataset',
    'HFSNet': 'hfsnet', 'load_config': 'hfsnet',
    'hfs_learner': 'train', 'train_hfsnet': 'train',
    'predict': 'predict', 'HFSModel': 'predict', 'load_hfs_model': 'predict',
    'load_criteria': 'select', 'classify': 'select', 'candidates': 'select', 'write_catalogue': 'select', 'evaluate': 'select',
    'LABELS': 'core',
}
__all__ = ['__version__', *_EXPORTS]

def __getattr__(name):
    if name not in _EXPORTS: raise AttributeError(f"module 'cemp_hfs' has no attribute {name!r}")
    import importlib
    module = importlib.import_module(f'cemp_hfs.{_EXPORTS[name]}')
    value = module if name == _EXPORTS[name] else getattr(module, name)  # `predict`: the callable module
    globals()[name] = value
    return value

def __dir__(): return sorted([*globals(), *_EXPORTS])
