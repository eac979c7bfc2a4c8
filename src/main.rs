//! The `cc-heartbeat` binary: parse the command line, load the configuration, run until
//! SIGINT/SIGTERM, stop within five seconds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cc_heartbeat::app::App;
use cc_heartbeat::config::Config;
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
    let environment = std::env::vars();
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
