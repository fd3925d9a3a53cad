"""Sweeps on a real local Ray (and a simulated two-node cluster)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray.cloudpickle
import yaml
from processes import kill, process_table

from distributed_agent.bookkeeping import Bookkeeping
from distributed_agent.config import ConfigError, TrainConfig
from distributed_agent.report import build_report, write_report
from distributed_agent.spec import parse_spec
from distributed_agent.storage import StorageFull, open_storage
from distributed_agent.sweep import run_sweep
from distributed_agent.train import train

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = {
    "variant": "tutorial",
    "init": "episode",
    "loss": "masked",
    "curriculum": "mastery",
    "lr": 3e-3,
    "entropy_coef": 0.03,
    "hidden_size": 16,
    "batch_size": 32,
    "updates": 30,
    "eval_every": 5,
    "eval_episodes": 32,
    "final_eval_episodes": 100,
}

# The crashing trainable below is defined here; Ray workers cannot import this test module, so
# it travels by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def results_by_trial(path):
    """trial key -> its result lines, the attempts of a resumed trial (trial_K, trial_K.r1, ...) in order."""
    out = {}
    folders = sorted(
        Path(path).glob("trial_*/result.json"),
        key=lambda p: (p.parent.name.split(".r")[0], int(p.parent.name.split(".r")[1]) if ".r" in p.parent.name else 0),
    )
    for result in folders:
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        out.setdefault(result.parent.name.split(".r")[0], []).extend(lines)
    return out


def hp(line: dict) -> dict:
    """The swept values (and seed) of the trial that wrote a result line."""
    return line["config"]["trial"]["hp"]


def same_numbers(report: dict, other: dict) -> bool:
    keys = [k for k in report if k.startswith(("success/", "reward/"))] + ["update", "episodes", "stage", "loss"]
    return all(report[k] == other[k] for k in keys)


def direct_final(spec, params):
    result = train(spec.trial_config(params).replace(device="cpu"))
    return result.final_success, result.final_reward


def test_a_sweep_gives_each_trial_the_numbers_of_its_config_and_seed(tmp_path):
    spec = parse_spec(
        {
            "name": "repro",
            "train": TINY_TRAIN,
            "seeds": 2,
            "search": {"hidden_size": {"grid": [16, 24]}, "lr": {"loguniform": [1e-3, 1e-2]}},
        }
    )
    path = run_sweep(spec, storage=str(tmp_path))
    trials = results_by_trial(path)
    assert len(trials) == 4
    for lines in trials.values():
        last = lines[-1]
        assert last["final"] == 1 and last["eval_episodes"] == 100
        assert [line["training_iteration"] for line in lines] == list(range(1, len(lines) + 1))
        params = hp(last)
        success, reward = direct_final(spec, params)
        assert [last[f"success/stage{s}"] for s in range(3)] == success
        assert [last[f"reward/stage{s}"] for s in range(3)] == reward
        assert last["success/min"] == min(success)
    report = build_report(path)
    assert sorted(report.trials["status"]) == ["terminated"] * 4
    assert len(report.summary) == 2 and set(report.summary["seeds"]) == {2}
    # Starting the same experiment again without --resume is refused; nothing is touched.
    before = {p: p.stat().st_mtime_ns for p in Path(path).rglob("*")}
    with pytest.raises(ConfigError, match="exists; continue it with --resume"):
        run_sweep(spec, storage=str(tmp_path))
    assert before == {p: p.stat().st_mtime_ns for p in Path(path).rglob("*")}


def make_crashing_trial(marker: str, crash_at_update: int):
    def crashing_trial(config, **kwargs):
        from distributed_agent import train, trainable

        if not os.path.exists(marker):
            original = train.train_step

            def train_step(members):
                if members[0].update + 1 == crash_at_update:
                    Path(marker).write_text(str(os.getpid()))
                    os._exit(1)  # the worker process dies, no exception, no cleanup
                return original(members)

            train.train_step = train_step
        trainable.run_trial(config, **kwargs)

    return crashing_trial


@pytest.mark.parametrize("seeds", [[5], [5, 6, 7]], ids=["one_seed", "population"])
def test_a_trial_whose_process_dies_resumes_from_its_checkpoint_with_identical_numbers(tmp_path, seeds):
    spec = parse_spec(
        {
            "name": "crash",
            "train": {**TINY_TRAIN, "updates": 40},
            "seeds": seeds,
            "seeds_per_trial": "all",
            "checkpoint_every": 2,
            "max_failures": 2,
        }
    )
    marker = tmp_path / "crashed"
    path = run_sweep(spec, storage=str(tmp_path / "runs"), trial_fn=make_crashing_trial(str(marker), 27))
    assert marker.exists()  # it did crash (after the checkpoint at update 20)
    (lines,) = results_by_trial(path).values()
    assert lines[-1]["final"] == 1
    members = {seeds[0]: lines[-1]} if len(seeds) == 1 else {m["seed"]: m for m in lines[-1]["members"].values()}
    for seed in seeds:  # the whole population resumed: every member as if never disturbed
        straight = train(spec.trial_config({"seed": seed}).replace(device="cpu"))
        assert [members[seed][f"success/stage{s}"] for s in range(3)] == straight.final_success
        assert [members[seed][f"reward/stage{s}"] for s in range(3)] == straight.final_reward
        by_update = {}  # replayed reports carry the same numbers
        for line in lines:
            for member in line["members"].values() if "members" in line else [line]:
                if member["seed"] == seed:
                    by_update[member["update"]] = member
        for evaluation in straight.history[:-1]:
            assert by_update[evaluation.update]["success/min"] == min(evaluation.success)
    report = build_report(path)
    assert sorted(report.trials["seed"]) == seeds  # one row per seed, as for trials of one seed
    assert (report.trials["status"] == "terminated").all() and (report.trials["failures"] == 1).all()


def test_a_trials_reports_reach_the_storage_before_tune_restarts_it(tmp_path):
    # Tune restarts a failed or paused trial with the storage's result.json (ray.tune.logger's
    # _restore_from_remote), so the driver's staging copy, which is newer, must be there first
    # (the test above and PBT's resume test lose reports without it when the machine is loaded).
    staging, stored = tmp_path / "staging", tmp_path / "runs" / "crash" / "trial_0000"
    staging.mkdir()
    stored.mkdir(parents=True)
    (staging / "result.json").write_text('{"update": 5}\n{"update": 10}\n')
    (stored / "result.json").write_text('{"update": 5}\n')  # Tune's last upload
    trial = SimpleNamespace(local_path=str(staging), storage=SimpleNamespace(trial_fs_path=str(stored)))
    Bookkeeping(open_storage(str(tmp_path / "runs")), "crash").on_trial_start(0, [], trial)
    assert (stored / "result.json").read_text() == '{"update": 5}\n{"update": 10}\n'


def test_asha_on_configurations_judges_each_by_all_its_seeds(tmp_path):
    spec = parse_spec(
        {
            "name": "by_config",
            "train": {**TINY_TRAIN, "updates": 40},
            "search": {"lr": {"grid": [3e-3, 1e-5]}},  # 1e-5 learns nothing in 40 updates
            "seeds": [1, 2, 3],
            "seeds_per_trial": "all",
            "scheduler": "asha",
            "asha": {"grace_period": 2, "reduction_factor": 2},
        }
    )
    path = run_sweep(spec, storage=str(tmp_path), verbose=0)
    by_trial = results_by_trial(path)
    assert len(by_trial) == 2  # one trial per configuration
    for lines in by_trial.values():
        assert {m["seed"] for line in lines for m in line["members"].values()} == {1, 2, 3}
        for line in lines:  # the aggregate the scheduler judged: the mean over members
            members = line["members"].values()
            assert abs(line["success/min"] - sum(m["success/min"] for m in members) / 3) < 1e-12
            assert line["episodes"] == sum(m["episodes"] for m in members)
    trials = build_report(path).trials
    assert len(trials) == 6 and sorted(trials.groupby("lr")["seed"].apply(sorted).tolist()) == [[1, 2, 3]] * 2
    for _, row in trials[trials["status"] == "terminated"].iterrows():  # finished members: their seed alone
        success, _ = direct_final(spec, {"lr": row["lr"], "seed": int(row["seed"])})
        assert [row[f"success/stage{s}"] for s in range(3)] == success


def test_a_diverging_trial_is_errored_with_its_reason_and_the_rest_completes(tmp_path):
    spec = parse_spec(
        {"name": "nan", "train": TINY_TRAIN, "seeds": 1, "max_failures": 0, "search": {"lr": {"grid": [3e-3, 1e30]}}}
    )
    path = run_sweep(spec, storage=str(tmp_path))
    report = build_report(path)
    trials = report.trials.set_index("lr")
    assert trials.loc[3e-3, "status"] == "terminated"
    assert trials.loc[1e30, "status"] == "errored"
    assert re.search(r"FloatingPointError: loss became (nan|inf) at update \d+", trials.loc[1e30, "error"])
    row = report.summary.set_index("lr").loc[1e30]
    assert row["errored"] == 1 and row["incomplete"] and row["solved_share"] == 0


def test_trials_spread_over_the_nodes_of_a_multi_node_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        node_ids = {cluster.add_node(num_cpus=1).node_id for _ in range(2)}
        spec = parse_spec({"name": "multi", "train": {**TINY_TRAIN, "updates": 60}, "seeds": 4})
        path = run_sweep(spec, storage=str(tmp_path), address=cluster.address)
    finally:
        cluster.shutdown()
    trials = results_by_trial(path)
    assert len(trials) == 4 and all(lines[-1]["final"] == 1 for lines in trials.values())
    used = {lines[-1]["node_id"] for lines in trials.values()}
    assert used == node_ids  # both worker nodes ran trials; the CPU-less head none


def make_gpu_probe(seconds: float):
    """A trainable that records what a trial is given: its device and GPU ids, and when it ran."""

    def gpu_probe(config, base, seeds, checkpoint_every, gpus, cpus, report_every=1, mutable=()):
        import ray
        from ray import tune

        from distributed_agent.trainable import trial_config

        device = trial_config(config, base, seeds, gpus, cpus)[0].device
        started = time.time()
        time.sleep(seconds)
        tune.report(
            {
                "success/min": 0.0,
                "device": device,
                "started": started,
                "ended": time.time(),
                "gpu_ids": ",".join(str(i) for i in ray.get_gpu_ids()),
            }
        )

    return gpu_probe


def test_quarter_gpu_trials_run_four_at_a_time_on_one_gpu_and_choose_cuda(tmp_path):
    # Ray schedules GPUs as resources: a node that declares one GPU (none is here) shows the packing;
    # the training itself on CUDA is for a machine with a GPU (results/benchmarks.md).
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 1, "include_dashboard": False})
    try:
        spec = parse_spec({"name": "quarter", "train": TINY_TRAIN, "seeds": 5, "resources": {"cpu": 0.5, "gpu": 0.25}})
        path = run_sweep(spec, storage=str(tmp_path), address=cluster.address, trial_fn=make_gpu_probe(4.0))
    finally:
        cluster.shutdown()
    reports = [lines[-1] for lines in results_by_trial(path).values()]
    assert len(reports) == 5
    assert {r["device"] for r in reports} == {"cuda"} and {r["gpu_ids"] for r in reports} == {"0"}
    spans = sorted((r["started"], r["ended"]) for r in reports)
    running_with_first = sum(start < spans[0][1] for start, _ in spans)
    assert running_with_first == 4  # four quarters fit on the one GPU; the fifth trial waited


# ---- the driver killed mid-sweep, then --resume --------------------------------------------


def session_processes(session_id: int) -> list[int]:
    return [pid for pid, p in process_table().items() if p.session == session_id]


def kill_session(session_id: int) -> None:
    for _ in range(3):
        pids = session_processes(session_id)
        if not pids:
            return
        kill(pids)
        time.sleep(1)


def every_trial_finished(lines_by_trial: dict) -> bool:
    return len(lines_by_trial) == 6 and all(v[-1]["final"] == 1 for v in lines_by_trial.values())


def interrupt_mid_sweep(command: list[str], runs: Path, how: int, env: dict, sessions: list[int]):
    """Start the sweep, send `how` once a trial has finished while others have not, and return the
    lines of the trials finished before the signal, or None when the signal came too late: every
    trial finished while the driver stopped (a SIGINT run then rightly exits 0 with nothing to
    resume). Tune writes result lines in bursts, so the moment cannot be chosen more finely."""
    log = runs.with_suffix(".log")  # a file, not a pipe: a driver that fills an unread pipe stalls
    with log.open("wb") as out:
        driver = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    sessions.append(driver.pid)
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for one finished and one unfinished trial
        time.sleep(0.2)
        try:
            lines = results_by_trial(runs / "killed") if (runs / "killed").exists() else {}
        except json.JSONDecodeError:  # caught a line half-written: read again
            continue
        finished_before = {k: v for k, v in lines.items() if v and v[-1].get("final") == 1}
        if finished_before and len(finished_before) < 6 and len(lines) > len(finished_before):
            break
        if len(finished_before) == 6:  # every trial finished between two looks: try again
            kill_session(driver.pid)
            return None
        if driver.poll() is not None:
            pytest.fail(f"the sweep ended (exit {driver.returncode}) before the moment: {log.read_text()[-3000:]}")
    else:  # the caller's cleanup stops the driver
        pytest.fail(f"the sweep never reached a state with finished and unfinished trials: {log.read_text()[-3000:]}")
    driver.send_signal(how)
    driver.wait(timeout=120)
    output = log.read_text()
    kill_session(driver.pid)  # a SIGKILLed driver leaves its Ray processes behind
    if every_trial_finished(results_by_trial(runs / "killed")):
        return None
    if how == signal.SIGINT:
        assert driver.returncode == 1 and "--resume" in output, output[-2000:]
    return finished_before


# SIGKILL (nothing lost) runs by default; SIGINT, a user's Ctrl-C (also nothing re-run), in the slow set.
@pytest.mark.parametrize(
    "how", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGKILL], ids=["SIGINT", "SIGKILL"]
)
def test_a_killed_driver_is_finished_by_resume_without_losing_or_rerunning_trials(tmp_path, how):
    spec_path = tmp_path / "killed.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "killed",
                "seeds": 3,
                "checkpoint_every": 4,
                "search": {"hidden_size": {"grid": [32, 48]}},
                "train": {**TINY_TRAIN, "updates": 500, "batch_size": 96, "eval_every": 10, "hidden_size": 32},
            }
        )
    )
    # Tune copies result lines to the storage at each experiment snapshot, by default every 10 s or
    # more; trials here take a few seconds, so the storage could go from no finished trial to all of
    # them in one copy and the moment to interrupt never came (CI, stop 30). Snapshot every second.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    sessions = []
    try:
        for attempt in range(3):  # a signal that came after the last trial finished is tried again
            runs = tmp_path / f"runs{attempt}"
            command = [sys.executable, "-m", "distributed_agent", "sweep", str(spec_path), "--storage", str(runs)]
            finished_before = interrupt_mid_sweep(command, runs, how, env, sessions)
            if finished_before is not None:
                break
        else:
            pytest.fail("three interrupts in a row came after the last trial had finished")

        resumed = subprocess.Popen(
            command + ["--resume"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sessions.append(resumed.pid)
        output = resumed.communicate(timeout=300)[0].decode()
        assert resumed.returncode == 0, output[-3000:]
        after = results_by_trial(runs / "killed")
        assert every_trial_finished(after)
        for trial, lines in finished_before.items():
            # Finished trials keep their lines as they were. A SIGKILL can land between a trial's
            # last report and Tune's next snapshot of the experiment; such a trial is then replayed
            # from its last checkpoint, which appends the same numbers again (the report keeps one
            # line per iteration). SIGINT lets Tune save its state: nothing is replayed.
            assert after[trial][: len(lines)] == lines
            replayed = after[trial][len(lines) :]
            assert not replayed or how == signal.SIGKILL
            by_update = {line["update"]: line for line in lines}
            for line in replayed:
                assert same_numbers(line, by_update[line["update"]])
        spec = parse_spec(yaml.safe_load(spec_path.read_text()))
        interrupted = next(v for k, v in after.items() if k not in finished_before)
        success, reward = direct_final(spec, hp(interrupted[-1]))  # same as never interrupted
        assert [interrupted[-1][f"success/stage{s}"] for s in range(3)] == success
        assert (runs / "killed" / "report" / "summary.md").exists()
    finally:
        for session in sessions:
            kill_session(session)


def test_optuna_search_runs_every_sampled_config_on_every_seed(tmp_path):
    spec = parse_spec(
        {
            "name": "optuna",
            "train": {**TINY_TRAIN, "updates": 10},
            "seeds": [3, 4],
            "samples": 2,
            "search_alg": "optuna",
            "search": {"lr": {"loguniform": [1e-3, 1e-2]}, "hidden_size": {"choice": [16, 24]}},
        }
    )
    path = run_sweep(spec, storage=str(tmp_path), verbose=0)
    report = build_report(path)
    trials = report.trials
    assert len(trials) == 4 and set(trials["status"]) == {"terminated"}
    by_config = trials.groupby(["lr", "hidden_size"])["seed"].apply(sorted)
    assert len(by_config) == 2 and all(seeds == [3, 4] for seeds in by_config)
    for _, trial in trials.iterrows():  # the seed of each repeat is the one it reports
        success, _ = direct_final(
            spec, {"lr": trial["lr"], "hidden_size": int(trial["hidden_size"]), "seed": int(trial["seed"])}
        )
        assert [trial[f"success/stage{s}"] for s in range(3)] == success


def test_report_every_sends_fewer_reports_with_the_same_final_numbers(tmp_path):
    spec = parse_spec({"name": "sparse", "train": TINY_TRAIN, "seeds": [7], "report_every": 2, "checkpoint_every": 2})
    path = run_sweep(spec, storage=str(tmp_path), verbose=0)
    (lines,) = results_by_trial(path).values()
    assert [line["update"] for line in lines] == [10, 20, 30]  # 6 evaluations, every second one reported
    assert lines[-1]["final"] == 1
    success, reward = direct_final(spec, {"seed": 7})
    assert [lines[-1][f"success/stage{s}"] for s in range(3)] == success


def test_asha_grace_period_counts_evaluations_even_when_reports_are_sparser():
    # With report_every 2, a trial's first report comes after its 2nd evaluation (Tune's
    # training_iteration 1). A grace period of 2 evaluations must judge it there; counted in
    # reports (the old time_attr), the weak trial would run on to its 4th evaluation.
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from distributed_agent.sweep import make_scheduler

    spec = parse_spec(
        {
            "name": "asha_units",
            "train": {**TINY_TRAIN, "updates": 40, "eval_every": 5},
            "scheduler": "asha",
            "asha": {"grace_period": 2, "reduction_factor": 2},
            "report_every": 2,
            "checkpoint_every": 2,
        }
    )
    scheduler = make_scheduler(spec)
    scheduler.set_search_properties(spec.metric, spec.mode)
    strong, weak = SimpleNamespace(trial_id="strong"), SimpleNamespace(trial_id="weak")
    for trial in (strong, weak):
        scheduler.on_trial_add(None, trial)

    def first_report(success):  # what run_trial reports after its 2nd evaluation
        return {"evaluation": 2, "training_iteration": 1, "success/min": success}

    assert scheduler.on_trial_result(None, strong, first_report(1.0)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, weak, first_report(0.0)) == TrialScheduler.STOP


def stop_after_the_round_at(evaluation: int):
    """Bookkeeping.stop_all that stops every trial, as a full disk does, once the experiment
    recorded its PBT round at `evaluation`."""

    def stop_all(self) -> bool:
        record = Path(self.storage.path(self.name, "pbt_round.json"))
        if self.storage_full is None and record.exists() and json.loads(record.read_text())["evaluation"] >= evaluation:
            self.storage_full = "stopped by the test"
        return self.storage_full is not None

    return stop_all


def test_pbt_does_not_print_a_trials_final_report_as_a_warning():
    import logging

    from ray.util.debug import reset_log_once

    from distributed_agent.pbt import make_pbt

    spec = parse_spec(
        {
            "name": "quiet",
            "train": TINY_TRAIN,
            "seeds": [0],
            "scheduler": "pbt",
            "checkpoint_every": 2,
            "mutations": {"lr": {"loguniform": [1e-4, 1e-2]}},
            "pbt": {"perturbation_interval": 2},
        }
    )
    scheduler = make_pbt(spec)
    scheduler.set_search_properties("success/min", "max")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    tune_pbt = logging.getLogger("ray.tune.schedulers.pbt")
    tune_pbt.addHandler(handler)
    reset_log_once("pbt-time_attr-error")  # Tune warns once per process
    try:  # a final report: no evaluation, on purpose
        decision = scheduler.on_trial_result(None, SimpleNamespace(), {"success/min": 1.0, "final": 1})
    finally:
        tune_pbt.removeHandler(handler)
    assert decision == "CONTINUE" and records == []


def make_early_slow_trial(key: str, solved_at: int, slow_at: int, seconds: float):
    """A trainable whose trial `key` counts as solved from update `solved_at` on (so it stops early,
    as a population whose members all reach stop_at_success) and pauses `seconds` at update `slow_at`."""

    def early_slow_trial(config, **kwargs):
        from distributed_agent import train, trainable

        if config["trial"]["key"] != key:
            return trainable.run_trial(config, **kwargs)
        solved, train_step = train.solved, train.train_step

        def slow_step(members):
            if members[0].update == slow_at:
                time.sleep(seconds)
            return train_step(members)

        train.solved = lambda run: run.update >= solved_at or solved(run)
        train.train_step = slow_step
        try:
            trainable.run_trial(config, **kwargs)
        finally:
            train.solved, train.train_step = solved, train_step

    return early_slow_trial


@pytest.mark.slow  # a regression test (~40 s); the default run keeps pbt's reproducibility test
def test_a_pbt_round_is_held_when_the_trial_it_waits_for_finishes_before_it(tmp_path):
    # Rounds every 2 evaluations (10 updates). Trial 0001 stops at update 15 (solved), slowly, so
    # trial 0000 reaches the round at update 20 first and waits; 0001's final report carries no
    # evaluation, so Tune's synchronous PBT never held that round and 0000 waited for ever.
    spec = parse_spec(
        {
            "name": "late_round",
            "train": TINY_TRAIN,
            "seeds": [0],
            "seeds_per_trial": "all",
            "samples": 2,
            "scheduler": "pbt",
            "checkpoint_every": 2,
            "mutations": {"lr": {"loguniform": [1e-4, 1e-2]}},
            "pbt": {"perturbation_interval": 2, "quantile_fraction": 0.5, "seed": 3},
        }
    )

    def hung(signum, frame):
        raise TimeoutError("the PBT sweep still runs after 240 s: a trial waits at a round for ever")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(240)
    try:
        path = run_sweep(spec, storage=str(tmp_path), trial_fn=make_early_slow_trial("0001", 15, 12, 10), verbose=0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    lines = results_by_trial(path)
    assert [line.get("evaluation") for line in lines["trial_0001"]] == [1, 2, None]
    assert [line.get("evaluation") for line in lines["trial_0000"]] == [1, 2, 3, 4, 5, None]
    assert json.loads((Path(path) / "pbt_round.json").read_text())["evaluation"] == 4  # the late round


@pytest.mark.parametrize("scheduler", ["pbt", pytest.param("pb2", marks=pytest.mark.slow)])
def test_pbt_on_configurations_is_reproducible_resumes_exactly_and_an_exploit_takes_the_donors_population(
    tmp_path, scheduler, monkeypatch
):
    spec = parse_spec(
        {
            "name": "pbt",
            "train": {**TINY_TRAIN, "updates": 40},
            "seeds": [0, 1],
            "seeds_per_trial": "all",
            "samples": 4,
            "scheduler": scheduler,
            "checkpoint_every": 2,
            "mutations": {"lr": {"loguniform": [1e-4, 1e-2]}, "entropy_coef": {"uniform": [0.001, 0.1]}},
            "pbt": {"perturbation_interval": 2, "quantile_fraction": 0.5, "seed": 3},
        }
    )
    runs = [results_by_trial(run_sweep(spec, storage=str(tmp_path / "a"), verbose=0))]
    # Run again, its driver stopped (as by a full disk) after the round at evaluation 4 while the
    # trials go on, then resumed: the same decisions and numbers as the run never interrupted.
    interrupted = str(tmp_path / "b")
    with monkeypatch.context() as patch:
        patch.setattr(Bookkeeping, "stop_all", stop_after_the_round_at(4))
        with pytest.raises(StorageFull):
            run_sweep(spec, storage=interrupted, verbose=0)
    assert json.loads((tmp_path / "b" / "pbt" / "pbt_round.json").read_text())["evaluation"] == 4
    runs.append(results_by_trial(run_sweep(spec, storage=interrupted, resume=True, verbose=0)))
    assert list((tmp_path / "b" / "pbt").glob("trial_*.r1"))  # the resume had work to do
    finals = [
        {
            key: (
                lines[-1]["schedule"],
                lines[-1]["success/min"],
                {seed: {k: v for k, v in m.items() if k != "seconds"} for seed, m in lines[-1]["members"].items()},
            )
            for key, lines in run.items()
        }
        for run in runs
    ]
    assert finals[0] == finals[1] and len(finals[0]) == 4
    for lines in runs[0].values():  # every report kept through the rounds' pauses and restarts
        assert [line.get("evaluation") for line in lines] == [*range(1, len(lines)), None] and lines[-1]["final"]
    first_reports = {key: lines[0] for key, lines in runs[0].items()}
    schedules = {key: json.loads(final[0]) for key, final in finals[0].items()}
    assert any(len(schedule) > 1 for schedule in schedules.values())  # hyperparameters changed in training
    # An exploited trial continues its donor's population: it inherits the donor's history, which
    # begins with the donor's initial values, not its own.
    assert any(schedules[key][0]["lr"] != first_reports[key]["hp/lr"] for key in schedules)
    for schedule in schedules.values():
        for entry in schedule:  # explored values stay within the mutations' bounds
            assert 1e-4 <= entry["lr"] <= 1e-2 and 0.001 <= entry["entropy_coef"] <= 0.1
        TrainConfig(**{**TINY_TRAIN, "updates": 40, "schedule": schedule})  # replayable as a schedule
    report = build_report(Path(tmp_path / "a" / "pbt"))
    assert len(report.trials) == 8 and (report.trials["status"] == "terminated").all()
    write_report(report, tmp_path / "report")  # the best trial's schedule, ready to replay
    best = yaml.safe_load((tmp_path / "report" / "best_schedule.yaml").read_text())["schedule"]
    assert best == schedules["trial_" + report.summary.iloc[0]["pbt_trial"]]
    assert TrainConfig(**{**TINY_TRAIN, "updates": 40, "schedule": best}).schedule == best
