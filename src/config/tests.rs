//! Loading, merging and validating whole configurations: files, clusters, environment.

use super::*;

// For unit tests elsewhere in the crate too.
impl Config {
    /// Parses `text` as if read from `test.ini`, with `environment` set: for unit tests.
    pub(crate) fn for_test(
        text: &str,
        environment: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let environment = environment
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()));
        Config::from_ini(text, Path::new("test.ini"), environment)
    }
}

fn load(text: &str, environment: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::for_test(text, environment)
}

#[test]
fn python_tool_file_is_accepted() {
    let text = "[default]\nbootstrap.servers=pkc-1.example.com:9092\nsecurity.protocol=SASL_SSL\n\
        sasl.mechanisms=PLAIN\nsasl.username=KEY\nsasl.password=p\"a'ss\\word\n\n\
        [producer]\nacks=all\n\n[consumer]\nauto.offset.reset=latest\n\n\
        [admin]\nlog.level=INFO\nheartbeat.topic=hb\ncheck.topic.period.seconds=60\n\
        check.metadata.period.seconds=30\ncheck.connectivity.period.seconds=15\n\
        check.consumer.group.period.seconds=60\nproduce.period.seconds=2\n\
        metrics.listener.host=127.0.0.1\nmetrics.listener.port=9100\n";
    let config = load(text, &[]).unwrap();
    assert_eq!(
        config.producer_properties()["sasl.password"],
        "p\"a'ss\\word"
    );
    assert_eq!(config.producer_properties()["acks"], "all");
    assert!(!config.consumer_properties().contains_key("acks"));
    assert_eq!(config.admin.log_level, "info");
    assert_eq!(config.admin.produce_period, Duration::from_secs(2));
    assert_eq!(config.admin.metrics_listener_port, 9100);
}

