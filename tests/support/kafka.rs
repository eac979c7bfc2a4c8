//! A real Apache Kafka cluster for tests: KRaft nodes in combined mode (broker and controller)
//! on loopback, as close to Confluent Cloud as one machine gets: racks `az-a`, `az-b`, `az-c`;
//! a SASL_SSL listener with PLAIN, SCRAM-SHA-512 and OAUTHBEARER (the certificate from a CA made
//! here; OAuth tokens validated by Kafka's own validator against the JWKS of an identity
//! provider the tests serve, [`IdentityProvider`], which also logs the SASL extensions each
//! client sends) for the exporter, a PLAINTEXT one for the test's own admin work (its anonymous principal is the
//! one super user); `StandardAuthorizer` with `allow.everyone.if.no.acl.found=false`; no topic
//! auto-creation; replication factor 3 and `min.insync.replicas=2` by default (1 and 1 on a
//! cluster of one node). The controller
//! fences a broker that stops heartbeating after 3 s (Kafka's default is 9 s): until then,
//! every partition that broker follows waits for it before acknowledging a write.
//!
//! The broker's jars come from Maven Central (`tests/support/kafka/pom.xml`, fetched into
//! `target/test-tools/kafka` by `scripts/test.sh`, or wherever `KAFKA_LIBS` points). One
//! cluster serves a whole test binary ([`KafkaCluster::shared`]); each JVM runs under a small
//! shell that kills it when the test binary's end of a pipe closes, so no broker outlives its
//! tests, however they end.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use openssl::pkcs12::Pkcs12;
use openssl::stack::Stack;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use super::oauth::{IdentityProvider, AUDIENCE, ISSUER};
use super::tls::{free_port, Authority, Kind};
use super::{get, wait_for_scrape, write_config, Metrics, Process};

/// Users of the SASL_SSL listener with PLAIN (an API key and secret, as Confluent Cloud has):
/// name and password. SCRAM users are made at run time ([`KafkaCluster::scram_user`]).
pub const PLAIN_USERS: [(&str, &str); 3] = [
    ("heartbeat", "heartbeat-secret"),
    ("service-account", "service-account-secret"),
    ("restricted", "restricted-secret"),
];

/// The racks of the first nodes (a node added later gets the next letter).
const RACKS: [&str; 6] = ["az-a", "az-b", "az-c", "az-d", "az-e", "az-f"];

/// How long a node may take to start on these 2 cores.
const NODE_START_LIMIT: Duration = Duration::from_secs(90);

const KEYSTORE_PASSWORD: &str = "keystore-secret";

/// The loopback ports of one node.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// PLAINTEXT, for the test's own admin work (super user).
    pub plaintext: u16,
    /// SASL_SSL, for the exporter.
    pub sasl_ssl: u16,
    /// The KRaft controller listener.
    pub controller: u16,
}

/// A JVM (a node, MirrorMaker), under the shell that kills it when `guard` closes: at a
/// restart, or when the test binary ends in any way.
pub struct Running {
    wrapper: Child,
    /// Held open while the JVM should run; closing it kills it.
    guard: Option<ChildStdin>,
    pub pid: u32,
}

