//! The gateway's configured Bedrock guardrail, as Converse and ConverseStream
//! want it. An intervention comes back as stop reason `guardrail_intervened`,
//! which the reply translation maps to `finish_reason: content_filter`.

use aws_sdk_bedrockruntime::types::{
    GuardrailConfiguration, GuardrailStreamConfiguration, GuardrailTrace,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrail {
    pub identifier: String,
    pub version: String,
    pub trace: bool,
}

impl Guardrail {
    pub fn from_flags(id: Option<&str>, version: Option<&str>, trace: bool) -> Option<Self> {
        Some(Self {
            identifier: id?.to_owned(),
            version: version?.to_owned(),
            trace,
        })
    }

    fn trace(&self) -> GuardrailTrace {
        if self.trace {
            GuardrailTrace::Enabled
        } else {
            GuardrailTrace::Disabled
        }
    }

    pub fn for_converse(&self) -> GuardrailConfiguration {
        GuardrailConfiguration::builder()
            .guardrail_identifier(&self.identifier)
            .guardrail_version(&self.version)
            .trace(self.trace())
            .build()
    }

    pub fn for_stream(&self) -> GuardrailStreamConfiguration {
        GuardrailStreamConfiguration::builder()
            .guardrail_identifier(&self.identifier)
            .guardrail_version(&self.version)
            .trace(self.trace())
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_flags_are_needed_and_carried_over() {
        assert_eq!(Guardrail::from_flags(Some("g"), None, false), None);
        assert_eq!(Guardrail::from_flags(None, Some("1"), false), None);
        let guardrail = Guardrail::from_flags(Some("gr-123"), Some("DRAFT"), true).unwrap();
        let converse = guardrail.for_converse();
        assert_eq!(converse.guardrail_identifier(), "gr-123");
        assert_eq!(converse.guardrail_version(), "DRAFT");
        assert_eq!(converse.trace(), &GuardrailTrace::Enabled);
        let stream = guardrail.for_stream();
        assert_eq!(stream.guardrail_identifier(), "gr-123");
        assert_eq!(stream.trace(), &GuardrailTrace::Enabled);
    }
}
