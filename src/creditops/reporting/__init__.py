"""Offline reports for model validators.

``model_report`` renders the evaluation (and, after validation, the gate verdict and the
champion/challenger comparison) as one self-contained HTML file: embedded CSS, plots as SVG
data URIs from ``plots``, no script and no network reference. Rendering is deterministic:
the same input gives the same bytes. This package imports no MLflow, database or web code.
"""
