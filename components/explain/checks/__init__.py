"""Trust checks of a trained model, run by the explain stage when ``explain.checks`` names them.

Each check is a package here named as the check (``sanity``, ``sae``, ``segmentation``,
``naps``, ``beyond``); its ``__init__`` holds the check's entry points and its other modules the
parts (``sae.dictionary``, ``beyond.attacks``, ...). The entry points:

* ``validate(settings: dict) -> None``: ``ValueError`` naming ``explain.<check>.<key>`` when its
  config block (``explain.<check>``, ``conf/explain/default.yaml``) is wrong; called when the
  explain config is built, so a bad value fails before anything trains;
* ``run(context: CheckContext) -> dict``: the check's result, with ``verdict`` (one line a
  person reads first), ``summary`` (JSON numbers, written to ``checks.json``) and whatever its
  report section draws; ``exclude_methods`` (optional): post-hoc methods the chooser must not
  recommend.

Its report section is ``components.report.<check>_check_section.section(result, figures)``.
"""

CHECKS = ("sanity", "sae", "segmentation", "naps", "beyond")
