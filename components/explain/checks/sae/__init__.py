"""Trust check ``sae``: what features does the network compute inside? Sparse autoencoders and
transcoders on one layer of a trained model (issue 18 item 3).

Papers: sparse autoencoders after Bricken et al. 2023 ("Towards Monosemanticity") and Cunningham
et al. 2023 (ReLU encoder, unit-norm decoder columns, MSE + L1 on the feature activations);
transcoders after Dunefsky et al. 2024 ("Transcoders Find Interpretable LLM Feature Circuits",
reference code github.com/jacobdunefsky/transcoder_circuits): a wide sparse ReLU layer trained
to map a ``Linear/Conv -> ReLU`` sublayer's input to its output, spliced in to replace it.

Settings (``explain.sae.<key>``; the issue writes ``explain.features=sae|transcoder`` with
``explain.features.layer``, but a Hydra key cannot be both a value and a block, so the block is
``explain.sae`` and ``kind`` picks):

* ``kind``: ``sae`` | ``transcoder`` | ``both`` (side by side).
* ``layer``: a ReLU's module name (``net.2``, ``features.4``) or ``auto`` (the deepest
  ``Linear/Conv -> ReLU``). A convolutional layer gets per-location features.
* ``expansion``: features per neuron of the layer.
* ``l1``: sparsity coefficients (three by default: a frontier), ascending.
* ``epochs``: passes over the activations; ``samples``: train rows whose activations the
  dictionaries train on (and test rows they are measured on).

Reported: per fit, L0 (active features per row) against the fraction of the loss recovered
when spliced in (against zero-ablating the layer), dead features, the top features'
top-activating test inputs beside the top neurons'; on data with part masks and a
convolutional layer, each feature's part purity against the neurons' (Bricken et al.'s
monosemanticity claim); for transcoders, Dunefsky et al.'s input-invariant weights
``dec_i . enc_j`` to the next transcoder's features (or the class logits).

Ray: the fits (kinds x l1 values, plus the next layer's transcoder for the circuit) fan out as
Ray tasks of one CPU each when there is more than one; one fit runs in-process.

Verdict: pass when the middle ``l1``'s dictionaries recover at least :data:`FAITHFUL_FLOOR` of
the loss (their features then describe what the layer does), else flag. A model without a
``Linear/Conv -> ReLU`` sublayer, or a ``layer`` that names none, gets "not applicable" (the
model is only known at run time). Departures: no dead-feature resampling; the circuit term is
only computed through Linear layers (a pooled conv map has no input-invariant path).
"""

from __future__ import annotations

from collections.abc import Mapping

from components.explain.checks.runner import CheckContext

KINDS = ("sae", "transcoder", "both")
FAITHFUL_FLOOR = 0.8
_DEFAULTS = {
    "kind": "both",
    "layer": "auto",
    "expansion": 4,
    "l1": (0.01, 0.03, 0.1),
    "epochs": 20,
    "samples": 1000,
}


def validate(settings: Mapping) -> None:
    """``ValueError`` naming ``explain.sae.<key>`` for an unknown key or a bad value."""
    unknown = sorted(set(settings) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"explain.sae: unknown keys {unknown}; known: {sorted(_DEFAULTS)}")
    s = {**_DEFAULTS, **settings}
    if s["kind"] not in KINDS:
        raise ValueError(f"explain.sae.kind={s['kind']!r}: choose one of {list(KINDS)}")
    if not isinstance(s["layer"], str) or not s["layer"]:
        raise ValueError(f"explain.sae.layer={s['layer']!r}: a module name or auto")
    for key in ("expansion", "epochs", "samples"):
        if not _positive_int(s[key]):
            raise ValueError(f"explain.sae.{key}={s[key]!r}: a positive integer")
    l1 = s["l1"]
    if (
        isinstance(l1, str)
        or not hasattr(l1, "__len__")
        or not l1
        or not all(_positive_number(v) for v in l1)
        or list(l1) != sorted(set(l1))
    ):
        raise ValueError(
            f"explain.sae.l1={l1!r}: a non-empty list of distinct positive numbers, ascending"
        )


def settings_of(settings: Mapping):
    """The typed settings of a (validated) block."""
    from components.explain.checks.sae.analysis import SaeSettings

    s = {**_DEFAULTS, **settings}
    return SaeSettings(**{**s, "l1": tuple(float(v) for v in s["l1"])})


def run(context: CheckContext) -> dict:
    """Fit and measure the dictionaries; ``verdict``, ``summary`` and the report's arrays."""
    from components.explain.checks.sae.analysis import analyse
    from components.explain.checks.sae.sites import pick_site

    settings = settings_of(context.settings)
    try:
        site = pick_site(context.model, settings.layer)
    except ValueError as error:
        return {"verdict": f"not applicable: {error}", "summary": {"applicable": False}}
    result = analyse(
        context.model,
        site,
        context.dataset_path,
        context.meta,
        settings,
        seed=context.seed,
        ray_address=context.ray_address,
        ray_num_cpus=context.ray_num_cpus,
    )
    result["summary"] = summary(result)
    result["verdict"] = verdict(result, settings)
    return result


def summary(result: Mapping) -> dict:
    """The JSON numbers of a result: the frontier and the mean part purities."""
    out = {
        "applicable": True,
        "layer": result["layer"],
        "clean_loss": result["clean_loss"],
        "ablated_loss": result["ablated_loss"],
        "frontier": [dict(row) for row in result["frontier"]],
    }
    if result.get("localisation"):
        out["part_purity"] = {k: v["mean"] for k, v in result["localisation"].items()}
    return out


def verdict(result: Mapping, settings) -> str:
    """One line: the middle l1's L0 and loss recovered per kind, and the purity comparison."""
    middle = settings.l1[len(settings.l1) // 2]
    rows = [r for r in result["frontier"] if r["l1"] == middle]
    parts = [
        f"{r['kind']} L0 {r['l0']:.1f}/{r['features']}, {r['recovered']:.0%} of the loss "
        f"recovered, {r['dead_fraction']:.0%} dead"
        for r in rows
    ]
    faithful = all(r["recovered"] >= FAITHFUL_FLOOR for r in rows)
    line = f"layer {result['layer']} at l1={middle:g}: " + "; ".join(parts)
    line += (
        f" (pass: >= {FAITHFUL_FLOOR:.0%} recovered)"
        if faithful
        else f" (flag: under {FAITHFUL_FLOOR:.0%} recovered, features do not describe the layer)"
    )
    purity = result.get("localisation")
    if purity:
        others = ", ".join(f"{k} {v['mean']:.2f}" for k, v in purity.items() if k != "neurons")
        line += f"; part purity {others} vs neurons {purity['neurons']['mean']:.2f}"
    return line


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
