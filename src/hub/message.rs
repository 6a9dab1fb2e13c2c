//! The messages Perry Hub sends a WebSocket subscriber (docs/perry-hub.md):
//! JSON text frames tagged by `type`. Unknown types and unknown fields are
//! ignored; a known type with unusable fields is [`HubMessage::Unreadable`].

use serde::Deserialize;

/// One message from the hub to a subscriber.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubMessage {
    /// The answer to `subscribe`.
    JobCreated {
        #[serde(default)]
        position: Option<i64>,
    },
    QueueUpdate {
        #[serde(default)]
        position: Option<i64>,
        #[serde(default)]
        message: Option<String>,
    },
    Stage {
        stage: String,
        #[serde(default)]
        message: Option<String>,
    },
    Progress {
        #[serde(default)]
        stage: Option<String>,
        #[serde(default)]
        percent: Option<f64>,
        #[serde(default)]
        message: Option<String>,
    },
    Log {
        #[serde(default)]
        stage: Option<String>,
        line: String,
        #[serde(default)]
        stream: Option<String>,
    },
    /// An artifact may be downloaded, once, from `download_url`.
    ArtifactReady {
        target: String,
        #[serde(default)]
        artifact_name: String,
        #[serde(default)]
        artifact_size: Option<u64>,
        sha256: String,
        download_url: String,
        #[serde(default)]
        expires_in_secs: Option<u64>,
    },
    Error {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    },
    /// The job is over.
    Complete {
        success: bool,
        #[serde(default)]
        duration_secs: Option<f64>,
    },
    /// Not produced by serde: a frame that is not a message we can read.
    #[serde(skip)]
    Unreadable(String),
    /// A type this client does not use (`published`, …).
    #[serde(other)]
    Other,
}

impl HubMessage {
    /// Parses one text frame; anything unreadable becomes [`HubMessage::Unreadable`].
    pub fn parse(text: &str) -> HubMessage {
        serde_json::from_str(text).unwrap_or_else(|e| {
            HubMessage::Unreadable(format!("{e}: {}", crate::validate::printable(text)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_hubs_messages() {
        assert_eq!(
            HubMessage::parse(
                r#"{"type":"job_created","job_id":"j","position":0,"estimated_wait_secs":0}"#
            ),
            HubMessage::JobCreated { position: Some(0) }
        );
        let ready = HubMessage::parse(
            r#"{"type":"artifact_ready","job_id":"j","target":"linux","artifact_name":"a-j.tar.gz",
               "artifact_size":12,"sha256":"ab","download_url":"http://h/api/v1/dl/t","expires_in_secs":600}"#,
        );
        assert!(matches!(ready, HubMessage::ArtifactReady { ref target, .. } if target == "linux"));
        assert_eq!(
            HubMessage::parse(
                r#"{"type":"error","code":"JOB_NOT_FOUND","message":"Job not found"}"#
            ),
            HubMessage::Error {
                code: Some("JOB_NOT_FOUND".into()),
                message: Some("Job not found".into())
            }
        );
        assert_eq!(
            HubMessage::parse(
                r#"{"type":"complete","job_id":"j","success":true,"duration_secs":3,"artifacts":[]}"#
            ),
            HubMessage::Complete {
                success: true,
                duration_secs: Some(3.0)
            }
        );
        assert_eq!(
            HubMessage::parse(r#"{"type":"published","platform":"x"}"#),
            HubMessage::Other
        );
        assert!(matches!(
            HubMessage::parse(r#"{"type":"complete"}"#),
            HubMessage::Unreadable(_)
        ));
        assert!(matches!(
            HubMessage::parse("not json"),
            HubMessage::Unreadable(_)
        ));
    }
}
