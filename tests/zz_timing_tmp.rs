mod support;
use std::time::Instant;
#[tokio::test]
async fn timing() {
    let names: Vec<String> = (0..2000).map(|i| format!("user{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let t = Instant::now();
    let mut p = support::prosody::Prosody::start(&refs);
    eprintln!("start with 2000 users: {:?}", t.elapsed());
    let t = Instant::now();
    let u = support::user::XmppUser::login_available(&p, "user1999", "r").await;
    eprintln!("login: {:?}", t.elapsed());
    drop(u);
    let t = Instant::now();
    p.stop();
    eprintln!("graceful stop: {:?}", t.elapsed());
    let t = Instant::now();
    p.start_again();
    eprintln!("start_again: {:?}", t.elapsed());
    let t = Instant::now();
    drop(p);
    eprintln!("drop: {:?}", t.elapsed());
}
