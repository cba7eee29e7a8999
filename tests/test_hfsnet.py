"HFS-Net checks too slow or too broad for the notebooks: the paper config end to end, save/load, fusion, a short fit."
import numpy as np
import pytest
import torch

from cemp_hfs.hfsnet import (HFSNet, load_config, save_model, load_model, fuse_for_inference, toy_batch, shipped_configs,
                             ConfigError)
from cemp_hfs.core import LABELS


@pytest.fixture(scope='module')
def paper():
    torch.manual_seed(0)
    m = HFSNet('paper')
    for s in range(2): m(*toy_batch(8, seed=s))  # non-trivial BatchNorm running statistics
    return m.eval()


def test_contract_every_shipped_config():
    c, n = toy_batch(3)
    for name in shipped_configs():
        m = HFSNet(name).train()
        y = m(c, n)
        assert y.shape == (3, len(LABELS))
        assert m.aux_loss.ndim == 0 and m.aux_loss.requires_grad
        assert abs(float(m.expert_usage.sum()) - 1) < 1e-6
        (y.square().mean() + m.config['aux_loss_weight'] * m.aux_loss).backward()
        assert m.head.ffn[0].weight.grad is not None and m.continuum_branch.gate[-1].weight.grad is not None
        assert tuple(m.config['labels']) == LABELS and m.n_pixels == 4000


def test_paper_sparse_equals_dense(paper):
    c, _ = toy_batch(32, seed=3)
    b = paper.continuum_branch
    with torch.inference_mode():
        torch.testing.assert_close(b(c), b.forward_dense(c), atol=1e-5, rtol=1e-5)
        assert (b.expert_usage > 0).sum() >= 2


def test_save_load_identical(paper, tmp_path):
    c, n = toy_batch(4, seed=5)
    p = save_model(tmp_path / 'paper.pt', paper, extra={'scaler': {'mean': np.zeros(4), 'std': np.ones(4)}})
    m2, extra = load_model(p)
    with torch.inference_mode(): assert torch.equal(m2(c, n), paper(c, n))
    assert extra['scaler']['std'] == [1.0] * 4
    # the file holds only plain data: it loads with weights_only=True
    obj = torch.load(p, weights_only=True)
    assert set(obj) == {'format', 'config', 'state_dict', 'extra'}


def test_fused_matches(paper):
    c, n = toy_batch(16, seed=7)
    f = fuse_for_inference(paper)
    with torch.inference_mode(): y, yf = paper(c, n), f(c, n)
    torch.testing.assert_close(yf, y, atol=1e-4 * float(y.abs().max()), rtol=1e-4)
    with pytest.raises(RuntimeError, match='cannot be trained'): f.train()


def test_config_errors_name_the_key(tmp_path):
    cfg = load_config('paper')
    with pytest.raises(ConfigError, match='`normalized_branch.type`'):
        HFSNet(cfg | {'normalized_branch': {'type': 'resnet'}})
    with pytest.raises(ConfigError, match='`fusion.channels`'):
        HFSNet(cfg | {'fusion': cfg['fusion'] | {'channels': 0}})
    bad = tmp_path / 'bad.yaml'; bad.write_text('n_pixels: [4000\n')
    with pytest.raises(ConfigError, match='not valid YAML'): load_config(bad)


def test_small_config_learns():
    "The small network fits a smooth function of the inputs: the loss falls by a large factor in a few dozen steps."
    torch.manual_seed(0)
    c, n = toy_batch(32, seed=11)
    # targets that depend on the inputs: continuum tilt and total line depth
    x = torch.linspace(-1, 1, 4000)
    tilt = ((c[:, 0] - 1) * x).mean(1)
    depth = (1 - n[:, 0]).mean(1)
    y = torch.stack([tilt, depth, tilt - depth, tilt + depth], 1)
    y = (y - y.mean(0)) / y.std(0)
    m = HFSNet(load_config('small') | {'head': load_config('small')['head'] | {'dropout': 0.0}})
    opt = torch.optim.AdamW(m.parameters(), 3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(c, n), y) + 0.01 * m.aux_loss
        loss.backward(); opt.step(); losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5]), losses[::10]
