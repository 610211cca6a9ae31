//! The shipped example configuration loads, environment variables override
//! it, and it names every key Herald has.

use std::path::{Path, PathBuf};
use std::process::Command;

use herald::Config;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/herald.toml")
}

#[test]
fn example_config_loads_with_a_secret_file_and_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "from-file\n").unwrap();
    // One test process-wide touches these variables.
    std::env::set_var("HERALD_XMPP__SECRET_FILE", &secret);
    std::env::set_var("HERALD_AMQP__PREFETCH", "7");
    std::env::set_var("HERALD_CONFIG", "ignored: not a configuration key");
    let config = Config::load(Some(&example())).expect("example config is valid");
    let settings = config.settings().expect("settings of a loaded config");
    assert_eq!(settings.secret.expose(), "from-file");
    assert_eq!(config.amqp.prefetch, 7);
    assert_eq!(config.xmpp.domain, "broadcast.localhost");
    assert_eq!(settings.core.server.to_string(), "localhost");

    let unknown = dir.path().join("typo.toml");
    std::fs::write(&unknown, "[xmpp]\nsecert = \"x\"\n").unwrap();
    let err = Config::load(Some(&unknown)).unwrap_err().to_string();
    assert!(err.contains("secert"), "{err}");

    // Secrets from the environment are taken as written, never as numbers
    // (which figment makes of other values), lists or quoted strings.
    for (written, url) in [("0012345678", "amqp://h:0@b/%2f"), ("\"q\"", "[x]")] {
        std::env::set_var("HERALD_XMPP__SECRET", written);
        std::env::set_var("HERALD_AMQP__URL", url);
        // read, not load: "[x]" is no URL, and only the values matter here.
        let config = Config::read(Some(&example())).expect("secret from the environment");
        let secret = config.xmpp.secret.as_ref().expect("a secret");
        assert_eq!(secret.expose(), written);
        assert_eq!(config.amqp.url.as_ref().map(|u| u.expose()), Some(url));
    }
    std::env::remove_var("HERALD_XMPP__SECRET");
    std::env::remove_var("HERALD_AMQP__URL");

    // A producer's entry, key by key, from the environment.
    let producer = [
        ("HERALD_PRODUCERS__UNLISTED", "refuse"),
        (
            "HERALD_PRODUCERS__USERS__BILLING__FROM",
            r#"["billing", "Alerts"]"#,
        ),
        ("HERALD_PRODUCERS__USERS__BILLING__CONTROL", r#"["status"]"#),
        ("HERALD_PRODUCERS__USERS__BILLING__JOBS_PER_SEC", "0.5"),
        ("HERALD_PRODUCERS__USERS__BILLING__MAX_RECIPIENTS", "100"),
    ];
    for (key, value) in producer {
        std::env::set_var(key, value);
    }
    let config = Config::load(Some(&example())).expect("a producer from the environment");
    for (key, _) in producer {
        std::env::remove_var(key);
    }
    let billing = &config.producers.users["billing"];
    assert_eq!(billing.from, ["billing", "Alerts"]);
    assert_eq!(billing.control, ["status"]);
    assert_eq!(billing.jobs_per_sec, Some(0.5));
    assert_eq!(billing.max_recipients, Some(100));
    assert_eq!(
        config.producers.unlisted,
        herald::producers::Unlisted::Refuse
    );
    let producers = config.settings().unwrap().core.producers;
    let listed = producers
        .listed(Some("billing"))
        .expect("billing is listed");
    listed
        .check_job("alerts", &[], false)
        .expect("normalised as a job's from is");
    assert!(producers.admit(None).is_err(), "unlisted: refuse");
    assert!(producers.admit(Some("guest")).is_ok(), "Herald's own user");
}

/// The README's first command, on a fresh checkout (no /etc/herald/secret),
/// with a secret that looks like a number.
#[test]
fn check_config_of_the_example_passes_with_the_secret_in_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .env_clear()
        .env("HERALD_XMPP__SECRET", "12345678")
        .arg("--config")
        .arg(example())
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(!stdout.contains("12345678"), "secret printed: {stdout}");
}

/// Every key of every section appears in deploy/herald.toml, set or as a
/// commented-out `# key = value` line, and those lines are valid when
/// uncommented: the example is where operators learn what can be set, so a
/// key missing there (or misspelt in a comment) is a key nobody finds.
#[test]
fn example_config_names_every_key() {
    let text = std::fs::read_to_string(example()).unwrap();
    let uncommented: Vec<&str> = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_assignment(rest) => rest,
            _ => line,
        })
        .collect();
    let uncommented = uncommented.join("\n");
    if let Err(e) = toml::from_str::<Config>(&uncommented) {
        panic!("deploy/herald.toml, uncommented: {}", e.message());
    }
    let table: toml::Table = toml::from_str(&uncommented).unwrap();
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let mut missing = Vec::new();
    for (section, keys) in defaults.as_object().unwrap() {
        for key in keys.as_object().unwrap().keys() {
            if table.get(section).and_then(|s| s.get(key)).is_none() {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    assert!(missing.is_empty(), "deploy/herald.toml lacks {missing:?}");
}

/// `key = value` with a bare key: prose comments do not look like that.
fn is_assignment(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}
