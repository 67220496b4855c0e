//! Status conditions: computed fresh each reconcile, with the transition time
//! kept from the previous status while a condition's status is unchanged.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const PROXY_AVAILABLE: &str = "ProxyAvailable";
pub const OPEN_WEBUI_WIRED: &str = "OpenWebUIWired";
pub const SERVICE_MONITOR: &str = "ServiceMonitorReady";

/// A condition as the reconciler judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub kind: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Judgement {
    pub fn new(kind: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            ok,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// `Ready` is true when every other judgement is.
pub fn with_ready(mut judgements: Vec<Judgement>) -> Vec<Judgement> {
    let failing: Vec<&Judgement> = judgements
        .iter()
        .filter(|judgement| !judgement.ok)
        .collect();
    let ready = match failing.first() {
        None => Judgement::new(
            READY,
            true,
            "Ready",
            "The gateway serves requests and Open WebUI is wired.",
        ),
        Some(first) => Judgement::new(READY, false, &first.reason, first.message.clone()),
    };
    judgements.insert(0, ready);
    judgements
}

pub fn to_conditions(
    judgements: &[Judgement],
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    judgements
        .iter()
        .map(|judgement| {
            let status = if judgement.ok { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|condition| condition.type_ == judgement.kind && condition.status == status)
                .map(|condition| condition.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: judgement.kind.to_owned(),
                status: status.to_owned(),
                reason: judgement.reason.clone(),
                message: judgement.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_summarises_the_first_failure() {
        let judged = with_ready(vec![
            Judgement::new(PROXY_AVAILABLE, true, "Available", "1/1"),
            Judgement::new(
                OPEN_WEBUI_WIRED,
                false,
                "WorkloadNotFound",
                "Deployment ai/open-webui not found",
            ),
        ]);
        assert_eq!(judged[0].kind, READY);
        assert!(!judged[0].ok);
        assert_eq!(judged[0].reason, "WorkloadNotFound");
        let all_ok = with_ready(vec![Judgement::new(
            PROXY_AVAILABLE,
            true,
            "Available",
            "1/1",
        )]);
        assert!(all_ok[0].ok);
    }

    #[test]
    fn transition_times_move_only_when_the_status_changes() {
        let earlier: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let first = to_conditions(
            &[Judgement::new(PROXY_AVAILABLE, false, "Progressing", "0/1")],
            &[],
            Some(1),
            earlier,
        );
        let same = to_conditions(
            &[Judgement::new(
                PROXY_AVAILABLE,
                false,
                "Progressing",
                "still 0/1",
            )],
            &first,
            Some(2),
            later,
        );
        assert_eq!(same[0].last_transition_time, Time(earlier));
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = to_conditions(
            &[Judgement::new(PROXY_AVAILABLE, true, "Available", "1/1")],
            &same,
            Some(2),
            later,
        );
        assert_eq!(flipped[0].last_transition_time, Time(later));
        assert_eq!(flipped[0].status, "True");
    }
}
