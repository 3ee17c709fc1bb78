"""Training and judging a model: LightGBM and the WoE scorecard, calibration, metrics,
fairness metrics, evaluation, reason codes (TreeSHAP), the model bundle and the validation
gate. numpy, pandas, scikit-learn, scipy, LightGBM and optbinning only.

May import ``domain`` and ``features``; must not import ``monitoring``, any adapter,
service or entry point, nor fastapi, sqlalchemy, mlflow, typer or any network library.
"""
