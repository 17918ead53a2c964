//! The `bullhorn` binary: parse the command line, load the config, run the command.
//! Exit status: 0 success, 1 runtime failure, 64 bad usage or invalid config.

#![expect(clippy::print_stdout, clippy::print_stderr, reason = "the CLI reports to its user")]

use std::process::ExitCode;

use clap::Parser as _;

use bullhorn::cli::{Cli, Command};
use bullhorn::config::{self, LogFormat};

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let path = config::resolve_path(cli.config.as_deref());
    let config = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    init_tracing(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check { online } => {
            let problems = bullhorn::cli::check(&config);
            if !problems.is_empty() {
                eprintln!("{}: {} problem(s)", path.display(), problems.len());
                for p in problems {
                    eprintln!("  - {p}");
                }
                return ExitCode::from(EX_USAGE);
            }
            println!(
                "{}: OK ({} event types, {} channels, broker {})",
                path.display(),
                config.events.len(),
                config.channels.len(),
                config.mqtt.endpoint
            );
            // A warning, never a failure: this runs before every start, and an alert
            // daemon that refuses to start over a token date helps nobody.
            let now = bullhorn::time::now_ms();
            for e in config::expiring(&config, now) {
                println!("  warning: channel {}: {}", e.channel, e.describe(&config, now));
            }
            if !online {
                return ExitCode::SUCCESS;
            }
            let results = match runtime.block_on(bullhorn::cli::check_online(&config)) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("bullhorn check --online: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut failed = 0;
            for (channel, verified) in results {
                match verified {
                    bullhorn::channel::Verified::Ok(d) => println!("  {channel}: OK, {d}"),
                    bullhorn::channel::Verified::Unchecked(d) => println!("  {channel}: not checked: {d}"),
                    bullhorn::channel::Verified::Failed(d) => {
                        failed += 1;
                        eprintln!("  {channel}: FAILED: {d}");
                    }
                }
            }
            if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Command::Render { file, format, channel, platform, json } => {
            match bullhorn::cli::render(&config, &file, format, channel.as_deref(), platform.as_deref()) {
                Ok(report) if json => match serde_json::to_string_pretty(&report) {
                    Ok(s) => {
                        println!("{s}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("bullhorn render: {e}");
                        ExitCode::FAILURE
                    }
                },
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bullhorn render: {e}");
                    ExitCode::from(EX_DATAERR)
                }
            }
        }
        Command::Send { file, topic, no_validate } => {
            match runtime.block_on(bullhorn::cli::send(&config, &file, topic.as_deref(), !no_validate)) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bullhorn send: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status { .. }
        | Command::Approve { .. }
        | Command::Reject { .. }
        | Command::Pause { .. }
        | Command::Resume { .. }
        | Command::Retry { .. }
        | Command::Retract { .. }
        | Command::Correct { .. }
        | Command::TestChannel { .. } => {
            // Operator commands talk to the running daemon's admin API.
            match runtime.block_on(bullhorn::cli::operate(&config, cli.admin_url.as_deref(), &cli.command)) {
                Ok(out) => {
                    println!("{}", out.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bullhorn: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => match runtime.block_on(bullhorn::app::run(config, shutdown_signal())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("bullhorn: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Resolves on SIGINT or SIGTERM. (SIGHUP reloads; `app::run` handles it.)
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn init_tracing(log: &config::LogConfig) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    // rumqttd logs every client disconnect at ERROR; bind failures are caught before it
    // starts, so its own logs stay off unless asked for (RUST_LOG=rumqttd=info).
    let default = log.level.clone().unwrap_or_else(|| "info".to_owned()) + ",rumqttd=off,rumqttc=warn";
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
