//! The `cc-heartbeat` binary: parse the command line, load the configuration, run until
//! SIGINT/SIGTERM, stop within five seconds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cc_heartbeat::app::App;
use cc_heartbeat::bundle;
use cc_heartbeat::config::{
    shard_of, AdminSettings, CommandLineSetting, Config, LogFormat, Shard, ENV_PREFIX,
};
use cc_heartbeat::demo;
use cc_heartbeat::http::healthcheck;
use cc_heartbeat::http::web_config::WebConfig;
use cc_heartbeat::kafka::client;
use cc_heartbeat::logging;
use cc_heartbeat::output;
use cc_heartbeat::reload;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// How long tasks get to stop after a signal before the process exits anyway.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(4);

/// Exit code for a configuration the user must fix.
const EXIT_CONFIG: u8 = 2;

/// End-to-end health-check exporter for Apache Kafka and Confluent Cloud.
///
/// The options marked global apply to every command and go before or after it:
/// `cc-heartbeat check --config prod.ini` and `cc-heartbeat --config prod.ini check` are the same.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// INI configuration file ([default], [producer], [consumer], [admin]).
    #[arg(long, value_name = "PATH", default_value = "config.ini", global = true)]
    config: PathBuf,

    /// Only the cluster of this name (`[cluster:NAME]`; `default` without such sections).
    #[arg(long, value_name = "NAME", global = true)]
    cluster: Option<String>,

    /// Run against an embedded three-broker cluster (no Kafka needed); only the file's
    /// [admin] settings are used, and the file may be absent.
    #[arg(long, env = "CC_HEARTBEAT_DEMO", global = true)]
    demo: bool,

    /// With --demo: how many embedded clusters to run side by side (named demo_1, demo_2, …).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8), global = true)]
    demo_clusters: u8,

    /// Log level, over [admin] log.level: trace, debug, info, warning or error. The one-shot
    /// commands log nothing unless it is given (or RUST_LOG is set).
    #[arg(long, value_name = "LEVEL", global = true)]
    log_level: Option<String>,

    /// Log format, over [admin] log.format: text or json.
    #[arg(long, value_name = "FORMAT", global = true)]
    log_format: Option<String>,

    /// Monitor only this instance's share of the `[cluster:…]` sections: those whose name
    /// hashes to INDEX of COUNT (see docs/kubernetes.md, "Scaling out"), so that COUNT replicas
    /// of one configuration split its clusters between them.
    #[arg(
        long,
        value_name = "INDEX/COUNT",
        env = "CC_HEARTBEAT_SHARD",
        global = true
    )]
    shard: Option<Shard>,

    /// TLS and basic authentication for the HTTP endpoints (every one but /healthz), in the
    /// web configuration format of Prometheus' exporters (exporter-toolkit).
    #[arg(
        long = "web.config.file",
        value_name = "PATH",
        env = "CC_HEARTBEAT_WEB_CONFIG_FILE",
        global = true
    )]
    web_config_file: Option<PathBuf>,

    /// Validate the configuration, print it with secrets masked and every warning a start
    /// would give, and exit.
    #[arg(long)]
    check_config: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// The settings given as options, over the file and the environment.
    fn command_line_settings(&self) -> Vec<CommandLineSetting> {
        let mut settings = Vec::new();
        for (option, key, value) in [
            ("--log-level", "log.level", &self.log_level),
            ("--log-format", "log.format", &self.log_format),
        ] {
            if let Some(value) = value {
                settings.push(CommandLineSetting {
                    option,
                    section: "admin",
                    key,
                    value: value.clone(),
                });
            }
        }
        settings
    }
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run every check once (connections, authentication, metadata, the heartbeat topic, a
    /// round trip on every partition, permissions), print a report with what to fix, and exit
    /// 0 (healthy), 1 (something failed) or 2 (bad configuration).
    Check {
        /// Print the report as one JSON document (its shape is in docs/oncall.md).
        #[arg(long)]
        json: bool,
        /// Give up on what has not answered after this long.
        #[arg(long, value_name = "SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
        timeout: u64,
    },
    /// Write a support bundle, cc-heartbeat-bundle-<cluster>-<UTC timestamp>.tar.gz: version
    /// and build, the configuration with secrets masked, a check report, a metadata snapshot
    /// and, with --from, a running exporter's /metrics, /ready and last warnings and errors.
    Bundle {
        /// A running exporter to include (`http://host:port`).
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// Replace host names, IP addresses, topic and group names, user names and the
        /// cluster id with stable short hashes everywhere in the bundle.
        #[arg(long)]
        redact: bool,
        /// Directory to write the bundle to.
        #[arg(long, value_name = "DIR", default_value = ".")]
        output: PathBuf,
        /// Give up on what has not answered after this long.
        #[arg(long, value_name = "SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
        timeout: u64,
    },
    /// Ask the running exporter's /healthz (at [admin] metrics.listener.port) and exit 0 when
    /// it answers 200: a container health check that needs no curl. With --web.config.file
    /// setting TLS it asks over TLS (the server's own certificate not verified: it is the
    /// exporter next to it), presenting the server's certificate where clients must show one.
    Healthcheck {
        /// Address to ask, instead of 127.0.0.1 and the configured port.
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<String>,
    },
}

