//! `wasi:logging`: structured entries kept with the invocation's logs
//! (capped like stdout: past the cap entries are dropped, and a guest that
//! keeps logging is ended) and sent to `tracing` inside the invocation's
//! span.
//! Always granted.

use nimbus_bindings::logging::{self, Level};
use wasmtime::component::{HasSelf, Linker};

use crate::capability::{Capability, DeployCx, Holds, InvokeCx};
use crate::error::Error;
use crate::logs::{EntrySink, Logs};
use crate::usage::UsageRecord;

pub(crate) struct Logging {
    entries: EntrySink,
}

impl Capability for Logging {
    type Grant = ();
    const INTERFACES: &'static [&'static str] = &["wasi:logging/logging"];

    fn add_to_linker<T: Holds<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        logging::add_to_linker::<T, HasSelf<Logging>>(l, |t| t.parts().0)
    }

    async fn grant(_cx: &DeployCx<'_>) -> Result<(), Error> {
        Ok(())
    }

    fn prepare(_grant: &(), cx: &InvokeCx<'_>) -> wasmtime::Result<Self> {
        Ok(Logging {
            entries: EntrySink::new(cx.services.max_log_bytes),
        })
    }

    fn finish(self, _usage: &mut UsageRecord, logs: &mut Logs) {
        logs.entries = self.entries.entries;
        logs.dropped_bytes += self.entries.dropped;
    }
}

impl logging::Host for Logging {
    async fn log(
        &mut self,
        level: Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        // Past the cap an entry is neither kept nor traced: a flood must not
        // reach the host's own log either.
        if !self.entries.admit(context.len() + message.len())? {
            return Ok(());
        }
        let name = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
        };
        // The invocation's span carries tenant, function and invocation id.
        match level {
            Level::Trace => tracing::trace!(target: "nimbus::guest", %context, "{message}"),
            Level::Debug => tracing::debug!(target: "nimbus::guest", %context, "{message}"),
            Level::Info => tracing::info!(target: "nimbus::guest", %context, "{message}"),
            Level::Warn => tracing::warn!(target: "nimbus::guest", %context, "{message}"),
            Level::Error | Level::Critical => {
                tracing::error!(target: "nimbus::guest", level = name, %context, "{message}")
            }
        }
        self.entries.push(name, context, message);
        Ok(())
    }
}
