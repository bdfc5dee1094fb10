"""b2diffurl.figures on synthetic run folders with known numbers (no models, no GPU).

Hand arithmetic used below: for two seeds a, b the standard error over seeds is
stdev / sqrt(2) = (|a - b| / sqrt(2)) / sqrt(2) = |a - b| / 2.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from PIL import Image

from b2diffurl import figures
from b2diffurl.figures import Stat, average_curves, format_stat, mean_se, split_spec
from b2diffurl.figures import bars as bars_module
from b2diffurl.figures import curves as curves_module
from b2diffurl.figures.budget import pick
from b2diffurl.figures.tables import Cell, format_cell

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def write_eval(
    run_dir,
    round_name,
    index,
    prompt_set="train",
    *,
    clip,
    pp=None,
    pooled=None,
    queries,
    sem=0.002,
    pp_sem=0.01,
    is_std=0.0,
    is_splits=1,
    template="template1",
    algorithm="ppo",
    label="B2-DiffuRL",
    version=2,
    **extra,
):
    folder = os.path.join(run_dir, round_name, "eval")
    os.makedirs(folder, exist_ok=True)
    data = {
        "format_version": version,
        "round": round_name,
        "round_index": index,
        "prompt_set": prompt_set,
        "prompt_file": f"/abs/prompts/{template or 'animals'}_{prompt_set}.json",
        "template": template,
        "reward_queries": queries,
        "num_prompts": 2,
        "num_images": 8,
        "seed": 10000,
        "clipscore_mean": clip,
        "clipscore_sem": sem,
        "clipscore_std": 0.04,
        "inception_score": pooled,
        "inception_score_std": is_std,
        "is_splits": is_splits,
        "reward": "clipscore",
        "reward_mean": clip,
        "reward_sem": sem,
        "per_prompt": {"a cat": {"clipscore": clip}},
        "method": {"label": "base model", "algorithm": ""} if index < 0 else {"algorithm": algorithm, "label": label},
        **extra,
    }
    if version >= 2:
        data.update(inception_score_per_prompt=pp, inception_score_per_prompt_sem=pp_sem)
    with open(os.path.join(folder, f"{prompt_set}.json"), "w") as f:
        json.dump(data, f)


def write_progress(run_dir, rewards, per_round, reward_std=0.08, trajectories=64):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "progress.csv"), "w") as f:
        f.write(
            "round,run_name,k,split_time,trajectories,reward_queries,reward_mean,reward_std,selected,loss,"
            "approx_kl,clipfrac,grad_norm,optimizer_steps,seconds\n"
        )
        for r, reward in enumerate(rewards):
            f.write(
                f"{r},round_{r:03d},{r + 1},3,{trajectories},{per_round * (r + 1)},{reward},{reward_std},16,0.1,"
                "0.01,0.1,1.0,2,10.0\n"
            )


def make_run(
    root,
    name,
    *,
    train,
    test,
    per_round=64,
    rounds=None,
    rewards=None,
    base=(0.28, 1.20, 6.0),
    base_test=0.27,
    last_sem=0.002,
    **kw,
):
    """A run folder: progress.csv, base/eval/{train,test}.json and round_NNN/eval/{train,test}.json.

    train: list of (clip, per-prompt IS, pooled IS), one per evaluated round; test: list of clip, one
    per evaluated round (their IS values are the train ones + 0.5 / + 10, so a mix-up shows);
    rounds: the evaluated round indices (default 0, 1, ...); round r has per_round * (r + 1) queries.
    """
    run_dir = os.path.join(root, name)
    rounds = list(range(len(train))) if rounds is None else rounds
    write_progress(run_dir, rewards or [0.2] * (rounds[-1] + 1), per_round)
    base_kw = {k: v for k, v in kw.items() if k not in ("algorithm", "label")}
    write_eval(run_dir, "base", -1, "train", clip=base[0], pp=base[1], pooled=base[2], queries=0, **base_kw)
    write_eval(run_dir, "base", -1, "test", clip=base_test, pp=base[1] + 0.5, pooled=base[2] + 10, queries=0, **base_kw)
    for i, (r, (clip, pp, pooled), test_clip) in enumerate(zip(rounds, train, test)):
        sem = last_sem if i == len(rounds) - 1 else 0.002
        for prompt_set, c, p, q in (("train", clip, pp, pooled), ("test", test_clip, pp + 0.5, pooled + 10)):
            write_eval(
                run_dir,
                f"round_{r:03d}",
                r,
                prompt_set,
                clip=c,
                pp=p,
                pooled=q,
                queries=per_round * (r + 1),
                sem=sem,
                **kw,
            )
    return run_dir


@pytest.fixture
def runs(tmp_path):
    """Four groups on template1, rounds at 64, 128, 192 queries: b2_t1 (2 seeds, B2-DiffuRL ppo), ddpo
    (2 seeds, vanilla ppo), DPOK (1 seed, vanilla dpok, no pooled-IS spread), "BPT only" (1 seed,
    pooled IS over 4 splits). Base per-prompt IS alternates 1.20 / 1.22 (no settings: 6 distinct)."""
    root = str(tmp_path / "runs")
    b2, vanilla = dict(algorithm="ppo", label="B2-DiffuRL"), dict(algorithm="ppo", label="vanilla")
    return {
        "b2_1": make_run(
            root,
            "b2_t1_seed1",
            train=[(0.30, 1.30, 8.0), (0.32, 1.35, 8.5), (0.34, 1.40, 9.0)],
            test=[0.29, 0.31, 0.33],
            rewards=[0.20, 0.25, 0.30],
            **b2,
        ),
        "b2_2": make_run(
            root,
            "b2_t1_seed2",
            train=[(0.31, 1.31, 8.2), (0.33, 1.36, 8.6), (0.36, 1.44, 9.4)],
            test=[0.30, 0.32, 0.35],
            rewards=[0.22, 0.27, 0.34],
            base=(0.28, 1.22, 6.0),
            **b2,
        ),
        "ddpo_1": make_run(
            root,
            "ddpo-s1",
            train=[(0.29, 1.25, 7.0), (0.30, 1.28, 7.5), (0.31, 1.30, 8.0)],
            test=[0.28, 0.29, 0.30],
            rewards=[0.20, 0.21, 0.22],
            **vanilla,
        ),
        "ddpo_2": make_run(
            root,
            "ddpo-s2",
            train=[(0.29, 1.26, 7.2), (0.31, 1.30, 7.6), (0.33, 1.36, 8.4)],
            test=[0.28, 0.30, 0.32],
            rewards=[0.20, 0.22, 0.26],
            base=(0.28, 1.22, 6.0),
            **vanilla,
        ),
        "dpok": make_run(
            root,
            "other_run_seed7",
            train=[(0.30, 1.25, 7.0), (0.30, 1.26, 7.1), (0.305, 1.27, 7.2)],
            test=[0.29, 0.29, 0.295],
            rewards=[0.21, 0.22, 0.23],
            pp_sem=0.02,
            algorithm="dpok",
            label="vanilla",
        ),
        "bpt": make_run(
            root,
            "bpt_only_seed1",
            train=[(0.30, 1.30, 8.0), (0.32, 1.34, 8.3), (0.335, 1.38, 8.6)],
            test=[0.30, 0.31, 0.325],
            rewards=[0.21, 0.23, 0.25],
            base=(0.28, 1.22, 6.0),
            last_sem=0.003,
            pp_sem=0.015,
            is_std=0.2,
            is_splits=4,
            algorithm="ppo",
            label="BPT only",
        ),
    }


def argv_for(runs, out, *more):
    return [
        runs["b2_1"],
        runs["b2_2"],
        runs["ddpo_1"],
        runs["ddpo_2"],
        f"DPOK={runs['dpok']}",
        f"BPT only={runs['bpt']}",
        "--out",
        str(out),
        *more,
    ]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cell(rows, row, column):
    (found,) = [r for r in rows if r["row"] == row and r["column"] == column]
    return found


def assert_cell(rows, row, column, mean, se, n, queries, source="seeds"):
    found = cell(rows, row, column)
    assert float(found["mean"]) == pytest.approx(mean, abs=1e-9)
    assert (found["se"] == "") if se is None else float(found["se"]) == pytest.approx(se, abs=1e-9)
    assert int(found["n"]) == n
    assert found["se_source"] == source
    assert found["reward_queries"] == queries


def section(tables, heading):
    """The Markdown section of tables.md whose heading starts with ``heading``."""
    (found,) = [s for s in tables.split("\n## ") if s.startswith(heading)]
    return found


def assert_png(path):
    assert os.path.getsize(path) > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 100 and image.size[1] > 100
        image.verify()


# ---------------------------------------------------------------- pure functions


def test_mean_se_over_seeds_and_single_seed():
    stat = mean_se([(0.34, 0.002), (0.36, 0.005)])
    assert (
        stat.mean == pytest.approx(0.35) and stat.se == pytest.approx(0.01) and stat.n == 2 and stat.source == "seeds"
    )
    three = mean_se([(1.0, None), (2.0, None), (4.0, None)])  # stdev = sqrt(7/3)
    assert three.mean == pytest.approx(7 / 3) and three.se == pytest.approx((7 / 3) ** 0.5 / 3**0.5)
    assert mean_se([(0.3, 0.002)]) == Stat(0.3, 0.002, 1, "eval")
    assert mean_se([(1.3, None)]) == Stat(1.3, None, 1, "")


def test_average_curves_keeps_only_points_of_every_seed():
    points, dropped = average_curves(
        [{0: (0.28, 0.0), 64: (0.30, 0.0), 128: (0.32, 0.0)}, {0: (0.28, 0.0), 64: (0.31, 0.0)}]
    )
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


def test_format_stat_and_cell():
    assert format_stat(Stat(0.35, 0.01, 2, "seeds")) == "0.3500 ± 0.0100"
    assert format_stat(Stat(1.27, None, 1, "")) == "1.2700"
    assert format_stat(None) == "-"
    assert format_cell(Cell(Stat(0.35, 0.01, 2, "seeds"), (25344, 25344))) == "0.3500 ± 0.0100 (25,344 q)"
    assert format_cell(Cell(Stat(0.35, 0.01, 2, "seeds"), (25344, 25088))) == "0.3500 ± 0.0100 (25,088–25,344 q)"
    assert format_cell(Cell(None, ())) == "-" and format_cell(None) == "-"


def test_pick_is_the_last_trained_evaluation_at_or_below_the_budget():
    def ev(index, queries):
        return SimpleNamespace(index=index, reward_queries=queries)

    base, r0, r1, r2, r3 = ev(-1, 0), ev(0, 768), ev(1, 1536), ev(2, 1536), ev(3, 2304)
    evals = [r3, base, r0, r1, r2]  # order does not matter
    assert pick(evals, 2303) is r2  # equal queries (rounds 1 and 2, no new images in round 2): the later round
    assert pick(evals, 2304) is r3  # at the budget counts
    assert pick(evals, 10**9) is r3
    assert pick(evals, 767) is None and pick(evals, 0) is None  # the base model is never picked
    assert pick([base], 10**9) is None and pick([], 100) is None


# ---------------------------------------------------------------- the budget rule, end to end


def budget_runs(root):
    """big: 768 queries per round, evaluated every round (768 ... 3,840); small: 256 per round, evaluated
    after rounds 3, 7, 11 (1,024, 2,048, 3,072); late: 4,096 per round (4,096, 8,192)."""
    vanilla = dict(algorithm="ppo", label="vanilla")
    big = make_run(
        root,
        "big_seed1",
        per_round=768,
        algorithm="ppo",
        label="B2-DiffuRL",
        train=[(0.30, 1.30, 9.0), (0.31, 1.31, 9.1), (0.32, 1.32, 9.2), (0.33, 1.33, 9.3), (0.34, 1.34, 9.4)],
        test=[0.25, 0.26, 0.27, 0.28, 0.29],
    )
    small = make_run(
        root,
        "small_seed1",
        per_round=256,
        rounds=[3, 7, 11],
        train=[(0.29, 1.25, 8.0), (0.295, 1.27, 8.5), (0.31, 1.29, 9.0)],
        test=[0.24, 0.245, 0.25],
        **vanilla,
    )
    late = make_run(
        root, "late_seed1", per_round=4096, train=[(0.5, 2.0, 10.0), (0.6, 2.1, 11.0)], test=[0.5, 0.6], **vanilla
    )
    return big, small, late


def test_budget_picks_each_runs_last_evaluation_at_or_below_it(tmp_path, capsys):
    big, small, late = budget_runs(str(tmp_path / "runs"))
    out = tmp_path / "out"
    assert figures.main([big, small, late, "--out", str(out), "--queries", "3000"]) == 0
    printed = capsys.readouterr().out

    # big: 2,304 <= 3,000 < 3,072 -> round_002; small: 2,048 <= 3,000 < 3,072 -> round_007; late: none.
    for prompt_set, left_out in (("train", "bars_train.png and Tables 1-2"), ("test", "Table 3")):
        assert (
            f"note: budget: run {late} (late) has no trained {prompt_set} evaluation at ≤ 3,000 reward queries "
            f"(its {prompt_set} evaluations: 4,096 ... 8,192 queries); left out of {left_out}"
        ) in printed
    assert "big_seed1" not in "".join(line for line in printed.splitlines() if line.startswith("note: budget"))
    tables = (out / "tables.md").read_text()
    t1 = section(tables, "Table 1: diversity")
    assert "at ≤ 3,000 reward queries: each run's last evaluation at or below it" in t1
    assert "| base | 1.2000 ± 0.0000 (0 q) |" in t1  # three distinct base evaluations of 1.20
    assert "| big | 1.3200 ± 0.0100 (2,304 q) |" in t1  # per-prompt IS of round_002, its own SE over prompts
    assert "| small | 1.2700 ± 0.0100 (2,048 q) |" in t1
    assert "| late | - |" in t1
    pooled = section(tables, "Table 1, pooled IS")
    assert "| big | 9.2000 (2,304 q) |" in pooled and "| small | 8.5000 (2,048 q) |" in pooled  # is_splits 1: no SE
    assert "| PPO/DDPO | 1.2700 ± 0.0100 (2,048 q) | 1.3200 ± 0.0100 (2,304 q) |" in section(
        tables, "Table 2: algorithms"
    )
    t3 = section(tables, "Table 3: generalization")
    assert "| big | 0.2700 ± 0.0020 (2,304 q) |" in t3 and "| small | 0.2450 ± 0.0020 (2,048 q) |" in t3

    rows = read_csv(out / "table1_diversity.csv")
    assert list(rows[0]) == ["row", "column", "mean", "se", "n", "se_source", "reward_queries"]
    assert_cell(rows, "base", "Temp. 1", 1.20, 0.0, 3, "0")
    assert_cell(rows, "big", "Temp. 1", 1.32, 0.01, 1, "2304", source="eval")
    assert_cell(rows, "small", "Temp. 1", 1.27, 0.01, 1, "2048", source="eval")
    assert cell(rows, "late", "Temp. 1") == {
        "row": "late",
        "column": "Temp. 1",
        "mean": "",
        "se": "",
        "n": "0",
        "se_source": "",
        "reward_queries": "",
    }
    assert_cell(read_csv(out / "table1_diversity_pooled.csv"), "big", "Temp. 1", 9.2, None, 1, "2304", source="")
    assert_cell(read_csv(out / "table3_generalization.csv"), "small", "Temp. 1", 0.245, 0.002, 1, "2048", source="eval")
    t2 = read_csv(out / "table2_algorithms_pooled.csv")
    assert_cell(t2, "PPO/DDPO", "Vanilla", 8.5, None, 1, "2048", source="")

    summary = read_csv(out / "summary.csv")
    assert len(summary) == 2 * (6 + 4 + 3)  # per set: base + evaluated rounds of each run
    chosen = {
        (os.path.basename(r["run"]), r["prompt_set"], r["round"], r["reward_queries"])
        for r in summary
        if r["at_budget"] == "1"
    }
    assert chosen == {("big_seed1", s, "round_002", "2304") for s in ("train", "test")} | {
        ("small_seed1", s, "round_007", "2048") for s in ("train", "test")
    }

    # at exactly 3,072 both reach a later evaluation (at or below counts); late still has none
    exact = tmp_path / "exact"
    assert figures.main([big, small, late, "--out", str(exact), "--queries", "3072"]) == 0
    t1 = section((exact / "tables.md").read_text(), "Table 1: diversity")
    assert "| big | 1.3300 ± 0.0100 (3,072 q) |" in t1 and "| small | 1.2900 ± 0.0100 (3,072 q) |" in t1


def test_a_group_without_any_run_at_the_budget_is_named(tmp_path, capsys):
    big, small, late = budget_runs(str(tmp_path / "runs"))
    late2 = str(tmp_path / "runs" / "late_seed2")
    shutil.copytree(late, late2)
    shutil.rmtree(os.path.join(late2, "round_001"))
    out = tmp_path / "out"
    assert figures.main([big, late, late2, "--out", str(out), "--queries", "3000"]) == 0
    printed = capsys.readouterr().out
    assert (
        f"note: budget: run {late2} (late) has no trained train evaluation at ≤ 3,000 reward queries (its train "
        "evaluation: 4,096 queries); left out of bars_train.png and Tables 1-2" in printed
    )
    assert (
        "note: budget: group late: none of its 2 runs has a trained train evaluation at ≤ 3,000 reward queries; "
        "its entries in bars_train.png and Tables 1-2 are empty (-)"
    ) in printed
    assert "note: budget: group late: none of its 2 runs has a trained test evaluation" in printed
    tables = (out / "tables.md").read_text()
    assert "| late | - |" in section(tables, "Table 1: diversity") and "| late | - |" in section(tables, "Table 3")
    assert "| PPO/DDPO | - | 1.3200 ± 0.0100 (2,304 q) |" in section(tables, "Table 2: algorithms")


def test_cell_of_runs_at_different_queries_states_the_range(tmp_path, capsys):
    """Two seeds of one group with different images per round reach the budget at different queries."""
    root = str(tmp_path)
    one = make_run(root, "mix_seed1", per_round=768, train=[(0.30, 1.30, 9.0)] * 3, test=[0.25, 0.26, 0.27])
    two = make_run(
        root,
        "mix_seed2",
        per_round=512,
        train=[(0.30, 1.30, 9.0), (0.30, 1.34, 9.0), (0.30, 1.36, 9.0)],
        test=[0.25, 0.26, 0.29],
    )
    out = tmp_path / "out"
    assert figures.main([one, two, "--out", str(out), "--queries", "2000"]) == 0
    capsys.readouterr()
    # seed 1 (768, 1,536, 2,304): round_001, IS 1.30, test 0.26; seed 2 (512, 1,024, 1,536): round_002, IS 1.36,
    # test 0.29. Both at 1,536 queries: mean 1.33, SE 0.03; test 0.275 ± 0.015.
    tables = (out / "tables.md").read_text()
    assert "| mix | 1.3300 ± 0.0300 (1,536 q) |" in tables and "| mix | 0.2750 ± 0.0150 (1,536 q) |" in tables
    assert figures.main([one, two, "--out", str(tmp_path / "o2"), "--queries", "1100"]) == 0
    # seed 1: 768 (round_000, 1.30); seed 2: 1,024 (round_001, 1.34) -> 1.32 ± 0.02 over 768-1,024 queries
    tables = (tmp_path / "o2" / "tables.md").read_text()
    assert "| mix | 1.3200 ± 0.0200 (768–1,024 q) |" in tables
    assert "| mix | 0.2550 ± 0.0050 (768–1,024 q) |" in section(tables, "Table 3")
    assert_cell(read_csv(tmp_path / "o2" / "table1_diversity.csv"), "mix", "Temp. 1", 1.32, 0.02, 2, "768-1024")


# ---------------------------------------------------------------- the command on the four-group fixture


def test_outputs_roles_and_numbers(runs, tmp_path, capsys):
    out = tmp_path / "figs" / "nested"
    assert figures.main(argv_for(runs, out)) == 0
    printed = capsys.readouterr().out

    names = [
        "curve_train.png",
        "curve_train.csv",
        "curve_test.png",
        "curve_test.csv",
        "curve_train_reward.png",
        "curve_train_reward.csv",
        "bars_train.png",
        "tables.md",
        "table1_diversity.csv",
        "table1_diversity_pooled.csv",
        "table2_algorithms.csv",
        "table2_algorithms_pooled.csv",
        "table3_generalization.csv",
        "summary.csv",
    ]
    assert sorted(os.listdir(out)) == sorted(names)
    for name in names:
        assert f"wrote {out / name}" in printed
    for name in ("curve_train.png", "curve_test.png", "curve_train_reward.png", "bars_train.png"):
        assert_png(out / name)
    assert "note: budget" not in printed  # every run has an evaluation at <= 25,600 (its last, 192 queries)

    tables = (out / "tables.md").read_text()
    assert tables.startswith("# B2-DiffuRL tables\n")
    assert [line[3:].split(":")[0] for line in tables.splitlines() if line.startswith("## ")] == [
        "Table 1",
        "Table 1, pooled IS",
        "Table 2",
        "Table 2, pooled IS",
        "Table 3",
    ]
    assert section(tables, "Table 3") in printed  # the Markdown tables are printed too
    # Table 1, per-prompt IS on the TRAINING prompts. SD: base 1.20/1.22 alternating over 6 runs -> mean
    # 1.21, stdev = 0.01 * sqrt(6/5), SE = 0.01 / sqrt(5) = 0.00447.
    t1 = section(
        tables, "Table 1: diversity (per-prompt Inception Score, training prompts, at ≤ 25,600 reward queries)"
    )
    assert "Drawn from the training prompts (eval/train.json), at ≤ 25,600 reward queries" in t1
    assert "Each cell shows the reward queries it stands for" in t1
    assert "SD 1.32 / 1.41 / 1.36 on templates 1-3" in t1 and "style collapse" in t1
    assert "| base | 1.2100 ± 0.0045 (0 q) |" in t1
    assert "| b2_t1 | 1.4200 ± 0.0200 (192 q) |" in t1  # 1.40, 1.44 (test.json says 1.90, 1.94)
    assert "| ddpo | 1.3300 ± 0.0300 (192 q) |" in t1  # 1.30, 1.36
    assert "| DPOK | 1.2700 ± 0.0200 (192 q) |" in t1  # one seed: its inception_score_per_prompt_sem
    assert "| BPT only | 1.3800 ± 0.0150 (192 q) |" in t1
    t1p = section(tables, "Table 1, pooled IS: diversity (pooled Inception Score, training prompts")
    assert "| base | 6.0000 ± 0.0000 (0 q) |" in t1p
    assert "| b2_t1 | 9.2000 ± 0.2000 (192 q) |" in t1p  # 9.0, 9.4
    assert "| DPOK | 7.2000 (192 q) |" in t1p  # one seed, is_splits 1: no SE
    assert "| BPT only | 8.6000 ± 0.1000 (192 q) |" in t1p  # one seed: 0.2 / sqrt(4)
    # Table 2: vanilla vs B2-DiffuRL per algorithm on the training prompts; "BPT only" is left out.
    t2 = section(tables, "Table 2: algorithms (per-prompt Inception Score, training prompts")
    assert "| Algorithm | Vanilla | Ours+Vanilla |" in t2 and "(eval/train.json)" in t2
    assert "| PPO/DDPO | 1.3300 ± 0.0300 (192 q) | 1.4200 ± 0.0200 (192 q) |" in t2
    assert "| DPOK | 1.2700 ± 0.0200 (192 q) | - |" in t2 and "BPT" not in t2
    t2p = section(tables, "Table 2, pooled IS")
    assert "| PPO/DDPO | 8.2000 ± 0.2000 (192 q) | 9.2000 ± 0.2000 (192 q) |" in t2p  # 8.0/8.4 and 9.0/9.4
    # Table 3: CLIPScore on the HELD-OUT prompts (train.json's values would be 0.35, 0.32, ...).
    t3 = section(tables, "Table 3: generalization (CLIPScore, held-out prompts, at ≤ 25,600 reward queries)")
    assert "Drawn from the held-out prompts (eval/test.json)" in t3
    assert "| base | 0.2700 ± 0.0000 (0 q) |" in t3
    assert "| b2_t1 | 0.3400 ± 0.0100 (192 q) |" in t3  # 0.33, 0.35
    assert "| ddpo | 0.3100 ± 0.0100 (192 q) |" in t3  # 0.30, 0.32
    assert "| DPOK | 0.2950 ± 0.0020 (192 q) |" in t3  # one seed: the evaluation's clipscore_sem
    assert "| BPT only | 0.3250 ± 0.0030 (192 q) |" in t3

    rows = read_csv(out / "table1_diversity.csv")
    assert [r["row"] for r in rows] == ["base", "b2_t1", "ddpo", "DPOK", "BPT only"]
    assert_cell(rows, "base", "Temp. 1", 1.21, 0.01 / 5**0.5, 6, "0")
    assert_cell(rows, "b2_t1", "Temp. 1", 1.42, 0.02, 2, "192")
    assert_cell(rows, "DPOK", "Temp. 1", 1.27, 0.02, 1, "192", source="eval")
    pooled = read_csv(out / "table1_diversity_pooled.csv")
    assert_cell(pooled, "DPOK", "Temp. 1", 7.2, None, 1, "192", source="")
    assert_cell(pooled, "BPT only", "Temp. 1", 8.6, 0.1, 1, "192", source="eval")
    t2rows = read_csv(out / "table2_algorithms.csv")
    assert [(r["row"], r["column"]) for r in t2rows] == [
        ("PPO/DDPO", "Vanilla"),
        ("PPO/DDPO", "Ours+Vanilla"),
        ("DPOK", "Vanilla"),
        ("DPOK", "Ours+Vanilla"),
    ]
    assert_cell(t2rows, "PPO/DDPO", "Ours+Vanilla", 1.42, 0.02, 2, "192")
    assert cell(t2rows, "DPOK", "Ours+Vanilla")["n"] == "0"
    t3rows = read_csv(out / "table3_generalization.csv")
    assert_cell(t3rows, "base", "Temp. 1", 0.27, 0.0, 6, "0")
    assert_cell(t3rows, "ddpo", "Temp. 1", 0.31, 0.01, 2, "192")

    train = read_csv(out / "curve_train.csv")
    b2 = [
        (int(r["reward_queries"]), float(r["mean"]), float(r["se"]), int(r["n"]))
        for r in train
        if r["label"] == "b2_t1"
    ]
    assert b2 == [
        pytest.approx(p)
        for p in [(0, 0.28, 0.0, 2), (64, 0.305, 0.005, 2), (128, 0.325, 0.005, 2), (192, 0.35, 0.01, 2)]
    ]
    test = {
        int(r["reward_queries"]): float(r["mean"]) for r in read_csv(out / "curve_test.csv") if r["label"] == "b2_t1"
    }
    assert test == {
        0: pytest.approx(0.27),
        64: pytest.approx(0.295),
        128: pytest.approx(0.315),
        192: pytest.approx(0.34),
    }
    dpok = [r for r in train if r["label"] == "DPOK" and r["reward_queries"] == "192"][0]
    assert float(dpok["se"]) == pytest.approx(0.002) and dpok["se_source"] == "eval"

    reward = read_csv(out / "curve_train_reward.csv")
    last = [r for r in reward if r["label"] == "b2_t1" and r["reward_queries"] == "192"][0]
    assert float(last["mean"]) == pytest.approx(0.32) and float(last["se"]) == pytest.approx(0.02) and last["n"] == "2"
    single = [r for r in reward if r["label"] == "DPOK" and r["reward_queries"] == "64"][0]
    assert float(single["se"]) == pytest.approx(0.08 / 8) and single["se_source"] == "round"  # reward_std / sqrt(64)

    summary = read_csv(out / "summary.csv")
    assert list(summary[0]) == [
        "label",
        "run",
        "prompt_set",
        "round",
        "round_index",
        "reward_queries",
        "at_budget",
        "clipscore_mean",
        "clipscore_sem",
        "inception_score_per_prompt",
        "inception_score_per_prompt_sem",
        "inception_score",
        "template",
        "algorithm",
        "method",
        "model",
        "learning_rate",
        "seed",
        "bertscore_mean",
        "bertscore_sem",
        "toycaption_mean",
        "toycaption_sem",
        "alignment_mean",
        "alignment_sem",
        "background_entropy",
    ]
    assert len(summary) == 6 * 2 * 4  # 6 runs x 2 prompt sets x (base + 3 rounds)
    assert all(not os.path.isabs(r["run"]) for r in summary)  # relative to the CSV's folder: the tree can move
    run_of = {r["run"]: os.path.normpath(os.path.join(out, r["run"])) for r in summary}
    assert set(run_of.values()) == {os.path.normpath(p) for p in runs.values()}
    row = [
        r
        for r in summary
        if run_of[r["run"]] == os.path.normpath(runs["b2_2"])
        and r["round"] == "round_002"
        and r["prompt_set"] == "test"
    ][0]
    assert row["label"] == "b2_t1" and row["reward_queries"] == "192" and row["at_budget"] == "1"
    assert float(row["clipscore_mean"]) == pytest.approx(0.35) and float(
        row["inception_score_per_prompt"]
    ) == pytest.approx(1.94)
    assert float(row["inception_score"]) == pytest.approx(19.4) and float(row["inception_score_per_prompt_sem"]) == 0.01
    base = [
        r
        for r in summary
        if run_of[r["run"]] == os.path.normpath(runs["dpok"]) and r["round"] == "base" and r["prompt_set"] == "train"
    ][0]
    assert (
        base["label"] == "DPOK"
        and base["reward_queries"] == "0"
        and base["round_index"] == "-1"
        and base["at_budget"] == "0"
    )
    assert sum(r["at_budget"] == "1" for r in summary) == 12  # one per run and set

    # a smaller budget moves every cell to round_001 (128 queries): b2_t1 1.35 / 1.36
    small = tmp_path / "small"
    assert figures.main(argv_for(runs, small, "--queries", "150")) == 0
    assert "| b2_t1 | 1.3550 ± 0.0050 (128 q) |" in (small / "tables.md").read_text()


def test_subprocess_and_light_import(runs, tmp_path):
    out = tmp_path / "sub"
    proc = subprocess.run(
        [sys.executable, "-m", "b2diffurl.figures", *argv_for(runs, out)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert f"wrote {out / 'bars_train.png'}" in proc.stdout
    assert "| PPO/DDPO | 1.3300 ± 0.0300 (192 q) | 1.4200 ± 0.0200 (192 q) |" in proc.stdout
    assert_png(out / "bars_train.png")
    check = (
        "import sys, b2diffurl.figures as f; f.main, f.load_runs, f.FiguresError, f.base_label; "
        "bad = {'matplotlib', 'torch', 'numpy'} & set(sys.modules); assert not bad, bad"
    )
    light = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert light.returncode == 0, light.stderr


def test_seeds_missing_points_and_templates(tmp_path, capsys):
    """A seed without round_002's evaluation drops that point from the curve (with a note) and is picked at
    round_001; runs on another template or a prompt file without template get their own columns."""
    root = str(tmp_path)
    kw = dict(algorithm="ppo", label="vanilla")
    one = make_run(root, "x_seed1", train=[(0.30, 1.3, 8), (0.32, 1.3, 8), (0.34, 1.4, 8)], test=[0.3, 0.3, 0.3], **kw)
    two = make_run(root, "x_seed2", train=[(0.30, 1.3, 8), (0.36, 1.5, 8), (0.99, 9.9, 8)], test=[0.3, 0.3, 0.3], **kw)
    os.remove(os.path.join(two, "round_002", "eval", "train.json"))
    other = os.path.join(root, "t2")  # evaluations only, no progress.csv
    write_eval(other, "base", -1, clip=0.25, pp=1.1, pooled=5, queries=0, template="template2")
    write_eval(other, "round_000", 0, clip=0.27, pp=1.2, pooled=5, queries=64, template="template2", **kw)
    loose = os.path.join(root, "loose")
    write_eval(loose, "round_000", 0, clip=0.26, pp=1.0, pooled=5, queries=64, template="", algorithm="dpo")
    out = tmp_path / "out"
    assert figures.main([one, two, other, loose, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: curve_train: x: 1 point(s) not in every seed's data left out of the average" in printed
    assert [r["reward_queries"] for r in read_csv(out / "curve_train.csv") if r["label"] == "x"] == ["0", "64", "128"]
    # t2 and loose have no test evaluations: named for Table 3
    assert (
        f"note: budget: run {other} (t2) has no trained test evaluation" in printed
        and "(no test evaluations)" in printed
    )

    t1 = read_csv(out / "table1_diversity.csv")
    assert sorted({r["column"] for r in t1}, key=str) == ["Temp. 1", "Temp. 2", "animals_train"]
    assert_cell(t1, "x", "Temp. 1", 1.45, 0.05, 2, "128-192")  # seed 1's round_002 (1.4), seed 2's round_001 (1.5)
    assert_cell(t1, "t2", "Temp. 2", 1.2, 0.01, 1, "64", source="eval")
    assert_cell(t1, "base", "Temp. 2", 1.1, 0.01, 1, "0", source="eval")
    assert cell(t1, "base", "animals_train")["n"] == "0"  # the loose run has no base evaluation
    t2 = read_csv(out / "table2_algorithms.csv")
    assert {r["row"] for r in t2} == {"PPO/DDPO (Temp. 1)", "PPO/DDPO (Temp. 2)", "DPO (animals_train)"}
    assert_cell(t2, "PPO/DDPO (Temp. 1)", "Vanilla", 1.45, 0.05, 2, "128-192")


def test_a_missing_prompt_set_skips_its_outputs(runs, tmp_path, capsys):
    """Runs with held-out evaluations only: no training curve, bars or Tables 1-2 (each with a note);
    Table 3 and the rest are written."""
    for name in ("b2_1", "b2_2"):
        for folder in ("base", "round_000", "round_001", "round_002"):
            os.remove(os.path.join(runs[name], folder, "eval", "train.json"))
    out = tmp_path / "out"
    assert figures.main([runs["b2_1"], runs["b2_2"], "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for note in (
        "note: curve_train.png skipped: no run has eval/train.json files",
        "note: bars_train.png skipped: no run has eval/train.json files",
        "note: Tables 1-2 skipped: no run has eval/train.json files",
    ):
        assert note in printed
    assert sorted(os.listdir(out)) == sorted(
        [
            "curve_test.png",
            "curve_test.csv",
            "curve_train_reward.png",
            "curve_train_reward.csv",
            "table3_generalization.csv",
            "tables.md",
            "summary.csv",
        ]
    )
    tables = (out / "tables.md").read_text()
    assert "## Table 1" not in tables and "| b2_t1 | 0.3400 ± 0.0100 (192 q) |" in section(tables, "Table 3")


def test_nothing_to_write(tmp_path, capsys):
    run = tmp_path / "empty_progress_seed1"  # a progress.csv without rounds and no evaluations
    write_progress(str(run), [], 64)
    out = tmp_path / "nothing"
    assert figures.main([str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: nothing to write")
    assert not out.exists()


def test_format_version_1_files_lack_the_per_prompt_is(tmp_path, capsys):
    run = str(tmp_path / "old_seed1")
    write_progress(run, [0.2], 64)
    for prompt_set in ("train", "test"):
        write_eval(run, "base", -1, prompt_set, clip=0.28, pooled=6.0, queries=0, version=1)
        write_eval(run, "round_000", 0, prompt_set, clip=0.30, pooled=7.5, queries=64, version=1)
    out = tmp_path / "out"
    assert figures.main([run, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "note: Table 1: diversity has 2 cell(s) shown as - because their evaluations have no "
        "inception_score_per_prompt (format_version 1 files lack it)"
    ) in printed
    assert "pooled IS has" not in printed
    tables = (out / "tables.md").read_text()
    assert "| old | - |" in section(tables, "Table 1: diversity")
    assert "| old | 7.5000 (64 q) |" in section(tables, "Table 1, pooled IS")


def bad_input_cases(tmp_path, runs):
    empty = tmp_path / "empty_seed1"
    empty.mkdir()
    a_file = tmp_path / "taken"
    a_file.write_text("keep")
    broken = tmp_path / "broken"
    write_progress(str(broken), [0.2], 64)
    os.makedirs(broken / "round_000" / "eval")
    (broken / "round_000" / "eval" / "test.json").write_text("{not json")
    wrong_set = tmp_path / "wrong_set"
    write_eval(str(wrong_set), "round_000", 0, "train", clip=0.3, queries=64)
    os.rename(wrong_set / "round_000" / "eval" / "train.json", wrong_set / "round_000" / "eval" / "test.json")
    out = str(tmp_path / "out")
    return {
        "missing": ([str(tmp_path / "nope"), "--out", out], "no such run folder"),
        "empty": ([str(empty), "--out", out], "neither progress.csv nor any"),
        "out is a file": ([runs["b2_1"], "--out", str(a_file)], "exists and is not a folder"),
        "broken json": ([str(broken), "--out", out], "not a readable JSON file"),
        "wrong prompt set": ([str(wrong_set), "--out", out], "but the file is named test.json"),
        "twice": ([runs["b2_1"], runs["b2_1"] + "/", "--out", out], "given twice"),
        "empty label": ([f"={runs['b2_1']}", "--out", out], "empty label"),
        "no --out": ([runs["b2_1"], runs["ddpo_1"]], "--out is needed with several run folders"),
        "negative queries": ([runs["b2_1"], "--out", out, "--queries", "-5"], "--queries='-5': a whole number"),
        "fractional queries": ([runs["b2_1"], "--out", out, "--queries", "2.5"], "--queries='2.5': a whole number"),
        "word queries": ([runs["b2_1"], "--out", out, "--queries=many"], "--queries='many': a whole number"),
        "empty queries": ([runs["b2_1"], "--out", out, "--queries="], "--queries='': a whole number"),
        "old --prompt-set": ([runs["b2_1"], "--out", out, "--prompt-set", "test"], "unrecognized arguments"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "out is a file",
        "broken json",
        "wrong prompt set",
        "twice",
        "empty label",
        "no --out",
        "negative queries",
        "fractional queries",
        "word queries",
        "empty queries",
        "old --prompt-set",
    ],
)
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
    run = tmp_path / "r"
    write_progress(str(run), [0.2], 64)
    for argv in ([str(tmp_path / "empty")], [str(run), "--queries", "-1"]):
        (tmp_path / "empty").mkdir(exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "b2diffurl.figures", *argv, "--out", str(tmp_path / "o")],
            cwd=REPO,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and proc.stdout == ""
        assert not (tmp_path / "o").exists()


def test_plot_titles_labels_and_budget_line(runs, tmp_path, monkeypatch):
    """What the plots are given (titles, band notes, colours, budget) and what they draw (budget line,
    bar labels with value and queries)."""
    drawn, bars = [], []
    monkeypatch.setattr(curves_module, "plot_curves", lambda path, **kw: drawn.append((os.path.basename(path), kw)))
    monkeypatch.setattr(bars_module, "plot_bars", lambda path, **kw: bars.append((os.path.basename(path), kw)))
    assert figures.main(argv_for(runs, tmp_path / "o", "--queries", "150")) == 0
    titles = {name: (kw["title"], kw["ylabel"]) for name, kw in drawn}
    assert titles == {
        "curve_train.png": (
            "Fig. 5: CLIPScore on the training prompts vs reward queries",
            "CLIPScore (training prompts)",
        ),
        "curve_test.png": (
            "CLIPScore on held-out prompts vs reward queries\n(extra; not a figure of the paper)",
            "CLIPScore (held-out prompts; extra)",
        ),
        "curve_train_reward.png": ("Training reward vs reward queries", "training reward (round mean)"),
    }
    colors = {"b2_t1": "C0", "ddpo": "C1", "DPOK": "C2", "BPT only": "C3"}
    assert all(kw["colors"] == colors and kw["budget"] == 150 for _, kw in drawn)
    # groups of 2 seeds and of 1: the band note must not claim "over seeds" for the single ones
    assert drawn[0][1]["band_note"] == "±1 SE over seeds (n ≥ 2), else the evaluation's own SE"
    assert drawn[2][1]["band_note"] == "±1 SE over seeds (n ≥ 2), else the round's own SE"
    ((name, kw),) = bars
    assert name == "bars_train.png" and kw["colors"] == colors
    assert kw["title"].startswith(
        "Training prompts, at ≤ 150 reward queries: each run's last evaluation at or below it"
    )
    assert "error bars: ±1 SE over seeds (n ≥ 2), else the evaluation's own SE" in kw["title"]
    assert [title for title, _ in kw["panels"]] == [
        "CLIPScore (alignment)",
        "Inception Score per prompt (diversity)",
        "Inception Score pooled over all images",
    ]
    per_prompt = {b.name: b for b in kw["panels"][1][1]}
    assert per_prompt["b2_t1"].stat.mean == pytest.approx(1.355) and per_prompt["b2_t1"].queries == (128, 128)
    assert per_prompt["base"].stat.mean == pytest.approx(1.21) and per_prompt["base"].queries == (0,) * 6


def drawn_figures(argv):
    """Run the command (exit 0) and return every (figure, axes) it drew, in drawing order."""
    import unittest.mock

    figs, real = [], curves_module.new_figure

    def keep(*args, **kwargs):
        figs.append(real(*args, **kwargs))
        return figs[-1]

    with unittest.mock.patch.object(curves_module, "new_figure", keep):
        assert figures.main(argv) == 0
    return figs


def test_rendered_plots_have_the_budget_line_and_bar_labels(tmp_path):
    big, small, late = budget_runs(str(tmp_path / "runs"))
    figs = drawn_figures([big, small, late, "--out", str(tmp_path / "o"), "--queries", "3000"])
    assert_png(tmp_path / "o" / "curve_train.png")
    axes = [fig[1] for fig in figs]
    curve = axes[0]  # curve_train.png
    handles, labels = curve.get_legend_handles_labels()
    assert "budget 3,000" in labels
    line = handles[labels.index("budget 3,000")]
    assert list(line.get_xdata()) == [3000, 3000] and line.get_linestyle() == "--"
    assert [len(line.get_xdata()) for line in curve.get_lines()[:3]] == [
        6,
        4,
        3,
    ]  # every evaluated point, base included
    bar_axes = next(a for a in axes if not hasattr(a, "get_legend_handles_labels"))  # the bars' 3 panels
    texts = [t.get_text() for t in bar_axes[1].texts]
    assert "1.320\n2.3k q" in texts and "1.270\n2.0k q" in texts and "1.200\n0 q" in texts and "n/a" in texts


def test_identical_base_evaluations_count_once(tmp_path):
    """Runs of one template evaluate the base model on the same seeds: one measurement, not n seeds."""
    paths = []
    for name in ("a_seed0", "a_seed1", "b_seed0"):
        run = tmp_path / name
        write_progress(str(run), [0.3], 64)
        write_eval(str(run), "base", -1, clip=0.28, pp=1.2, queries=0, sem=0.003, settings={"seed": 10000})
        write_eval(str(run), "round_000", 0, clip=0.30 + 0.01 * len(paths), pp=1.1, queries=64)
        paths.append(str(run))
    groups = figures.load_runs(paths)
    bars = {b.name: b for b in figures.budget_bars(groups, "train", 100, figures.metrics.CLIPSCORE)}
    base = bars["base"].stat
    assert base.n == 1 and base.mean == pytest.approx(0.28) and base.se == pytest.approx(0.003)
    assert bars["a"].stat.mean == pytest.approx(0.305) and bars["a"].queries == (64, 64)
    _, _, cells = figures.template_cells(groups, "train", 100)
    assert len(cells[("base", "Temp. 1")]) == 1 and len(cells[("a", "Temp. 1")]) == 2


def test_toy_world_alignment_and_diversity_curves_and_tables(tmp_path, capsys):
    """Evaluations with the toy world's keys get alignment and background-entropy curves and tables for
    each prompt set that has them, averaged over seeds like CLIPScore."""
    root = str(tmp_path / "runs")
    for seed, (aligned, entropy) in enumerate(
        [((0.50, 0.60, 0.70), (2.4, 2.3, 2.2)), ((0.54, 0.66, 0.74), (2.5, 2.2, 2.0))]
    ):
        run_dir = os.path.join(root, f"toy_seed{seed}")
        write_progress(run_dir, [0.2, 0.25, 0.3], 96)
        write_eval(
            run_dir,
            "base",
            -1,
            "test",
            clip=0.3,
            pp=1.1,
            pooled=2,
            queries=0,
            template="toy2",
            alignment_mean=0.40,
            alignment_sem=0.03,
            background_entropy=2.5,
        )
        for r in range(3):
            write_eval(
                run_dir,
                f"round_{r:03d}",
                r,
                "test",
                clip=0.3,
                pp=1.1,
                pooled=2,
                queries=96 * (r + 1),
                template="toy2",
                alignment_mean=aligned[r],
                alignment_sem=0.03,
                background_entropy=entropy[r],
            )
    out = tmp_path / "out"
    assert (
        figures.main(
            [os.path.join(root, "toy_seed0"), os.path.join(root, "toy_seed1"), "--out", str(out), "--queries", "200"]
        )
        == 0
    )
    curve = {int(r["reward_queries"]): r for r in read_csv(out / "curve_test_alignment.csv")}
    assert float(curve[0]["mean"]) == pytest.approx(0.40) and float(curve[0]["se"]) == 0  # the same base in both seeds
    assert float(curve[288]["mean"]) == pytest.approx(0.72) and float(curve[288]["se"]) == pytest.approx(0.02)
    entropy = {int(r["reward_queries"]): float(r["mean"]) for r in read_csv(out / "curve_test_background_entropy.csv")}
    assert entropy[192] == pytest.approx(2.25)
    table = read_csv(out / "table_toy_alignment_test.csv")  # at <= 200 queries: round_001 (192)
    assert_cell(table, "toy", "toy2", 0.63, 0.03, 2, "192")
    assert_cell(read_csv(out / "table_toy_background_entropy_test.csv"), "toy", "toy2", 2.25, 0.05, 2, "192")
    assert_png(out / "curve_test_alignment.png")
    assert not (out / "curve_train_alignment.png").exists()  # no train evaluations
    tables = (out / "tables.md").read_text()
    assert "| toy | 0.6300 ± 0.0300 (192 q) |" in section(
        tables, "Toy world: alignment (toy-world detector), held-out prompts, at ≤ 200"
    )
    printed = capsys.readouterr().out
    assert (
        "left out of Table 3" not in printed and "note: Tables 1-2 skipped: no run has eval/train.json files" in printed
    )


def test_no_toy_outputs_without_toy_metrics(runs, tmp_path):
    out = tmp_path / "out"
    assert figures.main(argv_for(runs, out)) == 0
    assert not any("alignment" in name or "toy" in name for name in os.listdir(out))
    assert "Toy world" not in (out / "tables.md").read_text()


def test_a_single_run_folder_labels_itself(tmp_path):
    """One run folder, no --out: figures land in RUN_DIR/figures; the rendered panels carry their titles,
    the base bar is named after the checkpoint, the band legend says it is the evaluation's own SE (n = 1),
    and summary.csv carries the run's learning rate and seed."""
    run = str(tmp_path / "toy")
    write_progress(run, [0.80, 0.82], 96)
    toy_model = {"model": os.path.join(REPO, "b2diffurl", "toyworld", "model")}
    for name, index, clip, queries in (("base", -1, 0.85, 0), ("round_000", 0, 0.86, 96), ("round_001", 1, 0.87, 192)):
        write_eval(
            run,
            name,
            index,
            clip=clip,
            pp=1.2,
            pooled=4.0,
            queries=queries,
            settings=toy_model,
            run={"algorithm": "ppo", "learning_rate": 0.001, "seed": 7},
        )
    figs = drawn_figures([run])
    out = tmp_path / "toy" / "figures"
    assert_png(out / "bars_train.png") and assert_png(out / "curve_train.png")
    curve = figs[0][1]
    assert curve.get_title() == "Fig. 5: CLIPScore on the training prompts vs reward queries"
    assert curve.get_legend().get_title().get_text() == "shaded: ±1 SE: the evaluation's own SE (one seed each)"
    assert [t.get_text() for t in curve.get_legend().get_texts()][0] == "toy (n=1)"
    panels = next(a for _, a in figs if not hasattr(a, "get_legend_handles_labels"))
    assert [a.get_title() for a in panels] == [
        "CLIPScore (alignment)",
        "Inception Score per prompt (diversity)",
        "Inception Score pooled over all images",
    ]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["toy-world model (base)", "toy"]
    assert panels[0].get_ylabel() == "CLIPScore"
    rows = read_csv(out / "summary.csv")
    assert {(r["round"], r["model"], r["learning_rate"], r["seed"]) for r in rows if r["round"] == "round_001"} == {
        ("round_001", "toy-world model", "0.001", "7")
    }
    assert "| toy-world model (base) |" in (out / "tables.md").read_text()


