"""The toy benchmark's protocol and report without running a model: equal budgets per method, the
learning-rate pick, paired differences and verdicts, and docs/RESULTS.md's sections from run folders."""

import csv
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest
from conftest import REPO


def method_config(method):
    from b2diffurl.configs import load_config, set_field
    from b2diffurl.variables import DRIVER_VARIABLES

    config = load_config(f"{REPO}/config/stage_process.py:toy{method.presets}")
    for variable, value in method.variables.items():
        set_field(config, DRIVER_VARIABLES[variable], value)
    return config


def test_every_method_scores_the_same_images_per_round():
    """Equal rounds are equal reward queries: batch size x batches x branches = 96 for every method,
    and each method is the algorithm and the schedule its label says."""
    from b2diffurl.toylab.protocol import METHODS, QUERIES_PER_ROUND

    for label, method in METHODS.items():
        config = method_config(method)
        assert (
            config.sample.batch_size * config.sample.num_batches_per_epoch * config.split_time == QUERIES_PER_ROUND
        ), label
        vanilla = not label.startswith("B2-DiffuRL") and label != "BPT-only"
        assert (config.process.split_step_left == config.sample.num_steps) == vanilla, (
            f"{label}: vanilla methods train every step"
        )
        assert config.split_time == (2 if label == "DPO" else 1 if vanilla or label == "BPT-only" else 3), label
        expected = {"PG": "pg", "DPOK": "dpok", "DPO": "dpo"}.get(label.split("+")[-1], "ppo")
        assert config.train.algorithm == expected, label


def test_the_protocol_keeps_selection_and_final_seeds_apart():
    from b2diffurl.toylab import protocol

    assert not set(protocol.SELECTION_SEEDS) & set(protocol.FINAL_SEEDS)
    assert len(protocol.FINAL_SEEDS) >= 5 and protocol.FINAL_ROUNDS > 6
    assert list(protocol.LR_GRID) == sorted(protocol.LR_GRID)
    in_parts = {label for part in protocol.PARTS.values() for label, _ in part.runs}
    for claim in protocol.claims():
        assert claim.a in in_parts and claim.b in in_parts and claim.metric in protocol.METRIC_NAMES
    assert {c.item for c in protocol.claims()} == {
        "Fig. 5",
        "Fig. 7a",
        "Fig. 7b",
        "Fig. 8",
        "Table 1",
        "Table 2",
        "Table 3",
    }
    assert all(c.prompt_set == "test" for c in protocol.claims() if c.item == "Table 3")
    assert all(c.prompt_set == "train" for c in protocol.claims() if c.item != "Table 3")


def test_every_final_run_evaluates_what_its_claims_read_with_two_images_a_prompt(tmp_path):
    """Each planned final run evaluates the prompt sets its template's claims read (the held-out set
    only on the main template), on enough images that every prompt gets the 2 the per-prompt
    Inception Score needs; the driver's own check accepts each plan's variables before round 0."""
    from b2diffurl.driver.prepare import checked_run
    from b2diffurl.toylab import benchmark, protocol

    read = {(c.template, c.prompt_set) for c in protocol.claims()}
    assert read <= {(t, s) for t in protocol.FIG5_TEMPLATES for s in protocol.eval_sets(t).split(",")}
    assert (
        protocol.eval_sets(protocol.MAIN_TEMPLATE) == "train,test"
        and protocol.eval_images(protocol.MAIN_TEMPLATE) == protocol.EVAL_IMAGES
    )
    picks = {label: 1e-3 for label in protocol.METHODS}
    for part in protocol.FINAL_PARTS:
        if part in ("caption", "f1"):
            continue
        for what, _, env, variables in benchmark.planned(str(tmp_path), part, (1,), picks):
            template = next(t for t in protocol.FIG5_TEMPLATES if variables["PromptFile"] == protocol.prompt_file(t))
            for split in variables["EvalSets"].split(","):
                prompts = json.loads((pathlib.Path(REPO) / protocol.prompt_file(template, split)).read_text())
                assert int(variables["EvalImages"]) >= 2 * len(prompts), (what, split)
            checked_run({**env, "B2DIFFURL_CALLER_DIR": REPO})  # the driver's checks: raises on a refused value
    assert (protocol.eval_sets("toy3"), protocol.eval_images("toy3")) == ("train", 560)


