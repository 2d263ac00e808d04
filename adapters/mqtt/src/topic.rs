//! TS-0010 §6.4 topics: `/oneM2M/<kind>/<originator>/<receiver>/<type>`, and the ID encoding in
//! them (§6.3: leading `/` dropped, `/` → `:`; an absolute ID's leading `//` → `:`).

use std::fmt;

/// The four kinds of oneM2M topics (TS-0010 §6.4.1–§6.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `req`: a request, from `<originator>` to `<receiver>`.
    Request,
    /// `resp`: the response to a request of `<originator>`, from `<receiver>`.
    Response,
    /// `reg_req`: a registration request before the originator has an AE-ID or CSE-ID;
    /// `<originator>` is its Credential-ID.
    RegistrationRequest,
    /// `reg_resp`: the response to a `reg_req`.
    RegistrationResponse,
}

impl Kind {
    /// The topic level naming the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "req",
            Self::Response => "resp",
            Self::RegistrationRequest => "reg_req",
            Self::RegistrationResponse => "reg_resp",
        }
    }

    /// The kind the answer to this kind travels in (`req` → `resp`, `reg_req` → `reg_resp`).
    pub fn answer(self) -> Self {
        match self {
            Self::Request | Self::Response => Self::Response,
            Self::RegistrationRequest | Self::RegistrationResponse => Self::RegistrationResponse,
        }
    }

    /// Whether messages on it are requests.
    pub fn is_request(self) -> bool {
        matches!(self, Self::Request | Self::RegistrationRequest)
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "req" => Self::Request,
            "resp" => Self::Response,
            "reg_req" => Self::RegistrationRequest,
            "reg_resp" => Self::RegistrationResponse,
            _ => return None,
        })
    }
}

/// The serialization named by a topic's last level (TS-0010 §6.4: "shall always be used").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `json` (the only one this binding decodes).
    Json,
    /// `xml` (recognised, refused).
    Xml,
    /// `cbor` (recognised, refused).
    Cbor,
}

impl Format {
    /// The topic level naming it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Xml => "xml",
            Self::Cbor => "cbor",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "json" => Self::Json,
            "xml" => Self::Xml,
            "cbor" => Self::Cbor,
            _ => return None,
        })
    }
}

/// Longest topic ID accepted (an encoded AE-ID, CSE-ID or Credential-ID).
pub const MAX_TOPIC_ID_BYTES: usize = 1024;

/// Why a string is not a usable topic or topic ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Not `[<prefix>]/oneM2M/<kind>/<originator>/<receiver>/<type>`.
    #[error("not a oneM2M topic")]
    NotOneM2M,
    /// The kind level is none of `req`, `resp`, `reg_req`, `reg_resp`.
    #[error("unknown topic kind")]
    UnknownKind,
    /// The last level is none of `json`, `xml`, `cbor`.
    #[error("unknown serialization type")]
    UnknownFormat,
    /// An ID level is empty, too long, or holds a wildcard, a `/` or a control character.
    #[error("invalid ID in topic")]
    InvalidId,
}

/// Encodes an AE-ID, CSE-ID or Credential-ID for a topic level (TS-0010 §6.3): an absolute
/// ID's leading `//` becomes `:`, a leading `/` is dropped, every other `/` becomes `:`
/// (`/id-in` → `id-in`, `/id-in/CAE1` → `id-in:CAE1`, `//sp.org/id-in` → `:sp.org:id-in`).
pub fn encode_id(id: &str) -> Result<String, TopicError> {
    let encoded = if let Some(rest) = id.strip_prefix("//") {
        format!(":{}", rest.replace('/', ":"))
    } else {
        id.strip_prefix('/').unwrap_or(id).replace('/', ":")
    };
    check_id(&encoded)?;
    Ok(encoded)
}

/// Decodes a topic ID back to the ID it encodes, the inverse of [`encode_id`] for SP-relative
/// IDs that start with a CSE-ID (`id-in:CAE1` → `/id-in/CAE1`) and absolute ones
/// (`:sp.org:id-in` → `//sp.org/id-in`); an ID without `:` (an AE-ID stem or a CSE-ID's
/// CSE-relative form) is returned as it is.
pub fn decode_id(topic_id: &str) -> Result<String, TopicError> {
    check_id(topic_id)?;
    Ok(if let Some(rest) = topic_id.strip_prefix(':') {
        format!("//{}", rest.replace(':', "/"))
    } else if topic_id.contains(':') {
        format!("/{}", topic_id.replace(':', "/"))
    } else {
        topic_id.to_owned()
    })
}

fn check_id(id: &str) -> Result<(), TopicError> {
    let bad = |c: char| matches!(c, '/' | '+' | '#') || c.is_control();
    if id.is_empty() || id.len() > MAX_TOPIC_ID_BYTES || id.chars().any(bad) {
        return Err(TopicError::InvalidId);
    }
    Ok(())
}

/// A parsed oneM2M topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// Kind of message.
    pub kind: Kind,
    /// The (original) requester, encoded ([`encode_id`]).
    pub originator: String,
    /// The receiver of the request, encoded.
    pub receiver: String,
    /// Serialization of the payload.
    pub format: Format,
}

impl Topic {
    /// A topic between two encoded topic IDs (checked).
    pub fn new(kind: Kind, originator: &str, receiver: &str, format: Format) -> Result<Self, TopicError> {
        check_id(originator)?;
        check_id(receiver)?;
        Ok(Self { kind, originator: originator.to_owned(), receiver: receiver.to_owned(), format })
    }

