//! `sensor`: the runtime-security sensor daemon.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::Parser;
use sensor_user::config::Config;

/// Linux runtime-security sensor: process activity from the kernel, as JSON lines and gRPC.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file; every key is optional.
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC address, `unix:/path` or `host:port` (overrides `listen`).
    #[arg(long)]
    listen: Option<String>,
    /// Write JSON lines: `-` for stdout, or a file to append to (overrides `json_out`).
    #[arg(long = "json-out")]
    json_out: Option<String>,
    /// Print which hook types beyond tracepoints this kernel loads (kprobe, fentry, lsm,
    /// raw_tp), one per line with the reason where refused, then the hooks chosen where there
    /// is a choice (as `status` shows them under `hooks_chosen`), and exit.
    #[arg(long)]
    probe_program_types: bool,
    /// Discard the file-integrity baseline in `state_dir` (for example one reported corrupt)
    /// and build a new one from a fresh scan.
    #[arg(long)]
    rebuild_baseline: bool,
    /// Append audit records in auditd's log format to this file (overrides `audit.log`);
    /// turns audit on with the built-in rules when the configuration has no `[audit]`.
    #[arg(long = "audit-log")]
    audit_log: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal; a log file or journal gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    if args.probe_program_types {
        return probe_program_types();
    }
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sensor: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sensor: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sensor_user::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sensor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn probe_program_types() -> ExitCode {
    match sensor_user::loader::probe_program_types() {
        Ok(probe) => {
            for p in probe.types {
                match p.refused {
                    None => println!("{}: loads", p.kind),
                    Some(reason) => println!("{}: refused ({reason})", p.kind),
                }
            }
            for (what, set) in probe.chosen {
                println!("{what}: {set}");
            }
            for reason in probe.refused {
                println!("refused {reason}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sensor: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> Result<Config, sensor_user::config::ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(out) = &args.json_out {
        config.json_out = Some(out.clone());
    }
    config.rebuild_baseline = args.rebuild_baseline;
    if let Some(log) = &args.audit_log {
        let audit = config.audit.get_or_insert_with(Default::default);
        audit.enabled = true;
        audit.log = Some(log.clone());
    }
    config.validate()?;
    Ok(config)
}
