"""b2diffurl.figures on synthetic run folders with known numbers (no models, no GPU).

Hand arithmetic used below: for two seeds a, b the standard error over seeds is
stdev / sqrt(2) = (|a - b| / sqrt(2)) / sqrt(2) = |a - b| / 2.
"""

import csv
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from b2diffurl import figures
from b2diffurl.figures import Stat, average_curves, format_stat, mean_se, split_spec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUERIES = [64, 128, 192]  # cumulative reward queries after rounds 0, 1, 2


def write_eval(run_dir, round_name, index, prompt_set="test", *, clip, inception, sem=0.002, is_std=0.0,
               is_splits=1, queries=None, template="template1", algorithm="ppo", label="B2-DiffuRL", **extra):
    folder = os.path.join(run_dir, round_name, "eval")
    os.makedirs(folder, exist_ok=True)
    data = {
        "format_version": 1, "round": round_name, "round_index": index, "prompt_set": prompt_set,
        "prompt_file": f"/abs/prompts/{template or 'animals'}_{prompt_set}.json", "template": template,
        "reward_queries": (0 if index < 0 else QUERIES[index]) if queries is None else queries,
        "num_images": 8, "images_per_prompt": 4, "clipscore_mean": clip, "clipscore_sem": sem,
        "clipscore_std": 0.04, "inception_score": inception, "inception_score_std": is_std, "is_splits": is_splits,
        "reward": "clipscore", "reward_mean": clip, "reward_sem": sem, "per_prompt": {"a cat": {"clipscore": clip}},
        "method": {"algorithm": algorithm, "split_time": 3, "num_steps": 20, "label": label}, "grid": "test_grid.png",
        **extra,
    }
    with open(os.path.join(folder, f"{prompt_set}.json"), "w") as f:
        json.dump(data, f)


def write_progress(run_dir, rewards, reward_std=0.08, trajectories=64):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "progress.csv"), "w") as f:
        f.write("round,run_name,k,split_time,trajectories,reward_queries,reward_mean,reward_std,selected,loss,"
                "approx_kl,clipfrac,grad_norm,optimizer_steps,seconds\n")
        for r, reward in enumerate(rewards):
            f.write(f"{r},round_{r:03d},{r + 1},3,{trajectories},{QUERIES[r]},{reward},{reward_std},16,0.1,0.01,"
                    "0.1,1.0,2,10.0\n")


def make_run(root, name, *, clips, inceptions, rewards, base_clip=0.28, base_is=1.20, last_sem=0.002, **method):
    """A run folder with progress.csv, base/eval/test.json and round_00{0,1,2}/eval/test.json."""
    run_dir = os.path.join(root, name)
    write_progress(run_dir, rewards)
    write_eval(run_dir, "base", -1, clip=base_clip, inception=base_is, **method)
    for r, (clip, inception) in enumerate(zip(clips, inceptions)):
        write_eval(run_dir, f"round_{r:03d}", r, clip=clip, inception=inception,
                   sem=last_sem if r == len(clips) - 1 else 0.002, **method)
    return run_dir


@pytest.fixture
def runs(tmp_path):
    """Four groups on template1: b2_t1 (2 seeds, B2-DiffuRL ppo), ddpo (2 seeds, vanilla ppo),
    DPOK (1 seed, vanilla dpok, no IS spread) and "BPT only" (1 seed, IS over 4 splits)."""
    root = str(tmp_path / "runs")
    b2 = dict(algorithm="ppo", label="B2-DiffuRL")
    vanilla = dict(algorithm="ppo", label="vanilla")
    return {
        "b2_1": make_run(root, "b2_t1_seed1", clips=[0.30, 0.32, 0.34], inceptions=[1.30, 1.35, 1.40],
                         rewards=[0.20, 0.25, 0.30], base_is=1.20, **b2),
        "b2_2": make_run(root, "b2_t1_seed2", clips=[0.31, 0.33, 0.36], inceptions=[1.31, 1.36, 1.44],
                         rewards=[0.22, 0.27, 0.34], base_is=1.22, **b2),
        "ddpo_1": make_run(root, "ddpo-s1", clips=[0.29, 0.30, 0.31], inceptions=[1.25, 1.28, 1.30],
                           rewards=[0.20, 0.21, 0.22], base_is=1.20, **vanilla),
        "ddpo_2": make_run(root, "ddpo-s2", clips=[0.29, 0.31, 0.33], inceptions=[1.26, 1.30, 1.36],
                           rewards=[0.20, 0.22, 0.26], base_is=1.22, **vanilla),
        "dpok": make_run(root, "other_run_seed7", clips=[0.30, 0.30, 0.305], inceptions=[1.25, 1.26, 1.27],
                         rewards=[0.21, 0.22, 0.23], base_is=1.20, algorithm="dpok", label="vanilla"),
        "bpt": make_run(root, "bpt_only_seed1", clips=[0.30, 0.32, 0.335], inceptions=[1.30, 1.34, 1.38],
                        rewards=[0.21, 0.23, 0.25], base_is=1.22, last_sem=0.003, algorithm="ppo", label="BPT only",
                        is_std=0.2, is_splits=4),
    }


