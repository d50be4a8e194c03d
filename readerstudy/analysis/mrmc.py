"""Multireader multicase (MRMC) ROC analysis: Obuchowski-Rockette (OR) with Hillis's degrees of freedom.

Input: ratings[reader, modality, case] (larger = more suspicious) and truth[case]. Each reader × modality AUC
θ_jt is the trapezoidal (Mann-Whitney) AUC; the error covariances of the AUCs are jackknife estimates over
cases, Cov(θ_a, θ_b) = (N − 1)/N · Σ_k (θ_a(−k) − θ̄_a(·))(θ_b(−k) − θ̄_b(·)), with the leave-one-out AUCs
θ(−k) in closed form from the placement values (roc.jackknife_auc). From them (J readers, t modalities):
Var = mean of the variances, Cov1 = mean covariance same reader / different modality, Cov2 = different
reader / same modality, Cov3 = different reader / different modality; MS(T), MS(R), MS(T×R) are the
modality × reader ANOVA mean squares of the θ_jt.

The three analyses follow the University of Iowa OR-DBM MRMC 2.5 software (Hillis, Obuchowski, Schartz &
Berbaum 2005, Stat Med 24:1579; Hillis 2007, Stat Med 26:596; Hillis, Berbaum & Metz 2008, Acad Radiol
15:647): random readers and random cases (RRRC), fixed readers and random cases (FRRC), random readers and
fixed cases (RRFC). AUCs are fractions; intervals are two-sided at level 1 − alpha.
"""

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import chi2
from scipy.stats import f as f_dist
from scipy.stats import t as student_t

from readerstudy.analysis.roc import jackknife_auc, ratio


@dataclass(frozen=True)
class Inference:
    """An estimate with SE, degrees of freedom (inf = normal), statistic estimate / SE, two-sided p and CI."""

    estimate: float
    se: float
    df: float
    statistic: float
    p: float
    low: float
    high: float


def t_inference(estimate: float, se: float, df: float, alpha: float = 0.05) -> Inference:
    """statistic = estimate / se on a t distribution with df (normal for df = inf); p = 2·P(T > |statistic|);
    CI = estimate ± t(1 − alpha/2; df)·se."""
    stat = ratio(estimate, se)
    half = float(student_t.ppf(1 - alpha / 2, df)) * se
    return Inference(estimate, se, df, stat, float(2 * student_t.sf(abs(stat), df)), estimate - half, estimate + half)


@dataclass(frozen=True)
class GlobalTest:
    """Test of equal modality AUCs: F on (ndf, ddf); ddf = inf is the chi-square test X2 = ndf·F on ndf df."""

    f: float
    ndf: float
    ddf: float
    p: float


def _global_test(ms_t: float, denominator: float, ndf: int, ddf: float) -> GlobalTest:
    f = ratio(ms_t, denominator)
    p = chi2.sf(ndf * f, ndf) if np.isinf(ddf) else f_dist.sf(f, ndf, ddf)
    return GlobalTest(float(f), ndf, ddf, float(p))


def hillis_ddf(denominator: float, ms: float, df_ms: int) -> float:
    """Satterthwaite-type ddf of Hillis (2007): denominator² / (ms² / df_ms); inf when ms = 0."""
    return float(denominator**2 / (ms**2 / df_ms)) if ms > 0 else np.inf


@dataclass(frozen=True)
class Components:
    """OR covariance and ANOVA estimates over all modalities, and their per-modality and per-reader parts.

    var_r = [MS(R) − σ²_TR − Var − (t − 1)·Cov1 + Cov2 + (t − 1)·Cov3] / t and
    var_tr = σ²_TR = MS(T×R) − Var + Cov1 + Cov2 − Cov3 (ANOVA estimates; they can be negative).
    ms_r_modality[t] = variance (ddof 1) of the reader AUCs in modality t; var_modality / cov2_modality:
    Var and Cov2 within modality t; var_reader / cov1_reader: Var and Cov1 within reader j.
    """

    var: float
    cov1: float
    cov2: float
    cov3: float
    ms_t: float
    ms_r: float
    ms_tr: float
    var_r: float
    var_tr: float
    ms_r_modality: np.ndarray
    var_modality: np.ndarray
    cov2_modality: np.ndarray
    var_reader: np.ndarray
    cov1_reader: np.ndarray


