//! The client's argument syntax: `T/F`, `T/F@3` and `T/F:staging`, alias
//! routing (`3`, `3=90,2=10`), and `KEY=VALUE` pairs. Each parser is a
//! clap value parser, so a mistake is a usage error (exit code 2) naming
//! the argument.

use std::fmt;

/// Tenant and function names, as the host checks them: 1–63 of
/// `[a-z0-9_-]`, starting with a letter or digit.
pub(crate) fn name(kind: &str, s: &str) -> Result<String, String> {
    let reason = if s.is_empty() {
        "must not be empty"
    } else if s.len() > 63 {
        "must be at most 63 characters"
    } else if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        "may contain only a-z, 0-9, '-' and '_'"
    } else if !s.as_bytes()[0].is_ascii_alphanumeric() {
        "must start with a letter or digit"
    } else {
        return Ok(s.to_string());
    };
    Err(format!("{kind} name `{s}` {reason}"))
}

/// A tenant name argument.
pub(crate) fn tenant(s: &str) -> Result<String, String> {
    name("tenant", s)
}

/// A function name argument.
pub(crate) fn function_name(s: &str) -> Result<String, String> {
    name("function", s)
}

/// An alias name argument.
pub(crate) fn alias(s: &str) -> Result<String, String> {
    name("alias", s)
}

/// `TENANT/FUNCTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FunctionRef {
    pub(crate) tenant: String,
    pub(crate) function: String,
}

impl FunctionRef {
    /// `/admin/v1/tenants/{t}/functions/{f}`.
    pub(crate) fn admin_path(&self) -> String {
        format!(
            "/admin/v1/tenants/{}/functions/{}",
            self.tenant, self.function
        )
    }
}

impl fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.function)
    }
}

pub(crate) fn function_ref(s: &str) -> Result<FunctionRef, String> {
    let Some((tenant, function)) = s.split_once('/') else {
        return Err(format!("`{s}`: expected TENANT/FUNCTION, e.g. acme/hello"));
    };
    Ok(FunctionRef {
        tenant: name("tenant", tenant)?,
        function: name("function", function)?,
    })
}

/// Which version an invocation goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    /// The `live` alias.
    Live,
    Version(u64),
    Alias(String),
}

/// `T/F`, `T/F@3` or `T/F:staging`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) function: FunctionRef,
    pub(crate) selector: Selector,
}

impl Target {
    /// The gateway's path of the function: `/{t}/{f}`, `/{t}/{f}@3`,
    /// `/{t}/{f}:staging`.
    pub(crate) fn gateway_path(&self) -> String {
        let FunctionRef { tenant, function } = &self.function;
        match &self.selector {
            Selector::Live => format!("/{tenant}/{function}"),
            Selector::Version(v) => format!("/{tenant}/{function}@{v}"),
            Selector::Alias(a) => format!("/{tenant}/{function}:{a}"),
        }
    }
}

pub(crate) fn target(s: &str) -> Result<Target, String> {
    let syntax = || {
        format!("`{s}`: expected TENANT/FUNCTION, TENANT/FUNCTION@VERSION or TENANT/FUNCTION:ALIAS")
    };
    let Some((tenant, rest)) = s.split_once('/') else {
        return Err(syntax());
    };
    let (function, selector) = if let Some((f, v)) = rest.split_once('@') {
        let version = v
            .parse::<u64>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("`{s}`: the version after @ must be a number from 1"))?;
        (f, Selector::Version(version))
    } else if let Some((f, a)) = rest.split_once(':') {
        (f, Selector::Alias(name("alias", a)?))
    } else {
        (rest, Selector::Live)
    };
    Ok(Target {
        function: FunctionRef {
            tenant: name("tenant", tenant)?,
            function: name("function", function)?,
        },
        selector,
    })
}

/// An alias's routing: one version, or two with weights summing to 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Routing(pub(crate) Vec<(u64, u8)>);

impl Routing {
    /// AliasJson: `{"routing": [{"version": 3, "weight": 90}, …]}`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let routing: Vec<serde_json::Value> = self
            .0
            .iter()
            .map(|(version, weight)| serde_json::json!({"version": version, "weight": weight}))
            .collect();
        serde_json::json!({ "routing": routing })
    }
}

/// `3`, `3=100`, `3=90,2=10`, or `3=90,2` (the other version takes the
/// rest).
pub(crate) fn routing(s: &str) -> Result<Routing, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.len() > 2 {
        return Err(format!(
            "`{s}`: route to one version (3) or split between two (3=90,2=10)"
        ));
    }
    let mut routes: Vec<(u64, Option<u8>)> = Vec::new();
    for part in &parts {
        let (version, weight) = match part.split_once('=') {
            Some((v, w)) => (v.trim(), Some(w.trim())),
            None => (*part, None),
        };
        let version = version
            .parse::<u64>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("`{s}`: `{version}` is not a version (a number from 1)"))?;
        let weight = weight
            .map(|w| {
                w.trim_end_matches('%')
                    .parse::<u8>()
                    .ok()
                    .filter(|w| (1..=100).contains(w))
                    .ok_or_else(|| format!("`{s}`: weight `{w}` is not a number from 1 to 100"))
            })
            .transpose()?;
        if routes.iter().any(|(v, _)| *v == version) {
            return Err(format!("`{s}`: version {version} is named twice"));
        }
        routes.push((version, weight));
    }
    let given: u32 = routes.iter().filter_map(|(_, w)| w.map(u32::from)).sum();
    let unweighted = routes.iter().filter(|(_, w)| w.is_none()).count();
    let resolved: Vec<(u64, u8)> = match (routes.len(), unweighted) {
        (1, 1) => vec![(routes[0].0, 100)],
        (2, 2) => {
            return Err(format!(
                "`{s}`: give the weights of a split, e.g. {}=90,{}=10",
                routes[0].0, routes[1].0
            ));
        }
        (2, 1) if given < 100 => routes
            .iter()
            .map(|(v, w)| (*v, w.unwrap_or((100 - given) as u8)))
            .collect(),
        (2, 1) => {
            return Err(format!(
                "`{s}`: a weight of {given} leaves nothing for the other version"
            ));
        }
        _ => routes.iter().map(|(v, w)| (*v, w.unwrap_or(0))).collect(),
    };
    let total: u32 = resolved.iter().map(|(_, w)| u32::from(*w)).sum();
    if total != 100 {
        return Err(format!("`{s}`: the weights sum to {total}, not 100"));
    }
    Ok(Routing(resolved))
}

