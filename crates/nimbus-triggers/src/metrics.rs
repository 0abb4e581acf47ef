//! The trigger metrics, read at scrape time: one collector in the host's
//! registry over every trigger that reports. Each trigger module declares
//! its own families and fills them; this module only knows the shapes.

use std::sync::{Arc, Weak};

use nimbus_core::prometheus::core::{Collector, Desc};
use nimbus_core::prometheus::proto;

pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: proto::MetricType,
    pub labels: &'static [&'static str],
}

impl Family {
    pub(crate) const fn new(
        kind: proto::MetricType,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            kind,
            labels,
        }
    }

    /// One series of this family.
    pub(crate) fn sample(&self, labels: &[(&str, &str)], value: f64) -> proto::Metric {
        let mut m = proto::Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut l = proto::LabelPair::default();
                    l.set_name(k.to_string());
                    l.set_value(v.to_string());
                    l
                })
                .collect(),
        );
        if self.kind == proto::MetricType::COUNTER {
            let mut c = proto::Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = proto::Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        m
    }

    fn desc(&self) -> Option<Desc> {
        Desc::new(
            self.name.into(),
            self.help.into(),
            self.labels.iter().map(|l| l.to_string()).collect(),
            Default::default(),
        )
        .ok()
    }
}

/// A part of the triggers with metrics of its own.
pub(crate) trait Source: Send + Sync {
    /// The current series, one list per family it was registered with.
    fn samples(&self) -> Vec<Vec<proto::Metric>>;
}

/// Holds its sources weakly: the registry outlives the triggers, and must
/// not keep them (and the schedule state file they hold open) alive.
pub(crate) struct TriggerMetrics {
    sources: Vec<(&'static [Family], Weak<dyn Source>)>,
    descs: Vec<Desc>,
}

impl TriggerMetrics {
    pub(crate) fn new(sources: &[(&'static [Family], Arc<dyn Source>)]) -> Self {
        let descs = sources
            .iter()
            .flat_map(|(families, _)| *families)
            .filter_map(Family::desc)
            .collect();
        Self {
            sources: sources
                .iter()
                .map(|(families, s)| (*families, Arc::downgrade(s)))
                .collect(),
            descs,
        }
    }
}

impl Collector for TriggerMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let mut out = Vec::new();
        for (families, source) in &self.sources {
            let Some(source) = source.upgrade() else {
                continue;
            };
            for (f, metrics) in families.iter().zip(source.samples()) {
                if metrics.is_empty() {
                    continue;
                }
                let mut fam = proto::MetricFamily::default();
                fam.set_name(f.name.into());
                fam.set_help(f.help.into());
                fam.set_field_type(f.kind);
                fam.set_metric(metrics);
                out.push(fam);
            }
        }
        out
    }
}
