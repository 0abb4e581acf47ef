//! The HTTP gateway served by axum on an ephemeral loopback port of this
//! process, alone or over a fresh host with tenants `acme` and `beta`.

use std::future::IntoFuture;
use std::net::SocketAddr;

use nimbus_core::{FunctionConfig, Host, Limits, UsageRecord};
use nimbus_http::{Gateway, GatewayBuilder, Route};

use super::client::Client;
use super::deploy::{deploy, deploy_with};
use super::host::{TestHost, test_host};
use super::metrics::invocations;

pub const ACME_KEY: &str = "acme-key";
pub const BETA_KEY: &str = "beta-key";
pub const ADMIN_KEY: &str = "admin-key";

/// The admin API's functions of tenant `acme`.
pub const FUNCTIONS: &str = "/admin/v1/tenants/acme/functions";

/// A router served on an ephemeral port; stops when dropped.
pub struct Served {
    pub client: Client,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(router: axum::Router) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(axum::serve(listener, router).into_future());
    Served {
        client: Client::new(addr),
        addr,
        task,
    }
}

/// A gateway over `host` knowing tenants `acme` and `beta` by their keys.
pub fn gateway(host: &Host, configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> Gateway {
    let builder = Gateway::builder(host.clone())
        .tenant("acme", vec![ACME_KEY.into()], None)
        .tenant("beta", vec![BETA_KEY.into()], None);
    configure(builder).build().expect("gateway builds")
}

/// A route to `acme`'s `function`.
pub fn route(path: &str, host: Option<&str>, function: &str, public: bool) -> Route {
    Route {
        path_prefix: path.into(),
        host: host.map(String::from),
        tenant: "acme".into(),
        function: function.into(),
        public,
    }
}

/// A host with tenants `acme` and `beta` behind a served [`gateway`], and a
/// client for each kind of caller.
pub struct GatewayHost {
    pub t: TestHost,
    pub gateway: Gateway,
    pub served: Served,
    /// Sends no key.
    pub anyone: Client,
    pub acme: Client,
    pub beta: Client,
    pub admin: Client,
}

impl GatewayHost {
    /// Over a fresh [`test_host`], with default limits.
    pub async fn start(configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> Self {
        Self::over(test_host(|b| b), Limits::default(), configure).await
    }

    /// Over `t`, registering `acme` with `acme_limits`.
    pub async fn over(
        t: TestHost,
        acme_limits: Limits,
        configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> Self {
        t.host.add_tenant("acme", acme_limits).expect("tenant acme");
        t.host
            .add_tenant("beta", Limits::default())
            .expect("tenant beta");
        let gateway = gateway(&t.host, configure);
        let served = serve(gateway.router()).await;
        let anyone = served.client.clone();
        Self {
            acme: anyone.with_key(ACME_KEY),
            beta: anyone.with_key(BETA_KEY),
            admin: anyone.with_key(ADMIN_KEY),
            anyone,
            t,
            gateway,
            served,
        }
    }

    pub fn host(&self) -> &Host {
        &self.t.host
    }

    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    /// Deploys sample guest `guest` as `acme`'s function `name`.
    pub async fn deploy(&self, name: &str, guest: &str) {
        deploy(self.host(), "acme", name, guest).await;
    }

    /// [`Self::deploy`] with limits or grants.
    pub async fn deploy_with(&self, name: &str, guest: &str, spec: impl Into<FunctionConfig>) {
        deploy_with(self.host(), "acme", name, guest, spec).await;
    }

    pub fn records(&self) -> Vec<UsageRecord> {
        self.t.records()
    }

    /// Every invocation counted, whatever its tenant, function and outcome.
    pub fn invocations(&self) -> f64 {
        invocations(self.host())
    }
}
