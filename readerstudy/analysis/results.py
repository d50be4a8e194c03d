"""A study's results as plain tables, from its tidy reads and model tables through the statistics modules.

Seven-way accuracy is the share of lesions whose diagnosis equals the reference; two-way accuracy the share
whose benign/malignant call is right. Every proportion carries the modified Wilson 95 % interval. Readers'
results use one phase of their reads (``summarise``'s ``phase``). Pure: no database, no cache.
"""

import dataclasses
from itertools import combinations
from typing import NamedTuple

import numpy as np
import pandas as pd

from inference.domain import CLASSES, READER_GROUPS, is_malignant
from readerstudy.analysis.agreement import cohen_kappa, fleiss_kappa
from readerstudy.analysis.calibration import brier, reliability
from readerstudy.analysis.metrics import accuracy, binary_metrics, confusion_matrix, one_vs_rest, wilson_modified
from readerstudy.analysis.mrmc import model_vs_readers, or_analysis
from readerstudy.analysis.paired import mcnemar, switch_matrix, unpaired_proportions
from readerstudy.analysis.roc import auc_delong, one_vs_rest_auc, operating_point, roc_points
from readerstudy.analysis.subgroups import size_bins, subgroup_accuracy


def estimate_columns(x: int, n: int, prefix: str) -> dict:
    e = wilson_modified(int(x), int(n))
    return {prefix: e.estimate, f"{prefix}_low": e.low, f"{prefix}_high": e.high}


def per_reader(reads: pd.DataFrame) -> pd.DataFrame:
    """Per reader: group, lesions read, seven-way and two-way accuracy with 95 % CI."""
    rows = []
    for (reader, group), mine in reads.groupby(["reader", "group"], sort=True):
        n = len(mine)
        rows.append(
            {
                "reader": reader,
                "group": group,
                "n": n,
                **estimate_columns(mine["correct"].sum(), n, "accuracy"),
                **estimate_columns(mine["correct_malignant"].sum(), n, "accuracy_two_way"),
            }
        )
    columns = [
        "reader",
        "group",
        "n",
        "accuracy",
        "accuracy_low",
        "accuracy_high",
        "accuracy_two_way",
        "accuracy_two_way_low",
        "accuracy_two_way_high",
    ]
    return pd.DataFrame(rows, columns=columns)


def per_group(reads: pd.DataFrame, readers: pd.DataFrame) -> pd.DataFrame:
    """Per group: readers, the mean of their accuracies, and the pooled accuracy of all their reads with CI."""
    rows = []
    for group in [g for g in READER_GROUPS if g in set(reads["group"])]:
        mine = reads[reads["group"] == group]
        rows.append(
            {
                "group": group,
                "readers": mine["reader"].nunique(),
                "mean_accuracy": readers.loc[readers["group"] == group, "accuracy"].mean(),
                **estimate_columns(mine["correct"].sum(), len(mine), "pooled_accuracy"),
            }
        )
    return pd.DataFrame(rows)


def model_results(model: pd.DataFrame) -> dict:
    """The model on the study's lesions with a finished prediction: seven-way accuracy and confusion matrix,
    the binary head's benign/malignant metrics, its AUC (P(malignant)) with ROC points, one-vs-rest AUCs."""
    done = model[model["model_class"].notna()]
    if done.empty:
        return {}
    truth = done["label_index"].to_numpy()
    matrix = confusion_matrix(truth, done["model_class"].map(CLASSES.index).to_numpy())
    malignant = done["label_index"].map(is_malignant).to_numpy(bool)
    called = done["model_malignant"].to_numpy(bool)
    counts = [
        int(np.sum(called & malignant)),
        int(np.sum(called & ~malignant)),
        int(np.sum(~called & ~malignant)),
        int(np.sum(~called & malignant)),
    ]
    result = {"n": len(done), "accuracy": accuracy(matrix), "confusion": matrix, "two_way": binary_metrics(*counts)}
    auc = auc_delong(done["model_p_malignant"].to_numpy(float), malignant) if 0 < malignant.sum() < len(done) else None
    if auc is not None and auc.reason is None:
        result["auc_two_way"] = auc
        result["roc"] = roc_points(done["model_p_malignant"].to_numpy(float), malignant)
    if len(np.unique(truth)) > 1:
        probabilities = done[[f"p_{c}" for c in CLASSES]].to_numpy(float)
        result["auc_one_vs_rest"] = one_vs_rest_auc(probabilities, truth)
    return result