/// `KEY=VALUE` (the value may hold `=`).
pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected KEY=VALUE")),
    }
}

/// An AliasJson's `routing` (or `previous`) as the command line writes it:
/// `3`, or `3=90,2=10`; `-` for none.
pub(crate) fn routing_text(routing: &serde_json::Value) -> String {
    let Some(routes) = routing.as_array() else {
        return "-".into();
    };
    match routes.as_slice() {
        [] => "-".into(),
        [one] if one["weight"].as_u64().is_none_or(|w| w == 100) => one["version"].to_string(),
        many => many
            .iter()
            .map(|r| format!("{}={}", r["version"], r["weight"]))
            .collect::<Vec<_>>()
            .join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_takes_one_version_or_a_weighted_split() {
        assert_eq!(routing("3"), Ok(Routing(vec![(3, 100)])));
        assert_eq!(routing("3=100"), Ok(Routing(vec![(3, 100)])));
        assert_eq!(routing("3=90,2=10"), Ok(Routing(vec![(3, 90), (2, 10)])));
        assert_eq!(routing("3=90, 2=10"), Ok(Routing(vec![(3, 90), (2, 10)])));
        assert_eq!(routing("3=75%,2"), Ok(Routing(vec![(3, 75), (2, 25)])));
        assert_eq!(routing("3,2=5"), Ok(Routing(vec![(3, 95), (2, 5)])));
        assert_eq!(
            routing("3=90,2=10").map(|r| r.to_json()),
            Ok(serde_json::json!({"routing": [
                {"version": 3, "weight": 90}, {"version": 2, "weight": 10}
            ]}))
        );
    }

    #[test]
    fn routing_refuses_what_the_server_would() {
        for (input, needle) in [
            ("", "not a version"),
            ("x", "`x` is not a version"),
            ("0", "not a version"),
            ("3=50", "sum to 50"),
            ("3=90,2=20", "sum to 110"),
            ("3=0,2=100", "weight `0`"),
            ("3=101", "weight `101`"),
            ("3,2", "give the weights"),
            ("3=100,2", "leaves nothing"),
            ("3=50,3=50", "named twice"),
            ("1=30,2=30,3=40", "one version (3) or split between two"),
        ] {
            let e = routing(input).expect_err(input);
            assert!(e.contains(needle), "{input}: {e}");
        }
    }

    #[test]
    fn targets_name_the_live_alias_a_version_or_an_alias() {
        let f = FunctionRef {
            tenant: "acme".into(),
            function: "hello".into(),
        };
        let t = target("acme/hello").expect("live");
        assert_eq!(t.selector, Selector::Live);
        assert_eq!(t.function, f);
        assert_eq!(t.gateway_path(), "/acme/hello");
        let t = target("acme/hello@3").expect("version");
        assert_eq!(t.selector, Selector::Version(3));
        assert_eq!(t.gateway_path(), "/acme/hello@3");
        let t = target("acme/hello:staging").expect("alias");
        assert_eq!(t.selector, Selector::Alias("staging".into()));
        assert_eq!(t.gateway_path(), "/acme/hello:staging");
        for bad in [
            "acme",
            "acme/hello@",
            "acme/hello@x",
            "acme/hello:",
            "Acme/hello",
            "/hello",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn function_refs_and_names_follow_the_hosts_rules() {
        assert_eq!(
            function_ref("acme/hello").map(|f| f.admin_path()),
            Ok("/admin/v1/tenants/acme/functions/hello".into())
        );
        assert_eq!(
            function_ref("acme/hello").map(|f| f.to_string()),
            Ok("acme/hello".into())
        );
        assert!(
            function_ref("acme")
                .unwrap_err()
                .contains("TENANT/FUNCTION")
        );
        assert!(
            function_ref("acme/a/b")
                .unwrap_err()
                .contains("may contain only")
        );
        assert!(
            tenant("-x")
                .unwrap_err()
                .contains("must start with a letter or digit")
        );
        assert!(tenant(&"a".repeat(64)).unwrap_err().contains("at most 63"));
        assert_eq!(tenant("acme_2"), Ok("acme_2".into()));
    }

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }

    #[test]
    fn routing_prints_as_it_is_written() {
        let one = serde_json::json!([{"version": 3, "weight": 100}]);
        let two = serde_json::json!([{"version": 3, "weight": 90}, {"version": 2, "weight": 10}]);
        assert_eq!(routing_text(&one), "3");
        assert_eq!(routing_text(&two), "3=90,2=10");
        assert_eq!(routing_text(&serde_json::Value::Null), "-");
    }
}
