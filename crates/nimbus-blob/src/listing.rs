//! Listing containers and pages of objects: prefix scans over the index,
//! which keeps keys in name order within each container.

use std::ops::Bound;

use redb::{Database, ReadableDatabase};

use crate::backend::{ContainerMeta, ObjectMeta};
use crate::error::BlobError;
use crate::index::{
    CONTAINERS, ContainerRecord, OBJECTS, ObjectRecord, container_key, object_key,
    require_container, tenant_prefix,
};
use crate::names::check_container_name;

/// Most names one listing page returns.
pub const MAX_LIST_PAGE: usize = 1000;

pub(crate) fn containers(db: &Database, tenant: &str) -> Result<Vec<ContainerMeta>, BlobError> {
    let prefix = tenant_prefix(tenant);
    let tx = db.begin_read()?;
    let t = tx.open_table(CONTAINERS)?;
    let mut out = Vec::new();
    for row in t.range(prefix.as_slice()..)? {
        let (k, v) = row?;
        let k = k.value();
        if !k.starts_with(&prefix) {
            break;
        }
        // Past the tenant prefix comes the container name's length prefix.
        let name = String::from_utf8_lossy(&k[prefix.len() + 4..]).into_owned();
        let rec: ContainerRecord = serde_json::from_slice(v.value())?;
        out.push(rec.meta(name));
    }
    Ok(out)
}

pub(crate) fn objects(
    db: &Database,
    tenant: &str,
    container: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ObjectMeta>, BlobError> {
    check_container_name(container)?;
    let ckey = container_key(tenant, container);
    let mut start = ckey.clone();
    start.extend_from_slice(prefix.as_bytes());
    // An `after` below the prefix would start the scan outside it.
    let after = after
        .filter(|after| after.as_bytes() >= prefix.as_bytes())
        .map(|after| object_key(tenant, container, after));
    let lower = match &after {
        Some(k) => Bound::Excluded(k.as_slice()),
        None => Bound::Included(start.as_slice()),
    };
    let tx = db.begin_read()?;
    require_container(&tx.open_table(CONTAINERS)?, tenant, container)?;
    let objects = tx.open_table(OBJECTS)?;
    let mut out = Vec::new();
    for row in objects.range::<&[u8]>((lower, Bound::Unbounded))? {
        if out.len() >= limit.min(MAX_LIST_PAGE) {
            break;
        }
        let (k, v) = row?;
        let k = k.value();
        if !k.starts_with(&start) {
            break;
        }
        let name = String::from_utf8_lossy(&k[ckey.len()..]).into_owned();
        let rec: ObjectRecord = serde_json::from_slice(v.value())?;
        out.push(rec.meta(container, &name));
    }
    Ok(out)
}
