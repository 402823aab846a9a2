"""logger=mlflow, read back with MLflow's client API: one store per output root shared by its runs, W&B's run
names, tags, the config as parameters, per-round and final metrics, the run's files as artifacts."""

import json
import multiprocessing
import os
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="logger=mlflow needs mlflow-skinny (the `test` and `mlflow` extras)")

from mlflow.tracking import MlflowClient  # noqa: E402

from pfl.engine.experiment import RunInfo  # noqa: E402
from pfl.engine.mlflow_logger import make_mlflow_logger, shared_store  # noqa: E402
from pfl.run import train  # noqa: E402
from tests.helpers import compose_cfg  # noqa: E402

SMALL = ["dataset.num_clients=12", "dataset.train_clients=8", "clients_per_round=2", "personalization.train_clients=0",
         "checkpoint_every=0", "rounds=2", "eval_every=2", "logger=mlflow"]


def _client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")


def _runs(client: MlflowClient) -> dict:
    exp = client.get_experiment_by_name("pfl")
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def _info(**changes) -> RunInfo:
    base = dict(algorithm="fedavg", dataset="synthetic", model="MLP", seed=3, zeta=0.4, clients_per_round=2,
                config={"rounds": 2, "client_opt": {"lr": 0.05}})
    return RunInfo(**{**base, **changes})


@pytest.mark.slow  # MLflow store creation
def test_two_runs_into_one_root_share_one_store_with_names_tags_params_metrics_and_artifacts(tmp_path):
    summaries = {name: train(compose_cfg(SMALL + [f"seed={seed}", f"plots={name == 'b'}".lower()]), tmp_path / name)
                 for name, seed in (("a", 0), ("b", 1))}
    assert not (tmp_path / "a" / "mlflow").exists() and (tmp_path / "mlflow" / "mlflow.db").is_file()
    client = _client(tmp_path)
    runs = _runs(client)
    assert set(runs) == {"a", "b"}  # a single run is named by its directory, as on W&B
    for name, run in runs.items():
        summary, rid = summaries[name], run.info.run_id
        assert run.info.status == "FINISHED"
        assert {k: run.data.tags[k] for k in ("algorithm", "stages", "dataset", "zeta", "seed", "job_type")} == {
            "algorithm": "fedavg", "stages": "fedavg", "dataset": "synthetic", "zeta": "1.0",
            "seed": str(summary["seed"]), "job_type": "train"}
        assert run.data.params["rounds"] == "2" and run.data.params["algorithm/_target_"].startswith("pfl.")
        assert [m.step for m in client.get_metric_history(rid, "train/loss")] == [1, 2]
        assert run.data.metrics["final/pers_acc_2"] == pytest.approx(summary["personalized_accuracy"]["2"])
        assert run.data.metrics["final/initial_acc"] == pytest.approx(summary["initial_accuracy"])
        assert run.data.metrics["summary/wall_time_s"] > 0
        files = {f.path for f in client.list_artifacts(rid)}
        assert {"config.yaml", "summary.json", "metrics.csv", "clients_heldout.csv"} <= files
        assert json.loads((tmp_path / name / "mlflow_run.json").read_text())["run_id"] == rid
    plots = {f.path for f in client.list_artifacts(runs["b"].info.run_id, "plots")}
    assert "plots/personalization_curve.png" in plots and not client.list_artifacts(runs["a"].info.run_id, "plots")
    local = Path(client.download_artifacts(runs["b"].info.run_id, "summary.json", str(tmp_path / "dl")))
    assert json.loads(local.read_text())["seed"] == 1  # the artifact is the run's own file


@pytest.mark.slow  # MLflow store creation
def test_a_sweep_trial_is_named_and_tagged_as_on_wandb_and_logs_into_the_sweeps_folder(tmp_path):
    sweep_dir = tmp_path / "multirun" / "sweeps" / "s"
    run = _info(sweep_name="s", sweep_trial=3, label="lr=0.05", output_root=str(sweep_dir),
                algorithm="reptile+fedavg_ft")
    logger = make_mlflow_logger(run=run, run_dir=sweep_dir / "zeta=0.4" / "trial_3", tags={"owner": "me"})
    logger.log_metrics({"train/loss": 1.5}, step=1)
    logger.finalize("success")
    # MLflow's process-wide URI (and MLFLOW_TRACKING_URI) left as they were: the next trial finds its own store
    assert "MLFLOW_TRACKING_URI" not in os.environ
    (found,) = _runs(_client(sweep_dir)).values()
    assert found.info.run_name == "trial 3: lr=0.05"
    tags = found.data.tags
    assert (tags["sweep"], tags["trial"], tags["group"], tags["job_type"]) == ("s", "3", "s", "sweep-trial")
    assert (tags["algorithm"], tags["stages"], tags["owner"]) == ("reptile+fedavg_ft", "reptile,fedavg_ft", "me")
    assert found.data.params["client_opt/lr"] == "0.05" and found.data.metrics["train/loss"] == 1.5


def test_tracking_uri_points_elsewhere_and_a_failure_is_marked(tmp_path):
    uri = f"sqlite:///{tmp_path / 'server.db'}"
    logger = make_mlflow_logger(run=_info(), run_dir=tmp_path / "outputs" / "run1", tracking_uri=uri)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.finalize("failed")  # as Lightning does, from inside its except block
    assert not (tmp_path / "outputs" / "mlflow").exists()
    (found,) = _runs(MlflowClient(uri)).values()
    assert found.info.status == "FAILED" and found.data.tags["failure"] == "RuntimeError: boom"
    assert found.info.run_name == "run1"


@pytest.mark.slow  # MLflow store creation
def test_a_resumed_run_continues_its_mlflow_run(tmp_path):
    first = make_mlflow_logger(run=_info(), run_dir=tmp_path / "r")
    first.log_metrics({"train/loss": 2.0}, step=1)
    first.finalize("success")
    again = make_mlflow_logger(run=_info(), run_dir=tmp_path / "r", resume_round=1)
    again.log_metrics({"train/loss": 1.0}, step=2)
    (found,) = _runs(_client(tmp_path)).values()
    assert found.info.run_id == again.run_id == first.run_id and found.info.status == "RUNNING"
    assert [m.step for m in _client(tmp_path).get_metric_history(found.info.run_id, "train/loss")] == [1, 2]


def _worker(root: str, index: int, barrier) -> None:
    barrier.wait()  # both create the store at once
    uri, exp_id = shared_store(Path(root), "pfl")
    client = MlflowClient(uri)
    run = client.create_run(exp_id, run_name=f"w{index}")
    for step in range(20):
        client.log_metric(run.info.run_id, "train/loss", float(step), step=step)
    client.set_terminated(run.info.run_id)


@pytest.mark.slow  # MLflow store creation in parallel processes
def test_parallel_workers_create_and_write_one_store(tmp_path):
    ctx = multiprocessing.get_context("fork")  # the parent's imports: no interpreter start-up per worker
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), i, barrier)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    client = _client(tmp_path)
    assert len(client.search_experiments()) == 2  # MLflow's Default and pfl, each created once
    runs = _runs(client)
    assert set(runs) == {"w0", "w1"}
    assert all(len(client.get_metric_history(r.info.run_id, "train/loss")) == 20 for r in runs.values())
