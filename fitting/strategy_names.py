"""The design strategies' names (``scalesweep replay --strategy``), importable without scipy:
the CLI's choices. :data:`fitting.strategies.STRATEGIES` maps exactly these, in this order, to
their classes (checked when it is imported)."""

STRATEGY_NAMES = ("active", "random", "cost_random", "cheapest", "grid", "d_optimal", "v_optimal")