def model_table(model: dict) -> pd.DataFrame:
    """The paper's Table 3 for the model: per class (one-vs-rest, from the seven-way confusion matrix) and for
    benign vs malignant (the binary head's call), the AUC and accuracy, sensitivity, specificity, PPV, NPV, LR+
    and LR− with 95 % CIs."""
    if not model:
        return pd.DataFrame()
    ovr = model.get("auc_one_vs_rest")
    rows = [
        {"task": name, "auc": ovr.per_class[name] if ovr else None, **metrics}
        for name, metrics in one_vs_rest(model["confusion"]).items()
    ]
    rows.append({"task": "benign vs malignant", "auc": model.get("auc_two_way"), **model["two_way"]})
    return pd.DataFrame(rows)


def confusions(reads: pd.DataFrame, by: str) -> dict[str, np.ndarray]:
    """7 × 7 confusion matrices (rows reference, columns diagnosis) per value of ``by`` (group: pooled)."""
    return {
        g: confusion_matrix(m["label_index"].to_numpy(), m["diagnosis_index"].to_numpy()) for g, m in reads.groupby(by)
    }


def kappa_table(reads: pd.DataFrame, model: pd.DataFrame) -> pd.DataFrame:
    """Cohen's kappa (seven-way) for every pair of readers in a group on the lesions both read, and for each
    reader against the reference and against the model; Fleiss' kappa for each group and for all readers on
    the lesions every one of them read."""
    wide = reads.pivot_table(index="lesion", columns="reader", values="diagnosis_index", aggfunc="first")
    groups = reads.groupby("reader")["group"].first()
    reference = reads.groupby("lesion")["label_index"].first()
    model_class = model.set_index("lesion")["model_class"].map(CLASSES.index, na_action="ignore")
    rows = []

    def add(kind, a, b, first, second):
        both = first.notna() & second.notna()
        if both.sum() >= 2:
            k = cohen_kappa(first[both].astype(int), second[both].astype(int))
            rows.append(
                {
                    "comparison": kind,
                    "a": a,
                    "b": b,
                    "n": k.n,
                    "kappa": k.kappa,
                    "z": k.z,
                    "p": k.p,
                    "low": k.low,
                    "high": k.high,
                }
            )

    for group in READER_GROUPS:
        for a, b in combinations(sorted(groups[groups == group].index), 2):
            add("within group", a, b, wide[a], wide[b])
    for reader in sorted(wide.columns):
        add("reader vs reference", reader, "reference", wide[reader], reference.reindex(wide.index))
        add("reader vs model", reader, "model", wide[reader], model_class.reindex(wide.index))
    for name, members in [*[(g, sorted(groups[groups == g].index)) for g in READER_GROUPS], ("all readers", None)]:
        complete = wide[members if members is not None else sorted(wide.columns)].dropna()
        if complete.shape[1] >= 2 and len(complete) >= 2:
            k = fleiss_kappa(complete.to_numpy(int))
            rows.append(
                {
                    "comparison": "Fleiss",
                    "a": name,
                    "b": f"{complete.shape[1]} readers",
                    "n": k.n,
                    "kappa": k.kappa,
                    "z": k.z,
                    "p": k.p,
                    "low": None,
                    "high": None,
                }
            )
    return pd.DataFrame(rows, columns=["comparison", "a", "b", "n", "kappa", "z", "p", "low", "high"])


