//! The synchronous `BlobBackend` over the blob store's async calls.

#[allow(clippy::wildcard_imports)]
use super::*;

impl BlobBackend for NatsBlobs {
    fn create_container(&self, tenant: &str, container: &str) -> Result<ContainerMeta, BlobError> {
        check_tenant(tenant)?;
        check_container_name(container)?;
        let (tenant, container) = (tenant.to_string(), container.to_string());
        self.with(CALL_TIMEOUT, move |_, s| async move {
            let created_at_ms = now_ms();
            let rec = serde_json::to_vec(&ContainerRecord { created_at_ms })
                .map_err(|e| storage(e.to_string()))?;
            let key = container_key(&tenant, &container);
            // A container deleted before has a revision to start from.
            let revision = match s.meta.entry(&key).await.map_err(storage)? {
                Some(e) if e.operation == Operation::Put => {
                    return Err(BlobError::ContainerExists(container));
                }
                Some(e) => Some(e.revision),
                None => None,
            };
            if !put_if(&s.meta, &key, rec.into(), revision).await? {
                return Err(BlobError::ContainerExists(container));
            }
            Ok(ContainerMeta {
                name: container,
                created_at_ms,
            })
        })
    }

    fn ensure_container(&self, tenant: &str, container: &str) -> Result<ContainerMeta, BlobError> {
        match self.container(tenant, container)? {
            Some(c) => Ok(c),
            None => match self.create_container(tenant, container) {
                Err(BlobError::ContainerExists(_)) => self
                    .container(tenant, container)?
                    .ok_or_else(|| BlobError::NoSuchContainer(container.into())),
                other => other,
            },
        }
    }

    fn container(&self, tenant: &str, container: &str) -> Result<Option<ContainerMeta>, BlobError> {
        check_container_name(container)?;
        let (tenant, container) = (tenant.to_string(), container.to_string());
        self.with(CALL_TIMEOUT, move |_, s| async move {
            container_record(&s.meta, &tenant, &container).await
        })
    }

    fn delete_container(&self, tenant: &str, container: &str) -> Result<(), BlobError> {
        check_container_name(container)?;
        let (tenant, container) = (tenant.to_string(), container.to_string());
        self.with(DATA_TIMEOUT, move |_, s| async move {
            require_container(&s.meta, &tenant, &container).await?;
            // The record first: a write racing the deletion then fails as
            // into a missing container instead of landing in a dying one.
            s.meta
                .purge(container_key(&tenant, &container))
                .await
                .map_err(storage)?;
            let prefix = object_name(&tenant, &container, "");
            let (freed, _) = delete_under(&s.objects, &prefix).await?;
            release(&s.meta, &tenant, freed).await
        })
    }

    fn containers(&self, tenant: &str) -> Result<Vec<ContainerMeta>, BlobError> {
        let tenant = tenant.to_string();
        let client = self.inner.cluster.client().clone();
        self.with(CALL_TIMEOUT, move |_, s| async move {
            let prefix = format!("{tenant}.c");
            let mut out = Vec::new();
            for (key, value) in entries_under(&s.meta, &client, &prefix).await? {
                let Some(name) = key
                    .strip_prefix(&format!("{prefix}."))
                    .and_then(unhex)
                    .and_then(|n| String::from_utf8(n).ok())
                else {
                    continue;
                };
                let rec: ContainerRecord =
                    serde_json::from_slice(&value).map_err(|e| storage(e.to_string()))?;
                out.push(ContainerMeta {
                    name,
                    created_at_ms: rec.created_at_ms,
                });
            }
            // Hex keeps the names' byte order.
            Ok(out)
        })
    }

    fn spool(&self, tenant: &str) -> Result<Spool, BlobError> {
        Spool::unnamed(tenant, tempfile::tempfile()?, self.inner.max_object_bytes)
    }

    fn commit(
        &self,
        mut spool: Spool,
        container: &str,
        name: &str,
        content_type: Option<String>,
        options: WriteOptions,
    ) -> Result<ObjectMeta, BlobError> {
        check_names(container, name)?;
        let tenant = spool.tenant().to_string();
        let size = spool.len();
        let file = spool.contents()?;
        let (container, name) = (container.to_string(), name.to_string());
        let metadata = write_metadata(content_type, &options, None);
        self.with(DATA_TIMEOUT, move |_, s| async move {
            let mut data = tokio::fs::File::from_std(file);
            let stored = object_name(&tenant, &container, &name);
            let info = put_object(
                &s,
                &tenant,
                &container,
                stored,
                metadata,
                size,
                options.quota,
                &mut data,
            )
            .await?;
            Ok(meta_of(&info, &container, &name))
        })
    }

