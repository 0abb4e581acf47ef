//! `wasi:config/store`: the function's granted values (`config`), read-only.
//! Values are never logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_bindings::config;
use wasmtime::component::{HasSelf, Linker};

use crate::capability::{Capability, DeployCx, Holds, InvokeCx, note_ungranted};
use crate::error::Error;
use crate::limits::FunctionConfig;
use crate::logs::Logs;
use crate::usage::UsageRecord;

pub(crate) struct Config {
    values: Arc<BTreeMap<String, String>>,
}

impl Capability for Config {
    type Grant = Arc<BTreeMap<String, String>>;
    const INTERFACES: &'static [&'static str] = &["wasi:config/store"];

    fn add_to_linker<T: Holds<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        config::add_to_linker::<T, HasSelf<Config>>(l, |t| t.parts().0)
    }

    fn ungranted(spec: &FunctionConfig, import: &str) -> Option<String> {
        note_ungranted(!spec.config.is_empty(), import, "config keys", "config")
    }

    async fn grant(cx: &DeployCx<'_>) -> Result<Self::Grant, Error> {
        Ok(Arc::new(cx.spec.config.clone()))
    }

    fn prepare(values: &Self::Grant, _cx: &InvokeCx<'_>) -> wasmtime::Result<Self> {
        Ok(Config {
            values: values.clone(),
        })
    }

    fn finish(self, _usage: &mut UsageRecord, _logs: &mut Logs) {}
}

impl config::Host for Config {
    async fn get(&mut self, key: String) -> Result<Option<String>, config::Error> {
        Ok(self.values.get(&key).cloned())
    }

    async fn get_all(&mut self) -> Result<Vec<(String, String)>, config::Error> {
        Ok(self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
