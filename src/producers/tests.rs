use std::time::Duration;

use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| name.to_string()).collect()
}

fn billing() -> Grant {
    Grant {
        from: Allowed::of(&names(&["billing"])),
        groups: Allowed::of(&names(&["customers"])),
        all_subscribers: false,
        control: Allowed::of(&names(&["status", "group.get"])),
        max_recipients: Some(3),
        rate: Some(Rate {
            per_sec: 2.0,
            burst: 2.0,
        }),
    }
}

fn producers(unlisted: Unlisted) -> Producers {
    let users = HashMap::from([("billing".to_string(), billing())]);
    Producers::new(users, vec!["herald".into()], unlisted)
}

#[test]
fn a_listed_user_sends_only_as_its_senders_to_its_groups() {
    let producers = producers(Unlisted::Refuse);
    let listed = producers.listed(Some("billing")).unwrap();
    listed
        .check_job("billing", &names(&["customers"]), false)
        .unwrap();
    let refusal = listed.check_job("ceo", &[], false).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::From {
            user: "billing".into(),
            from: "ceo".into()
        }
    );
    assert!(refusal.to_string().contains("producers.users.billing.from"));
    let refusal = listed
        .check_job("billing", &names(&["customers", "ops"]), false)
        .unwrap_err();
    assert_eq!(
        refusal,
        Refusal::Group {
            user: "billing".into(),
            group: "ops".into()
        }
    );
    let refusal = listed.check_job("billing", &[], true).unwrap_err();
    assert!(
        matches!(refusal, Refusal::AllSubscribers { .. }),
        "{refusal}"
    );
}

#[test]
fn a_star_allows_any_name() {
    let mut grant = billing();
    grant.from = Allowed::of(&names(&["billing", ANY]));
    grant.groups = Allowed::of(&names(&[ANY]));
    grant.all_subscribers = true;
    let listed = Listed {
        user: "billing",
        grant: &grant,
    };
    listed
        .check_job("anyone", &names(&["any.group"]), true)
        .unwrap();
    assert!(
        !Allowed::of(&[]).allows("herald"),
        "an empty list allows nothing"
    );
}

#[test]
fn recipients_are_counted_against_the_limit() {
    let producers = producers(Unlisted::Allow);
    let listed = producers.listed(Some("billing")).unwrap();
    assert!(listed.limits_recipients());
    listed.check_recipients(3).unwrap();
    let refusal = listed.check_recipients(4).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::Recipients {
            user: "billing".into(),
            count: 4,
            max: 3
        }
    );
    let mut grant = billing();
    grant.max_recipients = None;
    let unlimited = Listed {
        user: "billing",
        grant: &grant,
    };
    assert!(!unlimited.limits_recipients());
    unlimited.check_recipients(1_000_000).unwrap();
}

#[test]
fn unlisted_producers_follow_the_policy_and_herald_always_passes() {
    let allow = producers(Unlisted::Allow);
    assert!(allow.admit(None).unwrap().is_none());
    assert!(allow.admit(Some("someone")).unwrap().is_none());
    assert!(allow.admit(Some("billing")).unwrap().is_some());

    let refuse = producers(Unlisted::Refuse);
    assert_eq!(refuse.admit(None).unwrap_err(), Refusal::NoUserId);
    assert_eq!(
        refuse.admit(Some("someone")).unwrap_err(),
        Refusal::Unlisted("someone".into())
    );
    assert!(
        refuse.admit(Some("herald")).unwrap().is_none(),
        "Herald's own"
    );
    assert!(refuse.admit(Some("billing")).unwrap().is_some());
}

#[test]
fn control_operations_are_checked_per_user() {
    let producers = producers(Unlisted::Refuse);
    producers.check_request(Some("billing"), "status").unwrap();
    producers
        .check_request(Some("billing"), "group.get")
        .unwrap();
    let refusal = producers
        .check_request(Some("billing"), "cancel")
        .unwrap_err();
    assert_eq!(
        refusal,
        Refusal::Operation {
            user: "billing".into(),
            op: "cancel".into()
        }
    );
    producers.check_request(Some("herald"), "cancel").unwrap();
    assert_eq!(
        producers.check_request(None, "status").unwrap_err(),
        Refusal::NoUserId
    );
    let allow = super::Producers::new(HashMap::new(), Vec::new(), Unlisted::Allow);
    allow.check_request(None, "group.delete").unwrap();
}

#[test]
fn the_rate_allows_a_burst_then_refills_with_time() {
    let producers = producers(Unlisted::Allow);
    let listed = producers.listed(Some("billing")).unwrap();
    let mut rates = Rates::default();
    let start = Instant::now();
    rates.take(listed, start).unwrap();
    rates.take(listed, start).unwrap();
    let refusal = rates.take(listed, start).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::RateLimited {
            user: "billing".into()
        }
    );
    assert!(refusal.to_string().starts_with("rate limit"), "{refusal}");
    // Two per second: one more after half a second, not before.
    assert!(rates
        .take(listed, start + Duration::from_millis(400))
        .is_err());
    rates
        .take(listed, start + Duration::from_millis(500))
        .unwrap();
    assert!(rates
        .take(listed, start + Duration::from_millis(500))
        .is_err());
    // A long pause refills the burst, no more.
    let later = start + Duration::from_secs(60);
    rates.take(listed, later).unwrap();
    rates.take(listed, later).unwrap();
    assert!(rates.take(listed, later).is_err());
}

#[test]
fn a_user_without_a_rate_is_never_limited() {
    let mut grant = billing();
    grant.rate = None;
    let listed = Listed {
        user: "billing",
        grant: &grant,
    };
    let mut rates = Rates::default();
    let now = Instant::now();
    for _ in 0..1000 {
        rates.take(listed, now).unwrap();
    }
}

#[test]
fn every_kind_of_refusal_is_listed_once_among_the_reasons() {
    let user = || "billing".to_string();
    let every = [
        Refusal::NoUserId,
        Refusal::Unlisted(user()),
        Refusal::From {
            user: user(),
            from: "ceo".into(),
        },
        Refusal::Group {
            user: user(),
            group: "ops".into(),
        },
        Refusal::AllSubscribers { user: user() },
        Refusal::Recipients {
            user: user(),
            count: 4,
            max: 3,
        },
        Refusal::RateLimited { user: user() },
        Refusal::Operation {
            user: user(),
            op: "cancel".into(),
        },
    ];
    let reasons: Vec<&str> = every.iter().map(Refusal::reason).collect();
    assert_eq!(reasons, Refusal::REASONS);
}