#[test]
fn environment_overrides_file() {
    let text = "[default]\nbootstrap.servers=a:9092\n[admin]\nheartbeat.topic=from-file\n";
    let config = load(
        text,
        &[
            ("CC_HEARTBEAT__ADMIN__HEARTBEAT_TOPIC", "from-env"),
            ("CC_HEARTBEAT__DEFAULT__BOOTSTRAP_SERVERS", "b:9092"),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    assert_eq!(config.admin.heartbeat_topic, "from-env");
    assert_eq!(config.admin_properties()["bootstrap.servers"], "b:9092");
}

#[test]
fn errors_name_file_section_and_key() {
    let error = load("[admin]\nproduce.period.seconds=fast\n", &[]).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("test.ini"), "{message}");
    assert!(
        message.contains("[admin] produce.period.seconds"),
        "{message}"
    );

    let error = load("[admin]\nno.such.key=1\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("[admin] no.such.key: unknown key"),
        "{error}"
    );

    let error = load("[default]\nno.such.property=1\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("[default] no.such.property"), "{error}");

    let error = load("[producer]\nacks=sometimes\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("[producer] acks"), "{error}");

    let error = load("[admin]\nmetrics.listener.port=70000\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("metrics.listener.port"), "{error}");

    let error = load("[kafka]\nx=1\n", &[]).unwrap_err().to_string();
    assert!(error.contains("unknown section [kafka]"), "{error}");

    let error = load("", &[("CC_HEARTBEAT__ADMIN__PRODUCE_PERIOD_SECONDS", "-1")])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("CC_HEARTBEAT__ADMIN__PRODUCE_PERIOD_SECONDS")
            && error.contains("produce.period.seconds"),
        "{error}"
    );
}

#[test]
fn sasl_without_password_is_rejected() {
    let text = "[default]\nsecurity.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\nsasl.username=u\n";
    let error = load(text, &[]).unwrap_err().to_string();
    assert!(
        error.contains("[default] sasl.password: required"),
        "{error}"
    );
}

#[test]
fn message_timeout_must_be_below_the_lost_deadline() {
    let error = load("[producer]\nmessage.timeout.ms=60000\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("[producer] message.timeout.ms"), "{error}");
}

#[test]
fn secrets_are_masked() {
    let text = "[default]\nsasl.username=u\nsasl.password=hunter2secret\nssl.key.password=k3y\n";
    let config = load(text, &[]).unwrap();
    let rendered = config.render_masked();
    assert!(
        !rendered.contains("hunter2secret") && !rendered.contains("k3y"),
        "{rendered}"
    );
    assert!(rendered.contains("sasl.password = ********"));
    assert!(!format!("{config:?}").contains("hunter2secret"));
}

#[test]
fn delivery_timeout_alias_is_checked_too() {
    let error = load("[producer]\ndelivery.timeout.ms=30000\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("[producer] delivery.timeout.ms"), "{error}");
}

#[test]
fn python_escaped_percent_is_warned_about() {
    let config = load("[default]\nsasl.password = a%%b\n", &[]).unwrap();
    assert_eq!(config.producer_properties()["sasl.password"], "a%%b");
    assert_eq!(config.warnings.len(), 1);
    assert!(!config.warnings[0].contains("a%%b"));
}

#[test]
fn multi_line_values_cannot_pose_as_keys_when_shown() {
    let config = load("[default]\nclient.rack = a\n  sasl.password = x\n", &[]).unwrap();
    let rendered = config.render_masked();
    assert!(
        rendered.contains("client.rack = a\n    sasl.password = x"),
        "{rendered}"
    );
    let reparsed = super::ini::parse(&rendered).unwrap();
    assert!(reparsed[0].1.iter().all(|(key, _)| key != "sasl.password"));
}

#[test]
fn multi_line_admin_values_cannot_pose_as_keys_when_shown() {
    let config = load(
        "[admin]\nconsumer.group.names = a\n  sasl.password = x\n",
        &[],
    )
    .unwrap();
    let rendered = config.render_masked();
    assert!(
        !rendered
            .lines()
            .any(|line| line.starts_with("sasl.password")),
        "{rendered}"
    );
}

#[test]
fn secrets_in_the_environment_are_masked() {
    let config = load(
        "",
        &[("CC_HEARTBEAT__DEFAULT__SASL_PASSWORD", "from-env-secret")],
    )
    .unwrap();
    assert!(!config.render_masked().contains("from-env-secret"));
    assert_eq!(
        config.admin_properties()["sasl.password"],
        "from-env-secret"
    );
}

#[test]
fn empty_environment_variables_are_unset() {
    let config = load(
        "[default]\nsecurity.protocol = SSL\n",
        &[("CC_HEARTBEAT__DEFAULT__SECURITY_PROTOCOL", "")],
    )
    .unwrap();
    assert_eq!(config.admin_properties()["security.protocol"], "SSL");
}

fn clusters(text: &str, environment: &[(&str, &str)]) -> Result<Vec<Config>, ConfigError> {
    let environment = environment
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()));
    Config::clusters_from_ini(text, Path::new("test.ini"), environment)
}

const TWO_CLUSTERS: &str = "[default]\nsecurity.protocol = SASL_SSL\nsasl.mechanisms = PLAIN\n\
    sasl.username = shared\nsasl.password = shared-secret\n\
    [admin]\nproduce.period.seconds = 2\nmetrics.listener.port = 9100\n\
    [cluster:east]\nbootstrap.servers = east:9092\n\
    [cluster:west]\nbootstrap.servers = west:9092\nsasl.username = west-key\n\
    [cluster:west:admin]\nheartbeat.topic = west-heartbeat\n\
    [cluster:west:producer]\nacks = 1\n";

#[test]
fn clusters_inherit_the_top_level_and_override_it() {
    let configs = clusters(TWO_CLUSTERS, &[]).unwrap();
    let names: Vec<&str> = configs.iter().map(|config| config.name.as_str()).collect();
    assert_eq!(names, vec!["east", "west"]);
    let (east, west) = (&configs[0], &configs[1]);
    assert_eq!(east.admin_properties()["bootstrap.servers"], "east:9092");
    assert_eq!(east.admin_properties()["sasl.username"], "shared");
    assert_eq!(west.admin_properties()["sasl.username"], "west-key");
    assert_eq!(west.admin_properties()["sasl.password"], "shared-secret");
    assert_eq!(east.admin.heartbeat_topic, "cc-heartbeat");
    assert_eq!(west.admin.heartbeat_topic, "west-heartbeat");
    assert_eq!(
        west.admin.produce_period,
        Duration::from_secs(2),
        "inherited [admin]"
    );
    assert_eq!(west.producer_properties()["acks"], "1");
    assert!(!east.producer_properties().contains_key("acks"));
    assert!(west.render_masked().contains("[cluster:west:admin]"));
    assert!(!west.render_masked().contains("shared-secret"));
}

#[test]
fn a_file_without_cluster_sections_is_one_cluster_named_default() {
    let configs = clusters("[default]\nbootstrap.servers = a:9092\n", &[]).unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].name, DEFAULT_CLUSTER);
}

#[test]
fn environment_overrides_work_per_cluster() {
    let configs = clusters(
        TWO_CLUSTERS,
        &[
            (
                "CC_HEARTBEAT__CLUSTER_EAST__DEFAULT__SASL_PASSWORD",
                "east-secret",
            ),
            (
                "CC_HEARTBEAT__CLUSTER_WEST__ADMIN__HEARTBEAT_TOPIC",
                "from-env",
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        configs[0].admin_properties()["sasl.password"],
        "east-secret"
    );
    assert_eq!(
        configs[1].admin_properties()["sasl.password"],
        "shared-secret"
    );
    assert_eq!(configs[1].admin.heartbeat_topic, "from-env");
}

#[test]
fn errors_name_the_cluster_section_and_key() {
    let text = format!("{TWO_CLUSTERS}[cluster:east:admin]\nproduce.period.seconds = soon\n");
    let error = clusters(&text, &[]).unwrap_err().to_string();
    assert!(
        error.contains("[cluster:east:admin] produce.period.seconds"),
        "{error}"
    );

    let text = format!("{TWO_CLUSTERS}[cluster:east:admin]\nmetrics.listener.port = 1\n");
    let error = clusters(&text, &[]).unwrap_err().to_string();
    assert!(
        error.contains("[cluster:east:admin] metrics.listener.port: applies to the whole process"),
        "{error}"
    );

    let text = format!("{TWO_CLUSTERS}[cluster:east]\nacks = sometimes\n");
    let error = clusters(
        &text.replace("[cluster:east]\nbootstrap.servers = east:9092\n", ""),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("[cluster:east] acks"), "{error}");

    let error = clusters("[cluster:East]\nbootstrap.servers = a:1\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown section [cluster:East]"), "{error}");
    let error = clusters("[cluster:a:default]\nx = 1\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unknown section [cluster:a:default]"),
        "{error}"
    );
}

#[test]
fn per_cluster_variables_need_a_declared_cluster() {
    let error = clusters(
        TWO_CLUSTERS,
        &[("CC_HEARTBEAT__CLUSTER_EAT__DEFAULT__SASL_PASSWORD", "x")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("CC_HEARTBEAT__CLUSTER_EAT__DEFAULT__SASL_PASSWORD")
            && error.contains("no cluster `eat`")
            && error.contains("declared: east, west"),
        "{error}"
    );
    // Without cluster sections, the one cluster is `default`.
    let configs = clusters(
        "[default]\nbootstrap.servers = a:9092\n",
        &[(
            "CC_HEARTBEAT__CLUSTER_DEFAULT__DEFAULT__SASL_USERNAME",
            "key",
        )],
    )
    .unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].admin_properties()["sasl.username"], "key");
    assert!(clusters(
        "[default]\nbootstrap.servers = a:9092\n",
        &[("CC_HEARTBEAT__CLUSTER_PROD__DEFAULT__SASL_USERNAME", "key")],
    )
    .is_err());
}

