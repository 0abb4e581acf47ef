//! `nimbus:function/context`: what a function may know about the invocation
//! it runs in (its id, function, limits and the time left), the facts a
//! Lambda handler's `context` object carries. Always granted: it reveals
//! nothing beyond the invocation's own usage record.

use std::sync::Arc;

use nimbus_bindings::context::{self, Invocation};
use wasmtime::component::{HasSelf, Linker};

use crate::capability::{Capability, DeployCx, Holds, InvokeCx};
use crate::error::Error;
use crate::logs::Logs;
use crate::usage::UsageRecord;

pub(crate) struct Context {
    invocation: Invocation,
    deadline: tokio::time::Instant,
}

impl Capability for Context {
    type Grant = ();
    const INTERFACES: &'static [&'static str] = &["nimbus:function/context"];

    fn add_to_linker<T: Holds<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        context::add_to_linker::<T, HasSelf<Context>>(l, |t| t.parts().0)
    }

    async fn grant(_cx: &DeployCx<'_>) -> Result<(), Error> {
        Ok(())
    }

    fn prepare(_grant: &(), cx: &InvokeCx<'_>) -> wasmtime::Result<Self> {
        Ok(Context {
            invocation: Invocation {
                id: cx.invocation_id.to_string(),
                tenant: str_of(cx.tenant),
                function_name: str_of(cx.function),
                function_version: cx.version.to_string(),
                memory_limit_bytes: cx.limits.max_memory_bytes,
                timeout_ms: u64::try_from(cx.limits.timeout.as_millis()).unwrap_or(u64::MAX),
            },
            deadline: cx.deadline,
        })
    }

    fn finish(self, _usage: &mut UsageRecord, _logs: &mut Logs) {}
}

fn str_of(s: &Arc<str>) -> String {
    s.as_ref().to_string()
}

impl context::Host for Context {
    async fn current(&mut self) -> Invocation {
        self.invocation.clone()
    }

    async fn remaining_ms(&mut self) -> u64 {
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
    }
}
