"""``sennflow <command> --help``: the config groups and every key with its default, listed
from the Hydra-composed config the command runs with, so help cannot disagree with what runs.

Nothing is composed until help is printed (:class:`HelpParser`), so parsing stays instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

OPTIONS_HEADER = "options (override with key=value; defaults shown):"


class HelpParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose ``epilog`` may be a function, called once help is printed."""

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def run_help() -> str:
    """The config groups with their options, then every key of the default config."""
    from flows.config import compose

    lines = ["config groups (choose with group=option):"]
    lines += [f"  {group:<11} {', '.join(names)}" for group, names in group_options().items()]
    lines += ["", OPTIONS_HEADER, *_listing(_flat(compose([])))]
    lines.append(
        "\nexamples:\n  sennflow run\n  sennflow run model=mlp data=breast_cancer "
        "train.epochs=5 train.num_workers=2\n  sennflow run experiment=tiny\n"
        "  sennflow run model=cnn ssl=barlow_twins ssl.epochs=30  (pre-train the encoder first)"
    )
    return "\n".join(lines)


def sweep_help() -> str:
    """The search methods, the ``search`` keys of the default method and the keys of each
    method's own block (``search.stn.*``, ``search.darts.*``)."""
    from flows.config import DEFAULT_SEARCH, compose

    methods = group_options(["search"])["search"]
    lines = [f"search methods (choose with search=<method>): {', '.join(methods)}", ""]
    search = _flat(compose([f"search={DEFAULT_SEARCH}"]).search, "search.")
    scalars = {k: v for k, v in search.items() if k.split(".")[1] not in _BLOCKS}
    lines += [OPTIONS_HEADER, *_listing(scalars)]
    for method in methods:
        blocks = compose([f"search={method}"]).search
        for block in _BLOCKS:
            if block != "space" and blocks[block]:
                values = ", ".join(_listing(_flat(blocks[block]), indent=""))
                lines.append(f"  search={method}: search.{block}.<key> ({values})")
    lines += [
        "  '+search.space.<group>.<name>={type:loguniform,low:1e-4,high:1e-2}'  "
        "(group: train, model, stn, darts; ssl with ssl=<objective>; prune with prune=default)",
        "  every key of 'sennflow run --help' (data, model, train, run, ray)",
        "\nexamples:\n  sennflow sweep search=asha model=mlp search.num_samples=16\n"
        "  sennflow sweep search=stn\n  sennflow sweep search=darts search.darts.sd=true\n"
        "  sennflow sweep --resume run.id=<id of an interrupted sweep> search=asha\n"
        "  sennflow sweep prune=default '+search.space.prune.rate={type:uniform,low:0.1,high:0.5}'",
    ]
    return "\n".join(lines)


# search keys that hold a mapping of their own: the space, a method's settings
_BLOCKS = ("space", "stn", "darts")


def group_help(group: str, examples: str, option: str = "default") -> str:
    """Every key of config group ``group`` (``federated``, ``continual``) as its command
    composes it (with ``group=option``), then ``examples``."""
    from flows.config import compose

    values = _flat(compose([f"{group}={option}"])[group], f"{group}.")
    lines = [OPTIONS_HEADER, *_listing(values)]
    lines.append("  data=<source> (see 'sennflow run --help'), run.*, ray.*, seed")
    return "\n".join(lines) + f"\n\nexamples:\n  {examples}"


def group_options(groups: Iterable[str] | None = None) -> dict[str, list[str]]:
    """``{group: options}`` as Hydra's config repository lists them (every group when
    ``groups`` is None; ``base``, the file the options share, is no option)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from flows.config import CONF_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="sennflow"):
            loader = GlobalHydra.instance().config_loader()
            names = groups or [g for g in loader.list_groups("") if g != "hydra"]
            return {g: [o for o in loader.get_group_options(g) if o != "base"] for g in names}
    finally:
        GlobalHydra.instance().clear()


def _flat(cfg, prefix: str = "") -> dict:
    """``{dotted key: value}`` of every leaf of ``cfg`` (interpolations as written; an empty
    mapping is a leaf)."""
    from omegaconf import OmegaConf

    from components.tracking.params import flatten

    return flatten(OmegaConf.to_container(cfg, resolve=False), prefix)


def _listing(values: dict, indent: str = "  ") -> list[str]:
    return [f"{indent}{key}={show(value)}" for key, value in values.items()]


def show(value) -> str:
    """``value`` as YAML in flow style, which is also how a Hydra override writes it."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()