def argv_for(runs, out):
    return [runs["b2_1"], runs["b2_2"], runs["ddpo_1"], runs["ddpo_2"], f"DPOK={runs['dpok']}",
            f"BPT only={runs['bpt']}", "--out", str(out)]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cell(rows, row, column):
    (found,) = [r for r in rows if r["row"] == row and r["column"] == column]
    return found


def assert_cell(rows, row, column, mean, se, n, source="seeds"):
    found = cell(rows, row, column)
    assert float(found["mean"]) == pytest.approx(mean, abs=1e-9)
    assert (found["se"] == "") if se is None else float(found["se"]) == pytest.approx(se, abs=1e-9)
    assert int(found["n"]) == n
    assert found["se_source"] == source


def assert_png(path):
    assert os.path.getsize(path) > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 100 and image.size[1] > 100
        image.verify()


# ---------------------------------------------------------------- pure functions

def test_mean_se_over_seeds_and_single_seed():
    stat = mean_se([(0.34, 0.002), (0.36, 0.005)])
    assert stat.mean == pytest.approx(0.35) and stat.se == pytest.approx(0.01) and stat.n == 2 and stat.source == "seeds"
    three = mean_se([(1.0, None), (2.0, None), (4.0, None)])  # stdev = sqrt(7/3)
    assert three.mean == pytest.approx(7 / 3) and three.se == pytest.approx((7 / 3) ** 0.5 / 3 ** 0.5)
    assert mean_se([(0.3, 0.002)]) == Stat(0.3, 0.002, 1, "eval")
    assert mean_se([(1.3, None)]) == Stat(1.3, None, 1, "")


def test_average_curves_keeps_only_points_of_every_seed():
    points, dropped = average_curves([{0: (0.28, 0.0), 64: (0.30, 0.0), 128: (0.32, 0.0)}, {0: (0.28, 0.0), 64: (0.31, 0.0)}])
    assert [x for x, _ in points] == [0, 64] and dropped == 1
    assert points[1][1].mean == pytest.approx(0.305) and points[1][1].se == pytest.approx(0.005)
    single, _ = average_curves([{64: (0.2, 0.01)}], own_source="round")
    assert single == [(64, Stat(0.2, 0.01, 1, "round"))]
    assert average_curves([{}, {}]) == ([], 0)


def test_labels_from_seed_suffix_or_explicit(tmp_path):
    assert split_spec("/x/b2_t1_seed2") == ("b2_t1", "/x/b2_t1_seed2")
    assert split_spec("/x/b2_t1_seed2/") == ("b2_t1", "/x/b2_t1_seed2/")
    assert split_spec("runs/ddpo-s3") == ("ddpo", "runs/ddpo-s3")
    assert split_spec("runs/ddpo_S12") == ("ddpo", "runs/ddpo_S12")
    assert split_spec("runs/seedless") == ("seedless", "runs/seedless")
    assert split_spec("runs/b2_seeds") == ("b2_seeds", "runs/b2_seeds")  # no digits: not a seed suffix
    assert split_spec("Ours=/x/b2_t1_seed2") == ("Ours", "/x/b2_t1_seed2")
    odd = tmp_path / "k=3_seed1"  # an existing folder whose name holds '=' is a folder, not LABEL=DIR
    odd.mkdir()
    assert split_spec(str(odd)) == ("k=3", str(odd))