impl Running {
    /// Starts `java` with `arguments`, its output to `log`; does not wait for it to serve.
    pub fn java(arguments: &[String], log: &Path) -> Running {
        // The shell starts the JVM, says its pid, and kills it once its standard input (held
        // by this process) closes.
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(r#"log=$1; shift; java "$@" </dev/null >"$log" 2>&1 & echo $!; cat >/dev/null; kill -9 $! 2>/dev/null"#)
            .arg("kafka-jvm")
            .arg(log)
            .args(arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = line.trim().parse().expect("the JVM's pid");
        Running {
            guard: wrapper.stdin.take(),
            wrapper,
            pid,
        }
    }

    /// Sends `signal` (`-KILL`, `-TERM`) and waits until the JVM has exited.
    pub fn signal(mut self, signal: &str, what: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {}", self.pid);
        let deadline = Instant::now() + Duration::from_secs(60);
        while is_alive(self.pid) {
            assert!(
                Instant::now() < deadline,
                "{what} did not exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(self.guard.take());
        let _ = self.wrapper.wait();
    }
}

struct Node {
    ports: Ports,
    rack: &'static str,
    /// Whether the node is a controller too (the first three) or only a broker.
    controller: bool,
    running: Option<Running>,
    starts: usize,
}

/// A Kafka cluster of this machine's own.
pub struct KafkaCluster {
    dir: tempfile::TempDir,
    libs: PathBuf,
    cluster_id: String,
    /// The CA that signed the brokers' certificate (PEM), for `ssl.ca.location`.
    pub ca_file: PathBuf,
    keystore: PathBuf,
    nodes: Mutex<BTreeMap<i32, Node>>,
    /// The identity provider whose tokens the OAUTHBEARER mechanism takes; up as long as the
    /// cluster, since a broker reads its JWKS when it starts.
    pub identity_provider: IdentityProvider,
    /// Where the brokers' extension-logging token validator was compiled to.
    classes: PathBuf,
}

/// Compiles the brokers' extension-logging token validator into `dir/classes`.
fn compile_validator(libs: &Path, dir: &Path) -> PathBuf {
    let classes = dir.join("classes");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/kafka/ExtensionsLoggingValidator.java");
    let mut javac = Command::new("javac");
    javac
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .arg(&source);
    succeed(
        javac,
        "compiling the brokers' token validator (javac: a JDK)",
    );
    classes
}

/// Where the broker's jars are.
fn libs() -> PathBuf {
    let libs = std::env::var_os("KAFKA_LIBS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/kafka"),
        PathBuf::from,
    );
    let has_broker = std::fs::read_dir(&libs).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("kafka_2.13-")
        })
    });
    assert!(
        has_broker,
        "the Kafka broker's jars are not in {}: run scripts/test.sh (it fetches them with Maven), \
         or set KAFKA_LIBS",
        libs.display()
    );
    libs
}

