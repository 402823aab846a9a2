"""The reference: a plain PyTorch loop over clients (torch.nn modules, torch.optim.SGD).

No pfl code runs inside the loop; pfl only supplies the same tensors and the
same cohorts beforehand (pfl.bench.cases). One round of FedAvg:

    for each client of the cohort:
        local model <- global weights; E epochs of minibatch SGD (shuffled, batch B)
        running sum += n_client * (global - local)
    global -= sum / sum(n)          (server SGD with lr 1 on the weighted mean delta)

`shard=(k, w)` trains only the k-th of w shares of each cohort (the model of one rank
of a w-process round: the same split as pfl.execution.Shard, balanced by example counts).
The `eval` case personalizes each held-out client instead: test accuracy before
and after each of E epochs of local training.
"""

from __future__ import annotations

import torch
from torch import nn

from pfl.bench.cases import Case, cohorts, make_tensors
from pfl.bench.measure import Probe
from pfl.execution import Shard


def model_for(case: Case) -> nn.Module:
    if case.kind == "image":  # TFF's EMNIST CNN, no dropout
        # nn.Unflatten(1, (1, 28)): [B, 28, 28] -> [B, 1, 28, 28]
        return nn.Sequential(nn.Unflatten(1, (1, case.shape[0])), nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(),
                             nn.Linear(128, case.classes))
    if case.kind == "features":  # pfl's default MLP: 60-64-10
        return nn.Sequential(nn.Linear(case.shape[0], 64), nn.ReLU(), nn.Linear(64, case.classes))
    return _CharLSTM(case.classes)


class _CharLSTM(nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.lstm = nn.LSTM(8, 256, num_layers=2, batch_first=True)
        self.head = nn.Linear(256, vocab)

    def forward(self, x):
        return self.head(self.lstm(self.embed(x))[0])


def _loss(logits, y):
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _train(model, opt, x, y, batch: int, epochs: int, g: torch.Generator):
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            opt.zero_grad(set_to_none=True)
            _loss(model(x[idx]), y[idx]).backward()
            opt.step()


@torch.no_grad()
def _accuracy(model, x, y) -> float:
    return float((model(x).argmax(-1) == y).float().mean())


def run(spec: dict) -> dict:
    case = Case(**{**spec["case"], "shape": tuple(spec["case"]["shape"])})
    torch.set_num_threads(spec["threads"])
    probe = Probe("cpu")
    dev = torch.device(spec.get("device", "cpu"))
    probe.cuda = dev.type == "cuda"
    train, held = make_tensors(case, spec.get("seed", 0))
    torch.manual_seed(spec.get("seed", 0))
    model = model_for(case).to(dev)
    local = model_for(case).to(dev)
    opt = torch.optim.SGD(local.parameters(), lr=case.lr)
    server = torch.optim.SGD(model.parameters(), lr=1.0)
    g = torch.Generator().manual_seed(1)
    total = spec["warmup"] + spec["rounds"]
    k, w = spec.get("shard", (0, 1))

    if case.name == "eval":  # one "round" = personalizing every held-out client
        xs = [t.to(dev) for t in held[0]], [t.to(dev) for t in held[1]], [t.to(dev) for t in held[2]], [t.to(dev) for t in held[3]]
        for r in range(total):
            if r == spec["warmup"]:
                probe.start()
            if r >= spec["warmup"]:
                probe.tick()
            for i in range(len(xs[0])):
                local.load_state_dict(model.state_dict())
                _accuracy(local, xs[2][i], xs[3][i])
                for _ in range(case.epochs):
                    _train(local, opt, xs[0][i], xs[1][i], case.batch, 1, g)
                    _accuracy(local, xs[2][i], xs[3][i])
        probe.tick()
        return probe.stop()

    plan = cohorts(spec.get("seed", 0), total, case.clients, case.cohort)
    data = [(x.to(dev), y.to(dev)) for x, y in zip(train[0], train[1])]
    for r, cohort in enumerate(plan):
        if r == spec["warmup"]:
            probe.start()
        if r >= spec["warmup"]:
            probe.tick()
        sizes = torch.tensor([len(data[cid][0]) for cid in cohort])
        mine = [cohort[j] for j in Shard(k, w).part(len(cohort), weights=sizes).tolist()]
        acc = [torch.zeros_like(p) for p in model.parameters()]
        weight = 0
        for cid in mine:
            x, y = data[cid]
            local.load_state_dict(model.state_dict())
            _train(local, opt, x, y, case.batch, case.epochs, g)
            with torch.no_grad():
                for a, p0, p1 in zip(acc, model.parameters(), local.parameters()):
                    a.add_(p0 - p1, alpha=len(x))
            weight += len(x)
        for p, a in zip(model.parameters(), acc):
            p.grad = a / max(weight, 1)
        server.step()
    probe.tick()
    return probe.stop()
