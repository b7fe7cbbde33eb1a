//! The real peers tests talk to, each started on a free loopback port and stopped on drop.
//!
//! Binaries are found through `SLUICE_TANSU_BIN` / `SLUICE_AZURITE_BIN` (set by
//! `scripts/test`), then the usual install locations; a missing one is a test failure that
//! says how to install it, never a silent skip.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::ClientConfig;

/// The workspace root (where `.tools/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening; log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 60 s");
}

fn find_binary(env_var: &str, candidates: &[PathBuf], install_hint: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return PathBuf::from(p);
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("cannot find it: set {env_var}, or run scripts/test which installs it ({install_hint})"))
}

/// A child process killed when dropped, with its output in a log file.
pub struct Service {
    child: Child,
    /// Holds the log (and any data) until the service is dropped.
    dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn spawn(what: &str, mut cmd: Command, port: u16, dir: tempfile::TempDir) -> Self {
        let log = dir.path().join("service.log");
        let out = std::fs::File::create(&log).expect("log file");
        let mut child = cmd
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        wait_for_port(port, what, &mut child, &log);
        Self { child, dir }
    }
}

/// A test CA and a server certificate it signs for 127.0.0.1 and localhost, made with
/// openssl (rustls refuses a CA certificate as the server's own). Clients trust `ca`.
pub struct TestCertificate {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCertificate {
    pub fn make() -> Self {
        let dir = temp_dir("certs");
        let path = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl (Debian's openssl package) makes the test certificates");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Sluice test CA",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            path("server.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write server.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ]);
        Self {
            ca: path("ca.pem"),
            cert: path("cert.pem"),
            key: path("key.pem"),
            dir,
        }
    }
}

/// A Tansu broker with in-memory storage.
pub struct Tansu {
    pub bootstrap: String,
    _service: Service,
}

impl Tansu {
    pub fn start() -> Self {
        let port = free_port();
        Self::start_advertising(port, &format!("127.0.0.1:{port}"))
    }

    /// Listens on `port` but tells clients to connect to `advertised` (a gateway in front).
    pub fn start_advertising(port: u16, advertised: &str) -> Self {
        let home = std::env::var("HOME").unwrap_or_default();
        let bin = find_binary(
            "SLUICE_TANSU_BIN",
            &[PathBuf::from(home).join(".cargo/bin/tansu")],
            "cargo install tansu --version 0.6.0 --locked --features dynostore",
        );
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &format!("tcp://{advertised}"),
            "--storage-engine",
            "memory://tansu/",
        ]);
        let service = Service::spawn("tansu", cmd, port, temp_dir("tansu"));
        Self {
            bootstrap: format!("127.0.0.1:{port}"),
            _service: service,
        }
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        create_topic(&self.bootstrap, topic, partitions);
    }
}

/// Creates a topic through the Kafka admin API and waits until its metadata shows it.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    create_topic_with(&config, topic, partitions);
}