/// glibc gives threads that allocate arenas of their own (up to eight per core), and librdkafka
/// runs a thread per broker per client: at a hundred brokers most of the resident memory was
/// arenas' free space. Two arenas serve the exporter's allocation rate; a `MALLOC_ARENA_MAX` in
/// the environment still decides, as glibc reads it itself.
fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first in main, before any other thread exists; only sets a limit.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    bound_malloc_arenas();
    let cli = Cli::parse();
    let environment = match environment() {
        Ok(environment) => environment,
        Err(message) => return config_error(&message),
    };
    let command_line = cli.command_line_settings();
    // Demo mode and the health check run fine on defaults when there is no file.
    let loaded = if cli.demo || matches!(cli.command, Some(Command::Healthcheck { .. })) {
        Config::load_clusters_optional(&cli.config, environment.clone(), &command_line)
    } else {
        Config::load_clusters(&cli.config, environment.clone(), &command_line)
    };
    let configs = match loaded {
        Ok(configs) => configs,
        Err(error) => return config_error(&error.to_string()),
    };
    // Demo mode must not fail open: with a cluster configured too, a healthy embedded cluster
    // would be reported in its place.
    if cli.demo && !cli.check_config && !matches!(cli.command, Some(Command::Healthcheck { .. })) {
        if let Some(setting) = configs
            .iter()
            .find_map(|config| config.where_set("bootstrap.servers"))
        {
            let demo = if std::env::args().any(|argument| argument == "--demo") {
                "--demo"
            } else {
                "CC_HEARTBEAT_DEMO=true"
            };
            return config_error(&format!(
                "demo mode ({demo}) and a cluster to monitor ({setting}) are both set: set \
                 CC_HEARTBEAT_DEMO=false (or drop --demo) to monitor that cluster, or remove \
                 bootstrap.servers to run the demo"
            ));
        }
    }
    // Process-wide settings (listener, logging) come from the top-level [admin], which every
    // cluster inherits.
    let process = configs[0].admin.clone();
    let web = match &cli.web_config_file {
        None => WebConfig::default(),
        Some(path) => match WebConfig::load(path) {
            Ok(web) => web,
            Err(error) => return config_error(&format!("--web.config.file {error}")),
        },
    };
    if let Some(Command::Healthcheck { address }) = &cli.command {
        return healthcheck_command(&process, &web, address.as_deref());
    }
    // The demo's embedded clusters are not shared out, nor chosen by name.
    let (shard, cluster) = if cli.demo {
        for (option, given) in [
            ("--shard", cli.shard.is_some()),
            ("--cluster", cli.cluster.is_some()),
        ] {
            if given {
                output::eprint_line(&format!(
                    "cc-heartbeat: {option} does not apply to demo mode: ignored"
                ));
            }
        }
        (Shard::ALL, None)
    } else {
        (cli.shard.unwrap_or(Shard::ALL), cli.cluster.clone())
    };
    let configured = configs.len();
    let names: Vec<String> = configs.iter().map(|config| config.name.clone()).collect();
    let one_shot = cli.command.is_some();
    let Some(configs) = chosen(configs, cluster.as_deref(), shard, one_shot) else {
        return ExitCode::from(EXIT_CONFIG);
    };
    let tool = Tool {
        demo: cli.demo.then_some(cli.demo_clusters),
        log: cli
            .log_level
            .is_some()
            .then(|| (process.log_level.clone(), process.log_format)),
    };
    match &cli.command {
        Some(Command::Check { json, timeout }) => {
            return check(&tool, configs, *json, Duration::from_secs(*timeout));
        }
        Some(Command::Bundle {
            from,
            redact,
            output,
            timeout,
        }) => {
            let options = bundle::Options {
                from: from.clone(),
                redact: *redact,
                output: output.clone(),
                timeout: Duration::from_secs(*timeout),
            };
            return write_bundle(&tool, configs, &options);
        }
        _ => {}
    }
    if cli.check_config {
        print_checked_config(&configs, &names, shard, configured, cli.demo);
        return ExitCode::SUCCESS;
    }
    logging::init(&process.log_level, process.log_format);
    logging::mask_secrets(configs.iter().flat_map(Config::secret_values));
    for warning in Config::start_warnings(&configs) {
        tracing::warn!("{warning}");
    }
    if shard != Shard::ALL {
        if configs.is_empty() {
            tracing::warn!(
                "shard {shard}: {}; it serves /healthz and /ready only",
                shard_summary(&configs, configured)
            );
        } else {
            tracing::info!("shard {shard}: {}", shard_summary(&configs, configured));
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            output::eprint_line(&format!("cc-heartbeat: cannot start the runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    // Outside demo mode the configuration is read again on SIGHUP and when a credentials file
    // changes.
    let source = (!cli.demo).then(|| reload::Source {
        path: cli.config.clone(),
        environment: environment.clone(),
        command_line,
        shard,
        cluster,
    });
    let result = runtime.block_on(run(
        process,
        web,
        configs,
        cli.demo.then_some(cli.demo_clusters),
        source,
    ));
    // Blocking librdkafka calls still running (a metadata request to a dead cluster) must not
    // hold the exit: they are abandoned.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(stopped) => {
            // Timed to here: the runtime's own shutdown counts too.
            let took = stopped.since.elapsed();
            tracing::info!(
                took_ms = took.as_millis() as u64,
                "stopped in {:.1}s{}",
                took.as_secs_f64(),
                if stopped.all_tasks {
                    ""
                } else {
                    " (some tasks abandoned)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error:#}");
            output::eprint_line(&format!("cc-heartbeat: {error:#}"));
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Says a configuration error on standard error; the exit code for it.
fn config_error(message: &str) -> ExitCode {
    output::eprint_line(&format!("cc-heartbeat: configuration error: {message}"));
    ExitCode::from(EXIT_CONFIG)
}

/// `cc-heartbeat healthcheck`: asks the exporter beside it.
fn healthcheck_command(
    process: &AdminSettings,
    web: &WebConfig,
    address: Option<&str>,
) -> ExitCode {
    let address = address.map(str::to_string).unwrap_or_else(|| {
        // A wildcard listener is reached on loopback; a specific one where it listens.
        let host = match process.metrics_listener_host.as_str() {
            "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
            host => host,
        };
        format!("{host}:{}", process.metrics_listener_port)
    });
    match healthcheck(&address, web.tls.as_ref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output::eprint_line(&format!("cc-heartbeat: unhealthy: {error}"));
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: the split between shards, each cluster's configuration with secrets
/// masked and its clients' settings, every warning a start would give, and the verdict.
fn print_checked_config(
    configs: &[Config],
    names: &[String],
    shard: Shard,
    configured: usize,
    demo: bool,
) {
    if shard != Shard::ALL {
        output::print_line(&format!(
            "shard {shard}: {}",
            shard_summary(configs, configured)
        ));
        for name in names {
            output::print_line(&format!("  {name}: shard {}", shard_of(name, shard.count)));
        }
        output::print_line("");
    }
    for config in configs {
        output::print(&config.render_masked());
        output::print_line("");
        output::print(&client::render_client_settings(config));
        output::print_line("");
    }
    for pipeline in Config::pipelines(configs) {
        output::print_line(&pipeline);
    }
    let warnings = Config::start_warnings(configs);
    for warning in &warnings {
        output::print_line(&format!("warning: {warning}"));
    }
    if shard != Shard::ALL && configs.is_empty() {
        output::print_line(&format!(
            "warning: shard {shard} is given none of the {configured} clusters configured: it \
             would serve /healthz and /ready only"
        ));
    }
    if demo {
        output::print_line(
            "demo mode: the clients reach the embedded cluster instead (only [admin] applies)",
        );
    }
    let clusters = configs.len();
    output::print_line(&format!(
        "configuration OK: {clusters} cluster{}{}",
        if clusters == 1 { "" } else { "s" },
        match warnings.len() {
            0 => String::new(),
            1 => ", 1 warning".to_string(),
            many => format!(", {many} warnings"),
        }
    ));
}

/// What a shard monitors, for the log and `--check-config`.
fn shard_summary(configs: &[Config], configured: usize) -> String {
    let names: Vec<&str> = configs.iter().map(|config| config.name.as_str()).collect();
    format!(
        "monitoring {} of the {configured} clusters configured{}{}",
        names.len(),
        if names.is_empty() { "" } else { ": " },
        names.join(", ")
    )
}

/// The clusters `--cluster` names (without it, every one of this shard's); `None`, having
/// said why, when the file configures no such cluster, or when a one-shot command is left
/// with none.
fn chosen(
    configs: Vec<Config>,
    cluster: Option<&str>,
    shard: Shard,
    one_shot: bool,
) -> Option<Vec<Config>> {
    let Some(name) = cluster else {
        let configured = configs.len();
        let mine = Config::in_shard(configs, shard);
        if mine.is_empty() && one_shot {
            output::eprint_line(&format!(
                "cc-heartbeat: configuration error: shard {shard} is given none of the \
                 {configured} clusters configured (name one with --cluster)"
            ));
            return None;
        }
        return Some(mine);
    };
    let names: Vec<String> = configs.iter().map(|config| config.name.clone()).collect();
    let chosen: Vec<Config> = configs
        .into_iter()
        .filter(|config| config.name == name)
        .collect();
    if chosen.is_empty() {
        output::eprint_line(&format!(
            "cc-heartbeat: configuration error: --cluster {name}: no such cluster (the file \
             configures: {})",
            names.join(", ")
        ));
        return None;
    }
    Some(chosen)
}

/// How a one-shot command runs: against the demo's embedded clusters (how many), and with
/// which log, if one was asked for.
struct Tool {
    demo: Option<u8>,
    log: Option<(String, LogFormat)>,
}

impl Tool {
    /// A runtime for the command, its log off unless --log-level asked for it (what it
    /// prints says what the log would say; RUST_LOG shows it on standard error).
    fn runtime(&self) -> Option<tokio::runtime::Runtime> {
        match &self.log {
            Some((level, format)) => logging::init(level, *format),
            None => logging::init("off", LogFormat::Text),
        }
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => Some(runtime),
            Err(error) => {
                output::eprint_line(&format!("cc-heartbeat: cannot start the runtime: {error}"));
                None
            }
        }
    }

    /// With --demo, the embedded clusters (held until the command ends) and the
    /// configurations that reach them, in place of `configs`.
    fn clusters(
        &self,
        runtime: &tokio::runtime::Runtime,
        configs: Vec<Config>,
    ) -> Result<(Vec<Arc<demo::DemoCluster>>, Vec<Config>), ExitCode> {
        let Some(count) = self.demo else {
            return Ok((Vec::new(), configs));
        };
        let _entered = runtime.enter();
        let Some(template) = configs.into_iter().next() else {
            return Err(ExitCode::from(EXIT_CONFIG));
        };
        demo::start_clusters(&template, count).map_err(|error| {
            output::eprint_line(&format!(
                "cc-heartbeat: cannot start the demo cluster: {error}"
            ));
            ExitCode::FAILURE
        })
    }
}

/// `cc-heartbeat check`: the report on standard output, the exit code its verdict.
fn check(tool: &Tool, configs: Vec<Config>, json: bool, timeout: Duration) -> ExitCode {
    let Some(runtime) = tool.runtime() else {
        return ExitCode::FAILURE;
    };
    let (demo_clusters, configs) = match tool.clusters(&runtime, configs) {
        Ok(clusters) => clusters,
        Err(code) => return code,
    };
    let report = runtime.block_on(cc_heartbeat::check::run(configs, timeout));
    drop(demo_clusters);
    runtime.shutdown_timeout(Duration::from_millis(500));
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => output::print_line(&text),
            Err(error) => {
                output::eprint_line(&format!("cc-heartbeat: cannot write the report: {error}"));
                return ExitCode::FAILURE;
            }
        }
    } else {
        output::print(&report.text());
    }
    ExitCode::from(report.exit_code())
}

/// `cc-heartbeat bundle`: the bundle's path on standard output.
fn write_bundle(tool: &Tool, configs: Vec<Config>, options: &bundle::Options) -> ExitCode {
    let Some(runtime) = tool.runtime() else {
        return ExitCode::FAILURE;
    };
    let (demo_clusters, configs) = match tool.clusters(&runtime, configs) {
        Ok(clusters) => clusters,
        Err(code) => return code,
    };
    logging::mask_secrets(configs.iter().flat_map(Config::secret_values));
    let written = runtime.block_on(bundle::write(configs, options));
    drop(demo_clusters);
    runtime.shutdown_timeout(Duration::from_millis(500));
    match written {
        Ok(written) => {
            for missing in &written.missing {
                output::eprint_line(&format!("cc-heartbeat: left out of the bundle: {missing}"));
            }
            output::print_line(&written.path.display().to_string());
            ExitCode::SUCCESS
        }
        Err(error) => {
            output::eprint_line(&format!("cc-heartbeat: {error}"));
            ExitCode::FAILURE
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

/// Runs every cluster's tasks (or, with `demo`, that many embedded clusters) until a signal.
async fn run(
    process: cc_heartbeat::config::AdminSettings,
    web: WebConfig,
    configs: Vec<Config>,
    demo: Option<u8>,
    source: Option<reload::Source>,
) -> anyhow::Result<Stopped> {
    let stop = stop_signal();
    let secret_files: Vec<PathBuf> = configs
        .iter()
        .flat_map(|config| config.secret_files.iter().cloned())
        .collect();
    // The embedded clusters must outlive every client, so they are held here until the end.
    let (demo_clusters, configs) = match demo {
        None => (Vec::new(), configs),
        Some(count) => {
            let template = configs.into_iter().next().context("no configuration")?;
            demo::start_clusters(&template, count).context("cannot start the demo cluster")?
        }
    };
    let demo_cluster = demo_clusters.first().cloned();
    let control = demo_cluster.clone().map(demo::control);
    let cancel = CancellationToken::new();
    let app = App::start(&process, &web, configs, control, cancel.clone())
        .await
        .context("cannot start")?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), address = %app.address(), "cc-heartbeat started");
    match source {
        Some(source) => {
            tokio::select! {
                _ = stop => {}
                _ = reload::watch(&app, source, secret_files, cancel.clone()) => {}
            }
        }
        None => stop.await,
    }
    tracing::info!("stopping");
    let stopping = Instant::now();
    cancel.cancel();
    let all_tasks = app.stopped(SHUTDOWN_LIMIT).await;
    if !all_tasks {
        tracing::warn!(
            "some tasks did not stop within {}s; exiting anyway",
            SHUTDOWN_LIMIT.as_secs()
        );
    }
    // The embedded clusters go last, after every client that talks to them.
    drop(demo_clusters);
    Ok(Stopped {
        since: stopping,
        all_tasks,
    })
}

/// How the shutdown went: when it began, and whether every task stopped in time.
struct Stopped {
    since: Instant,
    all_tasks: bool,
}

/// Listens for SIGINT and SIGTERM from this call on; the future ends at the first. Called
/// before anything starts: a signal that comes while the exporter starts (Kubernetes stopping
/// a pod that just began) then stops it cleanly, where without a handler yet it would kill it.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Ok(mut only), Err(error)) | (Err(error), Ok(mut only)) => {
                    tracing::warn!("cannot listen for both SIGINT and SIGTERM: {error}");
                    only.recv().await;
                }
                (Err(error), Err(_)) => {
                    tracing::warn!("cannot listen for signals: {error}");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