def test_paired_differences_and_verdicts():
    from b2diffurl.toylab.protocol import verdict
    from b2diffurl.toylab.verdicts import paired

    mean, se, n, seeds = paired({1: 0.80, 2: 0.84, 3: 0.90, 9: 0.5}, {1: 0.70, 2: 0.72, 3: 0.74})
    assert seeds == [1, 2, 3] and n == 3, "only the seeds both methods have"
    diffs = [0.10, 0.12, 0.16]
    m = sum(diffs) / 3
    sd = (sum((d - m) ** 2 for d in diffs) / 2) ** 0.5
    assert mean == pytest.approx(m) and se == pytest.approx(sd / 3**0.5)
    assert verdict(0.1, 0.04, 5) == "reproduced" and verdict(0.1, 0.06, 5) == "inconclusive"
    assert verdict(-0.1, 0.04, 5) == "not reproduced" and verdict(-0.1, 0.04, 5, sign=-1) == "reproduced"
    assert verdict(0.1, None, 1).startswith("inconclusive")
    # a part still running: its claims say how many of the planned seeds they rest on
    from b2diffurl.toylab.protocol import verdict_so_far

    assert verdict_so_far(0.1, 0.04, 2, 5) == "reproduced so far (2 of 5 seeds)"
    assert verdict_so_far(0.1, None, 1, 5) == "inconclusive so far (1 of 5 seeds)"
    assert verdict_so_far(0.1, 0.04, 5, 5) == "reproduced"
    from b2diffurl.toylab.claims import summary_line

    assert summary_line(
        [
            "reproduced",
            "inconclusive",
            "reproduced",
            "inconclusive so far (1 of 5 seeds)",
            "reproduced so far (2 of 5 seeds)",
        ]
    ) == (
        "Verdicts over every claim tested: inconclusive 1, reproduced 2; claims of parts still running, so far: "
        "inconclusive 1, reproduced 1."
    )
    assert summary_line(["reproduced so far (2 of 5 seeds)"]) == (
        "Verdicts over every claim tested: none on all their seeds yet; claims of parts still running, so far: "
        "reproduced 1."
    )


def test_the_learning_rate_pick():
    from b2diffurl.toylab.verdicts import pick_learning_rate

    assert pick_learning_rate({5e-4: [0.7, 0.8], 1e-3: [0.8, 0.9], 2e-3: [0.95, 0.5]}) == 1e-3
    assert pick_learning_rate({5e-4: [0.8], 1e-3: [0.8], 2e-3: []}) == 5e-4, (
        "ties go to the smaller rate; no score, no pick"
    )
    assert pick_learning_rate({1e-3: []}) is None


