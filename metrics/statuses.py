"""The run-status vocabulary: the one place that says what a run's ``status`` can be and what
each means to the rest of the system (docs/architecture.md §3). Pure Python, no imports, so the
trainer, the sweep driver, the store and the fitter all read it without pulling each other in.
"""

RUN_STATUSES = ("completed", "early_stopped", "diverged", "failed", "budget_stopped", "interrupted")
"""Every status a runs-table row may carry; the store's writer rejects any other."""

ENDED_STATUSES = ("completed", "early_stopped", "diverged", "budget_stopped")
"""Runs that are over: a resumed sweep does not re-run them (``failed`` and ``interrupted`` are
continued from their last checkpoint)."""

USABLE_STATUSES = ("completed", "early_stopped")
"""Runs whose loss is a result a scaling law is fitted to (a diverged or budget-stopped run's
loss is not the loss of its planned configuration)."""

STOP_REASONS = ("patience", "predicted_final", "predicted_overfit")
"""Why an ``early_stopped`` run stopped (its ``stop_reason``): ``patience`` (dataset regime: the
validation loss stopped improving for ``patience`` evaluations), ``predicted_final`` (early
prediction: its final loss was known to ``early_prediction.rel_ci``), ``predicted_overfit``
(early prediction, dataset regime: predicted to have passed its best validation loss)."""

PREDICTED_LOSS_REASONS = ("predicted_final",)
"""Stop reasons whose run's result is its *predicted* loss (``predicted_loss``, with its wider
interval), not a loss it reached (a ``predicted_overfit`` run's result is its best loss so far, as
after ``patience``)."""
