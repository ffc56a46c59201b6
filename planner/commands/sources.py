"""``annealplan sources add/list/show/cost/remove/materialize``: candidate data sources.

A source is an instance of a plugin's source kind with a validated configuration, a
curation cost model and an availability cap, stored in the project's DuckDB file. Building
and pricing one go through :mod:`planner.sources.session`, which the TUI shares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from planner.errors import ConfigError

_QUANTITY_LIKE = re.compile(r"^\s*\$?\s*[\d._]+(e[+-]?\d+)?\s*[kmbgtp]?\s*[a-z_\-$]*\s*$", re.I)


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true, lists…), a quantity such as
    ``2B`` or ``$30k`` when it reads as one, else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if _QUANTITY_LIKE.match(text):
        from planner.errors import UnitError
        from planner.units import parse_quantity

        try:
            return parse_quantity(text, default_unit=None).value
        except UnitError:
            pass
    return text


def parse_assignments(pairs: Sequence[str], option: str) -> dict[str, Any]:
    """``key=value`` pairs into a mapping; a key given twice collects a list.

    Raises:
        ConfigError: a pair has no ``=``.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"{option} {pair!r}: write key=value (e.g. {option} paths=data/*.jsonl)"
            )
        value = parse_value(raw)
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def source_to_json(src: Any) -> dict[str, Any]:
    """A stored Source as plain JSON."""
    return {
        "name": src.name,
        "kind": src.kind,
        "config": dict(src.config),
        "cost": None
        if src.cost is None
        else {
            "model": src.cost.model,
            "params": dict(src.cost.params),
            "unit": src.cost.unit.value,
        },
        "cap_tokens": src.cap_tokens,
        "plugin": src.plugin,
        "plugin_version": src.plugin_version,
        "description": src.description,
    }


def _fmt_tokens(value: float | None) -> str:
    from planner.units import Unit, format_quantity

    return "unbounded" if value is None else format_quantity(value, Unit.TOKENS)


@click.group("sources")
def sources() -> None:
    """Add, list, price and materialise candidate data sources."""


@sources.command("add")
@click.argument("kind")
@click.option("--name", required=True, help="Your name for the source (unique).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="A config field.")
@click.option("--cost-model", default=None, help="A registered cost model (default: the kind's).")
@click.option("--cost", "costs", multiple=True, metavar="KEY=VALUE", help="A cost parameter.")
@click.option("--tokenizer", default=None, help="A tokenizer folder: count the cap exactly.")
@click.option("--description", default="", help="One line for people.")
@click.option("--replace", is_flag=True, help="Replace a source of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored source as JSON.")
@click.pass_obj
def add(obj, kind, name, sets, cost_model, costs, tokenizer, description, replace, as_json):
    """Add a source of KIND (files, hf-disk, synthetic, filtered, licensed…), e.g.

    annealplan sources add files --name pubmed --set paths='data/*.jsonl'
    """
    from planner.sources.session import build_source, load_tokenizer

    src = build_source(
        obj.registry,
        obj.settings.rates.as_rates(),
        kind_name=kind,
        name=name,
        raw_config=parse_assignments(sets, "--set"),
        cost_model=cost_model,
        cost_params=parse_assignments(costs, "--cost"),
        tokenizer=load_tokenizer(tokenizer),
        description=description,
    )
    obj.store.add_source(src, replace=replace)
    if as_json:
        click.echo(json.dumps(source_to_json(src), indent=2))
    else:
        cost = f"{src.cost.model} [{src.cost.unit.value}]" if src.cost else "free"
        click.echo(f"added {src.name}: {src.kind}, cap {_fmt_tokens(src.cap_tokens)}, cost {cost}")


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj, as_json: bool) -> None:
    """List the stored sources."""
    rows = obj.store.sources()
    if as_json:
        click.echo(json.dumps([source_to_json(s) for s in rows], indent=2))
        return
    if not rows:
        click.echo("no sources yet; add one with `annealplan sources add KIND --name N --set …`")
        return
    for s in rows:
        cost = f"{s.cost.model} [{s.cost.unit.value}]" if s.cost else "free"
        click.echo(
            f"{s.name}\t{s.kind}\tcap {_fmt_tokens(s.cap_tokens)}\t{cost}\t"
            f"{s.plugin} {s.plugin_version}"
        )