    fn head(
        &self,
        tenant: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, BlobError> {
        check_names(container, name)?;
        let (container, name) = (container.to_string(), name.to_string());
        let stored = object_name(tenant, &container, &name);
        self.with(CALL_TIMEOUT, move |_, s| async move {
            Ok(info(&s.objects, &stored)
                .await?
                .map(|i| meta_of(&i, &container, &name)))
        })
    }

    fn open(
        &self,
        tenant: &str,
        container: &str,
        name: &str,
        start: u64,
        end: u64,
    ) -> Result<ObjectReader, BlobError> {
        check_names(container, name)?;
        let (tenant, container, name) =
            (tenant.to_string(), container.to_string(), name.to_string());
        let mut file = tempfile::tempfile()?;
        let (len, size, file) = self.with(DATA_TIMEOUT, move |_, s| async move {
            let stored = object_name(&tenant, &container, &name);
            let mut object = match s.objects.get(&stored).await {
                Ok(o) => o,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => {
                    require_container(&s.meta, &tenant, &container).await?;
                    return Err(no_such_object(&container, &name));
                }
                Err(e) => return Err(storage(e)),
            };
            let size = object.info().size as u64;
            let len = if size == 0 {
                0
            } else {
                if start >= size {
                    return Err(BlobError::Invalid(format!(
                        "start offset {start} is past the end of `{name}` ({size} bytes)"
                    )));
                }
                let end = end.min(size - 1);
                if end < start {
                    return Err(BlobError::Invalid(format!(
                        "end offset {end} is before start offset {start}"
                    )));
                }
                end - start + 1
            };
            // The range is fetched whole before the reader is handed out,
            // so it reads the version it was opened on, as embedded.
            let (mut offset, mut copied) = (0u64, 0u64);
            let mut buf = vec![0; 1 << 16];
            while copied < len {
                let n = object.read(&mut buf).await.map_err(storage)?;
                if n == 0 {
                    return Err(storage(format!("object `{name}` ended early")));
                }
                let chunk = &buf[..n];
                let lo = start.saturating_sub(offset).min(n as u64) as usize;
                let hi = ((start + len).saturating_sub(offset)).min(n as u64) as usize;
                if lo < hi {
                    file.write_all(&chunk[lo..hi])?;
                    copied += (hi - lo) as u64;
                }
                offset += n as u64;
            }
            file.seek(SeekFrom::Start(0))?;
            Ok((len, size, file))
        })?;
        Ok(ObjectReader::from_file(file, len, size))
    }

    fn list(
        &self,
        tenant: &str,
        container: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, BlobError> {
        check_container_name(container)?;
        let (tenant, container) = (tenant.to_string(), container.to_string());
        let (prefix, after) = (prefix.to_string(), after.map(String::from));
        self.with(CALL_TIMEOUT, move |_, s| async move {
            require_container(&s.meta, &tenant, &container).await?;
            let base = object_name(&tenant, &container, "");
            let mut out = Vec::new();
            for info in objects_under(&s.objects, &format!("{base}{prefix}")).await? {
                let name = &info.name[base.len()..];
                if after.as_deref().is_some_and(|a| name <= a) {
                    continue;
                }
                if out.len() >= limit.min(MAX_LIST_PAGE) {
                    break;
                }
                out.push(meta_of(&info, &container, name));
            }
            Ok(out)
        })
    }

    fn delete(&self, tenant: &str, container: &str, name: &str) -> Result<bool, BlobError> {
        check_names(container, name)?;
        let (tenant, container) = (tenant.to_string(), container.to_string());
        let stored = object_name(&tenant, &container, name);
        self.with(CALL_TIMEOUT, move |_, s| async move {
            require_container(&s.meta, &tenant, &container).await?;
            let Some(old) = info(&s.objects, &stored).await? else {
                return Ok(false);
            };
            match s.objects.delete(&stored).await {
                Ok(()) => {}
                Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(storage(e)),
            }
            release(&s.meta, &tenant, old.size as u64).await?;
            Ok(true)
        })
    }

    fn rename(
        &self,
        tenant: &str,
        src: (&str, &str),
        dest: (&str, &str),
        options: WriteOptions,
    ) -> Result<(), BlobError> {
        for (c, n) in [src, dest] {
            check_names(c, n)?;
        }
        if src == dest {
            return Ok(());
        }
        let tenant = tenant.to_string();
        let (sc, sn) = (src.0.to_string(), src.1.to_string());
        let (dc, dn) = (dest.0.to_string(), dest.1.to_string());
        self.with(DATA_TIMEOUT, move |_, s| async move {
            for c in [&sc, &dc] {
                require_container(&s.meta, &tenant, c).await?;
            }
            let from = object_name(&tenant, &sc, &sn);
            let mut object = match s.objects.get(&from).await {
                Ok(o) => o,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => {
                    return Err(no_such_object(&sc, &sn));
                }
                Err(e) => return Err(storage(e)),
            };
            let src_info = object.info().clone();
            let size = src_info.size as u64;
            // Copied, then the source deleted: the object keeps its etag,
            // content type and creation time, as a rename in place would.
            let mut metadata = write_metadata(
                src_info.metadata.get(CONTENT_TYPE).cloned(),
                &options,
                Some(etag(&src_info)),
            );
            metadata.insert(CREATED_AT.to_string(), created_at_ms(&src_info).to_string());
            // Both copies exist for a moment: reserved without a quota, the
            // source's bytes given back once it is gone.
            put_object(
                &s,
                &tenant,
                &dc,
                object_name(&tenant, &dc, &dn),
                metadata,
                size,
                None,
                &mut object,
            )
            .await?;
            match s.objects.delete(&from).await {
                Ok(()) => release(&s.meta, &tenant, size).await,
                Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
                Err(e) => Err(storage(e)),
            }
        })
    }

    fn stored_bytes(&self, tenant: &str) -> Result<u64, BlobError> {
        // Asked by every metrics scrape: without NATS, a request would wait
        // out its timeout for each tenant and the scrape would time out.
        if !self.inner.cluster.connected() {
            return Err(BlobError::Storage("NATS disconnected".into()));
        }
        let tenant = tenant.to_string();
        self.with(CALL_TIMEOUT, move |_, s| async move {
            Ok(usage(&s.meta, &tenant).await?.0)
        })
    }

    fn delete_tenant(&self, tenant: &str) -> Result<u64, BlobError> {
        check_tenant(tenant)?;
        let name = tenant.to_string();
        let client = self.inner.cluster.client().clone();
        let removed = self.with(DATA_TIMEOUT, move |inner, s| async move {
            let tenant = name;
            // Containers first, so a spool committed later finds none;
            // usage last, so a node killed midway counts high.
            let containers = format!("{tenant}.c");
            for (key, _) in entries_under(&s.meta, &client, &containers).await? {
                s.meta.purge(&key).await.map_err(storage)?;
            }
            // Deleting an object's metadata drops its undelivered event
            // from the stream; those this node holds are dropped here.
            let (_, removed) = delete_under(&s.objects, &format!("{tenant}/")).await?;
            let mine: Vec<Message> = {
                let mut held = inner.held();
                let seqs: Vec<u64> = held
                    .iter()
                    .filter(|(_, h)| h.event.tenant == tenant)
                    .map(|(seq, _)| *seq)
                    .collect();
                seqs.iter()
                    .filter_map(|seq| held.remove(seq))
                    .map(|h| h.message)
                    .collect()
            };
            for m in mine {
                let _ = m.ack().await;
            }
            s.meta.purge(usage_key(&tenant)).await.map_err(storage)?;
            Ok(removed)
        })?;
        tracing::info!(tenant, objects = removed, "blob tenant deleted");
        Ok(removed)
    }

    fn pending_events(&self, limit: usize) -> Result<Vec<ObjectCreated>, BlobError> {
        self.with(CALL_TIMEOUT, move |inner, s| async move {
            let want = limit.min(MAX_HELD).saturating_sub(inner.held().len());
            if want > 0 {
                let mut batch = s
                    .events
                    .fetch()
                    .max_messages(want)
                    .messages()
                    .await
                    .map_err(storage)?;
                while let Some(m) = batch.next().await {
                    let m = m.map_err(storage)?;
                    let seq = m.info().map_err(storage)?.stream_sequence;
                    let event = serde_json::from_slice::<ObjectInfo>(&m.payload)
                        .ok()
                        .and_then(|info| event_of(&info, seq));
                    match event {
                        // A redelivery replaces the copy held: only the
                        // latest delivery's ack counts.
                        Some(event) => {
                            inner.held().insert(seq, Held { message: m, event });
                        }
                        None => {
                            if let Err(e) = m.ack().await {
                                tracing::debug!(seq, "acking a non-event: {e}");
                            }
                        }
                    }
                }
            }
            Ok(inner
                .held()
                .values()
                .take(limit)
                .map(|h| h.event.clone())
                .collect())
        })
    }

    fn ack_event(&self, seq: u64) -> Result<(), BlobError> {
        self.with(CALL_TIMEOUT, move |inner, _| async move {
            let Some(held) = inner.held().remove(&seq) else {
                return Ok(());
            };
            // Confirmed by the server: once this returns no node gets it.
            if let Err(e) = held.message.double_ack().await {
                inner.held().insert(seq, held);
                return Err(storage(e));
            }
            Ok(())
        })
    }
}
