//! The synchronous `DeploymentRegistry` over the registry's async calls.

#[allow(clippy::wildcard_imports)]
use super::*;

impl DeploymentRegistry for NatsRegistry {
    fn load(&self) -> Result<Snapshot, RegistryError> {
        let inner = self.inner.clone();
        self.block(async move { inner.load().await })
    }

    fn put_tenant(&self, tenant: &TenantRecord) -> Result<(), RegistryError> {
        let inner = self.inner.clone();
        let record = tenant.clone();
        self.block(async move {
            let value = serde_json::to_vec(&record).map_err(fail)?;
            inner
                .put(
                    &tenant_key(&record.name),
                    value,
                    &format!("tenant `{}`", record.name),
                    |now| {
                        serde_json::from_slice::<TenantRecord>(now)
                            .is_ok_and(|t| same_tenant(&t, &record))
                    },
                )
                .await
        })
    }

    fn delete_tenant(&self, name: &str) -> Result<(), RegistryError> {
        let inner = self.inner.clone();
        let name = name.to_string();
        let r = self.block(async move {
            let (_, entries) = inner.read_all().await?;
            for (key, _, value) in &entries {
                let doomed = match decode(key, value.as_deref()) {
                    Some(Ok(RegistryChange::Function {
                        tenant,
                        record: Some(_),
                        ..
                    })) => tenant == name,
                    Some(Ok(RegistryChange::Route {
                        record: Some(r), ..
                    })) => r.tenant == name,
                    _ => false,
                };
                if doomed {
                    inner.delete(key).await?;
                }
            }
            inner.delete(&tenant_key(&name)).await
        });
        self.inner.sweep_later();
        r
    }

    fn put_function(
        &self,
        function: &FunctionRecord,
        component: Option<(&str, &[u8])>,
    ) -> Result<(), RegistryError> {
        let inner = self.inner.clone();
        let record = function.clone();
        let component = component.map(|(sha, bytes)| (sha.to_string(), bytes.to_vec()));
        let r = self.block(async move {
            if let Some((sha, bytes)) = component {
                inner.put_component(&sha, bytes).await?;
            }
            let value = serde_json::to_vec(&record).map_err(fail)?;
            inner
                .put(
                    &function_key(&record.tenant, &record.name),
                    value,
                    &format!("function `{}` of tenant `{}`", record.name, record.tenant),
                    |now| {
                        serde_json::from_slice::<FunctionRecord>(now)
                            .is_ok_and(|f| same_function(&f, &record))
                    },
                )
                .await
        });
        self.inner.sweep_later();
        r
    }

    fn delete_function(&self, tenant: &str, name: &str) -> Result<(), RegistryError> {
        let inner = self.inner.clone();
        let key = function_key(tenant, name);
        let r = self.block(async move { inner.delete(&key).await });
        self.inner.sweep_later();
        r
    }

    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let inner = self.inner.clone();
        let sha = sha256.to_string();
        self.block(async move { inner.component(&sha).await })
    }

    fn put_route(&self, route: &RouteRecord) -> Result<(), RegistryError> {
        let inner = self.inner.clone();
        let record = route.clone();
        self.block(async move {
            let value = serde_json::to_vec(&record).map_err(fail)?;
            let key = route_key(record.host.as_deref(), &record.path);
            // A route is replaced whole: the last writer's wins.
            let store = inner.records().await?;
            let revision = store.put(&key, value.into()).await.map_err(fail)?;
            inner.observe(&key, revision);
            Ok(())
        })
    }

    fn delete_route(&self, host: Option<&str>, path: &str) -> Result<bool, RegistryError> {
        let inner = self.inner.clone();
        let key = route_key(host, path);
        self.block(async move {
            let store = inner.records().await?;
            let there = store.get(&key).await.map_err(fail)?.is_some();
            if there {
                inner.delete(&key).await?;
            }
            Ok(there)
        })
    }
}