/// Like `create_topic`, with a client configuration of the caller's (brokers, security).
pub fn create_topic_with(config: &ClientConfig, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    // On a thread of its own, so that callers inside an async runtime may use it too.
    let results = std::thread::scope(|s| {
        s.spawn(|| {
            tokio_rt().block_on(admin.create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            ))
        })
        .join()
        .expect("create_topics thread")
    })
    .expect("create_topics request");
    for r in results {
        if let Err((name, code)) = r {
            panic!("creating topic {name} failed: {code:?}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5));
        if let Ok(md) = md {
            if md
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.partitions().len() == partitions as usize)
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "topic {topic} did not appear");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("sluice-{prefix}-"))
        .tempdir()
        .expect("temp dir")
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// librdkafka's in-process mock cluster: Kafka protocol on loopback, no external process.
pub struct MockKafka {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub bootstrap: String,
}

impl MockKafka {
    pub fn start(brokers: i32) -> Self {
        let cluster = MockCluster::new(brokers).expect("mock cluster");
        let bootstrap = cluster.bootstrap_servers();
        Self { cluster, bootstrap }
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.cluster
            .create_topic(topic, partitions, 1)
            .expect("mock topic");
    }
}

/// Azurite's Blob service with the well-known development account.
pub struct Azurite {
    /// Blob endpoint including the account, as Sluice's `sink.azure.endpoint` wants it.
    pub endpoint: String,
    pub port: u16,
    service: Option<Service>,
    stopped_dir: Option<tempfile::TempDir>,
}

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (not a secret).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    pub fn start() -> Self {
        let port = free_port();
        let service = Self::spawn(port, temp_dir("azurite"));
        Self {
            endpoint: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
            port,
            service: Some(service),
            stopped_dir: None,
        }
    }

    /// Azurite over HTTPS (a self-signed certificate for 127.0.0.1, made with openssl) that
    /// also accepts Microsoft Entra ID bearer tokens (`--oauth basic`: issuer, audience and
    /// lifetime are checked, not the signature). Clients must trust `OAuthAzurite::ca_file`.
    pub fn start_with_oauth() -> OAuthAzurite {
        let port = free_port();
        let TestCertificate {
            dir,
            ca: ca_file,
            cert,
            key,
        } = TestCertificate::make();
        let mut cmd = Self::command(port, &dir);
        cmd.args(["--oauth", "basic", "--cert"])
            .arg(&cert)
            .arg("--key")
            .arg(&key);
        let service = Service::spawn("azurite", cmd, port, dir);
        OAuthAzurite {
            endpoint: format!("https://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
            ca_file,
            _service: service,
        }
    }

    fn spawn(port: u16, dir: tempfile::TempDir) -> Service {
        let cmd = Self::command(port, &dir);
        Service::spawn("azurite", cmd, port, dir)
    }

    fn command(port: u16, dir: &tempfile::TempDir) -> Command {
        let bin = find_binary(
            "SLUICE_AZURITE_BIN",
            &[workspace_root().join(".tools/node_modules/.bin/azurite-blob")],
            "npm install --prefix .tools azurite@3.37.0",
        );
        let mut cmd = Command::new(bin);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--loose",
            "--skipApiVersionCheck",
            "--location",
        ])
        .arg(dir.path().join("data"));
        cmd
    }

    /// Kills the emulator (an outage); its data stays for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut service) = self.service.take() {
            let _ = service.child.kill();
            let _ = service.child.wait();
            // Keep the data directory: take it out of the service before it is dropped.
            let dir = std::mem::replace(&mut service.dir, temp_dir("azurite-empty"));
            self.stopped_dir = Some(dir);
        }
    }

    /// Starts the emulator again on the same port with the same data.
    pub fn restart(&mut self) {
        if let Some(dir) = self.stopped_dir.take() {
            self.service = Some(Self::spawn(self.port, dir));
        }
    }
}

/// Azurite over HTTPS with bearer-token auth (see `Azurite::start_with_oauth`).
pub struct OAuthAzurite {
    pub endpoint: String,
    /// The server's self-signed certificate, to trust.
    pub ca_file: PathBuf,
    _service: Service,
}

/// A stand-in for Microsoft Entra ID's token endpoint (`tests/entra/token_server.py`, run by
/// the test venv's Python): the client-credentials grant for one service principal.
pub struct EntraTokenServer {
    /// What Sluice's `sink.azure.authority_host` is set to.
    pub authority_host: String,
    _service: Service,
}

impl EntraTokenServer {
    pub fn start(tenant_id: &str, client_id: &str, client_secret: &str) -> Self {
        let python = find_binary(
            "SLUICE_PYTHON",
            &[workspace_root().join(".tools/venv/bin/python")],
            "python3 -m venv .tools/venv",
        );
        let port = free_port();
        let mut cmd = Command::new(python);
        cmd.arg(workspace_root().join("tests/entra/token_server.py"))
            .args([&port.to_string(), tenant_id, client_id, client_secret]);
        let service = Service::spawn("entra token server", cmd, port, temp_dir("entra"));
        Self {
            authority_host: format!("http://127.0.0.1:{port}"),
            _service: service,
        }
    }
}

/// A local S3 server (moto's, from the test venv), for S3 destinations. Accepts any
/// credentials; supports conditional writes (`If-None-Match: *`), which landing relies on.
pub struct S3Server {
    pub endpoint: String,
    _service: Service,
}

impl S3Server {
    pub fn start() -> Self {
        let bin = find_binary(
            "SLUICE_MOTO_BIN",
            &[workspace_root().join(".tools/venv/bin/moto_server")],
            "pip install 'moto[server]' into .tools/venv",
        );
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let service = Service::spawn("moto_server", cmd, port, temp_dir("s3"));
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            _service: service,
        }
    }

    /// Creates a bucket (moto needs no signature for it).
    pub fn create_bucket(&self, bucket: &str) {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).expect("connect to the S3 server");
        use std::io::{Read, Write};
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "create bucket {bucket}: {reply}"
        );
    }
}
