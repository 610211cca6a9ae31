//! The shipped example configuration loads, and environment variables
//! override it.

use std::path::Path;

use herald::Config;

#[test]
fn example_config_loads_with_a_secret_file_and_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "from-file\n").unwrap();
    // One test process-wide touches these variables.
    std::env::set_var("HERALD_XMPP__SECRET_FILE", &secret);
    std::env::set_var("HERALD_AMQP__PREFETCH", "7");
    std::env::set_var("HERALD_CONFIG", "ignored: not a configuration key");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/herald.toml");
    let config = Config::load(Some(&example)).expect("example config is valid");
    let settings = config.settings().expect("settings of a loaded config");
    assert_eq!(settings.secret.expose(), "from-file");
    assert_eq!(config.amqp.prefetch, 7);
    assert_eq!(config.xmpp.domain, "broadcast.localhost");
    assert_eq!(settings.core.server.to_string(), "localhost");

    let unknown = dir.path().join("typo.toml");
    std::fs::write(&unknown, "[xmpp]\nsecert = \"x\"\n").unwrap();
    let err = Config::load(Some(&unknown)).unwrap_err().to_string();
    assert!(err.contains("secert"), "{err}");
}