impl KafkaCluster {
    /// The cluster of this test binary: three nodes, started at the first call.
    pub fn shared() -> &'static KafkaCluster {
        static CLUSTER: OnceLock<KafkaCluster> = OnceLock::new();
        CLUSTER.get_or_init(|| KafkaCluster::start(3))
    }

    /// Formats and starts `count` nodes (at most 3 controllers; more are brokers only) and
    /// waits until every one serves.
    pub fn start(count: usize) -> KafkaCluster {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let authority = Authority::new(dir.path());
        let issued = authority.issue(Kind::Valid);
        let mut ca = Stack::new().unwrap();
        ca.push(authority.ca.certificate.clone()).unwrap();
        let keystore = dir.path().join("broker.p12");
        let archive = Pkcs12::builder()
            .name("broker")
            .pkey(&issued.key)
            .cert(&issued.certificate)
            .ca(ca)
            .build2(KEYSTORE_PASSWORD)
            .unwrap();
        std::fs::write(&keystore, archive.to_der().unwrap()).unwrap();
        std::fs::write(dir.path().join("log4j2.properties"), LOG4J).unwrap();
        let libs = libs();
        let identity_provider = IdentityProvider::start(dir.path(), &authority);
        let classes = compile_validator(&libs, dir.path());
        let cluster = KafkaCluster {
            identity_provider,
            classes,
            libs,
            cluster_id: random_cluster_id(),
            ca_file: authority.ca_file.clone(),
            keystore,
            nodes: Mutex::new(BTreeMap::new()),
            dir,
        };
        {
            let mut nodes = cluster.nodes.lock().unwrap();
            for id in 1..=count as i32 {
                nodes.insert(id, cluster.new_node(id));
            }
        }
        let ids: Vec<i32> = (1..=count as i32).collect();
        // Formatting and starting are each done for all nodes at once: JVM start-up is what
        // takes time, and a controller quorum needs a majority anyway.
        std::thread::scope(|scope| {
            for id in &ids {
                let cluster = &cluster;
                scope.spawn(move || cluster.format(*id));
            }
        });
        for id in &ids {
            cluster.launch(*id);
        }
        for id in &ids {
            cluster.wait_until_serving(*id);
        }
        cluster.wait_for_brokers(count, NODE_START_LIMIT);
        eprintln!(
            "kafka: {count} nodes serving after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        cluster
    }

    fn new_node(&self, id: i32) -> Node {
        Node {
            ports: Ports {
                plaintext: free_port(),
                sasl_ssl: free_port(),
                controller: free_port(),
            },
            rack: RACKS[(id - 1) as usize % RACKS.len()],
            controller: id <= 3,
            running: None,
            starts: 0,
        }
    }

    /// The static quorum: the first three nodes.
    fn voters(&self) -> String {
        let nodes = self.nodes.lock().unwrap();
        nodes
            .iter()
            .filter(|(_, node)| node.controller)
            .map(|(id, node)| format!("{id}@127.0.0.1:{}", node.ports.controller))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node_dir(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// Writes the node's `server.properties`; returns its path.
    fn write_properties(&self, id: i32) -> PathBuf {
        let voters = self.voters();
        let nodes = self.nodes.lock().unwrap();
        let node = &nodes[&id];
        let Ports {
            plaintext,
            sasl_ssl,
            controller,
        } = node.ports;
        let roles = if node.controller {
            "broker,controller"
        } else {
            "broker"
        };
        let mut listeners =
            format!("PLAINTEXT://127.0.0.1:{plaintext},SASL_SSL://127.0.0.1:{sasl_ssl}");
        if node.controller {
            listeners.push_str(&format!(",CONTROLLER://127.0.0.1:{controller}"));
        }
        let plain_users: String = PLAIN_USERS
            .iter()
            .map(|(user, password)| format!(" user_{user}=\"{password}\""))
            .collect();
        let data = self.node_dir(id).join("data");
        // Three replicas and two in sync; a one-node cluster (a replica cluster's) has one.
        let replicas = nodes.len().min(3);
        let min_isr = if replicas >= 3 { 2 } else { 1 };
        let properties = format!(
            "process.roles={roles}\n\
             node.id={id}\n\
             controller.quorum.voters={voters}\n\
             controller.listener.names=CONTROLLER\n\
             listeners={listeners}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{plaintext},SASL_SSL://127.0.0.1:{sasl_ssl}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT\n\
             inter.broker.listener.name=PLAINTEXT\n\
             broker.rack={rack}\n\
             log.dirs={data}\n\
             sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512,OAUTHBEARER\n\
             listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             {oauth}\
             ssl.keystore.type=PKCS12\n\
             ssl.keystore.location={keystore}\n\
             ssl.keystore.password={KEYSTORE_PASSWORD}\n\
             authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
             super.users=User:ANONYMOUS\n\
             allow.everyone.if.no.acl.found=false\n\
             auto.create.topics.enable=false\n\
             default.replication.factor={replicas}\n\
             min.insync.replicas={min_isr}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor={replicas}\n\
             offsets.topic.num.partitions=3\n\
             transaction.state.log.replication.factor={replicas}\n\
             transaction.state.log.min.isr={min_isr}\n\
             transaction.state.log.num.partitions=3\n\
             group.initial.rebalance.delay.ms=0\n\
             num.network.threads=2\n\
             num.io.threads=2\n\
             background.threads=2\n\
             log.cleaner.threads=1\n\
             num.recovery.threads.per.data.dir=1\n\
             controlled.shutdown.enable=true\n\
             broker.heartbeat.interval.ms=500\n\
             broker.session.timeout.ms=3000\n",
            rack = node.rack,
            data = data.display(),
            keystore = self.keystore.display(),
            oauth = self.oauth_properties(),
        );
        std::fs::create_dir_all(self.node_dir(id)).unwrap();
        let path = self.node_dir(id).join("server.properties");
        std::fs::write(&path, properties).unwrap();
        path
    }

    /// The OAUTHBEARER mechanism of the SASL_SSL listener: tokens validated against the
    /// identity provider's JWKS (fetched over TLS, trusting the test CA), their audience and
    /// issuer checked, no clock skew allowed (so an expired token is refused at once, not 30 s
    /// later). The session ends when the token expires: a client signs in again with a newer
    /// one (KIP-368), or its connection is closed.
    fn oauth_properties(&self) -> String {
        let prefix = "listener.name.sasl_ssl.oauthbearer.";
        // The JAAS options configure the JWKS client's TLS; with any option the login module
        // also wants a subject for a token this broker never uses.
        format!(
            "{prefix}sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
             unsecuredLoginStringClaim_sub=\"unused\" ssl.truststore.type=\"PEM\" ssl.truststore.location=\"{ca}\";\n\
             {prefix}sasl.server.callback.handler.class=ExtensionsLoggingValidator\n\
             {prefix}sasl.oauthbearer.jwks.endpoint.url={jwks}\n\
             {prefix}sasl.oauthbearer.expected.audience={AUDIENCE}\n\
             {prefix}sasl.oauthbearer.expected.issuer={ISSUER}\n\
             {prefix}sasl.oauthbearer.clock.skew.seconds=0\n",
            ca = self.ca_file.display(),
            jwks = self.identity_provider.jwks_url,
        )
    }

    /// Formats the node's log directory with the cluster id (once, before its first start).
    fn format(&self, id: i32) {
        let properties = self.write_properties(id);
        let mut format = self.java("kafka.tools.StorageTool");
        // `=`: an id may begin with `-`, which argparse would take for an option.
        format
            .args(["format", "--ignore-formatted"])
            .arg(format!("--cluster-id={}", self.cluster_id))
            .arg("-c")
            .arg(&properties);
        succeed(format, &format!("formatting node {id}"));
    }

    /// A `java` command with the broker's classpath and small heaps, for `class`.
    fn java(&self, class: &str) -> Command {
        let mut command = Command::new("java");
        command
            .args(["-Xms64m", "-Xmx320m", "-XX:+UseSerialGC", "-Xss512k"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.path().join("log4j2.properties").display()
            ))
            // Kafka 4 reads only the token URLs this property allows.
            .arg(format!(
                "-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={}",
                self.identity_provider.jwks_url
            ))
            .arg("-cp")
            .arg(format!(
                "{}/*:{}",
                self.libs.display(),
                self.classes.display()
            ))
            .arg(class);
        command
    }

    /// Starts the node's JVM (under its guard shell); does not wait for it to serve.
    fn launch(&self, id: i32) {
        let properties = self.write_properties(id);
        let mut nodes = self.nodes.lock().unwrap();
        let node = nodes.get_mut(&id).unwrap();
        assert!(node.running.is_none(), "node {id} is already running");
        node.starts += 1;
        let log = self.node_dir(id).join(format!("start-{}.log", node.starts));
        let java = self.java("kafka.Kafka");
        let mut arguments: Vec<String> = java
            .get_args()
            .map(|argument| argument.to_string_lossy().into_owned())
            .collect();
        arguments.push(properties.display().to_string());
        node.running = Some(Running::java(&arguments, &log));
    }

    /// Waits until the node's log says it serves.
    fn wait_until_serving(&self, id: i32) {
        let (log, pid) = {
            let nodes = self.nodes.lock().unwrap();
            let node = &nodes[&id];
            let log = self.node_dir(id).join(format!("start-{}.log", node.starts));
            (log, node.running.as_ref().map(|running| running.pid))
        };
        let deadline = Instant::now() + NODE_START_LIMIT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Kafka Server started") {
                return;
            }
            let alive = pid.is_some_and(is_alive);
            // A node that gives up logs why well before its shutdown lines: show those too.
            assert!(
                alive && Instant::now() < deadline,
                "node {id} did not start ({}); its errors:\n{}\nits last lines:\n{}",
                if alive { "timed out" } else { "it exited" },
                errors(&text, 20),
                tail(&text, 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until metadata lists `count` brokers.
    pub fn wait_for_brokers(&self, count: usize, limit: Duration) {
        let admin = self.admin();
        let deadline = Instant::now() + limit;
        loop {
            let listed = admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(5))
                .map(|metadata| metadata.brokers().len())
                .unwrap_or(0);
            if listed == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "metadata lists {listed} brokers, not {count}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Node ids, in order.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.lock().unwrap().keys().copied().collect()
    }

    /// The node's ports.
    pub fn ports(&self, id: i32) -> Ports {
        self.nodes.lock().unwrap()[&id].ports
    }

    /// The rack of node `id`.
    pub fn rack(&self, id: i32) -> &'static str {
        self.nodes.lock().unwrap()[&id].rack
    }

    /// `bootstrap.servers` of the SASL_SSL listener, as the exporter is given it.
    pub fn bootstrap(&self) -> String {
        self.listeners(|ports| ports.sasl_ssl)
    }

    /// `bootstrap.servers` of the PLAINTEXT listener (super user), for the test's own clients.
    pub fn admin_bootstrap(&self) -> String {
        self.listeners(|ports| ports.plaintext)
    }

    fn listeners(&self, port: impl Fn(&Ports) -> u16) -> String {
        self.nodes
            .lock()
            .unwrap()
            .values()
            .map(|node| format!("127.0.0.1:{}", port(&node.ports)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// librdkafka properties of a super-user client on the PLAINTEXT listener.
    pub fn admin_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.admin_bootstrap());
        config
    }

    /// An admin client on the PLAINTEXT listener.
    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.admin_config().create().expect("admin client")
    }

    /// Kills the node's JVM with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill(&self, id: i32) {
        self.signal(id, "-KILL");
    }

    /// Stops the node gracefully (SIGTERM: a controlled shutdown moves its leadership first)
    /// and waits until it has exited.
    pub fn stop(&self, id: i32) {
        self.signal(id, "-TERM");
    }

    fn signal(&self, id: i32, signal: &str) {
        let running = self
            .nodes
            .lock()
            .unwrap()
            .get_mut(&id)
            .unwrap()
            .running
            .take();
        let Some(running) = running else {
            panic!("node {id} is not running");
        };
        running.signal(signal, &format!("node {id}"));
    }

    /// Starts a stopped or killed node again and waits until it serves.
    pub fn restart(&self, id: i32) {
        self.launch(id);
        self.wait_until_serving(id);
    }

    /// Adds a broker-only node (the next id and rack), started and serving; returns its id.
    pub fn add_node(&self) -> i32 {
        let id = {
            let mut nodes = self.nodes.lock().unwrap();
            let id = nodes.keys().max().copied().unwrap_or(0) + 1;
            let mut node = self.new_node(id);
            node.controller = false;
            nodes.insert(id, node);
            id
        };
        self.format(id);
        self.restart(id);
        let count = self.node_ids().len();
        self.wait_for_brokers(count, NODE_START_LIMIT);
        id
    }

    /// Brings the cluster back to its first `count` nodes, all running: what a test that
    /// failed half-way may have left stopped is restarted, what it added is removed.
    pub fn restore(&self, count: usize) {
        for id in self.node_ids() {
            let running = self.nodes.lock().unwrap()[&id].running.is_some();
            if id as usize > count {
                if running {
                    self.stop(id);
                }
                self.nodes.lock().unwrap().remove(&id);
            } else if !running {
                self.restart(id);
            }
        }
        self.wait_for_brokers(count, NODE_START_LIMIT);
    }

    /// Stops a node for good, unregisters its broker and forgets it (the cluster's metadata
    /// lists it no more). Stopped but still registered, a broker was given replicas of topics
    /// created later, which then never had all their replicas in sync.
    pub fn remove_node(&self, id: i32) {
        self.stop(id);
        let mut unregister = self.java("org.apache.kafka.tools.ClusterTool");
        unregister
            .args(["unregister", "--bootstrap-server", &self.admin_bootstrap()])
            .args(["--id", &id.to_string()]);
        succeed(unregister, &format!("unregistering broker {id}"));
        self.nodes.lock().unwrap().remove(&id);
    }

    /// Waits until every partition of `topic` has all its replicas in sync; if they do not, the
    /// panic says which partition lacks which replica, and the nodes' errors.
    pub fn wait_for_isr(&self, topic: &str, limit: Duration) {
        let admin = self.admin();
        let deadline = Instant::now() + limit;
        loop {
            let state = admin
                .inner()
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .map_err(|error| error.to_string())
                .and_then(|metadata| {
                    let topic = metadata.topics().first().ok_or("no topic")?;
                    Ok(topic
                        .partitions()
                        .iter()
                        .map(|partition| {
                            (
                                partition.id(),
                                partition.leader(),
                                partition.replicas().to_vec(),
                                partition.isr().to_vec(),
                            )
                        })
                        .collect::<Vec<_>>())
                });
            let in_sync = state.as_ref().is_ok_and(|partitions| {
                !partitions.is_empty()
                    && partitions.iter().all(|(_, leader, replicas, isr)| {
                        *leader >= 0 && isr.len() == replicas.len()
                    })
            });
            if in_sync {
                return;
            }
            if Instant::now() >= deadline {
                let errors: Vec<String> = self
                    .node_ids()
                    .into_iter()
                    .map(|id| format!("node {id}:\n{}", errors(&self.log(id), 10)))
                    .collect();
                panic!(
                    "{topic}: replicas not in sync within {limit:?}: (partition, leader, \
                     replicas, in sync) {state:?}\n{}",
                    errors.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Elects every partition's preferred leader, as an operator does after a rolling restart
    /// (and as the controller does by itself within `leader.imbalance.check.interval.seconds`).
    /// Partitions already led by it are no failure.
    pub fn elect_preferred_leaders(&self) {
        let _ = self
            .java("org.apache.kafka.tools.LeaderElectionCommand")
            .args(["--bootstrap-server", &self.admin_bootstrap()])
            .args(["--election-type", "PREFERRED", "--all-topic-partitions"])
            .output()
            .expect("java");
    }

    /// The leader of each partition of `topic` (-1 without one), from fresh metadata.
    pub fn leaders(&self, topic: &str) -> BTreeMap<i32, i32> {
        let metadata = self
            .admin()
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        metadata
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions())
            .map(|partition| (partition.id(), partition.leader()))
            .collect()
    }

    /// Creates `topic` with `partitions` partitions of `replicas` replicas.
    pub async fn create_topic(&self, topic: &str, partitions: i32, replicas: i32) {
        self.create_topic_with(topic, partitions, replicas, &[])
            .await;
    }

    /// Creates `topic` with topic configs `configs` (e.g. `message.timestamp.type`).
    pub async fn create_topic_with(
        &self,
        topic: &str,
        partitions: i32,
        replicas: i32,
        configs: &[(&str, &str)],
    ) {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas));
        for (key, value) in configs {
            new_topic = new_topic.set(key, value);
        }
        let results = self
            .admin()
            .create_topics(&[new_topic], &options)
            .await
            .expect("create topic");
        // A request retried after a slow answer finds the topic it created: that is success
        // (every test has topics of its own names).
        assert!(
            results.iter().all(|result| matches!(
                result,
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))
            )),
            "{results:?}"
        );
    }

    /// Deletes `topic` (no error if it is absent).
    pub async fn delete_topic(&self, topic: &str) {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let _ = self.admin().delete_topics(&[topic], &options).await;
    }

    /// Grows `topic` to `partitions` partitions.
    pub async fn add_partitions(&self, topic: &str, partitions: usize) {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin()
            .create_partitions(&[NewPartitions::new(topic, partitions)], &options)
            .await
            .expect("create partitions");
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }

    /// Runs one of Kafka's own command-line tools (`org.apache.kafka.tools.…`) against the
    /// PLAINTEXT listener; returns what it printed.
    pub fn tool(&self, class: &str, arguments: &[&str]) -> String {
        let mut tool = self.java(&format!("org.apache.kafka.tools.{class}"));
        tool.args(["--bootstrap-server", &self.admin_bootstrap()])
            .args(arguments);
        succeed(tool, &format!("{class} {arguments:?}"))
    }

    /// Allows `operations` to `principal` (e.g. `User:heartbeat`) on a resource given as
    /// AclCommand takes it (`["--topic", "name"]`, `["--group", "name"]`, `["--cluster"]`).
    pub fn allow(&self, principal: &str, operations: &[&str], resource: &[&str]) {
        self.acl("--add", principal, operations, resource);
    }

    /// Removes what [`KafkaCluster::allow`] allowed.
    pub fn disallow(&self, principal: &str, operations: &[&str], resource: &[&str]) {
        self.acl("--remove", principal, operations, resource);
    }

    fn acl(&self, action: &str, principal: &str, operations: &[&str], resource: &[&str]) {
        let mut arguments = vec![action, "--force", "--allow-principal", principal];
        for operation in operations {
            arguments.extend(["--operation", operation]);
        }
        arguments.extend(resource);
        self.tool("AclCommand", &arguments);
    }

    /// Creates (or changes) a SCRAM-SHA-512 user.
    pub fn scram_user(&self, name: &str, password: &str) {
        let credential = format!("SCRAM-SHA-512=[iterations=4096,password={password}]");
        self.user_config("--add-config", name, &credential);
    }

    /// Deletes a SCRAM-SHA-512 user.
    pub fn delete_scram_user(&self, name: &str) {
        self.user_config("--delete-config", name, "SCRAM-SHA-512");
    }

    /// Sets client quotas (e.g. `producer_byte_rate=1024`) for `user`.
    pub fn user_quota(&self, user: &str, quotas: &str) {
        self.user_config("--add-config", user, quotas);
    }

    /// Removes client quotas (e.g. `producer_byte_rate`) of `user`.
    pub fn remove_user_quota(&self, user: &str, quotas: &str) {
        self.user_config("--delete-config", user, quotas);
    }

    /// The quotas and credentials the cluster holds for `user`, as Kafka describes them.
    pub fn describe_user(&self, user: &str) -> String {
        self.tool(
            "ConfigCommand",
            &[
                "--describe",
                "--entity-type",
                "users",
                "--entity-name",
                user,
            ],
        )
    }

    fn user_config(&self, action: &str, user: &str, value: &str) {
        self.tool(
            "ConfigCommand",
            &[
                "--alter",
                action,
                value,
                "--entity-type",
                "users",
                "--entity-name",
                user,
            ],
        );
    }

    /// The exporter's `[default]` properties for `user` with `mechanism` over SASL_SSL, as
    /// against Confluent Cloud.
    pub fn client_properties(&self, mechanism: &str, user: &str, password: &str) -> String {
        format!(
            "bootstrap.servers = {}\n\
             security.protocol = SASL_SSL\n\
             sasl.mechanisms = {mechanism}\n\
             sasl.username = {user}\n\
             sasl.password = {password}\n\
             ssl.ca.location = {}\n",
            self.bootstrap(),
            self.ca_file.display()
        )
    }

    /// The log of node `id`'s current (or last) run.
    pub fn log(&self, id: i32) -> String {
        let starts = self.nodes.lock().unwrap()[&id].starts;
        std::fs::read_to_string(self.node_dir(id).join(format!("start-{starts}.log")))
            .unwrap_or_default()
    }
}

/// An exporter's configuration file for `[default]` client properties `client` (from
/// [`KafkaCluster::client_properties`]) and heartbeat topic `topic`, with checks fast enough
/// for tests against a real cluster; the producer keeps the users' delivery timeout and lost
/// deadline (10 s and 20 s), which a broker crash must not exceed. `extra_admin` adds
/// `[admin]` lines.
pub fn exporter_ini(client: &str, topic: &str, extra_admin: &str) -> String {
    format!(
        "[default]\n\
         {client}\
         socket.connection.setup.timeout.ms = 3000\n\
         reconnect.backoff.max.ms = 500\n\
         [producer]\n\
         statistics.interval.ms = 1000\n\
         [admin]\n\
         heartbeat.topic = {topic}\n\
         produce.period.seconds = 0.5\n\
         check.metadata.period.seconds = 1\n\
         check.metadata.timeout.seconds = 3\n\
         check.connectivity.period.seconds = 1\n\
         check.connectivity.timeout.seconds = 2\n\
         metrics.listener.host = 127.0.0.1\n\
         metrics.listener.port = 0\n\
         {extra_admin}\n"
    )
}

/// The ACLs `docs/confluent-cloud.md` lists for the service account, with topic management: what the
/// Confluent Cloud path needs. Returns them as (operations, resource) for removal.
pub fn service_account_acls(topic: &str) -> Vec<(Vec<&'static str>, Vec<String>)> {
    vec![
        (
            vec!["Describe", "Write", "Read", "Create", "Alter"],
            vec!["--topic".to_string(), topic.to_string()],
        ),
        (
            vec!["Read"],
            vec!["--group".to_string(), "cc-heartbeat".to_string()],
        ),
    ]
}

/// Writes `count` records to partition 0 of `topic`, one request each, as the super user.
pub fn produce(cluster: &KafkaCluster, topic: &str, count: usize) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = cluster
        .admin_config()
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for _ in 0..count {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(0)
                    .payload("order"),
            )
            .map_err(|(error, _)| error)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
}

