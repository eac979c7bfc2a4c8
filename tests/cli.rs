//! The real binary: configuration errors, secrets, demo mode, signals.

mod support;

use std::time::{Duration, Instant};

use support::*;

const SECRET: &str = "Sup3r-S3cret-Value!";

fn run_to_end(args: &[&str]) -> (i32, String, String) {
    let output = binary().args(args).output().expect("run binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The binary in demo mode on a free loopback port, with `args` and `environment` added.
fn start_demo(args: &[&str], environment: &[(&str, &str)]) -> Process {
    let mut all_args = vec!["--demo", "--config", "/no/such/config.ini"];
    all_args.extend_from_slice(args);
    let mut all_environment = vec![
        ("CC_HEARTBEAT__ADMIN__METRICS_LISTENER_HOST", "127.0.0.1"),
        ("CC_HEARTBEAT__ADMIN__METRICS_LISTENER_PORT", "0"),
    ];
    all_environment.extend_from_slice(environment);
    Process::start(&all_args, &all_environment)
}

/// A loopback port nothing listens on: connections to it are refused.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A configuration in `dir` of a cluster that refuses every connection.
fn refusing_cluster_config(dir: &std::path::Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "[default]\nbootstrap.servers = 127.0.0.1:{}\n",
            closed_port()
        ),
    )
}

