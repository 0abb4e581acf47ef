//! Integration tests: one binary (faster to link than one per file), driving
//! the public API and the real `nimbus` binary with guests built from
//! `guests/` by the same builder users run. What the tests share is in
//! `support`.

mod support;

mod admin_api;
mod bill_cli;
mod billing;
mod blob;
mod blob_persistence;
mod build_cli;
mod cli;
mod client_cli;
mod cluster;
mod cluster_blob;
mod cluster_isolation;
mod cluster_logs;
mod cluster_queue;
mod cluster_registry;
mod cluster_schedule;
mod compile_cache;
mod console;
mod crash;
mod deploy;
mod files;
mod http;
mod isolation;
mod js_sdk;
mod kv;
mod limits;
mod logs;
mod messaging;
mod nimbus_serve;
mod outbound;
mod python;
mod python_sdk;
mod queue_api;
mod restart;
mod services;
mod startup;
mod storage_api;
mod thumbnail;
mod triggers;
mod usage_api;
mod versions;