/// Commits `offset` on partition 0 of `topic` for `group`, without joining it.
pub fn commit(cluster: &KafkaCluster, group: &str, topic: &str, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = cluster
        .admin_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
}

/// The exporter binary started with `ini` as its configuration file.
pub struct Exporter {
    pub process: Process,
    pub address: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// The exporter reaching `cluster` over SASL_SSL as `user` with `mechanism`, beating
    /// `topic`; `extra_admin` adds `[admin]` lines.
    pub fn as_user(
        cluster: &KafkaCluster,
        mechanism: &str,
        (user, password): (&str, &str),
        topic: &str,
        extra_admin: &str,
    ) -> Exporter {
        Exporter::start(&exporter_ini(
            &cluster.client_properties(mechanism, user, password),
            topic,
            extra_admin,
        ))
    }

    pub fn start(ini: &str) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), ini);
        let mut process = Process::start(&["--config", path.to_str().unwrap()], &[]);
        let address = process.address();
        Exporter {
            process,
            address,
            _dir: dir,
        }
    }

    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        condition: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        wait_for_scrape(self.address, what, limit, condition).await
    }

    /// Waits until heartbeats made the round trip at least three times on each of partitions
    /// `0..partitions`.
    pub async fn wait_for_every_partition(&self, partitions: usize, limit: Duration) -> Metrics {
        self.wait_for("heartbeats everywhere", limit, |m| {
            (0..partitions).all(|p| {
                m.sum(
                    "heartbeat_messages_consumed_total",
                    &[("partition", &p.to_string())],
                ) >= 3.0
            })
        })
        .await
    }

    pub async fn ready(&self) -> (u16, String) {
        let (status, body, _) = get(self.address, "/ready").await;
        (status, body)
    }

    /// Waits until `/ready` answers as `wanted` (status, body) says; returns that answer, or
    /// panics with the last one.
    pub async fn wait_for_ready(
        &self,
        what: &str,
        limit: Duration,
        wanted: impl Fn(u16, &str) -> bool,
    ) -> String {
        super::wait_for_ready_at(self.address, what, limit, wanted).await
    }
}