def jackknife_covariance(loo: np.ndarray) -> np.ndarray:
    """Jackknife covariance of the statistics whose leave-one-out values are the rows of loo [p, N]:
    (N − 1)/N · Σ_k (θ_a(−k) − θ̄_a)(θ_b(−k) − θ̄_b), a [p, p] matrix."""
    n = loo.shape[1]
    centred = loo - loo.mean(axis=1, keepdims=True)
    return (n - 1) / n * (centred @ centred.T)


def _mean_where(cov: np.ndarray, same_reader: bool, same_modality: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean of cov[j, t, j', t'] over the pairs with (j = j') == same_reader and (t = t') == same_modality,
    per reader and per modality as well as overall: returns (overall, per_reader[J], per_modality[t])."""
    readers, modalities = cov.shape[:2]
    mask = (np.eye(readers, dtype=bool)[:, None, :, None] == same_reader) & (
        np.eye(modalities, dtype=bool)[None, :, None, :] == same_modality
    )
    masked = np.where(mask, cov, 0.0)
    count = mask.sum(axis=(2, 3))
    per_reader = masked.sum(axis=(1, 2, 3)) / count.sum(axis=1)
    per_modality = masked.sum(axis=(0, 2, 3)) / count.sum(axis=0)
    return float(masked.sum() / mask.sum()), per_reader, per_modality


def _components(auc: np.ndarray, cov: np.ndarray) -> Components:
    readers, modalities = auc.shape
    var, var_reader, var_modality = _mean_where(cov, True, True)
    cov1, cov1_reader, _ = _mean_where(cov, True, False)
    cov2, _, cov2_modality = _mean_where(cov, False, True)
    cov3, _, _ = _mean_where(cov, False, False)
    grand = auc.mean()
    reader_means, modality_means = auc.mean(axis=1), auc.mean(axis=0)
    ms_t = readers * np.sum((modality_means - grand) ** 2) / (modalities - 1)
    ms_r = modalities * np.sum((reader_means - grand) ** 2) / (readers - 1)
    residual = auc - reader_means[:, None] - modality_means[None, :] + grand
    ms_tr = np.sum(residual**2) / ((modalities - 1) * (readers - 1))
    var_tr = ms_tr - var + cov1 + cov2 - cov3
    var_r = (ms_r - var_tr - var - (modalities - 1) * cov1 + cov2 + (modalities - 1) * cov3) / modalities
    return Components(
        var,
        cov1,
        cov2,
        cov3,
        float(ms_t),
        float(ms_r),
        float(ms_tr),
        float(var_r),
        float(var_tr),
        auc.var(axis=0, ddof=1),
        var_modality,
        cov2_modality,
        var_reader,
        cov1_reader,
    )


@dataclass(frozen=True)
class Analysis:
    """One OR analysis: the global test, each pairwise difference of modality means (θ_a − θ_b, keyed (a, b)
    by modality index) and each modality's mean AUC with its interval (whose statistic and p, against
    AUC = 0, mean nothing: use the interval)."""

    test: GlobalTest
    differences: dict[tuple[int, int], Inference]
    modalities: list[Inference]


@dataclass(frozen=True)
class ORResult:
    """OR-DBM MRMC style output: auc[reader, modality], the components, the three analyses, and the
    fixed-reader per-reader differences reader_differences[j][(a, b)]."""

    auc: np.ndarray
    components: Components
    rrrc: Analysis
    frrc: Analysis
    rrfc: Analysis
    reader_differences: list[dict[tuple[int, int], Inference]]


def _differences(means: np.ndarray, se: float, df: float, alpha: float) -> dict[tuple[int, int], Inference]:
    return {
        (a, b): t_inference(float(means[a] - means[b]), se, df, alpha) for a, b in combinations(range(means.size), 2)
    }


def single_modality_rrrc(mean: float, ms_r: float, cov2: float, readers: int, alpha: float = 0.05) -> Inference:
    """Random-reader random-case interval for one modality's mean of J reader AUCs (Hillis 2007, section 5.3):
    SE = √{[MS(R) + J·max(Cov2, 0)] / J}, ddf_H_single = [MS(R) + J·max(Cov2, 0)]² / [MS(R)² / (J − 1)]."""
    denominator = ms_r + readers * max(cov2, 0.0)
    return t_inference(mean, float(np.sqrt(denominator / readers)), hillis_ddf(denominator, ms_r, readers - 1), alpha)


def or_analysis(ratings, truth, alpha: float = 0.05) -> ORResult:
    """Obuchowski-Rockette analysis of ratings[reader, modality, case] (J ≥ 2 readers, t ≥ 2 modalities).

    RRRC: F = MS(T) / [MS(T×R) + J·max(Cov2 − Cov3, 0)] on (t − 1, ddf_H), ddf_H = [MS(T×R) +
    J·max(Cov2 − Cov3, 0)]² / [MS(T×R)² / ((t − 1)(J − 1))]; difference SE = √{2/J·[MS(T×R) +
    J·max(Cov2 − Cov3, 0)]} with t(ddf_H); each modality by single_modality_rrrc.
    FRRC: X2 = (t − 1)·MS(T) / [Var − Cov1 + (J − 1)·max(Cov2 − Cov3, 0)] on t − 1 df; difference SE =
    √{2/J·[Var − Cov1 + (J − 1)·max(Cov2 − Cov3, 0)]}, normal; modality SE = √{[Var_t + (J − 1)·max(Cov2_t, 0)]/J};
    per reader j: difference SE = √[2·(Var_j − Cov1_j)], normal.
    RRFC: F = MS(T) / MS(T×R) on (t − 1, (t − 1)(J − 1)); difference SE = √[2/J·MS(T×R)] with t((t − 1)(J − 1));
    modality SE = √[MS(R)_t / J] with t(J − 1).
    """
    r = np.asarray(ratings, dtype=float)
    if r.ndim != 3 or r.shape[0] < 2 or r.shape[1] < 2:
        raise ValueError(
            f"ratings must be [reader, modality, case] with at least 2 readers and 2 modalities, got {r.shape}"
        )
    readers, modalities, n = r.shape
    auc, loo = jackknife_auc(r, truth)
    cov = jackknife_covariance(loo.reshape(-1, n)).reshape(readers, modalities, readers, modalities)
    c = _components(auc, cov)
    means = auc.mean(axis=0)
    ndf, df_tr = modalities - 1, (modalities - 1) * (readers - 1)
    between = max(c.cov2 - c.cov3, 0.0)

    den = c.ms_tr + readers * between
    ddf = hillis_ddf(den, c.ms_tr, df_tr)
    rrrc = Analysis(
        _global_test(c.ms_t, den, ndf, ddf),
        _differences(means, float(np.sqrt(2 / readers * den)), ddf, alpha),
        [
            single_modality_rrrc(float(m), ms, cv, readers, alpha)
            for m, ms, cv in zip(means, c.ms_r_modality, c.cov2_modality, strict=True)
        ],
    )

    den = c.var - c.cov1 + (readers - 1) * between
    frrc = Analysis(
        _global_test(c.ms_t, den, ndf, np.inf),
        _differences(means, float(np.sqrt(2 / readers * den)), np.inf, alpha),
        [
            t_inference(float(m), float(np.sqrt((v + (readers - 1) * max(cv, 0.0)) / readers)), np.inf, alpha)
            for m, v, cv in zip(means, c.var_modality, c.cov2_modality, strict=True)
        ],
    )
    reader_differences = [
        _differences(auc[j], float(np.sqrt(max(2 * (c.var_reader[j] - c.cov1_reader[j]), 0.0))), np.inf, alpha)
        for j in range(readers)
    ]

    rrfc = Analysis(
        _global_test(c.ms_t, c.ms_tr, ndf, df_tr),
        _differences(means, float(np.sqrt(2 / readers * c.ms_tr)), df_tr, alpha),
        [
            t_inference(float(m), float(np.sqrt(ms / readers)), readers - 1, alpha)
            for m, ms in zip(means, c.ms_r_modality, strict=True)
        ],
    )
    return ORResult(auc, c, rrrc, frrc, rrfc, reader_differences)


@dataclass(frozen=True)
class ModelVsReaders:
    """Model vs readers (1T-RRRC): the model's AUC, each reader's AUC, the mean reader AUC, and the
    difference mean(reader AUC) − model AUC with its Hillis interval; var and cov2 are the jackknife Var and
    Cov2 of the per-reader differences θ_j − θ_model, ms_r their reader mean square."""

    model_auc: float
    reader_auc: np.ndarray
    mean_reader_auc: float
    difference: Inference
    var: float
    cov2: float
    ms_r: float


def model_vs_readers(reader_ratings, model_scores, truth, alpha: float = 0.05) -> ModelVsReaders:
    """Compare one standalone model (a fixed algorithm, no reader variability) with J ≥ 2 random readers on
    the same cases: reader_ratings[reader, case], model_scores[case].

    The single-treatment OR analysis of the differences ψ_j = θ_j − θ_model (Hillis 2007, Stat Med 26:596,
    section 5.3; Chakraborty 2017, "Observer Performance Methods for Diagnostic Imaging", CRC Press, the
    "1T-RRRC" method of RJafroc's StSignificanceTestingCadVsRad; its two-modality form below is Kooi et al.'s,
    IWDM 2016, comparing a CNN with radiologists):
    the jackknife leave-one-out differences ψ_j(−k) = θ_j(−k) − θ_model(−k) give Var and Cov2 of the ψ_j, so
    the model's own case sampling variability and its case correlation with the readers are included;
    MS(R) = Σ (ψ_j − ψ̄)² / (J − 1); t = ψ̄ / √{[MS(R) + J·max(Cov2, 0)] / J} on ddf_H_single =
    [MS(R) + J·max(Cov2, 0)]² / [MS(R)² / (J − 1)]. It tests H0: mean reader AUC = model AUC and equals the
    OR analysis with the model entered as a second modality read identically by every reader (F = t²,
    same ddf and p), whose intermediate components are, however, not meaningful.
    """
    r = np.asarray(reader_ratings, dtype=float)
    m = np.asarray(model_scores, dtype=float)
    if r.ndim != 2 or r.shape[0] < 2 or m.shape != r.shape[1:]:
        raise ValueError(f"need reader_ratings [reader ≥ 2, case] and model_scores [case], got {r.shape}, {m.shape}")
    auc, loo = jackknife_auc(np.vstack([m, r]), truth)
    psi, psi_loo = auc[1:] - auc[0], loo[1:] - loo[0]
    readers = r.shape[0]
    cov = jackknife_covariance(psi_loo).reshape(readers, 1, readers, 1)
    var, cov2 = _mean_where(cov, True, True)[0], _mean_where(cov, False, True)[0]
    ms_r = float(psi.var(ddof=1))
    diff = single_modality_rrrc(float(psi.mean()), ms_r, cov2, readers, alpha)
    return ModelVsReaders(float(auc[0]), auc[1:], float(auc[1:].mean()), diff, var, cov2, ms_r)
