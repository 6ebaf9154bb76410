//! `treuhand bench`: the escrow-latency harness for researchers.
//!
//! It drives signed S3 traffic (closed- and open-loop) from a Rust load generator, records HDR
//! latency histograms, and writes `results.csv`, `results.json`, a run manifest, SVG plots and
//! a Markdown summary. `bench report DIR` regenerates plots and summary from the results alone.
//!
//! - [`plan`]: the sweep file, its variants ([`Scenario`], [`Threshold`]), their schedule and
//!   cells. Pure.
//! - [`run`]: runs a sweep, variant by variant; [`cell`]: one cell's run, into a result row.
//! - [`stack`]: starts the processes a sweep measures (or reads an endpoint from an env file);
//!   [`nginx`]: the `nginx` baseline's config and process; [`pin`]: `--pin`, one CPU for the
//!   load generator and one for the system under test.
//! - [`client`]: the signed S3 client (hyper + rustls, SigV4, SSE-C headers).
//! - [`load`]: closed/open-loop load with HDR histograms.
//! - [`relay`]: a delaying TCP relay that emulates a distant trustee.
//! - [`results`]: rows, CSV/JSON, /proc probes, Prometheus phase parsing.
//! - [`manifest`]: what a run ran on and with.
//! - [`output`]: writes every output file; [`aggregate`] folds the repetitions of a cell into
//!   medians and ranges, [`plot`] and [`report`] draw the SVG plots and the Markdown summary.

pub mod aggregate;
pub mod cell;
pub mod cli;
pub mod client;
pub mod load;
pub mod manifest;
pub mod nginx;
pub mod output;
pub mod pin;
pub mod plan;
pub mod plot;
pub mod relay;
pub mod report;
pub mod results;
pub mod run;
pub mod stack;

pub use cell::{Endpoint, PHASE_METRIC};
pub use output::{report_dir, write_outputs};
pub use plan::{
    Baseline, LARGE_OBJECT, MAX_REPEATS, Scenario, SweepConfig, Threshold, Variant,
    cells_per_variant, parse_threshold, schedule, variants,
};
pub use run::{RunOptions, repeat_label, run_sweep, run_variant, say};
