"""``throttle-lab run``: simulate a scenario's whole population over its timeline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from throttle_lab.cli import cli
from throttle_lab.scenario import load_scenario
from throttle_lab.sim import ENGINES

if TYPE_CHECKING:
    from throttle_lab.sim import RunResult


def _table(result: RunResult) -> str:
    """Per class and period: median latency with and without the policy."""
    lines = [
        f"{'class':<8} {'period':<22} {'loads':>9} {'throttled':>9} {'median s':>9}"
        f" {'no policy':>9} {'>10 s':>6} {'affected subs':>13}"
    ]
    for row in result.summary["by_class_period"]:
        lines.append(
            f"{row['device_class']:<8} {str(row['period'])[:22]:<22} {row['loads']:>9,}"
            f" {row['throttled_loads'] / row['loads']:>9.0%} {row['median_s']:>9.2f}"
            f" {row['counterfactual_median_s']:>9.2f} {row['share_over_10s']:>6.1%}"
            f" {row['subscribers_affected']:>6,}/{row['subscribers']:<6,}"
        )
    return "\n".join(lines)


@cli.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--seed", type=int, help="Seed (default: the scenario's).")
@click.option(
    "--engine", type=click.Choice(["auto", *ENGINES]), help="Engine (default: the scenario's)."
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a scenario key."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run(
    scenario: Path,
    out: Path | None,
    seed: int | None,
    engine: str | None,
    overrides: tuple[str, ...],
    no_progress: bool,
) -> None:
    """Simulate SCENARIO: every subscriber's media loads, with and without the policy.

    \b
    throttle-lab run scenarios/russia-twitter-2021.toml --out results/ru2021
    throttle-lab run scenarios/russia-twitter-2021.toml --set population.subscribers=20000
    """
    from tqdm import tqdm  # heavy imports wait until a command needs them

    from throttle_lab.sim import run_scenario

    loaded = load_scenario(scenario, overrides=overrides)
    out_dir = out or Path("results") / loaded.name
    with tqdm(
        total=100, desc="simulating", unit="%", disable=True if no_progress else None, leave=False
    ) as bar:

        def progress(what: str, fraction: float) -> None:
            bar.set_description(what[:30])
            bar.update(round(fraction * 100) - bar.n)

        result = run_scenario(loaded, seed=seed, engine=engine, progress=progress)
    written = result.write(out_dir)
    click.echo(
        f"{loaded.name}: {len(result.loads):,} loads of {loaded.subscribers:,} subscribers,"
        f" engine {result.engine}, seed {result.seed}, {result.wall_s:.1f} s\n"
    )
    click.echo(_table(result))
    click.echo(f"\nResults in {out_dir}/: " + ", ".join(p.name for p in written))