#[test]
fn a_schema_registry_section_is_read_checked_and_shown_masked() {
    let config = Config::for_test(
        "[schema_registry]\nurl = https://registry.example:8081/\nbasic.auth.user.info = key:very-secret\n",
        &[],
    )
    .unwrap();
    let registry = config.schema_registry.as_ref().unwrap();
    assert_eq!(registry.url, "https://registry.example:8081");
    assert!(registry.verify_hostname);
    let shown = config.render_masked();
    assert!(
        shown.contains("[schema_registry]")
            && shown.contains("url = https://registry.example:8081")
    );
    assert!(!shown.contains("very-secret") && !format!("{config:?}").contains("very-secret"));
    assert!(Config::for_test("", &[]).unwrap().schema_registry.is_none());
    for (ini, expected) in [
        ("[schema_registry]\nbasic.auth.user.info = a:b\n", "url"),
        ("[schema_registry]\nurl = ftp://registry\n", "http"),
        (
            "[schema_registry]\nurl = https://key:secret@registry\n",
            "basic.auth.user.info",
        ),
        (
            "[schema_registry]\nurl = https://key:sec/ret@registry\n",
            "credentials",
        ),
        (
            "[schema_registry]\nurl = https://registry\nbasic.auth.user.info = nocolon\n",
            "user:password",
        ),
        (
            "[schema_registry]\nurl = https://registry\nschema.registry.url = x\n",
            "unknown key",
        ),
    ] {
        let error = Config::for_test(ini, &[]).unwrap_err().to_string();
        assert!(error.contains(expected), "{ini}: {error}");
        assert!(!error.contains("secret"), "{error}");
    }
}

