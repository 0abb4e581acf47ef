use nimbus_bindings as wit;
use uuid::Uuid;

/// A CloudEvents-shaped input to a function.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    /// RFC 3339.
    pub time: Option<String>,
    pub content_type: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub data: Vec<u8>,
}

impl Event {
    /// An event of type `ty` from `source`, with a fresh id and the current
    /// time.
    pub fn new(ty: impl Into<String>, source: impl Into<String>, data: Vec<u8>) -> Self {
        Self {
            id: Uuid::now_v7().to_string(),
            source: source.into(),
            ty: ty.into(),
            time: Some(humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()),
            data,
            ..Self::default()
        }
    }

    #[must_use]
    pub fn content_type(mut self, ct: impl Into<String>) -> Self {
        self.content_type = Some(ct.into());
        self
    }

    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    #[must_use]
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    pub(crate) fn into_wit(self) -> wit::Event {
        wit::Event {
            id: self.id,
            source: self.source,
            type_: self.ty,
            subject: self.subject,
            time: self.time,
            content_type: self.content_type,
            attributes: self.attributes,
            data: self.data,
        }
    }
}

/// What a function returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

impl From<wit::Response> for Response {
    fn from(r: wit::Response) -> Self {
        Self {
            content_type: r.content_type,
            data: r.data,
        }
    }
}

/// The error a guest returns on purpose (its WIT `error` variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("failed: {0}")]
    Failed(String),
}

impl From<wit::GuestError> for GuestError {
    fn from(e: wit::GuestError) -> Self {
        match e {
            wit::GuestError::InvalidInput(m) => GuestError::InvalidInput(m),
            wit::GuestError::Failed(m) => GuestError::Failed(m),
        }
    }
}
