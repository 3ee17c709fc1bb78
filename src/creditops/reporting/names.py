"""Human names of the metrics and checks the reports show, in one place.

Every model report (evaluation, validation, scorecard tables) reads its row titles from
:data:`METRIC_NAMES` through :func:`metric_name`, so a validator reads "KS statistic" and
"Demographic parity difference (approval rate gap)" rather than ``ks`` or
``demographic_parity_difference``; an unknown key is shown as written.
"""

from __future__ import annotations

from collections.abc import Mapping

METRIC_NAMES: Mapping[str, str] = {
    # discrimination and calibration on the test split
    "auc": "AUC (area under ROC)",
    "auc_lower": "AUC, 95% CI lower bound",
    "auc_upper": "AUC, 95% CI upper bound",
    "gini": "Gini coefficient (2·AUC − 1)",
    "ks": "KS statistic (Kolmogorov–Smirnov)",
    "brier": "Brier score",
    "log_loss": "Log loss",
    "calibration_in_the_large": "Calibration-in-the-large (mean PD − default rate)",
    "hosmer_lemeshow_stat": "Hosmer–Lemeshow statistic (10 PD groups)",
    "hosmer_lemeshow_p": "Hosmer–Lemeshow p-value",
    # at the decision cutoff
    "accuracy": "Accuracy",
    "precision": "Precision (defaults among predicted defaults)",
    "recall": "Recall (defaults caught)",
    "f1": "F1 score",
    # fairness across the groups of one protected attribute
    "demographic_parity_ratio": "Demographic parity ratio (lowest / highest approval rate)",
    "demographic_parity_difference": "Demographic parity difference (approval rate gap)",
    "equal_opportunity_ratio": "Equal opportunity ratio (approval rate of good applicants)",
    "equal_opportunity_difference": "Equal opportunity difference (good-applicant rate gap)",
    "disparate_impact_ratio": "Disparate impact ratio (vs reference group)",
    "fairness_score": "Fairness score (0-100)",
    # other gate checks
    "monotonicity_violations": "Monotonicity violations",
    "champion_p_value": "Champion comparison p-value (non-inferiority)",
    "champion_auc_gain": "AUC gain over the champion",
    "champion_gain_p_value": "Champion comparison p-value (gain)",
    "test_data_psi": "PSI of the test data against the training reference",
    # information value table
    "iv": "Information value (IV)",
}

CATEGORY_NAMES: Mapping[str, str] = {
    "performance": "Performance",
    "fairness": "Fairness",
    "monotonicity": "Monotonicity",
    "champion": "Champion / challenger",
    "drift": "Drift",
}


def metric_name(key: str) -> str:
    """The human name of a metric or check key (the key itself when unknown)."""
    return METRIC_NAMES.get(key, key)


def category_name(key: str) -> str:
    return CATEGORY_NAMES.get(key, key)