@sources.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj, name: str, as_json: bool) -> None:
    """Show one source: kind, configuration, cost model with its formula, cap, plugin."""
    src = obj.store.source(name)
    data = source_to_json(src)
    model = obj.registry.cost_model_for(src)
    data["cost_formula"] = model.describe() if model else None
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{src.name}: {src.kind} (plugin {src.plugin} {src.plugin_version})")
    if src.description:
        click.echo(f"  {src.description}")
    click.echo(f"  cap: {_fmt_tokens(src.cap_tokens)}")
    click.echo(f"  cost: {data['cost_formula'] or 'free'}")
    for key, value in src.config.items():
        click.echo(f"  {key} = {json.dumps(value)}")


@sources.command("cost")
@click.argument("name")
@click.option("--tokens", required=True, help="How many tokens, e.g. 2B or 5e8.")
@click.option(
    "--unit",
    type=click.Choice(["flops", "gpu_hours", "usd"]),
    default=None,
    help="Convert the cost with the project's rates.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def cost(obj, name: str, tokens: str, unit: str | None, as_json: bool) -> None:
    """The curation cost of TOKENS tokens of a source, with its formula (training excluded)."""
    from planner.sources.session import quote_cost
    from planner.units import Unit, format_quantity, parse_tokens

    src = obj.store.source(name)
    quote = quote_cost(
        src,
        obj.registry,
        parse_tokens(tokens),
        unit=Unit(unit) if unit else None,
        rates=obj.settings.rates.as_rates(),
    )
    data = {
        "source": quote.source,
        "tokens": quote.tokens,
        "cost": quote.cost,
        "unit": quote.unit.value,
        "marginal_cost_per_token": quote.marginal_cost_per_token,
        "formula": quote.formula,
        "cap_tokens": quote.cap_tokens,
        "exceeds_cap": quote.exceeds_cap,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"{src.name}: {format_quantity(quote.tokens, Unit.TOKENS)} cost "
        f"{format_quantity(quote.cost, quote.unit)}"
    )
    click.echo(f"  formula: {quote.formula}")
    if quote.exceeds_cap:
        click.echo(f"  note: more than the source's cap of {_fmt_tokens(src.cap_tokens)}")


@sources.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def remove(obj, name: str, as_json: bool) -> None:
    """Remove a source from the project."""
    obj.store.remove_source(name)
    click.echo(json.dumps({"removed": name}) if as_json else f"removed {name}")


@sources.command("materialize")
@click.argument("name")
@click.option("--tokens", required=True, help="Exactly this many tokens, e.g. 10M.")
@click.option("--dest", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--tokenizer", required=True, help="The base model's tokenizer folder.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
@click.pass_obj
def materialize(obj, name, tokens, dest, tokenizer, seed, as_json) -> None:
    """Write exactly TOKENS tokens of a source as packed shards plus manifest.json."""
    from dataclasses import asdict

    from planner.sources.session import load_tokenizer
    from planner.units import parse_tokens

    src = obj.store.source(name)
    kind = obj.registry.source_kind(src.kind)
    config = kind.parse_config(src.config)
    done = kind.materialize(
        config, int(parse_tokens(tokens)), dest, seed, load_tokenizer(tokenizer)
    )
    data = {
        "dest": str(done.dest),
        "tokens": done.tokens,
        "shards": list(done.shards),
        "content_hash": done.content_hash,
        "documents_used": done.documents_used,
        "curation": asdict(done.curation),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(
            f"wrote {done.tokens:,} tokens of {name} to {done.dest} "
            f"({len(done.shards)} shard(s), sha256 {done.content_hash[:12]}…)"
        )


COMMANDS = [sources]