def test_format_stat():
    assert format_stat(Stat(0.35, 0.01, 2, "seeds")) == "0.3500 ± 0.0100"
    assert format_stat(Stat(1.27, None, 1, "")) == "1.2700"
    assert format_stat(None) == "-"


# ---------------------------------------------------------------- the command

def test_outputs_and_numbers(runs, tmp_path, capsys):
    out = tmp_path / "figs" / "nested"
    assert figures.main(argv_for(runs, out)) == 0
    printed = capsys.readouterr().out

    names = ["curve_test.png", "curve_test.csv", "curve_train_reward.png", "curve_train_reward.csv", "bars_test.png",
             "tables.md", "table1_diversity.csv", "table2_algorithms.csv", "table3_generalization.csv", "summary.csv"]
    assert sorted(os.listdir(out)) == sorted(names)
    for name in names:
        assert f"wrote {out / name}" in printed
    for name in ("curve_test.png", "curve_train_reward.png", "bars_test.png"):
        assert_png(out / name)

    tables = (out / "tables.md").read_text()
    assert tables.count("## Table ") == 3
    assert "## Table 1: diversity" in tables and "## Table 2: algorithms" in tables and "## Table 3: generalization" in tables
    assert tables.split("## Table ")[1] in printed  # the Markdown tables are printed too
    # Table 1 (final Inception Score). SD: base IS 1.20/1.22 alternating over 6 runs -> mean 1.21,
    # stdev = 0.01 * sqrt(6/5), SE = 0.01 / sqrt(5) = 0.00447.
    assert "| Method | Temp. 1 |" in tables
    assert "| SD | 1.2100 ± 0.0045 |" in tables
    assert "| b2_t1 | 1.4200 ± 0.0200 |" in tables  # 1.40, 1.44
    assert "| ddpo | 1.3300 ± 0.0300 |" in tables  # 1.30, 1.36
    assert "| DPOK | 1.2700 |" in tables  # one seed, is_splits 1: no SE
    assert "| BPT only | 1.3800 ± 0.1000 |" in tables  # one seed: 0.2 / sqrt(4)
    # Table 2: vanilla vs B2-DiffuRL per algorithm; "BPT only" is left out.
    assert "| Algorithm | Vanilla | Ours+Vanilla |" in tables
    assert "| PPO/DDPO | 1.3300 ± 0.0300 | 1.4200 ± 0.0200 |" in tables
    assert "| DPOK | 1.2700 | - |" in tables
    # Table 3 (final CLIPScore on test prompts).
    assert "| SD | 0.2800 ± 0.0000 |" in tables
    assert "| b2_t1 | 0.3500 ± 0.0100 |" in tables  # 0.34, 0.36
    assert "| ddpo | 0.3200 ± 0.0100 |" in tables  # 0.31, 0.33
    assert "| DPOK | 0.3050 ± 0.0020 |" in tables  # one seed: the evaluation's clipscore_sem
    assert "| BPT only | 0.3350 ± 0.0030 |" in tables

    t1 = read_csv(out / "table1_diversity.csv")
    assert list(t1[0]) == ["row", "column", "mean", "se", "n", "se_source"]
    assert [r["row"] for r in t1] == ["SD", "b2_t1", "ddpo", "DPOK", "BPT only"]
    assert_cell(t1, "SD", "Temp. 1", 1.21, 0.01 / 5 ** 0.5, 6)
    assert_cell(t1, "b2_t1", "Temp. 1", 1.42, 0.02, 2)
    assert_cell(t1, "DPOK", "Temp. 1", 1.27, None, 1, source="")
    assert_cell(t1, "BPT only", "Temp. 1", 1.38, 0.1, 1, source="eval")
    t2 = read_csv(out / "table2_algorithms.csv")
    assert [(r["row"], r["column"]) for r in t2] == [
        ("PPO/DDPO", "Vanilla"), ("PPO/DDPO", "Ours+Vanilla"), ("DPOK", "Vanilla"), ("DPOK", "Ours+Vanilla")]
    assert_cell(t2, "PPO/DDPO", "Vanilla", 1.33, 0.03, 2)
    assert_cell(t2, "PPO/DDPO", "Ours+Vanilla", 1.42, 0.02, 2)
    assert cell(t2, "DPOK", "Ours+Vanilla") == {"row": "DPOK", "column": "Ours+Vanilla", "mean": "", "se": "", "n": "0", "se_source": ""}
    t3 = read_csv(out / "table3_generalization.csv")
    assert_cell(t3, "SD", "Temp. 1", 0.28, 0.0, 6)
    assert_cell(t3, "ddpo", "Temp. 1", 0.32, 0.01, 2)
    assert_cell(t3, "DPOK", "Temp. 1", 0.305, 0.002, 1, source="eval")

    curve = read_csv(out / "curve_test.csv")
    b2 = [(int(r["reward_queries"]), float(r["mean"]), float(r["se"]), int(r["n"])) for r in curve if r["label"] == "b2_t1"]
    assert b2 == [pytest.approx(p) for p in [(0, 0.28, 0.0, 2), (64, 0.305, 0.005, 2), (128, 0.325, 0.005, 2), (192, 0.35, 0.01, 2)]]
    assert {r["label"] for r in curve} == {"b2_t1", "ddpo", "DPOK", "BPT only"}
    dpok = [r for r in curve if r["label"] == "DPOK" and r["reward_queries"] == "192"][0]
    assert float(dpok["se"]) == pytest.approx(0.002) and dpok["se_source"] == "eval"

    reward = read_csv(out / "curve_train_reward.csv")
    last = [r for r in reward if r["label"] == "b2_t1" and r["reward_queries"] == "192"][0]
    assert float(last["mean"]) == pytest.approx(0.32) and float(last["se"]) == pytest.approx(0.02) and last["n"] == "2"
    single = [r for r in reward if r["label"] == "DPOK" and r["reward_queries"] == "64"][0]
    assert float(single["se"]) == pytest.approx(0.08 / 8) and single["se_source"] == "round"  # reward_std / sqrt(64)
    assert "0" not in {r["reward_queries"] for r in reward}

    summary = read_csv(out / "summary.csv")
    assert len(summary) == 6 * 4  # base + 3 rounds per run
    row = [r for r in summary if r["run"] == runs["b2_2"] and r["round"] == "round_002"][0]
    assert row["label"] == "b2_t1" and row["reward_queries"] == "192" and row["round_index"] == "2"
    assert float(row["clipscore_mean"]) == pytest.approx(0.36) and float(row["inception_score"]) == pytest.approx(1.44)
    assert float(row["clipscore_sem"]) == pytest.approx(0.002)
    base = [r for r in summary if r["run"] == runs["dpok"] and r["round"] == "base"][0]
    assert base["label"] == "DPOK" and base["reward_queries"] == "0" and base["round_index"] == "-1"


