//! TLS in front of the mock cluster: certificates made on the spot (trusted, expired,
//! untrusted, for the wrong name) and stunnel terminating TLS on a loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509Name, X509};

/// A key and certificate written as PEM files.
pub struct Issued {
    pub certificate: X509,
    pub key: PKey<Private>,
    /// Certificate and key in one PEM file, as stunnel takes them.
    pub pem: PathBuf,
}

/// Which certificate a server presents.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Signed by the test CA, for 127.0.0.1 and localhost, valid now.
    Valid,
    /// Signed by the test CA, expired yesterday.
    Expired,
    /// Self-signed: no trusted CA vouches for it.
    Untrusted,
    /// Signed by the test CA, but for another name.
    WrongName,
}

/// A test CA and the certificates it issues, in a directory.
pub struct Authority {
    pub ca: Issued,
    pub ca_file: PathBuf,
    dir: PathBuf,
}

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn build(
    subject: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    days: (i64, i64),
    names: &[&str],
    ca: bool,
) -> X509 {
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_text("CN", subject).unwrap();
    let name = name.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_serial()).unwrap();
    builder
        .set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
        .unwrap();
    builder.set_subject_name(&name).unwrap();
    builder
        .set_issuer_name(issuer.map_or(&name, |(certificate, _)| certificate.subject_name()))
        .unwrap();
    builder.set_pubkey(key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    builder
        .set_not_before(&Asn1Time::from_unix(now + days.0 * 86_400).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::from_unix(now + days.1 * 86_400).unwrap())
        .unwrap();
    if ca {
        builder
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    }
    if !names.is_empty() {
        let mut alternative = SubjectAlternativeName::new();
        for entry in names {
            if entry.parse::<std::net::IpAddr>().is_ok() {
                alternative.ip(entry);
            } else {
                alternative.dns(entry);
            }
        }
        let extension = alternative
            .build(&builder.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
            .unwrap();
        builder.append_extension(extension).unwrap();
    }
    let signer = issuer.map_or(key, |(_, issuer_key)| issuer_key);
    builder.sign(signer, MessageDigest::sha256()).unwrap();
    builder.build()
}

fn rand_serial() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        | 1
}

fn write(path: &Path, certificate: &X509, key: &PKey<Private>) {
    let mut pem = certificate.to_pem().unwrap();
    pem.extend(key.private_key_to_pem_pkcs8().unwrap());
    std::fs::write(path, pem).unwrap();
}

impl Authority {
    pub fn new(dir: &Path) -> Authority {
        let ca_key = key();
        let ca_certificate = build("cc-heartbeat test CA", &ca_key, None, (-1, 365), &[], true);
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_certificate.to_pem().unwrap()).unwrap();
        let pem = dir.join("ca-and-key.pem");
        write(&pem, &ca_certificate, &ca_key);
        Authority {
            ca: Issued {
                certificate: ca_certificate,
                key: ca_key,
                pem,
            },
            ca_file,
            dir: dir.to_path_buf(),
        }
    }

    /// A server certificate of `kind`.
    pub fn issue(&self, kind: Kind) -> Issued {
        let key = key();
        let issuer = Some((&self.ca.certificate, &self.ca.key));
        let names = ["127.0.0.1", "localhost"];
        let certificate = match kind {
            Kind::Valid => build("localhost", &key, issuer, (-1, 30), &names, false),
            Kind::Expired => build("localhost", &key, issuer, (-30, -1), &names, false),
            Kind::Untrusted => build("localhost", &key, None, (-1, 30), &names, false),
            Kind::WrongName => build(
                "other.example",
                &key,
                issuer,
                (-1, 30),
                &["other.example"],
                false,
            ),
        };
        let pem = self.dir.join(format!("{kind:?}.pem"));
        write(&pem, &certificate, &key);
        Issued {
            certificate,
            key,
            pem,
        }
    }
}

/// The certificate's expiry as Unix seconds.
pub fn not_after_unix(certificate: &X509) -> f64 {
    let difference = Asn1Time::from_unix(0)
        .unwrap()
        .diff(certificate.not_after())
        .unwrap();
    f64::from(difference.days) * 86_400.0 + f64::from(difference.secs)
}

/// stunnel accepting TLS on `accept_port` and forwarding plaintext to `connect_port`.
pub struct Stunnel {
    child: Child,
}

impl Stunnel {
    pub fn start(dir: &Path, pem: &Path, accept_port: u16, connect_port: u16) -> Stunnel {
        Self::start_with_sni(dir, pem, None, accept_port, connect_port)
    }

    /// Like [`Stunnel::start`], presenting `sni.1` instead to clients that ask for `sni.0`.
    pub fn start_with_sni(
        dir: &Path,
        pem: &Path,
        sni: Option<(&str, &Path)>,
        accept_port: u16,
        connect_port: u16,
    ) -> Stunnel {
        Self::start_configured(dir, pem, sni, "", accept_port, connect_port)
    }

    /// Like [`Stunnel::start`], requiring clients to present a certificate `ca_file` signed
    /// (mutual TLS).
    pub fn start_verifying_clients(
        dir: &Path,
        pem: &Path,
        ca_file: &Path,
        accept_port: u16,
        connect_port: u16,
    ) -> Stunnel {
        let verify = format!("verify = 2\nCAfile = {}\n", ca_file.display());
        Self::start_configured(dir, pem, None, &verify, accept_port, connect_port)
    }

    fn start_configured(
        dir: &Path,
        pem: &Path,
        sni: Option<(&str, &Path)>,
        service_lines: &str,
        accept_port: u16,
        connect_port: u16,
    ) -> Stunnel {
        let config = dir.join(format!("stunnel-{accept_port}.conf"));
        let mut text = format!(
            "foreground = yes\npid =\ndebug = 3\n[broker]\naccept = 127.0.0.1:{accept_port}\n\
             connect = 127.0.0.1:{connect_port}\ncert = {}\n{service_lines}",
            pem.display()
        );
        if let Some((name, sni_pem)) = sni {
            text.push_str(&format!(
                "[broker-by-name]\nsni = broker:{name}\nconnect = 127.0.0.1:{connect_port}\ncert = {}\n",
                sni_pem.display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        let child = Command::new("stunnel")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel not found: install Debian's stunnel4 (.ci/run does)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", accept_port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "stunnel did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Stunnel { child }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port, below the kernel's ephemeral range. Binding port 0 gives one from
/// that range, which any outgoing connection may take as its own end while the server on it
/// is down: a broker restarted on it then cannot bind and exits. Each call in a process gives
/// another port (checked free by binding it), so tests running at once never share one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 15_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST).max(1_000);
    // Each test binary starts somewhere else, so one still running elsewhere is unlikely hit.
    let _ = NEXT.compare_exchange(
        0,
        std::process::id() % span + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = LOWEST + NEXT.fetch_add(1, Ordering::SeqCst) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port between {LOWEST} and {ephemeral}")
}
