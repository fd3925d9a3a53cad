import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from distributed_agent.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "updates": 10,
    "batch_size": 32,
    "hidden_size": 16,
    "eval_episodes": 16,
    "final_eval_episodes": 50,
    "device": "cpu",
}


def write_spec(tmp_path, train, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "t", "train": train}))
    return path


@pytest.mark.parametrize(
    "train,field,allowed",
    [
        ({"lerning_rate": 0.1}, "lerning_rate", "allowed: variant"),
        ({"lr": -0.001}, "lr", "> 0"),
        ({"lr": 0}, "lr", "> 0"),
        ({"lr": "fast"}, "lr", "float"),
        ({"batch_size": 0}, "batch_size", "an integer in 1..65536"),
        ({"batch_size": 12.5}, "batch_size", "int"),
        ({"hidden_size": -4}, "hidden_size", "an integer in 1..4096"),
        ({"updates": True}, "updates", "int"),
        ({"variant": "easy"}, "variant", "shifted, declared"),
        ({"loss": "ppo"}, "loss", "summed_baseline, masked"),
        ({"curriculum": "random"}, "curriculum", "one_stage, mixed, mastery"),
        ({"device": "tpu"}, "device", "auto, cpu, cuda"),
        ({"init": "zeros"}, "init", "batch_mean, episode"),
        ({"mastery_threshold": 1.5}, "mastery_threshold", "(0, 1]"),
    ],
)
def test_bad_config_is_one_line_naming_the_field(tmp_path, capsys, train, field, allowed):
    spec = write_spec(tmp_path, train)
    save = tmp_path / "out.pt"
    assert main(["train", "--config", str(spec), "--save", str(save)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err and allowed in err, err
    assert not save.exists()


@pytest.mark.parametrize(
    "override,needle",
    [
        ("lr", "--set: expected key=value"),
        ("=3", "--set: expected key=value"),
        ("lr=[1,", "--set lr: value '[1,' does not parse"),
        ("lr=-1", "lr: must be > 0"),
        ("colour=blue", "train.colour: unknown field"),
        ("variant=easy", "variant: must be one of shifted, declared"),
    ],
)
def test_bad_set_is_one_line(tmp_path, capsys, override, needle):
    spec = write_spec(tmp_path, TINY)
    assert main(["train", "--config", str(spec), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


def test_missing_or_broken_files_are_one_line(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: {lr: [1, 2\n")
    assert main(["train", "--config", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint: no such file" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(broken)]) == 2
    assert "is not a distributed_agent checkpoint" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "run folder: " in (err := capsys.readouterr().err) and "none' does not exist" in err
    assert main(["report", str(broken)]) == 2  # e.g. a README.md picked up by parts/*
    assert "broken.yaml' is a file (give an experiment folder" in capsys.readouterr().err


def test_train_prints_progress_samples_and_final_then_explain_reads_the_checkpoint(tmp_path, capsys):
    spec = write_spec(tmp_path, {**TINY, "eval_every": 5})
    save = tmp_path / "run.pt"
    assert main(["train", "--config", str(spec), "--set", "lr=3e-3", "--set", "seed=4", "--save", str(save)]) == 0
    out = capsys.readouterr().out
    (header,) = [line for line in out.splitlines() if line.startswith("Training")]
    assert "lr=0.003" in header and "seed=4" in header and "device=cpu" in header
    assert "entropy_coef=" not in header  # a field at its default is not repeated
    progress = [line for line in out.splitlines() if line.startswith("update")]
    assert [line.split()[1] for line in progress] == ["5", "10"]
    assert out.count("tools:") == 15  # 5 explained samples per stage
    final = out[out.index("Final greedy evaluation") :]
    assert all(f"stage {s}: success" in final for s in range(3))
    assert main(["explain", "--checkpoint", str(save), "--device", "cpu"]) == 0
    explained = capsys.readouterr().out
    assert explained[explained.index("Final greedy") :] == final[: final.index("Checkpoint saved")]
    # An existing checkpoint is never overwritten.
    before = save.read_bytes()
    assert main(["train", "--config", str(spec), "--save", str(save)]) == 2
    assert "exists" in capsys.readouterr().err and save.read_bytes() == before


def test_console_entry_point_exits_non_zero_on_bad_input(tmp_path):
    spec = write_spec(tmp_path, {"lr": -1})
    done = subprocess.run(
        [sys.executable, "-m", "distributed_agent", "train", "--config", str(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "distributed-agent: error: lr: must be > 0 (got -1.0)"


# ---- inputs that used to slip through (one line, exit 2, nothing started or written) ---------

ALIAS_BOMB = (
    "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "train: {lr: *f}\n"
)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("name: t\nresources: {cpu: .nan}\n", "resources.cpu: must be a number"),
        ("name: t\nresources: {gpu: .inf}\n", "resources.gpu: must be a number"),
        (ALIAS_BOMB, "aliases expand to more than 100,000 values"),
        ("name: t\ntrain: {lr: 0.1, lr: 0.2}\n", "duplicate key 'lr' (line 2)"),
        ("name:\ntrain: {}\n", "name: must be"),
        ('name: "x\\n"\n', "name: must be"),
        ("name: t\ntrain: {batch_size: 1000000000}\n", "batch_size: must be an integer in 1..65536"),
        ("name: t\ntrain: {lr: [" + "1, " * 5000 + "1]}\n", "(cut)"),
    ],
)
def test_sweep_spec_inputs_that_used_to_slip_through_are_one_line(tmp_path, capsys, text, needle):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and len(err) < 600, err[:1000]
    assert not (tmp_path / "runs").exists()


def test_non_utf8_spec_and_bad_storage_are_one_line(tmp_path, capsys):
    spec = tmp_path / "latin.yaml"
    spec.write_bytes("name: t\ndescription: caf\xe9\n".encode("latin-1"))
    assert main(["sweep", str(spec)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    good = write_spec(tmp_path, TINY)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    for storage, needle in [
        ("", "--storage: must be a folder path or a URI"),
        (str(a_file), "is a file, not a folder"),
        ("ftp://host/x", "--storage: cannot open 'ftp://host/x'"),
        ("file://relative", "needs an absolute path"),
    ]:
        assert main(["sweep", str(good), "--storage", storage]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(read_only), str(read_only)], capture_output=True)
    if mounted.returncode == 0:  # a read-only mount stops root too
        try:
            assert main(["sweep", str(good), "--storage", str(read_only / "runs")]) == 2
            assert "cannot write in" in capsys.readouterr().err
            assert main(["report", str(ROOT / "results" / "default"), "--out", str(read_only / "out")]) == 2
            assert "--out: cannot write in" in capsys.readouterr().err
        finally:
            subprocess.run(["umount", str(read_only)])
    assert main(["report", str(tmp_path), "--out", str(a_file)]) == 2
    assert "--out: " in capsys.readouterr().err


def test_explain_samples_zero_trains_and_saves(tmp_path, capsys):
    spec = write_spec(tmp_path, {**TINY, "explain_samples": 0})
    save = tmp_path / "run.pt"
    assert main(["train", "--config", str(spec), "--save", str(save)]) == 0
    assert save.exists() and "tools:" not in capsys.readouterr().out


def test_explain_of_a_checkpoint_that_does_not_match_its_configuration_is_one_line(tmp_path, capsys):
    import torch

    spec = write_spec(tmp_path, TINY)
    save = tmp_path / "run.pt"
    assert main(["train", "--config", str(spec), "--save", str(save)]) == 0
    state = torch.load(save, weights_only=True)
    state["members"][0]["config"]["hidden_size"] = 32  # weights of a 16-wide model under a 32-wide configuration
    torch.save(state, save)
    capsys.readouterr()
    assert main(["explain", "--checkpoint", str(save)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not match the configuration it names" in err, err


def test_a_sweep_whose_trials_errored_exits_non_zero(tmp_path, capsys):
    spec = tmp_path / "nan.yaml"
    spec.write_text(
        yaml.safe_dump({"name": "nan", "max_failures": 0, "seeds": 2, "train": {**TINY, "lr": 1e30, "eval_every": 5}})
    )
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs")]) == 1
    captured = capsys.readouterr()
    assert "2 errored" in captured.out and "2 trials errored" in captured.err
    assert not [w for w in warned if "legend" in str(w.message)]  # the report's plots of no curve: no warning


def test_fields_lists_every_train_field_with_what_is_allowed(capsys):
    from distributed_agent.config import TrainConfig

    assert main(["fields"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == TrainConfig.field_names()
    variant = next(line for line in lines if line.startswith("variant "))
    assert "shifted | declared" in variant and "'tutorial' is read as shifted" in variant
    assert "an integer in 1..65536" in next(line for line in lines if line.startswith("batch_size "))
    novelty = next(line for line in lines if line.startswith("novelty_bonus "))
    assert novelty.endswith("[variant declared only] [agent ours only]")  # what a non-default value needs