def write_run(folder, rounds, alignment, kl=0.001, base=0.7, entropy=2.0):
    """A finished toy run's files as the benchmark reads them (evaluations of both sets, progress.csv)."""
    folder.mkdir(parents=True)
    with open(folder / "progress.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["round", "run_name", "reward_queries", "approx_kl"])
        for r in range(rounds):
            writer.writerow([r, f"round_{r:03d}", 96 * (r + 1), kl if r == 0 else 0.0001])
    for name, queries, value in (("base", 0, base), (f"round_{rounds - 1:03d}", 96 * rounds, alignment)):
        for prompt_set in ("train", "test"):
            (folder / name / "eval").mkdir(parents=True, exist_ok=True)
            (folder / name / "eval" / f"{prompt_set}.json").write_text(
                json.dumps(
                    {
                        "reward_queries": queries,
                        "alignment_mean": value,
                        "clipscore_mean": 0.8 + value / 10,
                        "inception_score_per_prompt": 1.2,
                        "background_entropy": entropy,
                    }
                )
            )


def test_the_report_states_pairs_verdicts_and_what_is_not_run(tmp_path, monkeypatch):
    """RESULTS.md from a grid and the fig5 part: the grid with its pick in bold, per claim both means,
    the paired difference with its SE and the verdict, stability shares, and the parts not run named
    with their command."""
    from b2diffurl.toylab import benchmark, ledger, protocol, results

    # each figure set's notes are named by its folder (toy3 evaluates its training prompts only)
    monkeypatch.setattr(
        results,
        "draw_figures",
        lambda runs, out, budget: ["note: curve_test.png skipped"] if "toy" in os.path.basename(out) else [],
    )
    save = tmp_path / "bench"
    for label in protocol.METHODS:
        for lr in protocol.LR_GRID:
            for seed in protocol.SELECTION_SEEDS:
                score = 0.75 + (0.1 if lr == 1e-3 else 0) + (0.05 if label == "DDPO" and lr == 5e-3 else 0)
                write_run(
                    tmp_path / ledger.grid_dir(str(save), label, lr, seed),
                    protocol.GRID_ROUNDS,
                    score,
                    kl=0.5 if lr == 5e-3 else 0.001,
                )
    picks = benchmark.write_picks(str(save))
    assert picks["B2-DiffuRL"] == 1e-3 and picks["DDPO"] == 1e-3, "0.85 beats 0.80 at 5e-3"
    b2 = {1: 0.80, 2: 0.84, 3: 0.90, 4: 0.82, 5: 0.86}
    ddpo = {1: 0.70, 2: 0.72, 3: 0.74, 4: 0.69, 5: 0.71}
    for template in protocol.FIG5_TEMPLATES:
        for seed in protocol.FINAL_SEEDS:
            write_run(save / "final" / template / f"b2_diffurl_seed{seed}", protocol.FINAL_ROUNDS, b2[seed])
            write_run(
                save / "final" / template / f"ddpo_seed{seed}",
                protocol.FINAL_ROUNDS,
                ddpo[seed],
                base=0.75 if seed == 1 else 0.7,
            )
    caption = {1: 0.78, 2: 0.80, 3: 0.79, 4: 0.83, 5: 0.80}  # base 0.7: gains 0.08 .. 0.13
    for seed in protocol.FINAL_SEEDS:
        write_run(
            tmp_path / ledger.final_dir(str(save), protocol.CAPTION_METHOD, protocol.MAIN_TEMPLATE, seed),
            protocol.FINAL_ROUNDS,
            caption[seed],
        )
    f1 = tmp_path / ledger.f1_dir(str(save))
    f1.mkdir(parents=True)
    (f1 / "stability.json").write_text(
        json.dumps(
            {
                "steps": 1,
                "branches": 2,
                "groups": 4,
                "rewards": {
                    "clipscore": {
                        "pairs": 4,
                        "mean": 0.004,
                        "median": 0.003,
                        "fraction_above": 0.0,
                        "differences": [0.001, 0.002, 0.004, 0.009],
                    },
                    "toycaption": {
                        "pairs": 4,
                        "mean": 0.05,
                        "median": 0.02,
                        "fraction_above": 0.75,
                        "differences": [0.0, 0.02, 0.03, 0.15],
                    },
                },
            }
        )
    )
    out = tmp_path / "RESULTS.md"
    out.write_text("stale report\n## Discussion\nkept as written\n")
    results.write(str(save), str(out), str(tmp_path / "figures"))
    text = out.read_text()
    assert "**85.0% (n=2)<br>KL 0/2, below 0/2**" in text and "KL 2/2" in text, (
        "the pick in bold, the unstable 5e-3 runs counted"
    )
    diffs = [b2[s] - ddpo[s] for s in protocol.FINAL_SEEDS]
    m = sum(diffs) / 5
    se = (sum((d - m) ** 2 for d in diffs) / 4) ** 0.5 / 5**0.5
    row = next(
        line for line in text.splitlines() if line.startswith("| Fig. 5 |") and "alignment" in line and "toy2" in line
    )
    assert f"+{m * 100:.1f} pts ± {se * 100:.1f} (n=5)" in row and f"+{m / se:.1f}" in row and "**reproduced**" in row
    assert "B2-DiffuRL: 84.4% ± 1.7 (n=5)" in row and "DDPO: 71.2% ± 0.9 (n=5)" in row
    table3 = next(line for line in text.splitlines() if line.startswith("| Table 3 |") and "alignment" in line)
    assert "held-out" in table3 and "**reproduced**" in table3
    assert "Not run yet: `python -m b2diffurl.toyworld benchmark --part fig8`" in text, "Fig. 8's part is named"
    assert "| DDPO | toy2 | 0/5 | 2/5 |" in text, "seeds 1 (base 75%) and 4 end below their base model"
    assert "Fig. 5 on toy3, toy1 uses the picks made on toy2." in text
    notes = [line for line in text.splitlines() if line.endswith(": curve_test.png skipped")]
    assert notes == [f"- fig5_{template}: curve_test.png skipped" for template in protocol.FIG5_TEMPLATES], notes
    assert text.rstrip().endswith("kept as written") and "stale report" not in text.split("## Discussion")[0]
    gains = [caption[s] - 0.7 for s in protocol.FINAL_SEEDS]
    g = sum(gains) / 5
    gse = (sum((x - g) ** 2 for x in gains) / 4) ** 0.5 / 5**0.5
    held_out = next(line for line in text.splitlines() if line.startswith("| held-out |"))
    assert f"+{g * 100:.1f} pts ± {gse * 100:.1f} (n=5)" in held_out and "**reproduced**" in held_out
    assert (
        "| toycaption | 4 | 0.0500 | 0.0200 | 75.0% |" in text and "| clipscore | 4 | 0.0040 | 0.0030 | 0.0% |" in text
    )
    # paired over the 4 pairs: above-threshold flags (0,1,1,1) - (0,0,0,0): mean 0.75, SE 0.5 / 2 = 0.25, z 3.0
    assert "toycaption - clipscore, paired over the same pairs: +75.0 pts ± 25.0 (n=4) (z +3.0): **reproduced**" in text


def test_an_item_without_runs_names_every_part_it_waits_for():
    """A paper item none of whose claims has a run at the budget names the parts that run its methods:
    Fig. 7b (B2-DiffuRL vs DDPO) waits for fig5 even when fig7's own BPT-only runs are there."""
    from b2diffurl.toylab import claims

    class Finals:
        kind, budget = "final", 960

        def __init__(self, have):
            self.have = have

        def has(self, label, template):
            return (label, template) in self.have

    command = "`python -m b2diffurl.toyworld benchmark --part"
    bpt_only = Finals({("BPT-only", "toy2")})
    assert claims.waiting_line(bpt_only, "Fig. 7b") == f"Not run yet: {command} fig5`."
    assert claims.waiting_line(Finals(set()), "Fig. 7a") == f"Not run yet: {command} fig5` and {command} fig7`."
    assert claims.waiting_line(bpt_only, "Fig. 7a") == (
        f"Runs started, none at 960 reward queries yet: rerun {command} fig5` and {command} fig7` to finish them."
    )
    assert claims.waiting_line(Finals(set()), "Fig. 8") == f"Not run yet: {command} fig8`."


def test_final_parts_wait_for_the_grid(tmp_path):
    """Without the grid's picks (an empty record, not the committed one, which has them) a final part
    stops at once with one line; --quick with --part is refused."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "b2diffurl.toyworld",
            "benchmark",
            "--part",
            "fig8",
            "--save-path",
            str(tmp_path / "b"),
            "--record",
            str(tmp_path / "record"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "no learning rate picked yet for" in proc.stderr and "--part grid first" in proc.stderr
    assert not (tmp_path / "b" / "final").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "b2diffurl.toyworld", "benchmark", "--part", "fig5", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "--quick" in proc.stderr


def test_runs_at_once_share_the_cores_and_a_failed_run_is_named(tmp_path, monkeypatch):
    """benchmark --jobs 2: two run folders at once, each with half the cores' threads, each's output in
    its own log, its wall time in timings.json; after a failure nothing new starts, the running one
    finishes, and the error names the failed run and its log."""
    from b2diffurl.toylab import ledger, restated, runner

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert runner.threads_per_run(2) == threads
    fake = (
        tmp_path / "fake_driver.sh"
    )  # stands in for run_process.sh: records its threads, takes 2 s ("bad" fails at once)
    fake.write_text(
        f'echo "$ExpName $OMP_NUM_THREADS" >> "{tmp_path}/seen.txt"; echo "output of $ExpName"; '
        '[ "$ExpName" != bad ] || exit 1; sleep 2\n'
    )
    save = tmp_path / "bench"
    save.mkdir()

    def plan(names):
        return [runner.planned_run(f"run {n}", str(save / "part" / n), {"ExpName": n}) for n in names]

    wall, worked, left = runner.run_plan(str(save), plan("abc"), jobs=2, command=("bash", str(fake)))
    assert 4 <= wall < 6, f"3 runs of 2 s, 2 at a time (one after another: 6 s or more): {wall:.1f} s"
    assert not worked, "no run took over 20 s"
    assert left == 0
    assert sorted((tmp_path / "seen.txt").read_text().split("\n")[:-1]) == [f"{n} {threads}" for n in "abc"]
    timings = ledger.read_timings(str(save))
    assert sorted(timings["runs"]) == [os.path.join("part", n) for n in "abc"] and all(
        2 <= t < 4 for t in timings["runs"].values()
    )
    assert "output of b" in (save / "logs" / "part" / "b.log").read_text()

    (tmp_path / "seen.txt").unlink()
    with pytest.raises(runner.BenchmarkError) as err:
        runner.run_plan(str(save), plan(["a", "bad", "c"]), jobs=2, command=("bash", str(fake)))
    assert (
        str(err.value)
        == f"failed: run bad (exit 1; its output: {save / 'logs' / 'part' / 'bad.log'}); 1 run(s) not finished"
    )
    assert sorted((tmp_path / "seen.txt").read_text().split()) == sorted(["a", "bad", str(threads), str(threads)]), (
        "c never started"
    )

    timings["parts"]["part"] = {"wall_seconds": 7200.0, "jobs": 2, "threads": threads}
    timings["runs"] = {os.path.join("part", n): 5400.0 for n in "abc"}
    (save / "timings.json").write_text(json.dumps(timings))
    line = restated.timings_lines(str(save))[1]
    assert (
        line
        == f"- Wall time (runs and their evaluations): part 2.00 h (3 runs, 2 at a time, {threads} thread(s) each; "
        "4.50 h of run time); total 2.00 h."
    ), line


def test_finished_runs_are_recorded_and_never_run_again(tmp_path, monkeypatch):
    """With a record folder, a finished run's evaluations, progress and settings (and nothing else) are
    copied there with record.json; a second plan skips recorded runs without starting them; a record
    whose protocol variables differ stops the plan before anything starts, naming the variable; the
    report's wall times and machine come from the records."""
    from b2diffurl.toylab import benchmark, ledger, restated, results, runner

    fake = (
        tmp_path / "fake_driver.sh"
    )  # a run: its files as run_process.sh leaves them, plus a sample that is not recorded
    fake.write_text(
        f'set -e; d="$SavePath/$ExpName"; echo "$ExpName" >> "{tmp_path}/seen.txt"\n'
        'mkdir -p "$d/base/eval" "$d/round_000/eval" "$d/round_000/samples"\n'
        'echo "round,reward_queries,approx_kl,seconds" > "$d/progress.csv"; '
        'echo "0,96,0.001,900" >> "$d/progress.csv"\n'
        'echo "{}" > "$d/settings.json"; '
        'echo "{\\"reward_queries\\": 0, \\"seconds\\": 450}" > "$d/base/eval/train.json"\n'
        'echo "{\\"reward_queries\\": 96, \\"seconds\\": 450, \\"lr\\": \\"$LR\\"}" > "$d/round_000/eval/train.json"\n'
        'echo x > "$d/round_000/samples/0.bin"\n'
    )
    save, record = tmp_path / "work", tmp_path / "record"

    def plan(lr):
        return [runner.planned_run(f"run {n}", str(save / "grid" / n), {"ExpName": n, "LR": lr}) for n in "ab"]

    runner.run_plan(str(save), plan("1e-3"), jobs=2, command=("bash", str(fake)), record_root=str(record))
    files = sorted(str(p.relative_to(record / "grid" / "a")) for p in (record / "grid" / "a").rglob("*") if p.is_file())
    assert files == [
        "base/eval/train.json",
        "progress.csv",
        "record.json",
        "round_000/eval/train.json",
        "settings.json",
    ], files
    entry = json.loads((record / "grid" / "b" / "record.json").read_text())
    assert entry["variables"] == {"ExpName": "b", "LR": "1e-3"} and entry["machine"] == ledger.machine()
    assert json.loads((record / "grid" / "b" / "round_000" / "eval" / "train.json").read_text())["lr"] == "1e-3"
    assert not list(record.rglob("*.partial"))

    runner.run_plan(str(save), plan("1e-3"), jobs=2, command=("bash", str(fake)), record_root=str(record))
    assert sorted((tmp_path / "seen.txt").read_text().split()) == ["a", "b"], "recorded runs are not started again"
    with pytest.raises(runner.BenchmarkError) as err:
        runner.run_plan(str(save), plan("2e-3"), jobs=2, command=("bash", str(fake)), record_root=str(record))
    assert "LR recorded 1e-3, planned 2e-3" in str(err.value) and str(record / "grid" / "a") in str(err.value)
    assert sorted((tmp_path / "seen.txt").read_text().split()) == ["a", "b"], "nothing started"

    # the report goes to the docs/ that holds the record, else into the record folder itself
    assert benchmark.report_paths(ledger.RECORD_ROOT) == (
        os.path.join(REPO, "docs", "RESULTS.md"),
        os.path.join(REPO, "docs", "figures", "toy_benchmark"),
    )
    other = tmp_path / "checkout" / "docs" / "results" / "toy_benchmark"
    assert benchmark.report_paths(str(other)) == (
        str(tmp_path / "checkout" / "docs" / "RESULTS.md"),
        str(tmp_path / "checkout" / "docs" / "figures" / "toy_benchmark"),
    )
    assert benchmark.report_paths(str(record)) == (str(record / "RESULTS.md"), str(record / "figures"))

    ledger.add_part_time(str(record), "grid", 3600.0, 2, 1)
    assert ledger.work_seconds(str(record / "grid" / "a")) == 1800.0, "900 s of rounds and 2 evaluations of 450 s"
    line = restated.timings_lines(str(record))
    assert line[0] == f"- Machine: {ledger.machine()}."
    assert "grid 1.00 h (2 runs, 2 at a time, 1 thread(s) each; 1.00 h of run time" in line[1], line

    # --report --record elsewhere writes that record's report beside it (the writer itself is tested above)
    from b2diffurl.toylab.cli import main

    written = []
    monkeypatch.setattr(results, "write", lambda *args, **kwargs: written.append(args))
    assert main(["benchmark", "--report", "--record", str(record)]) == 0
    assert written == [(str(record), str(record / "RESULTS.md"), str(record / "figures"))]


def test_records_name_the_cpu_model(tmp_path):
    """A record names the CPU's model (two models train the same seeds into different runs): read from
    cpuinfo's "model name", the platform's processor where there is none."""
    from b2diffurl.perf import cpu_name
    from b2diffurl.toylab import ledger

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t: fpu\n"
    )
    assert cpu_name(str(info)) == "AMD EPYC 9R14 96-Core Processor"
    info.write_text("processor\t: 0\nflags\t: fpu\n")
    fallback = cpu_name(str(info))
    assert fallback and fallback == cpu_name(str(tmp_path / "missing"))
    assert f"({cpu_name()})" in ledger.machine()


