"""``cuctl recommend``: what to buy or rent to cover the demand at its SLO, at least cost.

``cuctl recommend [PATH] [--rev REV] [--cluster NAME] --catalogue FILE [--demand FILE]
[-o text|json]`` reads the desired state (tenants, pools, factors) and a device catalogue,
and prints the cheapest device mix that covers every demand (the tenants' guarantees, or the
demand file's throughput at SLO per class), each tenant's share and why, and the saving
against the cheapest single device model. Writes nothing.

Exit codes: 0 every demand is covered, 1 some demand cannot be covered by the catalogue
(named, with the CU short), 2 cannot run (bad input, with file:line).
The model and the solver: :mod:`reconciler.plan.recommend`; docs/recommend.md.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import typer

from reconciler import errors, source, validate
from reconciler.cli import _app
from reconciler.model import catalogue as cat
from reconciler.model import diagnostics as diag

MAX_INPUT_BYTES = 16 * 2**20
M = TypeVar("M", cat.DeviceCatalogue, cat.Demand)


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"cuctl recommend: {diag.printable(message)}", err=True)
    return typer.Exit(_app.EXIT_ERROR)


def _read(path: Path, flag: str) -> bytes:
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise _fail(f"{flag} {path}: {exc.strerror or exc}; give a readable file") from exc
    if len(content) > MAX_INPUT_BYTES:
        raise _fail(f"{flag} {path}: larger than {MAX_INPUT_BYTES // 2**20} MiB")
    return content


def _load_input(path: Path, flag: str, model: type[M], kind: str) -> M:
    from reconciler.validate import inputs

    document, problems = inputs.load_one(str(path), _read(path, flag), model, kind)
    for d in problems:
        typer.echo(d.render(), err=True)
    if document is None:
        raise _fail(f"{flag} {path}: not a valid {kind} ({len(problems)} errors above)")
    return document


@_app.app.command("recommend")
def recommend_command(
    path: str = typer.Argument(".", help="Repository directory (or a subdirectory of one)."),
    catalogue: Path = typer.Option(
        ..., "--catalogue", help="DeviceCatalogue YAML: offers, prices, availability."
    ),
    demand: Path | None = typer.Option(
        None,
        "--demand",
        help="Demand YAML (CU at SLO per tenant and class); default: the tenants' guarantees.",
    ),
    rev: str | None = typer.Option(None, "--rev", help="Read this Git revision."),
    cluster: str | None = typer.Option(
        None, "--cluster", help="Fleet repository: this cluster's overlay."
    ),
    output: Output = typer.Option(Output.TEXT, "-o", "--output", help="text or json."),
) -> None:
    """Recommend the cheapest device mix to buy or rent: exit 0 covered, 1 demand that cannot
    be covered, 2 error."""
    from reconciler.plan import recommend as rec

    try:
        tree = source.fleet.select(source.read(path, rev), cluster)
    except errors.SourceError as exc:
        raise _fail(str(exc)) from exc
    result = validate.validate_tree(tree)
    for d in result.errors:
        typer.echo(d.render(), err=True)
    if result.state is None:
        raise _fail(f"{path}: the desired state is invalid ({len(result.errors)} errors)")
    offers = _load_input(catalogue, "--catalogue", cat.DeviceCatalogue, "DeviceCatalogue")
    try:
        if demand is None:
            lines = rec.demand_from_guarantees(result.state)
        else:
            wanted = _load_input(demand, "--demand", cat.Demand, "Demand")
            lines = rec.demand_from_file(result.state, wanted)
        answer = rec.recommend(result.state, offers, lines)
    except rec.RecommendError as exc:
        where = f"--demand {demand}: " if demand is not None else ""
        raise _fail(f"{where}{exc}") from exc
    if output is Output.JSON:
        typer.echo(json.dumps(answer.to_json(), indent=2))
    else:
        typer.echo(render_text(answer))
    raise typer.Exit(_app.EXIT_OK if answer.covered else _app.EXIT_FINDINGS)


def render_text(answer: object) -> str:
    """The recommendation as a reviewer reads it: the mix, the bill, each tenant's why."""
    from reconciler.plan import recommend as rec

    assert isinstance(answer, rec.Recommendation)
    cur = answer.currency
    out = []
    verdict = "covers every demand" if answer.covered else "CANNOT cover every demand"
    out.append(
        f"Recommended mix ({verdict}): {answer.cost_per_hour:,.2f} {cur}/h, "
        f"{answer.cost_per_hour * cat.HOURS_PER_MONTH:,.0f} {cur}/month"
    )
    for p in answer.picks:
        out.append(
            f"  {p.count:>5} × {p.device_model} ({p.ownership}, {p.site}, offer {p.offer}): "
            f"{p.cost_per_hour * p.count:,.2f} {cur}/h"
        )
    best = answer.best_single
    if best is not None and best.cost_per_hour is not None and answer.saving is not None:
        out.append(
            f"Against the cheapest single device model ({best.device_model}, "
            f"{best.cost_per_hour:,.2f} {cur}/h): {answer.saving:.1%} saved"
        )
    elif answer.single_types:
        out.append("No single device model covers the same demand alone.")
    for group, short in answer.short:
        out.append(f"SHORT: {group}: {short:,.3f} CU cannot be covered by the catalogue")
    out.append("")
    out.append("Per tenant (cost by device-time used, idle rounding included):")
    for t in answer.tenants:
        out.append(
            f"  {t.tenant}: {t.cost_per_hour:,.2f} {cur}/h, "
            f"{t.cost_per_hour * cat.HOURS_PER_MONTH:,.0f} {cur}/month"
        )
        out.extend(f"    - {diag.printable(reason)}" for reason in t.reasons)
    if answer.unusable:
        out.append("")
        out.append("Offers no demand can use:")
        out.extend(f"  {diag.printable(u)}" for u in answer.unusable)
    return "\n".join(out)