def test_subprocess_and_light_import(runs, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "sub"
    proc = subprocess.run([sys.executable, "-m", "b2diffurl.figures", *argv_for(runs, out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert f"wrote {out / 'bars_test.png'}" in proc.stdout
    assert "| PPO/DDPO | 1.3300 ± 0.0300 | 1.4200 ± 0.0200 |" in proc.stdout
    assert_png(out / "bars_test.png")
    check = "import sys, b2diffurl.figures; bad = {'matplotlib', 'torch', 'numpy'} & set(sys.modules); assert not bad, bad"
    light = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert light.returncode == 0, light.stderr


def test_seeds_missing_points_and_templates(tmp_path, capsys):
    """A seed without round_002's evaluation drops that point from the curve (with a note) and ends at
    round_001; runs on another template or a prompt file without template get their own columns."""
    root = str(tmp_path)
    one = make_run(root, "x_seed1", clips=[0.30, 0.32, 0.34], inceptions=[1.3, 1.3, 1.4], rewards=[0.2, 0.3, 0.4],
                   algorithm="ppo", label="vanilla")
    two = make_run(root, "x_seed2", clips=[0.30, 0.36, 0.99], inceptions=[1.3, 1.5, 9.9], rewards=[0.2, 0.3, 0.4],
                   algorithm="ppo", label="vanilla")
    os.remove(os.path.join(two, "round_002", "eval", "test.json"))
    other = os.path.join(root, "t2")  # evaluations only, no progress.csv
    write_eval(other, "base", -1, clip=0.25, inception=1.1, template="template2")
    write_eval(other, "round_000", 0, clip=0.27, inception=1.2, template="template2", algorithm="ppo", label="vanilla")
    loose = os.path.join(root, "loose")
    write_eval(loose, "round_000", 0, clip=0.26, inception=1.0, template="", algorithm="dpo", label="B2-DiffuRL")
    out = tmp_path / "out"
    assert figures.main([one, two, other, loose, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: curve_test: x: 1 point(s) not in every seed's data left out of the average" in printed
    assert "note: x: seeds end at different evaluated rounds (round_001, round_002)" in printed

    curve = read_csv(out / "curve_test.csv")
    assert [r["reward_queries"] for r in curve if r["label"] == "x"] == ["0", "64", "128"]
    t3 = read_csv(out / "table3_generalization.csv")
    assert sorted({r["column"] for r in t3}, key=str) == ["Temp. 1", "Temp. 2", "animals_test"]
    assert_cell(t3, "x", "Temp. 1", 0.35, 0.01, 2)  # seed 1's round_002 (0.34) and seed 2's round_001 (0.36)
    assert_cell(t3, "t2", "Temp. 2", 0.27, 0.002, 1, source="eval")
    assert_cell(t3, "SD", "Temp. 2", 0.25, 0.002, 1, source="eval")
    assert cell(t3, "SD", "animals_test")["n"] == "0"  # the loose run has no base evaluation
    t2 = read_csv(out / "table2_algorithms.csv")
    assert {r["row"] for r in t2} == {"PPO/DDPO (Temp. 1)", "PPO/DDPO (Temp. 2)", "DPO (animals_test)"}
    assert_cell(t2, "PPO/DDPO (Temp. 1)", "Vanilla", 1.45, 0.05, 2)  # 1.4 and 1.5


def test_prompt_set_train_and_nothing_for_it(runs, tmp_path, capsys):
    write_eval(runs["b2_1"], "round_002", 2, "train", clip=0.40, inception=1.5)
    out = tmp_path / "train"
    assert figures.main([runs["b2_1"], "--out", str(out), "--prompt-set", "train"]) == 0
    assert_png(out / "curve_train.png")
    assert "| b2_t1 | 0.4000 ± 0.0020 |" in (out / "tables.md").read_text()
    assert "note: curve_train.png" not in capsys.readouterr().out

    only_train = tmp_path / "only_train_seed1"  # has an eval JSON, but none of the chosen prompt set
    write_eval(str(only_train), "round_000", 0, "train", clip=0.3, inception=1.2)
    nothing = tmp_path / "nothing"
    assert figures.main([str(only_train), "--out", str(nothing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: nothing to write")
    assert not nothing.exists()


def bad_input_cases(tmp_path, runs):
    empty = tmp_path / "empty_seed1"
    empty.mkdir()
    a_file = tmp_path / "taken"
    a_file.write_text("keep")
    broken = tmp_path / "broken"
    write_progress(str(broken), [0.2])
    os.makedirs(broken / "round_000" / "eval")
    (broken / "round_000" / "eval" / "test.json").write_text("{not json")
    out = str(tmp_path / "out")
    return {
        "missing": ([str(tmp_path / "nope"), "--out", out], "no such run folder"),
        "empty": ([str(empty), "--out", out], "neither progress.csv nor any"),
        "out is a file": ([runs["b2_1"], "--out", str(a_file)], "exists and is not a folder"),
        "broken json": ([str(broken), "--out", out], "not a readable JSON file"),
        "twice": ([runs["b2_1"], runs["b2_1"] + "/", "--out", out], "given twice"),
        "empty label": ([f"={runs['b2_1']}", "--out", out], "empty label"),
        "no --out": ([runs["b2_1"]], "--out"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "out is a file", "broken json", "twice", "empty label", "no --out"])
def test_bad_inputs_exit_2_and_write_nothing(runs, tmp_path, capsys, case):
    argv, message = bad_input_cases(tmp_path, runs)[case]
    before = sorted(os.listdir(tmp_path))
    assert figures.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and message in captured.err
    assert captured.out == ""
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "taken").read_text() == "keep"


def test_bad_input_through_subprocess(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "b2diffurl.figures", str(empty), "--out", str(tmp_path / "o")],
                          cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and proc.stdout == ""
    assert not (tmp_path / "o").exists()


def test_plot_titles_and_labels(runs, tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(figures, "plot_curves", lambda path, **kw: drawn.append((os.path.basename(path), kw)))
    assert figures.main(argv_for(runs, tmp_path / "o")) == 0
    titles = {name: (kw["title"], kw["ylabel"]) for name, kw in drawn}
    assert titles == {
        "curve_test.png": ("Held-out CLIPScore vs reward queries", "CLIPScore (test prompts)"),
        "curve_train_reward.png": ("Training reward vs reward queries", "training reward (round mean)"),
    }
    assert drawn[0][1]["colors"] == {"b2_t1": "C0", "ddpo": "C1", "DPOK": "C2", "BPT only": "C3"}


def test_identical_base_evaluations_count_once(tmp_path):
    """Runs of one template evaluate the base model on the same seeds: one measurement, not n seeds."""
    from b2diffurl import figures

    paths = []
    for name in ("a_seed0", "a_seed1", "b_seed0"):
        run = tmp_path / name
        write_progress(str(run), [0.3])
        write_eval(str(run), "base", -1, clip=0.28, inception=1.2, sem=0.003, settings={"seed": 10000})
        write_eval(str(run), "round_000", 0, clip=0.30 + 0.01 * len(paths), inception=1.1)
        paths.append(str(run))
    groups = figures.load_runs(paths, "test")
    bars = dict(figures.final_bars(groups, lambda e: (e.clipscore, e.clipscore_sem)))
    base = bars[figures.BASE_BAR]
    assert base.n == 1 and base.mean == pytest.approx(0.28) and base.se == pytest.approx(0.003)
    rows, _, cells = figures.template_cells(groups, lambda e: (e.clipscore, e.clipscore_sem))
    assert len(cells[(figures.BASE_ROW, "Temp. 1")]) == 1 and len(cells[("a", "Temp. 1")]) == 2


def test_toy_world_alignment_and_diversity_curves_and_tables(tmp_path, capsys):
    """Evaluations with the toy world's keys get alignment and background-entropy curves and tables,
    averaged over seeds like CLIPScore; runs without them (the runs fixture) get none."""
    root = str(tmp_path / "runs")
    for seed, (aligned, entropy) in enumerate([((0.50, 0.60, 0.70), (2.4, 2.3, 2.2)), ((0.54, 0.66, 0.74), (2.5, 2.2, 2.0))]):
        run_dir = os.path.join(root, f"toy_seed{seed}")
        write_progress(run_dir, [0.2, 0.25, 0.3])
        write_eval(run_dir, "base", -1, clip=0.3, inception=1.1, template="toy2", alignment_mean=0.40, alignment_sem=0.03,
                   background_entropy=2.5)
        for r in range(3):
            write_eval(run_dir, f"round_{r:03d}", r, clip=0.3, inception=1.1, template="toy2",
                       alignment_mean=aligned[r], alignment_sem=0.03, background_entropy=entropy[r])
    out = tmp_path / "out"
    assert figures.main([os.path.join(root, "toy_seed0"), os.path.join(root, "toy_seed1"), "--out", str(out)]) == 0
    curve = {int(r["reward_queries"]): r for r in read_csv(out / "curve_test_alignment.csv")}
    assert float(curve[0]["mean"]) == pytest.approx(0.40) and float(curve[0]["se"]) == 0  # the same base in both seeds
    assert float(curve[QUERIES[2]]["mean"]) == pytest.approx(0.72) and float(curve[QUERIES[2]]["se"]) == pytest.approx(0.02)
    entropy = {int(r["reward_queries"]): float(r["mean"]) for r in read_csv(out / "curve_test_background_entropy.csv")}
    assert entropy[QUERIES[1]] == pytest.approx(2.25)
    table = read_csv(out / "table_toy_alignment.csv")
    assert_cell(table, "toy", "toy2", 0.72, 0.02, 2)
    assert_png(out / "curve_test_alignment.png")
    assert "Toy world: held-out alignment" in (out / "tables.md").read_text()


def test_no_toy_outputs_without_toy_metrics(runs, tmp_path):
    out = tmp_path / "out"
    assert figures.main(argv_for(runs, out)) == 0
    assert not (out / "curve_test_alignment.png").exists() and "Toy world" not in (out / "tables.md").read_text()
