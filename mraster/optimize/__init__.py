"""The walk-forward optimiser: which settings would have worked, and would they have kept working.

``space`` turns settings of the catalogue into a search space (safety caps included), ``windows``
cuts the history into walk-forward folds and a hold-out, ``scoring`` turns a backtest into the
objective and its constraints, ``study`` runs the trials (in processes, resumable, in Optuna's
storage), ``robustness`` and ``report`` tell whether the result can be trusted.
"""