def test_figures_need_matplotlib_before_writing(tmp_path):
    """Outside the venv (no matplotlib) the command stops with one line and writes nothing."""
    run = str(tmp_path / "r")
    write_progress(run, [0.8], 96)
    code = (
        "import sys, importlib.util as u; real = u.find_spec; "
        "u.find_spec = lambda name, *a: None if name == 'matplotlib' else real(name, *a); "
        f"from b2diffurl.figures import main; sys.exit(main([{run!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: matplotlib is not installed for ")
    assert ".venv/bin/python -m b2diffurl.figures" in proc.stderr and proc.stderr.count("\n") == 1
    assert not os.path.exists(os.path.join(run, "figures"))


def test_fig7a_draws_clipscore_and_bertscore_side_by_side_when_runs_carry_bertscore(tmp_path):
    """Runs whose evaluations report BERTScore (evaluate.metrics) get fig7a_<set>.png: a CLIPScore panel
    and a BERTScore panel, DDPO vs BPT-only vs B2-DiffuRL, and the BERTScore curve as CSV; runs without
    it get neither."""
    root = str(tmp_path / "runs")
    methods = {"b2_seed1": "B2-DiffuRL", "ddpo_seed1": "vanilla", "bpt_seed1": "BPT only"}
    for i, (name, label) in enumerate(methods.items()):
        run = os.path.join(root, name)
        write_progress(run, [0.2, 0.3], 64)
        for r in (-1, 0, 1):
            write_eval(
                run,
                "base" if r < 0 else f"round_{r:03d}",
                r,
                clip=0.28 + 0.01 * (r + 1),
                pp=1.2,
                pooled=6.0,
                queries=64 * (r + 1),
                label=label,
                bertscore_mean=0.5 + 0.02 * (r + 1) * (i + 1),
                bertscore_sem=0.01,
            )
    figs = drawn_figures([*(os.path.join(root, n) for n in methods), "--out", str(tmp_path / "o")])
    assert_png(tmp_path / "o" / "fig7a_train.png")
    (panels,) = [
        axes for _, axes in figs if getattr(axes, "shape", None) == (2,) and axes[1].get_title().startswith("BERTScore")
    ]
    assert [ax.get_title() for ax in panels] == ["CLIPScore, training prompts", "BERTScore, training prompts"]
    assert panels[1].get_ylabel() == "BERTScore (training prompts)"
    for ax, values in zip(panels, ([0.28, 0.29, 0.30], [0.50, 0.54, 0.58])):  # the second group (ddpo): i = 1
        line = ax.get_lines()[1]
        assert list(line.get_xdata()) == [0, 64, 128] and list(line.get_ydata()) == pytest.approx(values)
    rows = read_csv(tmp_path / "o" / "curve_train_bertscore.csv")
    assert [(r["label"], r["reward_queries"], float(r["mean"])) for r in rows if r["label"] == "bpt"] == [
        ("bpt", "0", 0.5),
        ("bpt", "64", pytest.approx(0.56)),
        ("bpt", "128", pytest.approx(0.62)),
    ]
    summary = [
        r
        for r in read_csv(tmp_path / "o" / "summary.csv")
        if r["run"].endswith("bpt_seed1") and r["prompt_set"] == "train"
    ]
    assert [(r["round"], float(r["bertscore_mean"]), float(r["bertscore_sem"])) for r in summary] == [
        ("base", 0.5, 0.01),
        ("round_000", pytest.approx(0.56), 0.01),
        ("round_001", pytest.approx(0.62), 0.01),
    ]
    assert all(r["toycaption_mean"] == "" and r["alignment_mean"] == "" for r in summary), "absent metrics stay empty"
    # without BERTScore in the evaluations: no Fig. 7a, no BERTScore curve
    plain = tmp_path / "plain"
    write_progress(str(plain / "b2_seed1"), [0.2], 64)
    for r in (-1, 0):
        write_eval(
            str(plain / "b2_seed1"),
            "base" if r < 0 else "round_000",
            r,
            clip=0.3,
            pp=1.2,
            pooled=6.0,
            queries=64 * (r + 1),
        )
    assert figures.main([str(plain / "b2_seed1"), "--out", str(tmp_path / "o2")]) == 0
    assert not list((tmp_path / "o2").glob("fig7a_*")) and not list((tmp_path / "o2").glob("*bertscore*"))


def test_a_rerun_over_the_same_evaluations_rewrites_no_file(tmp_path):
    """Figures, CSVs and tables are replaced only when their bytes change (a driver rerun redraws them)."""
    big, small, late = budget_runs(str(tmp_path / "runs"))
    out = tmp_path / "o"
    assert figures.main([big, small, "--out", str(out)]) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert any(name.endswith(".png") for name in stamps) and any(name.endswith(".csv") for name in stamps)
    assert figures.main([big, small, "--out", str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps, "nothing rewritten, no .partial/ left"
    assert figures.main([big, small, late, "--out", str(out)]) == 0
    assert (out / "summary.csv").stat().st_mtime_ns != stamps["summary.csv"], "a new run changes the summary"