def model_vs_readers_table(reads: pd.DataFrame, model: pd.DataFrame) -> pd.DataFrame:
    """Per reader: McNemar (exact and mid-p) of the model against the reader on the lesions both read, with
    the paired difference in accuracy (model − reader) and its CI; per group: the paper's unpaired
    chi-square / Fisher comparison of the model's accuracy with the group's pooled accuracy."""
    right = model.set_index("lesion")["model_correct"]
    rows = []
    for reader, mine in reads.groupby("reader"):
        paired = mine.assign(model=mine["lesion"].map(right)).dropna(subset=["model"])
        if paired.empty:
            continue
        test = mcnemar(paired["model"].astype(bool).to_numpy(), paired["correct"].astype(bool).to_numpy())
        rows.append(
            {
                "level": "reader",
                "who": reader,
                "test": "McNemar (paired)",
                "n": test.n,
                "p": test.p_exact,
                "p_mid": test.p_mid,
                "difference": test.difference.estimate,
                "low": test.difference.low,
                "high": test.difference.high,
            }
        )
    done = right.dropna()
    for group, mine in reads.groupby("group"):
        if done.empty:
            continue
        test = unpaired_proportions(int(done.sum()), len(done), int(mine["correct"].sum()), len(mine))
        rows.append(
            {
                "level": "group",
                "who": group,
                "test": f"unpaired {test.test} (the paper's)",
                "n": len(mine),
                "p": test.p,
                "p_mid": None,
                "difference": test.difference,
                "low": None,
                "high": None,
            }
        )
    return pd.DataFrame(rows, columns=["level", "who", "test", "n", "p", "p_mid", "difference", "low", "high"])


