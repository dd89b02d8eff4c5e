import torch

from src.data import TensorBatches


def make(n=103, **kwargs):
    x = torch.arange(n).float().unsqueeze(1)
    return TensorBatches(x, torch.arange(n), **kwargs)


def test_in_order_batches_cover_every_sample_once():
    batches = list(make(batch_size=10))
    assert len(batches) == 11 and len(batches[-1][1]) == 3
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(103))


def test_shuffled_epochs_differ_and_repeat_with_the_seed():
    a, b = (
        make(batch_size=10, shuffle=True, drop_last=True, seed=1),
        make(batch_size=10, shuffle=True, drop_last=True, seed=1),
    )
    epoch1 = torch.cat([y for _, y in a])
    epoch2 = torch.cat([y for _, y in a])
    assert len(a) == 10 and len(epoch1) == 100 and len(set(epoch1.tolist())) == 100
    assert not torch.equal(epoch1, epoch2)
    assert torch.equal(epoch1, torch.cat([y for _, y in b]))


def test_resume_mid_epoch_continues_the_same_order():
    full = make(batch_size=10, shuffle=True, drop_last=True, seed=3)
    expected = [y for _ in range(2) for _, y in full]  # two whole epochs

    first = make(batch_size=10, shuffle=True, drop_last=True, seed=3)
    it = iter(first)
    seen = [next(it)[1] for _ in range(4)]
    resumed = make(batch_size=10, shuffle=True, drop_last=True, seed=3)
    resumed.load_state_dict(first.state_dict())
    seen += [y for _, y in resumed] + [y for _, y in resumed]
    assert all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))


def test_processes_split_each_global_batch():
    single = make(batch_size=10, shuffle=True, drop_last=True, seed=5)
    ranks = [
        make(batch_size=10, shuffle=True, drop_last=True, seed=5, rank=r, world_size=2)
        for r in (0, 1)
    ]
    for (_, y), (_, y0), (_, y1) in zip(single, *ranks, strict=True):
        assert torch.equal(y, torch.cat([y0, y1]))


def test_transform_is_applied_per_batch():
    batches = make(batch_size=50, transform=lambda x: -x)
    x, y = next(iter(batches))
    assert torch.equal(x.squeeze(1), -y.float())
