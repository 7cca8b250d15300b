//! `charter`: the one user-facing command line tool.
//!
//! Raw arguments are parsed by clap into the per-command structs in `commands/`; each command
//! resolves and validates them before doing any work, and reports failures with the path or
//! digest it was handling.
#![forbid(unsafe_code)]

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "charter", version, about = "Confidential containers with attested execution policies")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build and verify dm-verity protected EROFS layer images.
    #[command(subcommand)]
    Layer(commands::layer::LayerCmd),
    /// Inspect and measure container images.
    #[command(subcommand)]
    Image(commands::image::ImageCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Layer(cmd) => commands::layer::run(cmd),
        Command::Image(cmd) => commands::image::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