    /// Parses `<prefix>/oneM2M/<kind>/<originator>/<receiver>/<type>`, where `prefix` is the
    /// path of the broker's `mqtt://` URI ("" for none). Exactly five levels after the prefix.
    pub fn parse(topic: &str, prefix: &str) -> Result<Self, TopicError> {
        let rest = topic.strip_prefix(prefix).ok_or(TopicError::NotOneM2M)?;
        let rest = rest.strip_prefix("/oneM2M/").ok_or(TopicError::NotOneM2M)?;
        let mut levels = rest.split('/');
        let (Some(kind), Some(originator), Some(receiver), Some(format), None) =
            (levels.next(), levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return Err(TopicError::NotOneM2M);
        };
        let kind = Kind::parse(kind).ok_or(TopicError::UnknownKind)?;
        let format = Format::parse(format).ok_or(TopicError::UnknownFormat)?;
        Self::new(kind, originator, receiver, format)
    }

    /// The topic string under `prefix`.
    pub fn to_string_with(&self, prefix: &str) -> String {
        format!("{prefix}{self}")
    }

    /// The topic of the answer to a message on this one: same IDs, [`Kind::answer`].
    pub fn answer(&self) -> Self {
        Self { kind: self.kind.answer(), ..self.clone() }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/oneM2M/{}/{}/{}/{}", self.kind.as_str(), self.originator, self.receiver, self.format.as_str())
    }
}

/// The filters a node with topic ID `me` subscribes to: requests to it (`req/+/<me>/+`,
/// `reg_req/+/<me>/+`) when `requests`, and answers to its own requests (`resp/<me>/+/+`,
/// `reg_resp/<me>/+/+`).
pub fn filters(prefix: &str, me: &str, requests: bool) -> Vec<String> {
    let mut out = answer_filters(prefix, me).to_vec();
    if requests {
        out.extend(request_filters(prefix, me));
    }
    out
}

/// The filters for the answers to the requests of the originator with topic ID `originator`:
/// `resp/<originator>/+/+` and `reg_resp/<originator>/+/+`.
pub fn answer_filters(prefix: &str, originator: &str) -> [String; 2] {
    [format!("{prefix}/oneM2M/resp/{originator}/+/+"), format!("{prefix}/oneM2M/reg_resp/{originator}/+/+")]
}

/// The filters for the requests to the node with topic ID `receiver`: `req/+/<receiver>/+` and
/// `reg_req/+/<receiver>/+`.
pub fn request_filters(prefix: &str, receiver: &str) -> [String; 2] {
    [format!("{prefix}/oneM2M/req/+/{receiver}/+"), format!("{prefix}/oneM2M/reg_req/+/{receiver}/+")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_encode_as_ts_0010_says() {
        assert_eq!(encode_id("/id-in").unwrap(), "id-in");
        assert_eq!(encode_id("/id-in/CAE1").unwrap(), "id-in:CAE1");
        assert_eq!(encode_id("//sp.org/id-in").unwrap(), ":sp.org:id-in");
        assert_eq!(encode_id("CAdmin").unwrap(), "CAdmin");
        for id in ["", "/", "a+b", "a#", "a\u{0}"] {
            assert_eq!(encode_id(id), Err(TopicError::InvalidId), "{id:?}");
        }
        // `/id-in` and a stem `id-in` encode alike: the topic does not tell them apart.
        for id in ["/id-in/CAE1", "//sp.org/id-in", "CAdmin"] {
            assert_eq!(decode_id(&encode_id(id).unwrap()).unwrap(), id);
        }
    }

    #[test]
    fn topics_parse_strictly() {
        let t = Topic::parse("/oneM2M/req/CAE1/id-in/json", "").unwrap();
        assert_eq!(
            (t.kind, t.originator.as_str(), t.receiver.as_str(), t.format),
            (Kind::Request, "CAE1", "id-in", Format::Json)
        );
        assert_eq!(t.to_string(), "/oneM2M/req/CAE1/id-in/json");
        assert_eq!(t.answer().to_string(), "/oneM2M/resp/CAE1/id-in/json");
        let p = Topic::parse("/site/oneM2M/reg_req/cred:1/id-in/cbor", "/site").unwrap();
        assert_eq!(p.to_string_with("/site"), "/site/oneM2M/reg_req/cred:1/id-in/cbor");
        assert_eq!(Topic::parse("/oneM2M/req/a/b/json/x", ""), Err(TopicError::NotOneM2M));
        assert_eq!(Topic::parse("/oneM2M/req/a/json", ""), Err(TopicError::NotOneM2M));
        assert_eq!(Topic::parse("oneM2M/req/a/b/json", ""), Err(TopicError::NotOneM2M));
        assert_eq!(Topic::parse("/oneM2M/get/a/b/json", ""), Err(TopicError::UnknownKind));
        assert_eq!(Topic::parse("/oneM2M/req/a/b/yaml", ""), Err(TopicError::UnknownFormat));
        assert_eq!(Topic::parse("/oneM2M/req//b/json", ""), Err(TopicError::InvalidId));
        assert_eq!(Topic::parse("/oneM2M/req/a/+/json", ""), Err(TopicError::InvalidId));
    }
}