#[test]
fn credentials_are_read_from_their_files_and_the_files_watched() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    let username = dir.path().join("username");
    std::fs::write(&password, "s3cret-from-file\n").unwrap();
    std::fs::write(&username, "API-KEY").unwrap();
    let text = format!(
        "[default]\nsecurity.protocol = SASL_SSL\nsasl.mechanisms = PLAIN\n\
         sasl.username.file = {}\nsasl.password.file = {}\n",
        username.display(),
        password.display()
    );
    let config = load(&text, &[]).unwrap();
    let properties = config.producer_properties();
    assert_eq!(properties["sasl.password"], "s3cret-from-file");
    assert_eq!(properties["sasl.username"], "API-KEY");
    assert!(!properties.contains_key("sasl.password.file"));
    assert_eq!(
        config.secret_files,
        vec![username.clone(), password.clone()]
    );
    assert!(!config.render_masked().contains("s3cret-from-file"));

    let both = format!("{text}sasl.password = inline\n");
    let error = load(&both, &[]).unwrap_err().to_string();
    assert!(
        error.contains("[default] sasl.password.file: set sasl.password or sasl.password.file"),
        "{error}"
    );
    std::fs::write(&password, "\n").unwrap();
    let error = load(&text, &[]).unwrap_err().to_string();
    assert!(error.contains("is empty"), "{error}");
    std::fs::remove_file(&password).unwrap();
    let error = load(&text, &[]).unwrap_err().to_string();
    assert!(
        error.contains("[default] sasl.password.file: cannot read"),
        "{error}"
    );
}

#[test]
fn oauth_keys_are_the_exporters_and_its_client_secret_file_is_watched() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "oauth-s3cret\n").unwrap();
    let text = format!(
        "[default]\nbootstrap.servers = b:9092\nsecurity.protocol = SASL_SSL\n\
         sasl.mechanisms = OAUTHBEARER\nsasl.oauthbearer.method = oidc\n\
         sasl.oauthbearer.token.endpoint.url = https://idp.example.com/oauth2/token\n\
         sasl.oauthbearer.client.id = exporter\nsasl.oauthbearer.client.secret.file = {}\n\
         sasl.oauthbearer.extensions = logicalCluster=lkc-1,identityPoolId=pool-1\n",
        secret.display()
    );
    let config = load(&text, &[]).unwrap();
    let settings = config.oauth.as_ref().expect("OAuth settings");
    assert_eq!(settings.client_secret, "oauth-s3cret");
    assert_eq!(config.secret_files, vec![secret.clone()]);
    // librdkafka (built without libcurl) never sees them: it would refuse them.
    for properties in [
        config.producer_properties(),
        config.consumer_properties(),
        config.admin_properties(),
    ] {
        assert!(
            properties
                .keys()
                .all(|key| !key.starts_with("sasl.oauthbearer.")),
            "{properties:?}"
        );
        assert_eq!(properties["sasl.mechanisms"], "OAUTHBEARER");
    }
    let shown = config.render_masked();
    assert!(
        shown.contains("sasl.oauthbearer.client.id = exporter"),
        "{shown}"
    );
    assert!(!shown.contains("oauth-s3cret"), "{shown}");
    assert!(config.secret_values().contains(&"oauth-s3cret".to_string()));
    // The environment sets it too, as every key.
    let inline = text.replace(
        &format!(
            "sasl.oauthbearer.client.secret.file = {}\n",
            secret.display()
        ),
        "",
    );
    let config = load(
        &inline,
        &[(
            "CC_HEARTBEAT__DEFAULT__SASL_OAUTHBEARER_CLIENT_SECRET",
            "from-env",
        )],
    )
    .unwrap();
    assert_eq!(config.oauth.unwrap().client_secret, "from-env");
    // Demo mode signs in with nothing.
    assert!(load(&text, &[])
        .unwrap()
        .for_demo("127.0.0.1:1")
        .oauth
        .is_none());
}