def test_stop_after_lets_the_running_runs_finish_and_the_same_command_goes_on(tmp_path):
    """--stop-after: no run starts after the deadline; the one running when it passes finishes and is
    recorded; the rest are left for the same plan later, which skips the recorded run. A deadline
    that is not more than 0 minutes is refused with one line."""
    from b2diffurl.toylab import ledger, runner

    fake = tmp_path / "fake_driver.sh"  # a run of 1 s that leaves an evaluation
    fake.write_text(
        f'set -e; d="$SavePath/$ExpName"; echo "$ExpName" >> "{tmp_path}/seen.txt"; sleep 1\n'
        'mkdir -p "$d/base/eval"; echo "{\\"reward_queries\\": 0}" > "$d/base/eval/train.json"\n'
    )
    save, record = tmp_path / "work", tmp_path / "record"
    plan = [runner.planned_run(f"run {n}", str(save / "final" / n), {"ExpName": n}) for n in "abc"]

    wall, _, left = runner.run_plan(
        str(save), plan, jobs=1, command=("bash", str(fake)), record_root=str(record), deadline=time.time() + 0.5
    )
    assert left == 2 and wall >= 1, "a runs past the deadline and finishes; b and c never start"
    assert (tmp_path / "seen.txt").read_text().split() == ["a"]
    assert sorted(ledger.recorded_runs(str(record))) == [os.path.join("final", "a")]

    _, _, left = runner.run_plan(str(save), plan, jobs=1, command=("bash", str(fake)), record_root=str(record))
    assert left == 0 and (tmp_path / "seen.txt").read_text().split() == ["a", "b", "c"], "a is not run again"
    assert sorted(ledger.recorded_runs(str(record))) == [os.path.join("final", n) for n in "abc"]

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "b2diffurl.toyworld",
            "benchmark",
            "--part",
            "fig8",
            "--stop-after",
            "0",
            "--save-path",
            str(tmp_path / "x"),
            "--record",
            str(tmp_path / "r"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: --stop-after 0.0: give the minutes after which no new run starts, more than 0"
    ), proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_the_committed_report_is_what_the_committed_record_gives(tmp_path):
    """`benchmark --report` on a copy of the committed record, in another checkout's place, rewrites
    docs/RESULTS.md and the figures' text files byte for byte (no machine's path in them, no report
    left behind its record) and the same set of files."""
    import shutil

    docs = pathlib.Path(REPO) / "docs"
    copy = tmp_path / "checkout" / "docs"
    shutil.copytree(docs / "results" / "toy_benchmark", copy / "results" / "toy_benchmark")
    shutil.copy(docs / "RESULTS.md", copy / "RESULTS.md")  # its hand-written Discussion is kept
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "b2diffurl.toyworld",
            "benchmark",
            "--report",
            "--record",
            str(copy / "results" / "toy_benchmark"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (copy / "RESULTS.md").read_text() == (docs / "RESULTS.md").read_text()
    figures, written = docs / "figures" / "toy_benchmark", copy / "figures" / "toy_benchmark"
    names = sorted(str(p.relative_to(written)) for p in written.rglob("*") if p.is_file())
    # besides the report's files, one picture that TOYWORLD.md shows (samples, not a result)
    assert sorted(str(p.relative_to(figures)) for p in figures.rglob("*") if p.is_file()) == sorted(
        names + ["grid_base_vs_final.png"]
    )
    for name in names:
        if name.endswith((".csv", ".md")):
            assert (written / name).read_text() == (figures / name).read_text(), name
