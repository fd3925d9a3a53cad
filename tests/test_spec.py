import re
from pathlib import Path

import pytest
import yaml

from distributed_agent.cli import main
from distributed_agent.config import ConfigError
from distributed_agent.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("spec", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_spec_is_valid(spec):
    assert load_spec(spec).name == spec.stem


def test_variants_run_every_sampled_config_on_every_seed():
    spec = parse_spec(
        {
            "name": "s",
            "search": {
                "lr": {"loguniform": [1e-4, 1e-2]},
                "hidden_size": {"grid": [32, 64]},
                "entropy_coef": {"choice": [0.01, 0.1]},
            },
            "seeds": [3, 7, 11],
            "samples": 4,
        }
    )
    variants = spec.variants()
    assert len(variants) == 2 * 4 * 3
    configs = {}
    for variant in variants:
        key = tuple((k, v) for k, v in sorted(variant.items()) if k != "seed")
        configs.setdefault(key, []).append(variant["seed"])
    assert len(configs) == 8 and all(seeds == [3, 7, 11] for seeds in configs.values())
    assert all(1e-4 <= v["lr"] <= 1e-2 and v["entropy_coef"] in (0.01, 0.1) for v in variants)
    assert variants == parse_spec(spec.source).variants()  # the same spec draws the same trials
    assert spec.trial_config(variants[0]).lr == variants[0]["lr"]


def test_seeds_per_trial_groups_a_configurations_seeds_into_populations():
    raw = {"seeds": [7, 8, 9, 10, 11], "search": {"lr": {"grid": [0.001, 0.002]}}}
    assert [t["seeds"] for t in parse_spec({**raw, "seeds_per_trial": "all"}).variants()] == [[7, 8, 9, 10, 11]] * 2
    grouped = parse_spec({**raw, "seeds_per_trial": 2})
    assert [t["seeds"] for t in grouped.variants()] == [[7, 8], [9, 10], [11]] * 2
    assert grouped.trials_per_config == 3
    assert [t["seed"] for t in parse_spec(raw).variants()] == [7, 8, 9, 10, 11] * 2  # 1: one seed per trial


def test_yaml_numbers_written_like_3e_3_are_numbers(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntrain: {lr: 3e-3}\nsearch:\n  lr: {grid: [1e-3, 3e-3]}\n")
    spec = load_spec(path)
    assert spec.train.lr == 0.003 and spec.search[0].values == (0.001, 0.003)


PBT = {
    "scheduler": "pbt",
    "seeds": 2,
    "seeds_per_trial": "all",
    "checkpoint_every": 2,
    "mutations": {"lr": {"loguniform": [0.0001, 0.01]}},
}
BAD_SPECS = [
    ({"colour": "blue"}, "colour: unknown spec field"),
    ({"train": {"lr": -1}}, "lr: must be > 0"),
    ({"search": {"lr": {"grid": []}}}, "search.lr.grid: must be a non-empty list"),
    ({"search": {"lr": {"loguniform": [0, 0.1]}}}, "search.lr.loguniform: bounds must be > 0"),
    ({"search": {"lr": {"loguniform": [-1, 0.1]}}}, "search.lr.loguniform: bounds must be > 0"),
    ({"search": {"lr": {"normal": [0, 1]}}}, "search.lr: unknown distribution 'normal'"),
    ({"search": {"depth": {"grid": [1, 2]}}}, "search.depth: unknown field"),
    ({"search": {"hidden_size": {"grid": [64, 0]}}}, "search.hidden_size: hidden_size: must be an integer in 1..4096"),
    ({"search": {"variant": {"choice": ["tutorial", "hard"]}}}, "search.variant: variant: must be one of"),
    ({"seeds": 0}, "seeds: must be a count >= 1"),
    ({"seeds": [1, 1]}, "seeds: must be a count >= 1 or a list of distinct integers"),
    ({"scheduler": "hyperband"}, "scheduler: must be one of fifo, asha"),
    ({"search_alg": "bayes"}, "search_alg: must be one of random, optuna"),
    ({"metric": "accuracy"}, "metric: must be one of success/min"),
    ({"resources": {"cpu": 0, "gpu": 0}}, "resources: a trial needs cpu > 0 or gpu > 0"),
    ({"resources": {"tpu": 1}}, "resources: must be a mapping with cpu and/or gpu"),
    ({"max_failures": -1}, "max_failures: must be an integer >= 0"),
    ({"report_every": 3, "checkpoint_every": 4}, "checkpoint_every: must be a multiple of report_every (3)"),
    ({"name": "../escape"}, "name: must be letters"),
    ({"seeds": 3, "seeds_per_trial": 4}, "seeds_per_trial: must be an integer in 1..3 (the number of seeds) or 'all'"),
    ({"seeds_per_trial": "some"}, "seeds_per_trial: must be an integer in 1..1"),
    (
        {"seeds": 4, "seeds_per_trial": 2, "search_alg": "optuna", "search": {"lr": {"uniform": [0.001, 0.01]}}},
        "seeds_per_trial: with search_alg optuna, 1 (each seed a trial) or all (4",
    ),
    ({**PBT, "mutations": {"hidden_size": {"uniform": [8, 16]}}}, "mutations.hidden_size: not a schedulable number"),
    ({**PBT, "mutations": {"colour": {"uniform": [1, 2]}}}, "mutations.colour: not a schedulable number field"),
    ({**PBT, "mutations": {"lr": {"uniform": [0, 0.1]}}}, "mutations.lr.uniform: must be [low, high] with 0 < low"),
    ({**PBT, "mutations": {"lr": {"grid": [0.1]}}}, "mutations.lr: must be {uniform: [low, high]}"),
    ({**PBT, "mutations": {"explore_epsilon": {"uniform": [0.1, 2]}}}, "mutations.explore_epsilon: explore_epsilon:"),
    ({**PBT, "search_alg": "optuna"}, "search_alg: scheduler pbt chooses configurations itself; use random"),
    ({**PBT, "pbt": {"perturbation_interval": 0}}, "pbt.perturbation_interval: must be an integer >= 1 (got 0)"),
    ({**PBT, "pbt": {"perturbation_interval": 3}}, "pbt.perturbation_interval: must be a multiple of checkpoint_every"),
    ({**PBT, "pbt": {"quantile_fraction": 0.9}}, "pbt.quantile_fraction: must be a number in [0, 0.5]"),
    ({**PBT, "pbt": {"elite": 1}}, "pbt: must be a mapping with any of perturbation_interval"),
    ({**PBT, "seeds_per_trial": 1}, "seeds_per_trial: scheduler pbt needs all (2)"),
    ({**PBT, "mutations": {}}, "mutations: scheduler pbt needs at least one field to mutate"),
    ({"mutations": {"lr": {"uniform": [0.001, 0.01]}}}, "mutations: only with scheduler pbt or pb2"),
    ({**PBT, "search": {"lr": {"grid": [0.001]}}}, "mutations.lr: also in search"),
    ({"train": {"schedule": [{"update": 0, "hidden_size": 8}]}}, "schedule[0].hidden_size: not schedulable"),
    ({"train": {"schedule": [{"update": 99, "lr": 0.1}]}}, "schedule[0].update: must be an integer in 0..59"),
]


@pytest.mark.parametrize("raw,message", BAD_SPECS, ids=[m.split(":")[0] for _, m in BAD_SPECS])
def test_bad_specs_are_refused_with_one_line_naming_the_field(raw, message):
    with pytest.raises(ConfigError) as error:
        parse_spec({"name": "bad", **raw})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_spec_on_the_command_line_exits_before_ray_starts(tmp_path, capsys):
    import ray

    for raw, message in [({"seeds": 0}, "seeds"), ({"resources": {"gpu": 0.25}}, "resources.gpu")]:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"name": "bad", **raw}))
        assert main(["sweep", str(path), "--storage", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not ray.is_initialized()
        assert not (tmp_path / "runs").exists()  # nothing half-started


def test_report_of_a_missing_or_empty_folder_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no trial results" in capsys.readouterr().err


@pytest.mark.parametrize("expanded", sorted((ROOT / "tests/data/expanded_specs").glob("*.yaml")), ids=lambda p: p.name)
def test_an_ablation_written_with_extends_resolves_to_the_spec_it_replaced(expanded):
    # tests/data/expanded_specs holds the ablation specs as they were written out in full
    short, full = load_spec(ROOT / "experiments" / expanded.name), load_spec(expanded)
    assert short == full and short.source == full.source
    assert short.variants() == full.variants() and short.train == full.train


def test_extends_merges_field_by_field_and_removes_a_dimension_set_to_null(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "base.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "base",
                "description": "the base",
                "train": {"lr": 0.01, "hidden_size": 32},
                "search": {"entropy_coef": {"grid": [0.01, 0.03]}, "batch_size": {"grid": [32, 64]}},
                "seeds": 3,
            }
        )
    )
    (tmp_path / "child.yaml").write_text(
        "extends: base/base.yaml\ntrain: {hidden_size: 48, max_len: null}\nsearch: {batch_size: null}\n"
    )
    spec = load_spec(tmp_path / "child.yaml")
    assert (spec.name, spec.description, spec.seeds) == ("child", "", (0, 1, 2))  # name and description its own
    assert (spec.train.lr, spec.train.hidden_size) == (0.01, 48)
    assert [d.name for d in spec.search] == ["entropy_coef"]
    assert spec.source["search"] == {"entropy_coef": {"grid": [0.01, 0.03]}}  # saved with runs resolved


