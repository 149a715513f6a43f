//! `o2c-bench <scenario> [--json FILE]`: runs one benchmark scenario, prints a
//! table, and optionally writes the JSON report. Scenarios live in
//! `o2c_tests::bench`. Build with `--release`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use clap::builder::{PossibleValue, PossibleValuesParser};
use o2c_tests::bench::{self, BenchArgs, machine::Machine, report};

#[derive(Debug, Parser)]
#[command(name = "o2c-bench", about = "Run an o2c benchmark scenario")]
struct Cli {
    /// The scenario to run.
    #[arg(value_parser = scenario_parser())]
    scenario: String,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Operations to time (scenario default if omitted).
    #[arg(long)]
    n: Option<u64>,
    /// Items per batch, for scenarios that batch.
    #[arg(long)]
    batch: Option<u64>,
    /// Directory for the scenario's files (default: current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn scenario_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(
        bench::SCENARIOS
            .iter()
            .map(|s| PossibleValue::new(s.name).help(s.about)),
    )
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; use `cargo run --release -p o2c-tests --bin o2c-bench`");
    }
    let scenario =
        bench::find(&cli.scenario).with_context(|| format!("unknown scenario {}", cli.scenario))?;
    let args = BenchArgs {
        n: cli.n,
        batch: cli.batch,
        dir: cli.dir,
    };
    let measurement =
        (scenario.run)(&args).with_context(|| format!("scenario {} failed", scenario.name))?;
    let machine = Machine::detect();
    print!("{}", report::table(scenario.name, &measurement, &machine));
    if let Some(path) = cli.json {
        let doc = report::Report::new(scenario.name, &measurement, machine);
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
