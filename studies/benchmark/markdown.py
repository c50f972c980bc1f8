"""results.md, rendered from results.json alone (`render`), so that it can be rebuilt at any time."""

from __future__ import annotations

from evaluation.formatting import checkpoints_sentence
from studies.benchmark.tables import (
    break_even_table,
    markdown_table,
    models_table,
    pair_break_even_table,
    per_class_table,
    sanity_table,
)


def config_line(config: dict) -> str:
    v = config["versions"]
    return (f"Configuration: seed {config['seed']}, examples per class {config['per_class']}, "
            f"GradientSHAP {config['n_samples']} samples, IG {config['ig_steps']} steps, sampler "
            f"budgets {config['budgets']} (x 2n), quick={config['quick']}, {config['threads']} "
            f"torch thread(s); torch {v['torch']}, timm {v['timm']}, shap {v['shap']}, captum "
            f"{v['captum']}, shapiq {v['shapiq']}; {config['date']}."
            + checkpoints_sentence(config.get("checkpoints")))


def scope_sentence(results: dict) -> str:
    """How many examples each part scored, in words."""
    c = results["config"]
    if c["quick"]:
        return ("**Quick mode**: tiny models trained for an epoch or two, one example per class, "
                f"GradientSHAP with {c['n_samples']} samples and small sampler budgets. The "
                "numbers test the pipeline; they are not results.")
    models, b = results["models"], results["break_even"]
    parts = [f"{m['n_examples']} {key} examples ({m['per_class']} per class)"
             for key, m in models.items() if not m.get("break_even_only")]
    be = [f"{key} {v['n_examples']} ({v['per_class']} per class)" for key, v in b.items()]
    return ("Every evaluation draws the same number of test examples from every class. The "
            f"tables score {', '.join(parts)}; the break-even scores {', '.join(be)}, with "
            f"{len(c['break_even_seeds'])} sampler seeds each. GradientSHAP keeps its default "
            f"{c['n_samples']} samples.")


def render(results: dict) -> str:
    """results.md: the models, a table per model (and by class), break-even, sanity, config."""
    models = results["models"]
    out = ["# Benchmark: every explainer on the same LearnedSHAP models", "",
           "Each method explains the LearnedSHAP models' predicted class; every Shapley quantity "
           "and the insertion/deletion curves use the model's own masking game (token dropping "
           "for the ViTs, tubelet tokens dropped for the tubelet-local 3D-ResNet). Means over "
           "examples; bold: best per column (in the columns against exact, among the other "
           "methods). Samplers are labelled with the model evaluations they made; evals: model rows per "
           "explanation (forwards + backwards); × forward: seconds per explanation over one "
           "plain forward pass of the same model (for explanations under 50 ms, medians of 10 "
           "warm runs of each, alternating). The efficiency gap is |Σφ − (v(N) − v(∅))| in the "
           "game's logits (0 for values that add up to what the game pays out). Average Drop / "
           "Increase mask the input towards its blur by the normalised map; \"eq. mass\" "
           "rescales every map to "
           f"{results['config']['rescale_share']:.0%} of the maximal mass first (the equal-mass "
           "rescaling of a Shap-CAM reproduction, Domeniconi 2025). Columns without a value in "
           "any row are omitted.", "", scope_sentence(results), "",
           "## Models", "", models_table(models), ""]
    for key, info in models.items():
        if info.get("break_even_only"):
            continue
        rows = [r for r in results["results"] if r["model"] == key]
        classes = list(rows[0]["per_class"]["rel_l2_exact"]) if rows else []
        out += [f"## {key} (`{info['zoo_model']}`: accuracy {info['accuracy']:.1%}, plain head "
                f"{info['plain_head_accuracy']:.1%})", "",
                f"{info['n_players']} players, game: {info['game']}; truth: {info['truth']}; "
                f"{info['n_examples']} examples ({info['per_class']} per class), "
                f"{info['examples_correct']:.0%} predicted correctly; one forward "
                f"{1000 * info['forward_seconds']:.2f} ms.", "",
                " ".join(info["notes"]), "", markdown_table(rows), "",
                "Relative L2 error against the exact values, by true class:", "",
                per_class_table(rows, "rel_l2_exact", classes), ""]
        if key == "vit_digits":
            out += ["The digits' truth is weak (patches holding ink; where ink is absent matters "
                    "too), so read its AUROC and pointing game with care.", ""]
    out += ["## Speed-up at equal error: evaluations a sampler needs to match LearnedSHAP", "",
            "Samplers on a grid from n + 1 evaluations (one permutation) and 2n (one antithetic "
            "pair of permutations), doubling after; \"≤ N\": matched already at the grid's "
            "first budget, \"> N\": not matched by the largest budget tried. The speed-up at "
            "equal error is the best sampler's evaluations over the head's own (its forward "
            "passes); a range when the match falls between two budgets. One antithetic pair is "
            "exact on any game without interactions above order two, so for a head that makes "
            "its game pairwise the question is how much cheaper it is at equal error, not "
            "whether it is more exact than that pair. A sampled reference's noise (two "
            "independent halves) must be at most a third of LearnedSHAP's error for the "
            "comparison to resolve. The remainder is the share of the game's variance that the "
            "head's own pairwise decomposition leaves unexplained (1 - R² over 1,000 "
            "Shapley-kernel coalitions per image).", "", break_even_table(results["break_even"]),
            ""]
    pairs = pair_break_even_table(results["break_even"])
    if pairs:
        out += ["Pair terms, where one forward pass gives all n(n-1)/2 interactions: the head's "
                "pairs against exact order-2 Faith-Shap (Tsai, Yeh & Ravikumar 2023), and the "
                "evaluations shapiq's Faith-Shap approximators (RegressionFSII, SHAP-IQ and "
                "SVARM-IQ at index FSII) need to match them, on one example of each class.", "",
                pairs, ""]
    if results.get("sanity"):
        s = results["sanity"]
        out += [f"## Sanity: cascading randomisation ({s['model']}, {s['n_examples']} example(s), "
                "one per class)", "",
                "Spearman rank correlation of |attributions| with those of the intact model "
                "after randomising each further layer, from the head down (Adebayo et al. 2018); "
                "a method that follows the model falls towards 0.", "", sanity_table(s), ""]
    if results["skipped"]:
        out += ["## Methods that could not be run or measured", ""]
        out += [f"- {s['method']} on {s['model']}: {s['reason']}" for s in results["skipped"]]
        out += [""]
    t = results["timings"]
    out += [f"Exact Shapley values of the 16-patch ViT: {t['exact_seconds_per_image']:.2f} s per "
            f"image (when the reference was computed); this benchmark: "
            f"{t['benchmark_seconds']:.0f} s"
            + (f"; `make run`: {t['make_run_seconds']:.0f} s" if t.get("make_run_seconds")
               else "") + ".", "", config_line(results["config"]), ""]
    return "\n".join(out)
