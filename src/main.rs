//! The rbnn command line (thin: each subcommand calls into the library).

use anyhow::Result;
use clap::{Parser, Subcommand};
use rbnn::gpu::Gpu;

#[derive(Parser)]
#[command(
    name = "rbnn",
    version,
    about = "Rotated Binary Neural Networks on any GPU (wgpu)"
)]
struct Cli {
    /// Use the first adapter whose name contains this (case-insensitive); else WGPU_ADAPTER_NAME;
    /// else the best one (a real GPU before a software adapter). WGPU_BACKEND picks the backend.
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter with its limits and features, and say which one rbnn uses.
    Info,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => info(cli.adapter.as_deref()),
    }
}

fn info(adapter: Option<&str>) -> Result<()> {
    let all = Gpu::adapters();
    println!("adapters ({}):", all.len());
    for (i, a) in all.iter().enumerate() {
        println!("[{i}] {}", a.describe());
    }
    let gpu = Gpu::new(adapter)?;
    println!(
        "\nusing: {} ({:?}, {:?})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type
    );
    if gpu.is_software() {
        println!("note: this is a software adapter: correct, but far slower than a GPU");
    }
    Ok(())
}
