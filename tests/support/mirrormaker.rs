//! A real MirrorMaker 2 in dedicated mode, replicating the heartbeat topic of one test
//! cluster to another (its jars from Maven Central: `tests/support/mirrormaker/pom.xml`,
//! fetched into `target/test-tools/mirrormaker` by `scripts/fetch-kafka.sh`, or wherever
//! `MIRRORMAKER_LIBS` points). It reaches both clusters on their PLAINTEXT listener, as their
//! super user. Killed (`kill -9`) and started again as the tests need; it never outlives them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::kafka::{KafkaCluster, Running, LOG4J};

/// How MirrorMaker 2 names the topics it replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `DefaultReplicationPolicy`: `<source alias>.<topic>`.
    Prefixed,
    /// `IdentityReplicationPolicy`: the source's name, as Cluster Linking keeps it.
    Identity,
}

pub struct MirrorMaker {
    dir: PathBuf,
    libs: PathBuf,
    properties: PathBuf,
    running: Option<Running>,
    starts: usize,
}

fn libs() -> PathBuf {
    let libs = std::env::var_os("MIRRORMAKER_LIBS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/mirrormaker"),
        PathBuf::from,
    );
    assert!(
        libs.join("pom.xml").exists(),
        "MirrorMaker 2's jars are not in {}: run scripts/fetch-kafka.sh (scripts/test.sh does), \
         or set MIRRORMAKER_LIBS",
        libs.display()
    );
    libs
}

impl MirrorMaker {
    /// Replicates `topic` from `source` (alias `primary`) to `target` (alias `dr`), named as
    /// `naming` says; started, not yet waited for.
    pub fn start(
        dir: &Path,
        source: &KafkaCluster,
        target: &KafkaCluster,
        topic: &str,
        naming: Naming,
    ) -> MirrorMaker {
        let policy = match naming {
            Naming::Prefixed => "org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
            Naming::Identity => "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
        };
        // One node on the target: every internal topic with one replica. The settings that
        // set its latency: no batching delay on its producer, the default fetch waits.
        let text = format!(
            "clusters = primary, dr\n\
             primary.bootstrap.servers = {source}\n\
             dr.bootstrap.servers = {target}\n\
             primary->dr.enabled = true\n\
             primary->dr.topics = {topic}\n\
             dr->primary.enabled = false\n\
             dr->primary.emit.heartbeats.enabled = false\n\
             replication.policy.class = {policy}\n\
             replication.factor = 1\n\
             offset-syncs.topic.replication.factor = 1\n\
             heartbeats.topic.replication.factor = 1\n\
             checkpoints.topic.replication.factor = 1\n\
             dr.config.storage.replication.factor = 1\n\
             dr.offset.storage.replication.factor = 1\n\
             dr.status.storage.replication.factor = 1\n\
             primary.config.storage.replication.factor = 1\n\
             primary.offset.storage.replication.factor = 1\n\
             primary.status.storage.replication.factor = 1\n\
             sync.group.offsets.enabled = false\n\
             emit.checkpoints.enabled = false\n\
             refresh.topics.interval.seconds = 5\n\
             plugin.discovery = service_load\n\
             dr.plugin.discovery = service_load\n\
             dr.producer.linger.ms = 0\n\
             offset.flush.interval.ms = 10000\n",
            source = source.admin_bootstrap(),
            target = target.admin_bootstrap(),
        );
        let properties = dir.join("mm2.properties");
        std::fs::write(&properties, text).unwrap();
        std::fs::write(dir.join("mm2-log4j2.properties"), LOG4J).unwrap();
        let mut mirror = MirrorMaker {
            dir: dir.to_path_buf(),
            libs: libs(),
            properties,
            running: None,
            starts: 0,
        };
        mirror.launch();
        mirror
    }

    fn launch(&mut self) {
        assert!(self.running.is_none(), "MirrorMaker is already running");
        self.starts += 1;
        let arguments: Vec<String> = [
            "-Xms64m".to_string(),
            "-Xmx256m".to_string(),
            "-XX:+UseSerialGC".to_string(),
            format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("mm2-log4j2.properties").display()
            ),
            "-cp".to_string(),
            format!("{}/*", self.libs.display()),
            "org.apache.kafka.connect.mirror.MirrorMaker".to_string(),
            self.properties.display().to_string(),
            "--clusters".to_string(),
            "dr".to_string(),
        ]
        .into();
        self.running = Some(Running::java(&arguments, &self.log_path()));
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("mirrormaker-{}.log", self.starts))
    }

    /// What this run of MirrorMaker has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills it (`kill -9`), as a crash would.
    pub fn kill(&mut self) {
        let running = self.running.take().expect("MirrorMaker is running");
        running.signal("-KILL", "MirrorMaker");
    }

    /// Starts it again: it resumes from the offsets it stored on the target.
    pub fn restart(&mut self) {
        self.launch();
    }

    /// Waits until its log says its source connector runs, or panics with the log.
    pub fn wait_until_replicating(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if log.contains("MirrorSourceConnector") && log.contains("started") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "MirrorMaker did not start replicating within {limit:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
