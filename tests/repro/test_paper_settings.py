"""The presets pinned to the papers' numbers: each assertion names where the number is printed, so a
preset that drifts from the paper fails here (composition only, no training)."""

import pytest

from tests.helpers import compose_cfg


def _cfg(preset, *extra):
    return compose_cfg([f"experiment={preset}", *extra], tiny=False, return_hydra_config=True)


def _grid(cfg):
    return {k: str(v) for k, v in cfg.hydra.sweeper.params.items()}


# -- "Improving Federated Learning Personalization via Model Agnostic Meta Learning" -------------

def test_jiang_training_and_personalization_optimizers():
    """§3 setup: client SGD lr 0.02 batch 20, server SGD lr 1 momentum 0.9, 500 rounds; Algorithm 2 step 3:
    personalize with the same client optimizer (personalization.client_opt null); 5 epochs; target 0.8."""
    for preset in ("jiang2019_table1", "jiang2019_table3", "jiang2019_table2"):
        cfg = _cfg(preset, "init_from=x")
        assert (cfg.client_opt._target_, cfg.client_opt.lr, cfg.client_opt.batch_size) == ("pfl.optim.ClientSGD", 0.02, 20)
        assert cfg.personalization.client_opt is None, preset
        assert 5 in cfg.personalization.epochs and cfg.clients_per_round == 5, preset
    t1 = _cfg("jiang2019_table1")
    assert (t1.rounds, t1.server_opt.lr, t1.server_opt.momentum, t1.personalization.target_accuracy) == (500, 1.0, 0.9, 0.8)
    assert _grid(t1) == {"algorithm.local_epochs": "2,5,10,20", "clients_per_round": "5,20"}  # Table 1
    t3 = _cfg("jiang2019_table3", "init_from=x")
    assert t3.rounds == 200 and t3.server_opt.lr == 0.001  # "further 200 communication rounds", Adam defaults
    assert _grid(t3) == {"algorithm.local_steps": "1,5,10", "server_opt": "finetune_adam,finetune_sgd,finetune_sgdm"}


def test_jiang_table3_server_optimizers():
    """Table 3: SGD lr 0.1 and momentum 0.9 lr 0.01 besides Adam."""
    sgd = compose_cfg(["experiment=jiang2019_table3", "init_from=x", "server_opt=finetune_sgd"], tiny=False).server_opt
    sgdm = compose_cfg(["experiment=jiang2019_table3", "init_from=x", "server_opt=finetune_sgdm"], tiny=False).server_opt
    assert sgd.lr == 0.1 and sgd.get("momentum", 0) == 0
    assert sgdm.lr == 0.01 and sgdm.momentum == 0.9


def test_jiang_personalized_fedavg():
    """Algorithm 2 with the paper's numbers: FedAvg(E=10), server SGD lr 1 momentum 0.9, 500 rounds, then
    Reptile(10) with Adam for 200 rounds; 5 clients per round; the training client optimizer personalizes."""
    cfg = _cfg("personalized_fedavg")
    assert cfg.clients_per_round == 5 and cfg.personalization.client_opt is None
    assert (cfg.client_opt.lr, cfg.client_opt.batch_size) == (0.02, 20)
    fedavg, reptile = cfg.stages
    assert (fedavg.rounds, fedavg.algorithm.local_epochs, fedavg.server_opt.lr, fedavg.server_opt.momentum) == (500, 10, 1.0, 0.9)
    assert (reptile.rounds, reptile.algorithm.local_steps, reptile.server_opt._target_) == (200, 10, "torch.optim.Adam")


def test_jiang_figure2_left_curves_with_sgd_batch_100_and_adam():
    """Figure 2 left: Reptile(1)/(10) fine-tuned models and the FedAvg E=10 model, personalized over 0..10
    epochs with SGD lr 0.02 batch 100 and with Adam (default parameters: lr 0.001)."""
    for preset, fixed in (("jiang2019_figure2_left", {"algorithm.local_steps": "1,10", "server_opt": "finetune_adam"}),
                          ("jiang2019_figure2_left_fedavg", {"algorithm.local_epochs": "10", "clients_per_round": "5"})):
        cfg = _cfg(preset, "init_from=x")
        assert cfg.personalization.curve_epochs == 10, preset
        grid = _grid(cfg)
        opts = grid.pop("personalization.client_opt")
        assert grid == fixed, preset
        assert "ClientSGD,lr:0.02,batch_size:100" in opts.replace(" ", "")
        assert "ClientAdam,lr:0.001" in opts.replace(" ", "")
    assert _cfg("jiang2019_figure2_left", "init_from=x").rounds == 200


# -- "Towards generalizable personalized federated learning with adaptive local adaptation" -------

@pytest.mark.parametrize("preset,zetas,algorithms", [
    ("afml2023_figure4_cifar100", "0.1,0.4,0.6,0.9", "fedavg_ft,perfedavg,apfl,afml"),     # Figure 4 (a) 0.1, 0.6; (b)
    ("afml2023_figure4_shakespeare", "0.3,0.9", "fedavg_ft,perfedavg,apfl,afml"),          # Figure 4 (a), Shakespeare
    ("afml2023_figure5_cifar100", "0.1,0.3,0.6,0.9", "fedavg_ft,perfedavg,apfl,afml"),     # Figure 5, first row
    ("afml2023_figure5_shakespeare", "0.1,0.4,0.6,0.8", "fedavg_ft,perfedavg,apfl,afml"),  # Figure 5, second row
])
def test_afml_figure_grids(preset, zetas, algorithms):
    cfg = _cfg(preset)
    assert _grid(cfg) == {"zeta": zetas, "algorithm": algorithms}
    p = cfg.personalization
    assert (p.local_baseline, p.local_epochs, p.local_lr) == (True, 200, 0.005)  # local models: 200 epochs, lr 0.005
    assert list(p.epochs) == [1, 3, 5]  # Pers.1, Pers.5 and Pers.3 (Figure 3 c, d)


def test_afml_figure1_arms():
    """Figure 1: FedAvg-FT K=3 / K=10 and FedAvg-Meta 80% / 20% support, zeta 0.1/0.4/0.6/0.9, CIFAR-100,
    curves over 0..11 personalization epochs."""
    ft, meta = _cfg("afml2023_figure1_fedavg_ft"), _cfg("afml2023_figure1_fedmeta")
    assert _grid(ft) == {"zeta": "0.1,0.4,0.6,0.9", "algorithm": "fedavg_ft", "algorithm.finetune_steps": "3,10"}
    assert _grid(meta) == {"zeta": "0.1,0.4,0.6,0.9", "algorithm": "fedmeta", "algorithm.support_fraction": "0.8,0.2"}
    for cfg in (ft, meta):
        assert cfg.dataset.name == "cifar100" and cfg.personalization.curve_epochs == 11
        assert cfg.dataset.alpha == 0.5  # Dirichlet(0.5) label skew
