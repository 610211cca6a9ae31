use super::*;

fn valid() -> Config {
    let mut config = Config::default();
    config.xmpp.secret = Some(Secret::new("s3cret"));
    config
}

#[test]
fn defaults_need_only_a_secret() {
    assert!(Config::default().validate().is_err());
    valid().validate().unwrap();
}

#[test]
fn server_domain_defaults_to_parent_of_component_domain() {
    let server = |config: Config| config.settings().unwrap().core.server.to_string();
    assert_eq!(server(valid()), "localhost");
    let mut config = valid();
    config.xmpp.server_domain = Some("example.org".into());
    assert_eq!(server(config), "example.org");
}

#[test]
fn secret_is_masked_in_debug_output() {
    let text = format!("{:?}", valid());
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn names_parts_must_hold_any_name() {
    let mut config = valid();
    config.broadcast.names_part_bytes = 16 * 1024 - 1;
    let error = config.settings().unwrap_err().to_string();
    assert!(error.contains("names_part_bytes"), "{error}");
    config.broadcast.names_part_bytes = 16 * 1024;
    config.settings().unwrap();
}

#[test]
fn rejects_bad_default_sender() {
    let mut config = valid();
    config.broadcast.default_from = "no spaces@allowed".into();
    assert!(config.validate().is_err());
}

#[test]
fn a_secret_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "s3cret\n").unwrap();
    let mut config = valid();
    config.xmpp.secret_file = Some(path.clone());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(config.warnings(), Vec::<String>::new());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("mode 644"), "{warnings:?}");
}

#[test]
fn a_plaintext_link_off_this_machine_is_warned_about() {
    let mut config = valid();
    for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
        config.xmpp.host = Some(host.into());
        assert_eq!(config.warnings(), Vec::<String>::new(), "{host}");
    }
    config.xmpp.host = Some("xmpp.example.com".into());
    let warnings = config.warnings();
    assert!(warnings[0].contains("plaintext"), "{warnings:?}");
    config.xmpp.tls = true;
    assert_eq!(config.warnings(), Vec::<String>::new());

    config.xmpp.tls = false;
    config.xmpp.host = None;
    config.xmpp.servers = vec!["127.0.0.1:5347".into(), "xmpp2.example.com:5347".into()];
    let warnings = config.warnings();
    assert!(warnings[0].contains("xmpp2.example.com"), "{warnings:?}");
}

#[test]
fn component_tls_options_need_tls_and_a_valid_name() {
    let mut config = valid();
    config.xmpp.tls_server_name = Some("localhost".into());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("xmpp.tls = true"), "{error}");
    config.xmpp.tls = true;
    config.validate().unwrap();
    config.xmpp.tls_server_name = Some("not a name".into());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("xmpp.tls_server_name"), "{error}");
    config.xmpp.tls_server_name = None;
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    config.xmpp.tls_ca_file = Some(empty);
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("xmpp.tls_ca_file"), "{error}");
}

#[test]
fn tls_options_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut config = valid();
    config.amqp.tls_ca_file = Some(ca);
    let err = config.validate().unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid configuration: amqp.tls_ca_file, tls_cert_file and tls_key_file apply to \
         TLS only: amqp.url (or amqp.urls) must be amqps://"
    );
    config.amqp.url = Some(Secret::new("amqps://guest:guest@localhost:5671/%2f"));
    config.validate().unwrap();
    config.amqp.tls_ca_file = Some(dir.path().join("absent.pem"));
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("amqp.tls_ca_file") && err.contains("absent.pem"),
        "{err}"
    );
}

#[test]
fn allowed_senders_must_be_local_parts_and_include_the_default() {
    let mut config = valid();
    config.broadcast.allowed_from = vec!["alerts".into()];
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("must be one of broadcast.allowed_from"),
        "{err}"
    );
    config.broadcast.allowed_from = vec!["herald".into(), "a b".into()];
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("\"a b\" is not a valid local part"), "{err}");
    config.broadcast.allowed_from = vec!["herald".into(), "alerts".into()];
    config.validate().unwrap();
}

#[test]
fn user_domains_default_to_the_server_and_refuse_herald_own_domain() {
    let mut config = valid();
    let domains = |config: &Config| -> Vec<String> {
        let settings = config.settings().unwrap();
        settings
            .core
            .user_domains
            .iter()
            .map(|d| d.to_string())
            .collect()
    };
    assert_eq!(domains(&config), ["localhost"]);
    config.xmpp.user_domains = vec!["example.com".into(), "example.org".into()];
    assert_eq!(domains(&config), ["example.com", "example.org"]);
    for bad in ["broadcast.localhost", "user@example.com", ""] {
        config.xmpp.user_domains = vec![bad.into()];
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("xmpp.user_domains"), "{bad}: {error}");
    }
}