/// Grants `user` the ACLs of docs/confluent-cloud.md for `topic` (with topic management); returns what to
/// take back at the end.
pub fn grant(
    cluster: &KafkaCluster,
    user: &str,
    topic: &str,
) -> Vec<(Vec<&'static str>, Vec<String>)> {
    let principal = format!("User:{user}");
    let acls = service_account_acls(topic);
    for (operations, resource) in &acls {
        let resource: Vec<&str> = resource.iter().map(String::as_str).collect();
        cluster.allow(&principal, operations, &resource);
    }
    acls
}

pub fn revoke(cluster: &KafkaCluster, user: &str, acls: &[(Vec<&'static str>, Vec<String>)]) {
    let principal = format!("User:{user}");
    for (operations, resource) in acls {
        let resource: Vec<&str> = resource.iter().map(String::as_str).collect();
        cluster.disallow(&principal, operations, &resource);
    }
}

/// Runs `command` (`what` it does, for the panic); its standard output and error, which say
/// why when it fails.
fn succeed(mut command: Command, what: &str) -> String {
    let output = command.output().expect("java");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

fn is_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its shell) is not alive.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The first `lines` lines of a broker log logged at ERROR or FATAL.
fn errors(text: &str, lines: usize) -> String {
    let found: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("] ERROR ") || line.contains("] FATAL "))
        .take(lines)
        .collect();
    found.join("\n")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.
fn random_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u32 = 0;
    let mut held = 0;
    let mut id = String::new();
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            id.push(alphabet[((bits >> held) & 63) as usize] as char);
        }
    }
    if held > 0 {
        id.push(alphabet[((bits << (6 - held)) & 63) as usize] as char);
    }
    id
}

/// Broker logs: what a failing test needs to read, without the noise.
/// The brokers' log4j2 configuration (MirrorMaker takes it too): INFO to the console.
pub const LOG4J: &str = "\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
";
