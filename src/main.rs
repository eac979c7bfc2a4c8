//! The `cc-heartbeat` binary: parse the command line, load the configuration, run until
//! SIGINT/SIGTERM, stop within five seconds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cc_heartbeat::app::App;
use cc_heartbeat::config::{Config, ENV_PREFIX};
use cc_heartbeat::demo::DemoCluster;
use cc_heartbeat::logging;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// How long tasks get to stop after a signal before the process exits anyway.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(4);

/// Exit code for a configuration the user must fix.
const EXIT_CONFIG: u8 = 2;

/// End-to-end health-check exporter for Apache Kafka and Confluent Cloud.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// INI configuration file ([default], [producer], [consumer], [admin]).
    #[arg(long, value_name = "PATH", default_value = "config.ini")]
    config: PathBuf,

    /// Validate the configuration, print it with secrets masked, and exit.
    #[arg(long)]
    check_config: bool,

    /// Run against an embedded three-broker cluster (no Kafka needed); only the file's
    /// [admin] settings are used, and the file may be absent.
    #[arg(long)]
    demo: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let environment = match environment() {
        Ok(environment) => environment,
        Err(message) => {
            eprintln!("cc-heartbeat: configuration error: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let loaded = if cli.demo {
        Config::load_optional(&cli.config, environment)
    } else {
        Config::load(&cli.config, environment)
    };
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("cc-heartbeat: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check_config {
        print!("{}", config.render_masked());
        return ExitCode::SUCCESS;
    }
    logging::init(&config.admin.log_level, config.admin.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cc-heartbeat: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config, cli.demo));
    // Blocking librdkafka calls still running (a metadata request to a dead cluster) must not
    // hold the exit: they are abandoned.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("cc-heartbeat: {error:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// The process environment as UTF-8 pairs. Variables of other programs that are not UTF-8
/// are passed over; one of ours that is not is an error.
fn environment() -> Result<Vec<(String, String)>, String> {
    let mut environment = Vec::new();
    for (name, value) in std::env::vars_os() {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => environment.push((name, value)),
            (Ok(name), Err(_)) if name.starts_with(ENV_PREFIX) => {
                return Err(format!(
                    "environment variable {name}: value is not valid UTF-8"
                ));
            }
            _ => {}
        }
    }
    Ok(environment)
}

async fn run(config: Config, demo: bool) -> anyhow::Result<()> {
    // The embedded cluster must outlive every client, so it is held here until the end.
    let (config, _demo) = if demo {
        let cluster = DemoCluster::start(&config.admin.heartbeat_topic)
            .context("cannot start the demo cluster")?;
        let bootstrap = cluster.bootstrap_servers();
        tracing::info!(bootstrap, "demo mode: embedded 3-broker cluster started");
        (config.for_demo(&bootstrap), Some(cluster))
    } else {
        (config, None)
    };
    let cancel = CancellationToken::new();
    let app = App::start(vec![config], cancel.clone())
        .await
        .context("cannot start")?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), address = %app.address(), "cc-heartbeat started");
    wait_for_signal().await;
    tracing::info!("stopping");
    cancel.cancel();
    if !app.stopped(SHUTDOWN_LIMIT).await {
        tracing::warn!(
            "some tasks did not stop within {}s; exiting anyway",
            SHUTDOWN_LIMIT.as_secs()
        );
    }
    Ok(())
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!("cannot listen for SIGTERM: {error}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