#[test]
fn a_replica_names_another_configured_cluster_and_no_circle() {
    let text = "[default]\nbootstrap.servers = b:9092\n\
                [cluster:primary]\n[cluster:dr]\n[cluster:dr2]\n\
                [cluster:dr:admin]\nmirror.of = primary\nmirror.topic = primary.cc-heartbeat\n\
                [cluster:dr2:admin]\nmirror.of = dr\n";
    let configs = Config::clusters_from_ini(text, Path::new("test.ini"), Vec::new()).unwrap();
    let dr = configs.iter().find(|config| config.name == "dr").unwrap();
    let primary = configs
        .iter()
        .find(|config| config.name == "primary")
        .unwrap();
    assert_eq!(dr.admin.mirror_of.as_deref(), Some("primary"));
    assert_eq!(
        dr.mirror_topic(&configs).as_deref(),
        Some("primary.cc-heartbeat")
    );
    assert_eq!(dr.first_source(&configs).unwrap().name, "primary");
    assert_eq!(
        dr.admin.mirror_lost_after,
        std::time::Duration::from_secs(120)
    );
    let dr2 = configs.iter().find(|config| config.name == "dr2").unwrap();
    // A chain: dr2 reads the primary's heartbeats, by default under the name they have on
    // dr (Cluster Linking keeps names), measured from the primary's send.
    assert_eq!(
        dr2.mirror_topic(&configs).as_deref(),
        Some("primary.cc-heartbeat")
    );
    assert_eq!(dr2.first_source(&configs).unwrap().name, "primary");
    assert_eq!(primary.mirror_topic(&configs), None);
    assert!(primary.first_source(&configs).is_none());
    let pipelines = Config::pipelines(&configs);
    assert_eq!(pipelines.len(), 2, "{pipelines:?}");
    assert!(
        pipelines[0].starts_with("pipeline primary -> dr:")
            || pipelines[1].starts_with("pipeline primary -> dr:")
    );
    assert!(
        pipelines.iter().any(|line| line
            == "pipeline dr -> dr2: the heartbeats of primary read from topic \
                `primary.cc-heartbeat` on dr2 (through dr, measured from primary's send), lost \
                after 120 s"),
        "{pipelines:?}"
    );
    // dr and dr2 monitored without the primary: dr2's chain starts where nothing is sent.
    let headless: Vec<Config> = configs
        .iter()
        .filter(|config| config.name != "primary")
        .cloned()
        .collect();
    let warnings = Config::start_warnings(&headless);
    assert!(
        warnings.iter().any(|warning| warning.contains(
            "cluster dr2 mirrors dr, a replica whose chain starts at a cluster this instance \
             does not monitor"
        )),
        "{warnings:?}"
    );
    // Only dr2 monitored here: its source is not, and that is said.
    let alone: Vec<Config> = configs
        .into_iter()
        .filter(|config| config.name == "dr2")
        .collect();
    let warnings = Config::start_warnings(&alone);
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("mirrors dr, which this instance does not monitor")),
        "{warnings:?}"
    );

    for (text, expected) in [
        (
            "[default]\nbootstrap.servers = b:9092\n[cluster:dr]\n[cluster:dr:admin]\nmirror.of = dr\n",
            "[cluster:dr:admin] mirror.of: names `dr`, this cluster itself",
        ),
        (
            "[default]\nbootstrap.servers = b:9092\n[cluster:dr]\n[cluster:dr:admin]\nmirror.of = primary\n",
            "[cluster:dr:admin] mirror.of: names `primary`, which is not a configured cluster (configured: dr)",
        ),
        (
            "[default]\nbootstrap.servers = b:9092\n[cluster:a]\n[cluster:b]\n\
             [cluster:a:admin]\nmirror.of = b\n[cluster:b:admin]\nmirror.of = a\n",
            "closes a circle of mirrors (a -> b -> a)",
        ),
        (
            "[default]\nbootstrap.servers = b:9092\n[admin]\nmirror.of = Primary\n",
            "[admin] mirror.of: `Primary` is not a cluster name",
        ),
    ] {
        let error = Config::clusters_from_ini(text, Path::new("test.ini"), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
}
