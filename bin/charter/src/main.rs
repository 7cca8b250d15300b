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
#[command(
    name = "charter",
    version,
    about = "Confidential containers with attested execution policies"
)]
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
    /// Inspect, verify and predict AMD SEV-SNP attestation evidence.
    #[command(subcommand)]
    Attest(commands::attest::AttestCmd),
    /// Check execution policies and replay host requests against them.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCmd),
    /// Run a pod under its execution policy in a utility VM.
    Run(commands::run::RunArgs),
    /// Run a process the policy allows in a container of a running group.
    Exec(commands::run::ExecArgs),
    /// Stop every container of a running group.
    Stop(commands::run::StopArgs),
    /// The end-to-end demo: build an image, generate its policy, run it attested, tamper.
    Demo(commands::demo::DemoArgs),
    /// Seal data for attested pods.
    #[command(subcommand)]
    Data(commands::data::DataCmd),
    /// Run the key broker, make its admin key and release policies, and administer it.
    #[command(subcommand)]
    Broker(commands::broker::BrokerCmd),
    /// Build the QEMU utility VM image and compute its measurements.
    #[command(subcommand)]
    Uvm(commands::uvm::UvmCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Layer(cmd) => commands::layer::run(cmd),
        Command::Image(cmd) => commands::image::run(cmd),
        Command::Policy(cmd) => commands::policy::run(cmd),
        Command::Attest(cmd) => commands::attest::run(cmd),
        Command::Run(args) => commands::run::run(args),
        Command::Exec(args) => commands::run::exec(args),
        Command::Stop(args) => commands::run::stop(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Broker(cmd) => commands::broker::run(cmd),
        Command::Uvm(cmd) => commands::uvm::run(cmd),
    };
    match result {
        Ok(code) => code,
        // A closed stdout (`charter ... | head`) is the reader's choice, not a failure.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, skipping a cause whose text the previous message
/// already contains (library errors often include their source's text).
fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !previous.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = text;
    }
    out
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
