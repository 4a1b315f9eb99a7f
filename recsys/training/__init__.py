"""Fitting and gating models: the full retrain, the micro-batch update, the backtest."""

# The class that makes a logged model's predictions, named by its dotted path: the registry's
# pyfunc adapter imports it when MLflow loads the model, so neither the registry nor training
# imports the scoring code.
PREDICTOR = "recsys.scoring.pyfunc.SeqRecPredictor"
