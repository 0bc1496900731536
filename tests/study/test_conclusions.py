"""The generated conclusions follow their numbers, and README's headline follows results/cpu/."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from aclaudio.evaluation.stats import resolved, verdict
from aclaudio.study import artifacts, conclusions, readme
from aclaudio.study.directions import directions

REPO = Path(__file__).resolve().parents[2]


def comparison(name, estimate, ci, both, n=3, n_comparisons=1):
    """A row of study.compare_runs: ci over seeds, `both` over seeds and test clips."""
    a, b = name.split(" - ")
    return {
        "comparison": name,
        "n": n,
        "n_clips": 400,
        "mean_difference": estimate,
        "ci": ci,
        "verdict": verdict(a, b, estimate, *ci, n_seeds=n, n_comparisons=n_comparisons),
        "seeds_clips_ci": both,
        "resolvable_difference": 0.02 if n >= 3 else None,
        "seeds_clips_verdict": verdict(
            a, b, estimate, *both, n_seeds=n, n_comparisons=n_comparisons
        ),
        "resolved": resolved(ci, n) and resolved(both, n),
    }


def test_markdown_table_in_percent_with_one_decimal():
    df = pd.DataFrame(
        {"accuracy": [0.8775, 0.5], "std": [0.01234, 2.0], "runs": [3, 1]}, index=["NT-Xent", "ACL"]
    )
    text = conclusions.markdown_table(df, ["accuracy"])
    assert "accuracy (%)" in text and "87.8" in text and "50.0" in text
    assert "0.0123" in text and "0.8775" not in text


def test_an_interval_with_zero_is_no_resolvable_difference():
    paired = pd.DataFrame([comparison("ACL - NT-Xent", 0.01, [-0.02, 0.04], [-0.03, 0.05])])
    text = conclusions.comparisons(paired)
    assert "no resolvable difference: ACL - NT-Xent = +1.0 points" in text
    assert "none is resolved by both intervals" in text
    assert "one interval in 20" not in text  # a single comparison


def test_resolved_differences_and_how_many_comparisons():
    paired = pd.DataFrame(
        [
            comparison("NT-Xent - random init", 0.085, [0.06, 0.11], [0.05, 0.12], n_comparisons=2),
            comparison("ACL - NT-Xent", -0.034, [-0.059, -0.009], [-0.07, 0.01], n_comparisons=2),
        ]
    )
    text = conclusions.comparisons(paired)
    assert "NT-Xent - random init = +8.5 points" in text
    assert "1 is resolved by both intervals (NT-Xent - random init)" in text
    assert "ACL - NT-Xent only over seeds" in text
    assert "Of these 2 comparisons" in text and "one interval in 20" in text
    mean = pd.Series({"random init": 0.80, "NT-Xent": 0.885})
    assert conclusions.pretraining(mean, paired).startswith(
        "Mean test accuracy over 3 seeds: random init 80.0 %, NT-Xent 88.5 %."
    )


def test_fewer_than_three_seeds_are_descriptive():
    """Two seeds, an interval that excludes 0: still descriptive, never "resolved"."""
    paired = pd.DataFrame(
        [comparison("ACL - NT-Xent", -0.033, [-0.064, -0.001], [-0.07, -0.002], n=2)]
    )
    text = conclusions.comparisons(paired)
    assert "descriptive (2 seeds): ACL - NT-Xent = -3.3 points" in text
    assert "With 2 seeds these differences are descriptive" in text
    assert "resolv" not in text.replace("resolved differences (a verdict", "")
    one = comparison("ACL - NT-Xent", 0.02, [0, 0], [0, 0], n=1) | {
        "ci": None,
        "seeds_clips_ci": None,
        "verdict": verdict("ACL", "NT-Xent", 0.02, None, None, n_seeds=1),
    }
    text = conclusions.comparisons(pd.DataFrame([one]))
    assert "descriptive (1 seed): ACL - NT-Xent = +2.0 points, no interval" in text
    assert "With 1 seed these differences are descriptive" in text


def test_supervised_states_directions_only_with_enough_seeds():
    table = pd.DataFrame(
        {
            "subset": ["clean", "clean", "noisy", "noisy"],
            "alpha": [0.7, 1.0, 0.7, 1.0],
            "seed": [0] * 4,
            "test_micro": [0.75, 0.65, 0.70, 0.72],
            "test_micro_low": [0.70, 0.60, 0.65, 0.67],
            "test_micro_high": [0.80, 0.70, 0.75, 0.77],
            "best_epoch": [3, 5, 7, 7],
            "best_val_loss": [1.2, 1.4, 1.1, None],  # the last: no finite validation loss
            "finished_epochs": [8] * 4,
        }
    )
    text = conclusions.supervised(table)
    assert "higher" not in text  # one seed: no direction claimed for the losses
    assert "clean: descriptive (1 seed): ACL (alpha 0.7) - CE = +10.0 points, no interval" in text
    assert "1 seed per cell, paired by seed: these differences are descriptive" in text
    assert "In 1 of 4 runs the lowest validation loss came in the last of their 8 epochs" in text
    table["finished_epochs"] = [8, 8, 8, 16]
    assert "In 1 of 4 runs the lowest validation loss came in their last epoch" in (
        conclusions.supervised(table)
    )
    table["finished_epochs"] = [8, 8, 16, 16]
    assert "still improving" not in conclusions.supervised(table)


def test_ablation_names_the_extreme_cells():
    diff = pd.DataFrame([[0.01, -0.10], [0.02, -0.05]], index=[0.3, 0.7], columns=[0.5, 1.0])
    row = comparison("ACL - NT-Xent", 0.02, [-0.01, 0.05], [-0.02, 0.06])
    paired = pd.DataFrame([row | {"comparison": "best cell (alpha 0.7, m 0.5)"}])
    text = conclusions.ablation(diff, paired, n_seeds=2)
    assert "from -10.0 points (alpha 0.3, m 1) to +2.0 (alpha 0.7, m 0.5)" in text
    assert "2 of 4 cells are above NT-Xent" in text
    assert "exploratory" in text
    same = pd.DataFrame([row | {"comparison": "paper setting = best cell (alpha 0.3, m 0.5)"}])
    text = conclusions.ablation(diff, same, n_seeds=2)
    assert "exploratory" not in text and "also the grid's best ACL cell" in text
    geometry = pd.DataFrame(
        {
            "zero_share": [0.02, 0.7, 0.04, 0.8, 0.0],
            "mean_angle": [0.8, 1.3, 0.9, 1.36, 0.7],
            "beyond_margin": [0.1, 0.9, 0.2, 0.96, 0.05],
            "non_negative": [True] * 5,
        },
        index=pd.MultiIndex.from_tuples(
            [(0.3, 0.5), (0.3, 1.0), (0.7, 0.5), (0.7, 1.0), (1.0, 0.5)], names=["alpha", "margin"]
        ),
    )
    text = conclusions.ablation(diff, same, n_seeds=2, geometry=geometry)
    assert (
        "at m 0.5, 3.0 % of h's entries are 0 and two clips sit 0.85 rad apart on average "
        "(15.0 % of pairs beyond the margin); at m 1, 75.0 % of h's entries are 0 and two clips "
        "sit 1.33 rad apart on average (93.0 % of pairs beyond the margin)."
    ) in text  # NT-Xent (alpha 1) left out of the means
    assert "no two clips can be more than pi/2" in text
    geometry.loc[(1.0, 0.5), "non_negative"] = False
    assert "pi/2" not in conclusions.ablation(diff, same, n_seeds=2, geometry=geometry)


def test_the_toy_ties_for_nt_xent_and_not_for_the_class_aware_term():
    toy = pd.DataFrame(
        {"grouped": [0.93174, 0.0504, 0.0532], "swapped": [0.93174, 0.0504, 0.9165]},
        index=["NT-Xent", "angular term, same clip", "angular term, same class"],
    )
    text = conclusions.margin(toy)
    assert "0.9317 and 0.9317, the paper's 0.9317" in text and "ties too" in text
    assert "17 times as much" in text
    toy.loc["angular term, same class", "swapped"] = 0.0532
    assert "ties as well" in conclusions.margin(toy)


def test_sign_agreement_with_the_paper():
    ours = pd.DataFrame(
        {"ours": [-0.03, 0.01, -0.02], "seeds": [3] * 3, "resolved": [True, False, False]},
        index=[0.3, 0.7, 0.0],
    )
    paper = pd.Series({0.3: 0.029, 0.7: 0.015, 0.0: -0.029, 0.5: -0.002})
    text = conclusions.paper_agreement(ours, paper, what="SSL")
    assert text.startswith("SSL: ours has the paper's sign in 2 of 3 cells (0.7, 0.0)")
    assert "our intervals exclude 0 in 1 of them" in text
    ours["seeds"] = 2
    text = conclusions.paper_agreement(ours, paper, what="SSL")
    assert "with 2 seeds a cell these are descriptive" in text and "exclude" not in text


def test_the_paper_reading_says_what_its_number_carries():
    headline = comparison("ACL - NT-Xent", -0.008, [-0.037, 0.021], [-0.04, 0.025], n=5)
    headline |= {"alpha": 0.3, "seed_sd": 0.024}
    paper = {"acl": 0.771, "nt_xent": 0.742, "clips": 947, "disagreement": 0.16, "settings": 10}
    text = conclusions.paper_reading(headline, paper, "- SSL: a line")
    assert (
        "patch-weighted accuracy as the paper's self-supervised table, paired over 5 seeds" in text
    )
    assert "77.1 % against 74.2 % (+2.9 points), one run each on 947 clips" in text
    # sqrt(0.16 / 947) = 0.0130: the paired standard error, not one accuracy's Wilson interval
    assert "a standard error of about 1.3 points" in text and "16.0 % for our paired runs" in text
    assert "not measured, which does not make it zero: ours is 2.4 points" in text
    assert "best of its 10 ACL settings on its test set" in text


def test_readme_headline_is_results_cpu_tables():
    text = (REPO / "README.md").read_text()
    block = re.search(f"{readme.START}\n(.*)\n{readme.END}", text, re.S).group(1)
    assert block == readme.readme_headline(REPO / "results" / "cpu")
    runs = pd.read_csv(artifacts.PRETRAINING_RUNS.path(REPO / "results" / "cpu"))
    for method, accuracy in runs.groupby("method")["test_micro"]:
        row = next(line for line in block.splitlines() if line.startswith(f"| {method} "))
        shown = float(row.split("|")[2])
        assert abs(shown - 100 * accuracy.mean()) <= 0.05 + 1e-9, (method, row)
    paired = pd.read_csv(artifacts.PRETRAINING_PAIRED.path(REPO / "results" / "cpu"))
    assert all(v in block for v in paired["verdict"])
    assert all(v in block for v in paired["seeds_clips_verdict"])
    resolved = paired.loc[paired["resolved"], "comparison"].tolist()
    assert resolved == [
        row.comparison
        for row in paired.itertuples()
        if not any(
            v.startswith(("no resolvable", "descriptive"))
            for v in (row.verdict, row.seeds_clips_verdict)
        )
    ]
    assert f"resolved by both intervals ({', '.join(resolved)})" in block or (
        not resolved and "none is resolved by both intervals" in block
    )


def test_write_readme_headline_replaces_only_the_block(tmp_path):
    file = tmp_path / "README.md"
    file.write_text(f"top\n{readme.START}\nold numbers\n{readme.END}\nbottom\n")
    assert readme.write_readme_headline(file, REPO / "results" / "cpu")
    text = file.read_text()
    assert text.startswith("top\n") and text.endswith("bottom\n") and "old numbers" not in text
    assert not readme.write_readme_headline(file, REPO / "results" / "cpu")


def test_directions_on_two_datasets_count_signs_and_resolved_agreements(tmp_path):
    """Notebook 02 run on two datasets: each comparison's sign, then the counts of agreements
    and of agreements that both studies resolve (tables written as notebook 02 does)."""
    first = [
        comparison("ACL - NT-Xent", -0.02, [-0.04, 0.0], [-0.05, 0.01]),
        comparison("NT-Xent - random init", 0.15, [0.12, 0.18], [0.11, 0.19]),
        comparison("ACL - random init", 0.13, [0.10, 0.16], [0.09, 0.17]),
    ]
    second = [
        comparison("ACL - NT-Xent", 0.01, [-0.01, 0.03], [-0.02, 0.04]),
        comparison("NT-Xent - random init", 0.12, [0.09, 0.15], [0.08, 0.16]),
        comparison("ACL - random init", 0.04, [-0.01, 0.09], [-0.02, 0.10]),
    ]
    for name, rows in (("a", first), ("b", second)):
        artifacts.results_dir(name, tmp_path)
        pd.DataFrame(rows).to_csv(artifacts.PRETRAINING_PAIRED.path(tmp_path / name))
    text = directions(tmp_path / "a", tmp_path / "b", ("seed 0", "seed 1"))
    row = next(line for line in text.splitlines() if line.startswith("| ACL - NT-Xent "))
    assert [cell.strip() for cell in row.split("|")[1:-1]] == [
        "ACL - NT-Xent",
        "-2.0 [-5.0, +1.0]",
        "+1.0 [-2.0, +4.0]",
        "no",
    ]
    assert "agree in sign in 2 of 3 comparisons (NT-Xent - random init, ACL - random init)" in text
    assert "resolve it with that sign (both intervals, 3 seeds or more) in 1 (NT-Xent" in text


def test_embeddings_describes_two_runs_without_a_direction():
    geometry = pd.DataFrame(
        {"tolerance (z)": [0.296, 0.320], "uniformity (z)": [-3.61, -3.63]},
        index=["NT-Xent", "ACL"],
    )
    angles = pd.DataFrame(
        {"positive: mean angle (rad)": [0.186, 0.254], "negative: fraction below m": [0.1, 0.1]},
        index=["NT-Xent", "ACL"],
    )
    text = conclusions.embeddings(geometry, angles, seed=0)
    assert "- tolerance (z): NT-Xent 0.296, ACL 0.320" in text
    assert "- uniformity (z): NT-Xent -3.610, ACL -3.630" in text
    assert "One run of each loss (seed 0): these numbers describe these two encoders" in text
    assert "more uniform" in text and "ACL more uniform" not in text  # a definition, no claim


def test_the_committed_pages_hold_no_warning():
    """results/cpu/report/ as committed: no warning of any kind on the study's pages."""
    pages = sorted((REPO / "results" / "cpu" / "report").glob("*.html"))
    assert len(pages) == 9  # the index and notebooks 00 to 07
    for page in pages:
        assert "Warning:" not in page.read_text(), page.name


