"""Post-hoc attributions of any model: eight methods behind one function (:mod:`.methods`),
the local function approximation most of them reduce to (:mod:`.lfa`), the stage that explains,
scores and ranks them within a budget (:mod:`.stage`, :mod:`.budget`), and the model-wide
summaries (:mod:`.surrogate`, :mod:`.sp_lime`)."""
