//! `wasmcloud:messaging/producer` for guests: publishing to the tenant's
//! durable queues, only the topics granted to the function (`topics`).
//!
//! A topic is a queue of the invocation's tenant. `send` returns once the
//! message is on disk, so a published message survives a crash the moment
//! the guest sees success. `client.connect` accepts any name: there is one
//! message service per host, and what a guest may reach is decided by its
//! topic grants, not by the connection name.

use std::sync::Arc;

use nimbus_bindings::messaging::{producer, types};
use nimbus_bindings::{Message, MessagingClient};
use nimbus_queue::{OutgoingMessage, QueueBackend};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::capability::{Capability, DeployCx, Holds, InvokeCx, note_ungranted};
use crate::error::Error;
use crate::limits::FunctionConfig;
use crate::logs::Logs;
use crate::usage::UsageRecord;

/// Most bytes of metadata a message may carry (keys + values).
const MAX_METADATA_BYTES: usize = 8 << 10;

/// An invocation's publishing rights and what it published.
pub(crate) struct Messaging {
    queues: Arc<dyn QueueBackend>,
    tenant: Arc<str>,
    granted: Arc<[String]>,
    published: u64,
    denied: u64,
}

impl Capability for Messaging {
    type Grant = Arc<[String]>;
    const INTERFACES: &'static [&'static str] =
        &["wasmcloud:messaging/producer", "wasmcloud:messaging/types"];

    fn add_to_linker<T: Holds<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        fn view<T: Holds<Messaging>>(t: &mut T) -> MessagingView<'_> {
            let (messaging, table) = t.parts();
            MessagingView { messaging, table }
        }
        types::add_to_linker::<T, MessagingHost>(l, view)?;
        producer::add_to_linker::<T, MessagingHost>(l, view)
    }

    fn ungranted(spec: &FunctionConfig, import: &str) -> Option<String> {
        note_ungranted(!spec.topics.is_empty(), import, "topics", "topics")
    }

    async fn grant(cx: &DeployCx<'_>) -> Result<Self::Grant, Error> {
        for topic in &cx.spec.topics {
            nimbus_queue::check_queue_name(topic).map_err(|e| {
                Error::Config(format!("function `{}`: topic grant: {e}", cx.function))
            })?;
        }
        Ok(cx.spec.topics.clone().into())
    }

    fn prepare(granted: &Self::Grant, cx: &InvokeCx<'_>) -> wasmtime::Result<Self> {
        Ok(Messaging {
            queues: cx.services.queues.clone(),
            tenant: cx.tenant.clone(),
            granted: granted.clone(),
            published: 0,
            denied: 0,
        })
    }

    fn finish(self, usage: &mut UsageRecord, _logs: &mut Logs) {
        usage.messages_published += self.published;
        usage.denied_calls += self.denied;
    }
}

struct MessagingHost;
impl HasData for MessagingHost {
    type Data<'a> = MessagingView<'a>;
}

/// What `wasmcloud:messaging` host functions see of the store.
pub(crate) struct MessagingView<'a> {
    messaging: &'a mut Messaging,
    table: &'a mut ResourceTable,
}

impl types::Host for MessagingView<'_> {}

impl types::HostClient for MessagingView<'_> {
    async fn connect(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<MessagingClient>, types::Error>> {
        Ok(Ok(self.table.push(MessagingClient { name })?))
    }

    async fn disconnect(
        &mut self,
        _client: Resource<MessagingClient>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }

    async fn drop(&mut self, client: Resource<MessagingClient>) -> wasmtime::Result<()> {
        self.table.delete(client)?;
        Ok(())
    }
}

impl types::HostMessage for MessagingView<'_> {
    async fn new(&mut self, data: Vec<u8>) -> wasmtime::Result<Resource<Message>> {
        Ok(self.table.push(Message {
            data,
            ..Message::default()
        })?)
    }

    async fn topic(&mut self, m: Resource<Message>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&m)?.topic.clone())
    }

    async fn content_type(&mut self, m: Resource<Message>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&m)?.content_type.clone())
    }

    async fn set_content_type(
        &mut self,
        m: Resource<Message>,
        content_type: String,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.content_type = Some(content_type);
        Ok(())
    }

    async fn data(&mut self, m: Resource<Message>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&m)?.data.clone())
    }

    async fn set_data(&mut self, m: Resource<Message>, data: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.data = data;
        Ok(())
    }

    async fn metadata(
        &mut self,
        m: Resource<Message>,
    ) -> wasmtime::Result<Option<Vec<(String, String)>>> {
        let meta = &self.table.get(&m)?.metadata;
        Ok((!meta.is_empty()).then(|| meta.clone()))
    }

    async fn add_metadata(
        &mut self,
        m: Resource<Message>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        let meta = &mut self.table.get_mut(&m)?.metadata;
        let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
        // Bounded so a guest cannot grow host memory without limit through
        // calls that have no error to report.
        if size + key.len() + value.len() > MAX_METADATA_BYTES {
            wasmtime::bail!("message metadata over {MAX_METADATA_BYTES} bytes");
        }
        meta.retain(|(k, _)| *k != key);
        meta.push((key, value));
        Ok(())
    }

    async fn set_metadata(
        &mut self,
        m: Resource<Message>,
        meta: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_METADATA_BYTES {
            wasmtime::bail!("message metadata over {MAX_METADATA_BYTES} bytes");
        }
        self.table.get_mut(&m)?.metadata = meta;
        Ok(())
    }

    async fn remove_metadata(&mut self, m: Resource<Message>, key: String) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.metadata.retain(|(k, _)| *k != key);
        Ok(())
    }

    async fn drop(&mut self, m: Resource<Message>) -> wasmtime::Result<()> {
        self.table.delete(m)?;
        Ok(())
    }
}

impl producer::Host for MessagingView<'_> {
    async fn send(
        &mut self,
        client: Resource<MessagingClient>,
        topic: String,
        message: Resource<Message>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.table.get(&client)?;
        let message = self.table.delete(message)?;
        let m = &mut *self.messaging;
        if !m.granted.contains(&topic) {
            m.denied += 1;
            let shown: String = topic.chars().take(64).collect();
            tracing::info!(topic = %shown, "publish denied: topic not granted");
            return Ok(Err(types::Error::PermissionDenied(format!(
                "topic {shown:?} is not granted to this function"
            ))));
        }
        let (queues, tenant) = (m.queues.clone(), m.tenant.clone());
        let msg = OutgoingMessage {
            body: message.data,
            content_type: message.content_type,
            metadata: message.metadata,
        };
        // The send syncs to disk: off the runtime's workers.
        let sent = tokio::task::spawn_blocking(move || {
            queues.send(&tenant, &topic, msg, nimbus_queue::now_ms())
        })
        .await?;
        Ok(match sent {
            Ok(_) => {
                self.messaging.published += 1;
                Ok(())
            }
            Err(e) => Err(types::Error::Other(e.to_string())),
        })
    }
}