def test_notebook_07_in_one_line_gives_each_interval_and_what_both_resolve():
    paired = pd.DataFrame(
        [
            comparison("ACL - NT-Xent", -0.015, [-0.041, 0.011], [-0.043, 0.013], n=5),
            comparison("VICReg - NT-Xent", -0.082, [-0.11, -0.05], [-0.12, -0.044], n=5),
        ]
    )
    assert readme.margin_line(paired) == (
        "**Where the margin goes** (notebook 07, 5 seeds, points, 95 % interval over seeds and "
        "test clips): ACL - NT-Xent -1.5 [-4.3, +1.3]; VICReg - NT-Xent -8.2 [-12.0, -4.4]; "
        "resolved by both intervals: VICReg - NT-Xent."
    )
    two = pd.DataFrame([comparison("ACL - NT-Xent", 0.01, [0.005, 0.015], [0.002, 0.018], n=2)])
    assert readme.margin_line(two).endswith("; descriptive with 2 seeds.")
    mixed = pd.DataFrame(  # notebook 02's NT-Xent and ACL at 5 seeds, a new method at 3
        [
            comparison("ACL - NT-Xent", -0.015, [-0.041, 0.011], [-0.043, 0.013], n=5),
            comparison("VICReg - NT-Xent", -0.082, [-0.15, -0.01], [-0.16, -0.004], n=3),
        ]
    )
    assert readme.margin_line(mixed) == (
        "**Where the margin goes** (notebook 07, 3 to 5 seeds, points, 95 % interval over seeds "
        "and test clips): ACL - NT-Xent -1.5 [-4.3, +1.3] (5 seeds); VICReg - NT-Xent -8.2 "
        "[-16.0, -0.4] (3 seeds); resolved by both intervals: VICReg - NT-Xent."
    )