#[test]
fn one_broker_url_or_the_nodes_of_a_cluster_and_their_queue_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    let load = |amqp: &str| {
        std::fs::write(&path, format!("[xmpp]\nsecret = \"s\"\n[amqp]\n{amqp}")).unwrap();
        Config::load(Some(&path))
    };
    let cluster = "urls = [\"amqp://h:pw@a:5672/%2f\", \"amqp://h:pw@b:5673/%2f\"]\n";
    let config = load(&format!("{cluster}queue_type = \"quorum\"\n")).unwrap();
    assert_eq!(config.amqp.queue_type, QueueType::Quorum);
    let brokers = config.settings().unwrap().amqp.brokers;
    let shown: Vec<String> = brokers.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["a:5672", "b:5673"]);

    let config = load("url = \"amqp://h:pw@c:5672/%2f\"\n").unwrap();
    assert_eq!(config.amqp.queue_type, QueueType::Classic);
    assert_eq!(
        config.settings().unwrap().amqp.brokers[0].to_string(),
        "c:5672"
    );

    let err = load(&format!("{cluster}url = \"amqp://c\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("amqp.url (one broker) or amqp.urls"), "{err}");
    let err = load("queue_type = \"mirrored\"\n").unwrap_err().to_string();
    assert!(err.contains("mirrored") && err.contains("quorum"), "{err}");
}

#[test]
fn admins_are_users_bare_jids() {
    let admins = |list: &[&str]| {
        let mut config = valid();
        config.xmpp.admins = list.iter().map(|a| a.to_string()).collect();
        config.settings().map(|s| s.core.admins.len())
    };
    assert_eq!(admins(&[]).unwrap(), 0, "nobody by default");
    assert_eq!(admins(&["root@localhost", "ops@example.com"]).unwrap(), 2);
    for bad in ["root@localhost/desk", "localhost", "not a jid@"] {
        let error = admins(&[bad]).unwrap_err().to_string();
        assert!(error.contains("xmpp.admins"), "{bad}: {error}");
    }
}

#[test]
fn producers_are_checked_at_start() {
    use super::ProducerConfig;
    let refused = |producer: ProducerConfig, said: &str| {
        let mut config = valid();
        config.producers.users.insert("billing".into(), producer);
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(said), "{said}: {error}");
    };
    let entry = ProducerConfig::default;
    refused(
        ProducerConfig {
            from: vec!["a b".into()],
            ..entry()
        },
        "producers.users.billing.from: \"a b\"",
    );
    refused(
        ProducerConfig {
            groups: vec!["no spaces".into()],
            ..entry()
        },
        "producers.users.billing.groups",
    );
    refused(
        ProducerConfig {
            control: vec!["reboot".into()],
            ..entry()
        },
        "\"reboot\" is no control operation",
    );
    refused(
        ProducerConfig {
            jobs_per_sec: Some(0.0),
            ..entry()
        },
        "jobs_per_sec must be above 0",
    );
    refused(
        ProducerConfig {
            jobs_burst: Some(3),
            ..entry()
        },
        "jobs_burst needs",
    );
    refused(
        ProducerConfig {
            max_recipients: Some(0),
            ..entry()
        },
        "max_recipients must be at least 1",
    );
    let mut config = valid();
    let everything = ProducerConfig {
        from: vec!["*".into()],
        groups: vec!["*".into()],
        control: vec!["*".into()],
        ..entry()
    };
    config
        .producers
        .users
        .insert("billing".into(), everything.clone());
    config.validate().unwrap();
    let warnings = config.warnings();
    assert!(
        warnings[0].contains("producers.unlisted = \"refuse\""),
        "{warnings:?}"
    );
    config.producers.unlisted = crate::producers::Unlisted::Refuse;
    assert_eq!(config.warnings(), Vec::<String>::new());
    // Herald's own broker user (the default URL's) may do anything anyway.
    config.producers.users.insert("guest".into(), everything);
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("producers.users.guest"), "{error}");
}

#[test]
fn one_xmpp_server_or_the_nodes_of_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    let load = |xmpp: &str| {
        std::fs::write(&path, format!("[xmpp]\nsecret = \"s\"\n{xmpp}")).unwrap();
        Config::load(Some(&path))
    };
    let shown = |config: Config| -> Vec<String> {
        let servers = config.settings().unwrap().servers;
        servers.iter().map(ToString::to_string).collect()
    };
    let cluster = "servers = [\"xmpp1:5347\", \"xmpp2:5348\"]\n";
    assert_eq!(shown(load(cluster).unwrap()), ["xmpp1:5347", "xmpp2:5348"]);
    assert_eq!(
        shown(load("host = \"xmpp3\"\nport = 5275\n").unwrap()),
        ["xmpp3:5275"]
    );
    assert_eq!(shown(load("").unwrap()), ["127.0.0.1:5347"]);

    for single in ["host = \"xmpp3\"\n", "port = 5347\n"] {
        let err = load(&format!("{cluster}{single}")).unwrap_err().to_string();
        assert!(
            err.contains("xmpp.host and xmpp.port (one server) or xmpp.servers"),
            "{err}"
        );
    }
    let err = load("servers = [\"xmpp1\"]\n").unwrap_err().to_string();
    assert!(
        err.contains("xmpp.servers[0] \"xmpp1\" is not host:port"),
        "{err}"
    );
}

#[test]
fn the_store_in_a_stream_is_named_after_the_jobs_queue_and_needs_room() {
    let settings = valid().settings().unwrap();
    assert_eq!(settings.store, StoreSettings::File("herald.store".into()));
    assert_eq!(settings.amqp.store, None, "the link keeps no store");

    let mut config = valid();
    config.store.backend = StoreBackend::Stream;
    config.amqp.jobs_queue = "alerts.jobs".into();
    let settings = config.settings().unwrap();
    assert_eq!(settings.store, StoreSettings::Stream);
    let stream = settings.amqp.store.expect("the link's");
    assert_eq!(stream.queue, "alerts.jobs.store");
    assert_eq!(stream.max_bytes, 1 << 30);
    assert_eq!(stream.remember_jobs, config.store.remember_jobs);

    config.store.stream_max_bytes = 1 << 20;
    let error = config.settings().unwrap_err().to_string();
    assert!(error.contains("store.stream_max_bytes"), "{error}");
}