@pytest.mark.parametrize(
    "files, message",
    [
        (
            {"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"},
            "extends: a cycle (a.yaml -> b.yaml -> a.yaml)",
        ),
        ({"a.yaml": "extends: a.yaml\n"}, "extends: a cycle (a.yaml -> a.yaml)"),
        ({"a.yaml": "extends: missing.yaml\n"}, "extends: no such file 'missing.yaml'"),
        ({"a.yaml": "extends: 3\n"}, "extends: must be the path of a spec file"),
        ({"a.yaml": "extends: b.yaml\ntrain: {lr: 0.01, speed: 3}\n", "b.yaml": "seeds: 2\n"}, "train.speed"),
        ({"a.yaml": "extends: b.yaml\nsched: asha\n", "b.yaml": "seeds: 2\n"}, "sched: unknown spec field"),
    ],
)
def test_bad_extends_is_one_line_before_ray_starts(tmp_path, capsys, files, message):
    import ray

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert main(["sweep", str(tmp_path / "a.yaml"), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def test_a_packaged_spec_is_found_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert load_spec("default") == load_spec(ROOT / "experiments/default.yaml")
    assert load_spec("memory_ws_ablation_no_novelty.yaml").train.novelty_bonus == 0.0
    assert main(["sweep", "no_such_spec", "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "no such file 'no_such_spec'" in err and len(err.strip().splitlines()) == 1
    folder = re.search(r"packaged specs in (\S+),", err).group(1)  # where to look, every spec there
    count = len(list(Path(folder).glob("*.yaml")))
    assert (Path(folder) / "memory_pbt.yaml").is_file() and f"one of the {count} " in err