def test_where_the_margin_goes_names_the_choice_the_verdicts_and_the_angles():
    sweep = pd.DataFrame(
        {
            "method": ["ArcFace NT-Xent"] * 2 + ["CosFace NT-Xent"] * 2,
            "margin": [0.1, 0.4, 0.1, 0.4],
            "clean": [0.70, 0.725, 0.71, 0.69],
            "chosen": [False, True, True, False],
        }
    )
    paired = pd.DataFrame(
        [comparison("ArcFace NT-Xent - NT-Xent", 0.004, [-0.02, 0.03], [-0.03, 0.04], n=5)]
    )
    supervised = pd.DataFrame([comparison("SupCon - CE", 0.01, [0.0, 0.02], [-0.01, 0.03], n=2)])
    angles = pd.DataFrame(
        {"positive / negative mean angle": [0.31, 0.254]}, index=["NT-Xent", "VICReg"]
    )
    text = conclusions.where_the_margin_goes(sweep, paired, supervised, angles)
    assert "ArcFace NT-Xent: m = 0.4 of 0.1 (70.0 %), 0.4 (72.5 %) (the largest tried" in text
    assert "CosFace NT-Xent: m = 0.1 of 0.1 (71.0 %), 0.4 (69.0 %)" in text
    assert text.count("the largest tried: a larger one might do better") == 1  # ArcFace's
    assert paired["verdict"][0] in text and "With 2 seeds these differences are descriptive" in text
    assert text.endswith("NT-Xent 0.31, VICReg 0.25.")