def ai_effect(all_reads: pd.DataFrame) -> pd.DataFrame:
    """Per reader and per group: lesions that went wrong → right, right → wrong or stayed, unaided → aided."""
    unaided = all_reads[all_reads["phase"] == "unaided"].set_index(["reader", "lesion"])
    aided = all_reads[all_reads["phase"] == "aided"].set_index(["reader", "lesion"])
    both = unaided.join(aided[["correct"]], rsuffix="_aided", how="inner")
    rows = [
        {
            "level": "reader",
            "who": reader,
            "group": mine["group"].iloc[0],
            **switch_matrix(mine["correct"].to_numpy(bool), mine["correct_aided"].to_numpy(bool)),
        }
        for reader, mine in both.groupby(level="reader")
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    groups = frame.groupby("group").sum(numeric_only=True).reset_index().rename(columns={"group": "who"})
    return pd.concat([frame.drop(columns="group"), groups.assign(level="group")], ignore_index=True)


def reader_operating_points(reads: pd.DataFrame) -> pd.DataFrame:
    """Each reader's two-way call (malignant diagnosis) as (FPR, TPR), to plot on the model's ROC."""
    rows = []
    for (reader, group), mine in reads.groupby(["reader", "group"]):
        truth = mine["label_malignant"].to_numpy(bool)
        if 0 < truth.sum() < len(truth):
            fpr, tpr = operating_point(mine["diagnosis_malignant"].to_numpy(bool), truth)
            rows.append({"reader": reader, "group": group, "fpr": fpr, "tpr": tpr})
    return pd.DataFrame(rows, columns=["reader", "group", "fpr", "tpr"])


SUBGROUPS = ("cirrhosis", "fatty_liver", "scanner_model", "size")


def subgroups_table(reads: pd.DataFrame) -> pd.DataFrame:
    """Seven-way accuracy by cirrhosis, fatty liver, scanner and lesion size (< 16, 16-32, > 32 mm) for each
    reader group and the model, with the paper's chi-square / Fisher test across the levels."""
    reads = reads.assign(size=size_bins(reads["diameter_mm"]))
    parts = [
        subgroup_accuracy(reads, by, who).assign(who=who)
        for who in [*[g for g in READER_GROUPS if g in set(reads["group"])], "model"]
        for by in SUBGROUPS
        if who != "model" or reads["model_correct"].notna().any()
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def calibration_table(reads: pd.DataFrame, model: pd.DataFrame) -> dict:
    """Reliability-diagram bins and the Brier score (Murphy decomposition) of each reader group's malignancy
    likelihood (per cent / 100) and of the model's P(malignant), against the lesion being malignant."""
    curves, scores = {}, []
    sources = {group: (mine["malignancy"] / 100, mine["label_malignant"]) for group, mine in reads.groupby("group")}
    done = model[model["model_p_malignant"].notna()]
    if not done.empty:
        sources["model"] = (done["model_p_malignant"], done["label_index"].map(is_malignant))
    for who, (probability, outcome) in sources.items():
        probability, outcome = probability.to_numpy(float), outcome.to_numpy(bool)
        curves[who] = reliability(probability, outcome)
        scores.append({"who": who, **dataclasses.asdict(brier(probability, outcome))})
    return {"curves": curves, "brier": pd.DataFrame(scores)}


class CrossedRatings(NamedTuple):
    """values[reader, phase, lesion] of the malignancy likelihood, truth[lesion] malignant, and the readers'
    names and lesions' ids along those axes."""

    values: np.ndarray
    truth: np.ndarray
    readers: list[str]
    lesions: pd.Index


def mrmc_ratings(reads: pd.DataFrame, phases: tuple[str, ...]) -> CrossedRatings:
    """The ratings on the lesions every reader read in every phase (a fully crossed design)."""
    wanted = reads[reads["phase"].isin(phases)]
    table = wanted.pivot_table(index=["reader", "phase"], columns="lesion", values="malignancy", aggfunc="first")
    readers = sorted(wanted["reader"].unique())
    table = table.reindex(pd.MultiIndex.from_product([readers, phases])).dropna(axis=1)
    values = table.to_numpy(float).reshape(len(readers), len(phases), len(table.columns))
    truth = wanted.groupby("lesion")["label_malignant"].first().reindex(table.columns).to_numpy(bool)
    return CrossedRatings(values, truth, readers, table.columns)


def mrmc(all_reads: pd.DataFrame, model: pd.DataFrame, phase: str) -> dict:
    """Obuchowski-Rockette MRMC (Hillis ddf) on the malignancy likelihood: (a) aided vs unaided reading across
    readers, where the study has both; (b) the model's P(malignant) vs the readers' ``phase`` reads (Hillis
    2007 §5.3). Each needs two readers, and two benign and two malignant lesions read by all of them."""

    def analysable(ratings, truth) -> bool:
        return ratings.shape[0] >= 2 and min(truth.sum(), (~truth).sum()) >= 2

    result = {}
    both = mrmc_ratings(all_reads, ("unaided", "aided"))
    if analysable(both.values, both.truth):
        result["aided_vs_unaided"] = or_analysis(both.values, both.truth)
    one = mrmc_ratings(all_reads, (phase,))
    scores = model.set_index("lesion")["model_p_malignant"].reindex(one.lesions)
    if analysable(one.values, one.truth) and scores.notna().all():
        result["model_vs_readers"] = model_vs_readers(one.values[:, 0, :], scores.to_numpy(float), one.truth)
    return result


def summarise(all_reads: pd.DataFrame, model: pd.DataFrame, phase: str = "unaided") -> dict:
    """Every table and figure input of a study's results, from its reads and model tables."""
    reads = all_reads[all_reads["phase"] == phase]
    readers = per_reader(reads)
    model_summary = model_results(model)
    return {
        "readers": readers,
        "groups": per_group(reads, readers),
        "model": model_summary,
        "model_table": model_table(model_summary),
        "kappa": kappa_table(reads, model),
        "confusions": confusions(reads, "group"),
        "reader_confusions": confusions(reads, "reader"),
        "comparisons": model_vs_readers_table(reads, model),
        "ai_effect": ai_effect(all_reads),
        "operating_points": reader_operating_points(reads),
        "mrmc": mrmc(all_reads, model, phase),
        "subgroups": subgroups_table(reads),
        "calibration": calibration_table(reads, model),
        "n_reads": len(all_reads),
    }
