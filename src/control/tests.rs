use super::*;

#[test]
fn every_request_reads_back_as_written() {
    for request in [
        Request::Presence {
            users: vec!["alice@example.com".into()],
        },
        Request::Online {
            limit: 5,
            after: Some("bob@example.com".into()),
        },
        Request::Online {
            limit: DEFAULT_PAGE,
            after: None,
        },
        Request::Status,
        Request::Cancel { id: "job-1".into() },
    ] {
        assert_eq!(parse(&request.to_json()), Ok(request));
    }
}

#[test]
fn limits_are_checked() {
    let too_many = vec!["a@example.com"; MAX_PRESENCE_USERS + 1];
    let body = serde_json::json!({"op": "presence", "users": too_many}).to_string();
    assert!(matches!(
        parse(body.as_bytes()),
        Err(RequestError::InvalidRequest(_))
    ));
    for body in [r#"{"op":"cancel"}"#, r#"{"op":"cancel","id":" "}"#] {
        assert!(
            matches!(parse(body.as_bytes()), Err(RequestError::InvalidRequest(_))),
            "{body}"
        );
    }
    let body = format!(r#"{{"op":"online","limit":{}}}"#, MAX_PAGE + 1);
    assert!(matches!(
        parse(body.as_bytes()),
        Err(RequestError::InvalidRequest(_))
    ));
}

#[test]
fn an_error_reply_carries_the_code_and_the_message() {
    let error = parse(br#"{"op":"unsubscribe"}"#).unwrap_err();
    let reply: serde_json::Value = serde_json::from_slice(&Reply::error(&error).to_json()).unwrap();
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "unknown_op");
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unsubscribe"));
    assert!(reply.get("result").is_none());
}

#[test]
fn each_request_names_its_own_op() {
    let member = || vec![BareJid::new("alice@example.com").unwrap()];
    let name = || "ops".to_string();
    let requests = [
        Request::Presence { users: Vec::new() },
        Request::Online {
            limit: 1,
            after: None,
        },
        Request::Status,
        Request::Cancel { id: "job-1".into() },
        Request::Group(GroupChange::Put {
            name: name(),
            members: member(),
        }),
        Request::Group(GroupChange::Add {
            name: name(),
            members: member(),
        }),
        Request::Group(GroupChange::Remove {
            name: name(),
            members: member(),
        }),
        Request::Group(GroupChange::Delete { name: name() }),
        Request::GroupGet {
            name: name(),
            limit: 1,
            after: None,
        },
        Request::GroupList {
            limit: 1,
            after: None,
        },
    ];
    let ops: Vec<&str> = requests.iter().map(Request::op).collect();
    assert_eq!(ops, super::ops().collect::<Vec<_>>());
    for request in requests {
        let body: Value = serde_json::from_slice(&request.to_json()).unwrap();
        assert_eq!(body["op"], request.op(), "{body}");
    }
}
