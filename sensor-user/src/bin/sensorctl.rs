//! `sensorctl`: talks to a running sensor over its gRPC API.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sensor_proto::v1::{FimScanRequest, GetEventsRequest, GetStatusRequest};
use sensor_user::{client, render};

/// Client for the sensor daemon.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Sensor address, `unix:/path` or `host:port`.
    #[arg(long, default_value = "unix:/run/sensor/sensor.sock", global = true)]
    server: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print events as they happen until stopped.
    Events {
        /// One JSON object per line (the same shape as the sensor's JSON output).
        #[arg(long)]
        json: bool,
        /// Only these actions (repeatable): fork, exec, exit, lost.
        #[arg(long = "action")]
        actions: Vec<String>,
        /// Only these process ids (repeatable).
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// Only executables starting with this prefix.
        #[arg(long)]
        executable_prefix: Option<String>,
    },
    /// Print the sensor's status as JSON; exit 0 only if it is attached and serving.
    Status,
    /// File-integrity monitoring.
    Fim {
        #[command(subcommand)]
        command: FimCommand,
    },
}

#[derive(Subcommand)]
enum FimCommand {
    /// Scan the watched files now and print what differs from the baseline, one JSON event
    /// per line, then a summary line on stderr; exit 0 when nothing differs, 1 otherwise.
    Scan,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sensorctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut client = client::connect(&args.server)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the sensor at {}: {e:#}", args.server))?;
    match args.command {
        Command::Status => {
            let status = client.get_status(GetStatusRequest {}).await?.into_inner();
            println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
            if status.ready {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("sensorctl: the sensor is not ready (hooks not attached yet)");
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Fim {
            command: FimCommand::Scan,
        } => {
            let reply = client.fim_scan(FimScanRequest {}).await?.into_inner();
            for event in &reply.changes {
                println!("{}", render::to_json(event));
            }
            eprintln!(
                "sensorctl: scanned {} files in {} ms ({} bytes hashed), {} changed",
                reply.scanned,
                reply.millis,
                reply.hashed_bytes,
                reply.changes.len()
            );
            Ok(if reply.changes.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Events {
            json,
            actions,
            pids,
            executable_prefix,
        } => {
            let request = GetEventsRequest {
                actions,
                pids,
                executable_prefix: executable_prefix.unwrap_or_default().into_bytes(),
            };
            let mut stream = client.get_events(request).await?.into_inner();
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            while let Some(event) = stream.message().await? {
                let value = render::to_json(&event);
                if json {
                    writeln!(out, "{value}")?;
                } else {
                    writeln!(out, "{}", summary(&value))?;
                }
                out.flush()?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One human-readable line per event.
fn summary(v: &serde_json::Value) -> String {
    let p = &v["process"];
    if let Some(path) = v["file"]["path"].as_str() {
        return format!(
            "{} {} {} pid={} {}",
            v["@timestamp"].as_str().unwrap_or(""),
            v["event"]["action"].as_str().unwrap_or(""),
            path,
            p["pid"],
            p["executable"].as_str().unwrap_or(""),
        );
    }
    format!(
        "{} {:<5} pid={} ppid={} {} {}",
        v["@timestamp"].as_str().unwrap_or(""),
        v["event"]["action"].as_str().unwrap_or(""),
        p["pid"],
        p["parent"]["pid"],
        p["executable"].as_str().unwrap_or(""),
        p["command_line"].as_str().unwrap_or(""),
    )
}

fn status_json(s: &sensor_proto::v1::Status) -> serde_json::Value {
    serde_json::json!({
        "version": s.version,
        "kernel_release": s.kernel_release,
        "ready": s.ready,
        "hooks_attached": s.hooks_attached,
        "hooks_refused": s.hooks_refused,
        "hooks_chosen": s.hooks_chosen,
        "program_types": s.program_types,
        "program_types_refused": s.program_types_refused,
        "events_total": s.events_total,
        "kernel_lost_total": s.kernel_lost_total,
        "kernel_lost_per_cpu": s.kernel_lost_per_cpu,
        "records_per_hook": s.records_per_hook,
        "decode_errors": s.decode_errors,
        "subscriber_dropped_total": s.subscriber_dropped_total,
        "process_table_entries": s.process_table_entries,
        "uptime_seconds": s.uptime_seconds,
        "alerts_total": s.alerts_total,
        "alerts_allowed": s.alerts_allowed,
        "alerts_rate_limited": s.alerts_rate_limited,
        "fim": s.fim.as_ref().map(|f| serde_json::json!({
            "enabled": f.enabled,
            "baseline": f.baseline,
            "watched": f.watched,
            "watch_refused": f.watch_refused,
            "changes": f.changes,
            "hash_skipped": f.hash_skipped,
            "scans": f.scans,
            "last_scan_files": f.last_scan_files,
            "last_scan_millis": f.last_scan_millis,
            "last_scan_bytes": f.last_scan_bytes,
        })),
    })
}