#[test]
fn bad_config_exits_2_naming_file_section_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[admin]\nproduce.period.seconds = often\n", "[admin] produce.period.seconds"),
        ("[admin]\nproduce.periods = 1\n", "[admin] produce.periods: unknown key"),
        ("[default]\nbootstrap.server = x:9092\n", "[default] bootstrap.server"),
        ("[producer]\nacks = maybe\n", "[producer] acks"),
        (
            "[default]\nsecurity.protocol = SASL_SSL\nsasl.mechanisms = PLAIN\nsasl.username = key\n",
            "[default] sasl.password: required",
        ),
        ("[admin]\nmetrics.listener.port = 99999\n", "[admin] metrics.listener.port"),
        ("[admin\n", "line 1"),
    ];
    for (text, expected) in cases {
        let path = write_config(dir.path(), text);
        // The same loading path as a real start; --check-config keeps a regression from
        // starting the exporter and hanging the test.
        let (code, stdout, stderr) =
            run_to_end(&["--check-config", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{text:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{text:?}: expected {expected:?} in {stderr:?}"
        );
        assert!(stderr.contains("config.ini"), "names the file: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    }
    let (code, _, stderr) = run_to_end(&["--config", "/no/such/file.ini"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/no/such/file.ini"), "{stderr}");
    // A missing file says how to start, not only that it is missing.
    for how in ["config.example.ini", "--config PATH", "--demo"] {
        assert!(stderr.contains(how), "{stderr}");
    }
}

#[test]
fn demo_mode_with_a_cluster_configured_too_is_refused_naming_both() {
    let output = binary()
        .args(["--config", "/no/such/config.ini"])
        .env("CC_HEARTBEAT_DEMO", "true")
        .env(
            "CC_HEARTBEAT__DEFAULT__BOOTSTRAP_SERVERS",
            "pkc-1.example.com:9092",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CC_HEARTBEAT_DEMO=true"), "{stderr}");
    assert!(
        stderr.contains("CC_HEARTBEAT__DEFAULT__BOOTSTRAP_SERVERS"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[default]\nbootstrap.servers = a:9092\n");
    let (code, _, stderr) = run_to_end(&["--demo", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--demo") && stderr.contains("[default] bootstrap.servers"),
        "{stderr}"
    );
}

#[test]
fn a_variable_for_an_undeclared_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[cluster:prod]\nbootstrap.servers = a:9092\n");
    let output = binary()
        .args(["--check-config", "--config", path.to_str().unwrap()])
        .env("CC_HEARTBEAT__CLUSTER_PORD__DEFAULT__SASL_PASSWORD", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("CC_HEARTBEAT__CLUSTER_PORD__DEFAULT__SASL_PASSWORD")
            && stderr.contains("declared: prod"),
        "{stderr}"
    );
}

#[test]
fn environment_variable_errors_name_the_variable() {
    let output = binary()
        .args(["--check-config", "--config", "/dev/null"])
        .env("CC_HEARTBEAT__ADMIN__CHECK_METADATA_PERIOD_SECONDS", "zero")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("CC_HEARTBEAT__ADMIN__CHECK_METADATA_PERIOD_SECONDS"),
        "{stderr}"
    );
    assert!(stderr.contains("check.metadata.period.seconds"), "{stderr}");
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "[default]\nbootstrap.servers = b:9092\nsecurity.protocol = SASL_SSL\nsasl.mechanisms = PLAIN\n\
             sasl.username = key\nsasl.password = {SECRET}\n[admin]\nheartbeat.topic = hb\n"
        ),
    );
    let output = binary()
        .args(["--check-config", "--config", path.to_str().unwrap()])
        .env("CC_HEARTBEAT__ADMIN__PRODUCE_PERIOD_SECONDS", "2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert!(stdout.contains("sasl.password = ********"), "{stdout}");
    assert!(stdout.contains("heartbeat.topic = hb"), "{stdout}");
    assert!(
        stdout.contains("produce.period.seconds = 2"),
        "environment applied: {stdout}"
    );
    assert!(
        stdout.contains("check.metadata.period.seconds = 10"),
        "defaults shown: {stdout}"
    );
    // The clients' effective settings, what cc-heartbeat set or forces marked.
    for line in [
        "#   acks = all    (cc-heartbeat's default)",
        "#   statistics.interval.ms = 15000    (cc-heartbeat's default)",
        "#   isolation.level = read_uncommitted    (forced by cc-heartbeat)",
        "#   sasl.username = key\n",
    ] {
        assert!(stdout.contains(line), "{line:?} missing: {stdout}");
    }
    assert_eq!(
        stdout.lines().last(),
        Some("configuration OK: 1 cluster"),
        "{stdout}"
    );

    let (code, stdout, _) = run_to_end(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_metrics_or_readiness() {
    // The mock cluster has no SASL: authentication fails, and the password is in play throughout.
    let mock = mock_cluster(1, "cc-heartbeat", 1);
    let dir = tempfile::tempdir().unwrap();
    let text = test_ini(
        &mock.bootstrap_servers(),
        "cc-heartbeat",
        "log.level = debug",
    )
    .replace(
        "[producer]",
        &format!(
            "security.protocol = SASL_PLAINTEXT\nsasl.mechanisms = PLAIN\nsasl.username = key\n\
                 sasl.password = {SECRET}\ndebug = security,broker,conf\n[producer]"
        ),
    );
    let path = write_config(dir.path(), &text);
    let mut process = Process::start(&["--config", path.to_str().unwrap()], &[]);
    let address = process.address();
    let ready = wait_for_ready_at(
        address,
        "named SASL",
        Duration::from_secs(20),
        |status, body| status == 503 && body.contains("SASL"),
    )
    .await;
    let (_, metrics, _) = get(address, "/metrics").await;
    let (elapsed, code) = process.terminate();
    let log = process.rest_of_log();
    assert!(elapsed < Duration::from_secs(5));
    assert_eq!(code, Some(0));
    assert!(
        log.to_lowercase().contains("sasl"),
        "the log says what failed:\n{log}"
    );
    assert!(
        log.contains("librdkafka"),
        "librdkafka's own lines are routed into the log:\n{log}"
    );
    for (what, text) in [("log", &log), ("metrics", &metrics), ("ready", &ready)] {
        assert!(!text.contains(SECRET), "secret in {what}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_serves_live_metrics_and_stops_on_sigterm() {
    let mut process = start_demo(&[], &[]);
    let address = process.address();
    let start = Instant::now();
    loop {
        let metrics = Metrics::parse(&get(address, "/metrics").await.1);
        let partitions = metrics
            .select("heartbeat_messages_consumed_total", &[])
            .filter(|sample| sample.value >= 1.0)
            .count();
        if partitions == 3 && metrics.sum("heartbeat_brokers", &[]) == 3.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no live data:\n{}",
            metrics.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (elapsed, code) = process.terminate();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(code, Some(0));
    // The log says it stopped, and how long that took, after it said it was stopping.
    let log = process.rest_of_log();
    let stopping = log.find("stopping").expect("\"stopping\" logged");
    let stopped = log[stopping..]
        .lines()
        .find(|line| line.contains("stopped in "))
        .unwrap_or_else(|| panic!("no \"stopped in\" after \"stopping\":\n{log}"));
    let seconds: f64 = stopped
        .split("stopped in ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {stopped:?}"));
    assert!(
        seconds <= elapsed.as_secs_f64() + 0.1,
        "{stopped} after {elapsed:?}"
    );
}

#[test]
fn sigterm_during_an_outage_exits_within_5_seconds() {
    let closed_port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let text = test_ini(&format!("127.0.0.1:{closed_port}"), "cc-heartbeat", "").replace(
        "check.metadata.timeout.seconds = 1",
        "check.metadata.timeout.seconds = 30",
    );
    let path = write_config(dir.path(), &text);
    let mut process = Process::start(&["--config", path.to_str().unwrap()], &[]);
    // A metadata request with a 30 s timeout is in flight when the signal comes.
    process.wait_for_line("cc-heartbeat started", Duration::from_secs(20));
    // The tasks are running: the connection check, started with the metadata request, failed
    // (its line may come before the start-up's).
    if !process.logged("connection check failed") {
        process.wait_for_line("connection check failed", Duration::from_secs(20));
    }
    let (elapsed, code) = process.terminate();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(code, Some(0));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut process = start_demo(&[], &[("CC_HEARTBEAT__ADMIN__LOG_FORMAT", "json")]);
    process.wait_for_line("reading heartbeat partitions", Duration::from_secs(20));
    let (_, code) = process.terminate();
    assert_eq!(code, Some(0));
    let log = process.rest_of_log();
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            event["level"].is_string() && event["message"].is_string(),
            "{line}"
        );
    }
    assert!(
        log.contains("\"cluster_id\""),
        "start-up names the cluster: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_heartbeats_in_flight_to_dead_brokers_exits_within_5_seconds() {
    let mock = mock_cluster(3, "cc-heartbeat", 3);
    let dir = tempfile::tempdir().unwrap();
    let text = test_ini(&mock.bootstrap_servers(), "cc-heartbeat", "")
        .replace("message.timeout.ms = 2000", "message.timeout.ms = 3000")
        .replace(
            "heartbeat.lost.after.seconds = 4",
            "heartbeat.lost.after.seconds = 10",
        );
    let path = write_config(dir.path(), &text);
    let mut process = Process::start(&["--config", path.to_str().unwrap()], &[]);
    let address = process.address();
    let start = Instant::now();
    while Metrics::parse(&get(address, "/metrics").await.1)
        .sum("heartbeat_messages_consumed_total", &[])
        < 6.0
    {
        assert!(start.elapsed() < Duration::from_secs(20), "no heartbeats");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for broker in 1..=3 {
        mock.broker_down(broker).unwrap();
    }
    wait_for_scrape(
        address,
        "heartbeats stuck in flight",
        Duration::from_secs(20),
        |m| m.sum("heartbeat_messages_in_flight", &[]) >= 3.0,
    )
    .await;
    let (elapsed, code) = process.terminate();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_control_breaks_the_embedded_cluster_and_healthcheck_answers() {
    let mut process = start_demo(
        &[],
        &[("CC_HEARTBEAT__ADMIN__CHECK_METADATA_PERIOD_SECONDS", "1")],
    );
    let address = process.address();
    process.wait_for_line("reading heartbeat partitions", Duration::from_secs(20));
    // The landing page says how to break the demo, with this server's address.
    let (status, landing, _) = get(address, "/").await;
    assert_eq!(status, 200);
    assert!(
        landing.contains("Demo mode")
            && landing.contains(&format!(
                "curl -X POST http://{address}/demo/brokers/2/down"
            )),
        "{landing}"
    );
    let client = reqwest::Client::new();
    let post = |path: &str| client.post(format!("http://{address}{path}")).send();
    assert_eq!(post("/demo/brokers/2/down").await.unwrap().status(), 200);
    assert_eq!(post("/demo/brokers/9/down").await.unwrap().status(), 404);
    assert_eq!(
        post("/demo/brokers/1/delay?ms=150").await.unwrap().status(),
        200
    );
    assert_eq!(
        post("/demo/brokers/1/delay?ms=soon")
            .await
            .unwrap()
            .status(),
        400
    );
    let start = Instant::now();
    loop {
        let metrics = Metrics::parse(&get(address, "/metrics").await.1);
        if metrics.sum("heartbeat_broker_missing", &[("broker", "2")]) == 1.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "broker 2 never went missing:\n{}",
            metrics.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(post("/demo/brokers/2/up").await.unwrap().status(), 200);

    let healthy = binary()
        .args(["healthcheck", "--address", &address.to_string()])
        .output()
        .unwrap();
    assert!(healthy.status.success(), "{healthy:?}");
    let (_, code) = process.terminate();
    assert_eq!(code, Some(0));
    let unhealthy = binary()
        .args(["healthcheck", "--address", &address.to_string()])
        .output()
        .unwrap();
    assert_eq!(unhealthy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unhealthy.stderr).contains("unhealthy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_control_is_not_served_outside_demo_mode() {
    let mock = mock_cluster(1, "cc-heartbeat", 1);
    let running = Running::start(test_config(&mock.bootstrap_servers(), "cc-heartbeat", "")).await;
    let response = reqwest::Client::new()
        .post(format!("http://{}/demo/brokers/1/down", running.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_can_run_several_clusters() {
    let mut process = start_demo(&["--demo-clusters", "2"], &[]);
    let address = process.address();
    let start = Instant::now();
    loop {
        let metrics = Metrics::parse(&get(address, "/metrics").await.1);
        let measured = |cluster: &str| {
            metrics.sum("heartbeat_messages_consumed_total", &[("cluster", cluster)]) >= 3.0
        };
        if measured("demo_1") && measured("demo_2") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no data for both:\n{}",
            metrics.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body, _) = get(address, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("demo_1") && body.contains("demo_2"), "{body}");
    let (_, code) = process.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn the_global_options_go_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let path = refusing_cluster_config(dir.path());
    let path = path.to_str().unwrap();
    // The cluster refuses connections: the check fails (1), whichever side --config is on;
    // an option it did not take would exit 2, the code of a bad configuration.
    for args in [
        vec!["check", "--config", path, "--timeout", "1"],
        vec!["--config", path, "check", "--timeout", "1"],
        vec![
            "check",
            "--timeout",
            "1",
            "--cluster",
            "default",
            "--config",
            path,
        ],
        vec![
            "check",
            "--config",
            path,
            "--timeout",
            "1",
            "--log-level",
            "error",
        ],
    ] {
        let (code, stdout, stderr) = run_to_end(&args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stdout.contains("127.0.0.1"), "{args:?}: {stdout}");
    }
    // With --log-level the one-shot command logs to standard error; without, it does not.
    let (_, _, quiet) = run_to_end(&["check", "--config", path, "--timeout", "1"]);
    assert!(!quiet.contains("ERROR"), "{quiet}");
    let (_, _, logged) = run_to_end(&[
        "check",
        "--config",
        path,
        "--timeout",
        "1",
        "--log-level",
        "debug",
    ]);
    assert!(
        logged.contains("DEBUG") || logged.contains("ERROR"),
        "{logged}"
    );
    // A bad value of a global option is refused naming the option.
    let (code, _, stderr) = run_to_end(&["check", "--config", path, "--log-level", "loud"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("command-line option --log-level") && stderr.contains("log.level"),
        "{stderr}"
    );
    let (code, _, stderr) = run_to_end(&["bundle", "--config", path, "--cluster", "prod"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--cluster prod: no such cluster"),
        "{stderr}"
    );
    let output = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_to_end(&[
        "bundle",
        "--timeout",
        "1",
        "--output",
        output.path().to_str().unwrap(),
        "--config",
        path,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.trim_end().ends_with(".tar.gz"), "{stdout}");
    // `check --help` lists the options that apply to every command.
    for subcommand in ["check", "bundle"] {
        let (code, help, _) = run_to_end(&[subcommand, "--help"]);
        assert_eq!(code, 0);
        for option in [
            "--config",
            "--cluster",
            "--demo",
            "--log-level",
            "--log-format",
        ] {
            assert!(
                help.contains(option),
                "{subcommand} --help lacks {option}:\n{help}"
            );
        }
    }
}

#[test]
fn a_cluster_without_bootstrap_servers_is_refused_naming_the_section() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("", "[default] bootstrap.servers: required"),
        ("[admin]\nheartbeat.topic = hb\n", "[default] bootstrap.servers: required"),
        (
            "[producer]\nbootstrap.servers = b:9092\n",
            "[default] bootstrap.servers: required here: it is set in [producer] only",
        ),
        (
            "[cluster:prod]\nbootstrap.servers = a:9092\n[cluster:test:admin]\nheartbeat.topic = t\n",
            "[cluster:test] bootstrap.servers: required",
        ),
    ] {
        let path = write_config(dir.path(), text);
        for args in [
            vec!["--check-config", "--config", path.to_str().unwrap()],
            vec!["check", "--config", path.to_str().unwrap()],
        ] {
            let started = Instant::now();
            let (code, stdout, stderr) = run_to_end(&args);
            assert_eq!(code, 2, "{text:?} {args:?}: {stdout} {stderr}");
            assert!(stderr.contains(expected), "{text:?}: {stderr}");
            assert!(stderr.contains("config.ini"), "names the file: {stderr}");
            // Refused at load: no connection is tried.
            assert!(started.elapsed() < Duration::from_secs(10));
        }
    }
    // The demo brings its own cluster: no bootstrap.servers needed there.
    let path = write_config(dir.path(), "[admin]\nheartbeat.topic = hb\n");
    let (code, stdout, stderr) = run_to_end(&[
        "--demo",
        "--check-config",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
}

/// Runs the binary with `args`, its standard output a pipe whose reader is already gone.
fn run_into_a_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    binary()
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = refusing_cluster_config(dir.path());
    let path = path.to_str().unwrap();
    let output_dir = dir.path().to_str().unwrap();
    for (args, code) in [
        (vec!["--check-config", "--config", path], 0),
        (
            vec!["check", "--json", "--timeout", "1", "--config", path],
            1,
        ),
        (vec!["check", "--timeout", "1", "--config", path], 1),
        (
            vec![
                "bundle",
                "--timeout",
                "1",
                "--output",
                output_dir,
                "--config",
                path,
            ],
            0,
        ),
        (vec!["--help"], 0),
        (vec!["--version"], 0),
    ] {
        let output = run_into_a_closed_pipe(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_gives_every_warning_a_start_gives() {
    let dir = tempfile::tempdir().unwrap();
    let closed_port = closed_port();
    // A configuration carried over from the original tool: a `%%` ConfigParser read as `%`,
    // hour-long check periods, and a batching delay the heartbeat producer ignores.
    let path = write_config(
        dir.path(),
        &format!(
            "[default]\nbootstrap.servers = 127.0.0.1:{closed_port}\nclient.id = team%%a\n\
             [producer]\nlinger.ms = 5\n\
             [admin]\ncheck.metadata.period.seconds = 3600\ncheck.connectivity.period.seconds = 3600\n\
             check.topic.period.seconds = 3600\ncheck.consumer.group.period.seconds = 3600\n\
             metrics.listener.host = 127.0.0.1\nmetrics.listener.port = 0\n"
        ),
    );
    let path = path.to_str().unwrap();
    let (code, stdout, stderr) = run_to_end(&["--check-config", "--config", path]);
    assert_eq!(code, 0, "{stderr}");
    let printed: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("warning: "))
        .collect();
    for expected in [
        "[default] client.id contains `%%`",
        "[producer] linger.ms is ignored",
        "[admin] check.metadata.period.seconds = 3600: ",
        "[admin] check.connectivity.period.seconds = 3600: ",
        "[admin] check.topic.period.seconds = 3600: ",
        "[admin] check.consumer.group.period.seconds = 3600: ",
    ] {
        assert!(
            printed.iter().any(|warning| warning.starts_with(expected)),
            "{expected:?} not among {printed:#?}"
        );
    }
    // Before the verdict, which counts them.
    assert_eq!(
        stdout.lines().last(),
        Some(format!("configuration OK: 1 cluster, {} warnings", printed.len()).as_str()),
        "{stdout}"
    );
    // A start gives the same warnings, no more, no fewer, before it reaches the cluster.
    let mut process = Process::start(&["--config", path], &[]);
    process.address();
    let (_, code) = process.terminate();
    assert_eq!(code, Some(0));
    let log = process.rest_of_log();
    let logged: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" WARN cc_heartbeat: "))
        .filter_map(|line| {
            line.split_once(" WARN cc_heartbeat: ")
                .map(|(_, warning)| warning)
        })
        .collect();
    assert_eq!(logged, printed, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_moves_every_panel_the_mock_can_serve() {
    let mut process = start_demo(
        &[],
        &[
            (
                "CC_HEARTBEAT__ADMIN__CHECK_SCHEMA_REGISTRY_PERIOD_SECONDS",
                "1",
            ),
            (
                "CC_HEARTBEAT__ADMIN__PROBE_TRANSACTIONS_PERIOD_SECONDS",
                "1",
            ),
        ],
    );
    let address = process.address();
    let metrics = wait_for_scrape(
        address,
        "transactions and the Schema Registry probed",
        Duration::from_secs(30),
        |m| {
            m.sum("heartbeat_transactions_total", &[("outcome", "committed")]) >= 2.0
                && m.sum("heartbeat_transactional_messages_consumed_total", &[]) >= 1.0
                && m.sum("heartbeat_schema_registry_up", &[]) == 1.0
                && ["register", "read_by_id", "latest"]
                    .iter()
                    .all(|operation| {
                        m.sum(
                            "heartbeat_schema_registry_request_latency_seconds_count",
                            &[("operation", operation)],
                        ) >= 1.0
                    })
        },
    )
    .await;
    // Only a registry that answers gives it a series: the contract's line for it is
    // checked here.
    support::contract::assert_pinned(
        &metrics.text,
        &["heartbeat_schema_registry_request_latency_seconds"],
    );
    // The registry can be broken from the demo's control, and comes back.
    let client = reqwest::Client::new();
    let post = |path: &str| client.post(format!("http://{address}{path}")).send();
    assert_eq!(
        post("/demo/schema-registry/down").await.unwrap().status(),
        200
    );
    wait_for_scrape(address, "the registry down", Duration::from_secs(20), |m| {
        m.sum("heartbeat_schema_registry_up", &[]) == 0.0
            && m.sum(
                "heartbeat_schema_registry_failures_total",
                &[("reason", "server")],
            ) >= 1.0
    })
    .await;
    assert_eq!(
        post("/demo/schema-registry/sideways")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        post("/demo/schema-registry/up").await.unwrap().status(),
        200
    );
    wait_for_scrape(address, "the registry back", Duration::from_secs(20), |m| {
        m.sum("heartbeat_schema_registry_up", &[]) == 1.0
    })
    .await;
    let (_, code) = process.terminate();
    assert_eq!(code, Some(0));
}
