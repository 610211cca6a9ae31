//! Users in every presence a job or a question about presence must tell
//! apart, logged in on a real server and each seen by Herald (its
//! `presence.changed` event awaited) before the test goes on.

use crate::amqp::EventTap;
use crate::c2s::XmppUser;
use crate::events::await_presence;
use crate::server::XmppServer;

/// The crowd's users, carol and erin (one gone, one never seen, as the
/// test chooses), and a full JID, which is no address for a job.
pub const EVERYONE_AND_A_FULL_JID: [&str; 6] = [
    "alice@localhost",
    "bob@localhost",
    "carol@localhost",
    "dave@localhost",
    "erin@localhost",
    "alice@localhost/desk",
];

/// alice is available at her desk; bob is away on his phone; dave has a
/// phone that is dnd and a desk ready to chat; `gone` was online and left.
pub struct MixedCrowd {
    pub alice: XmppUser,
    pub bob: XmppUser,
    pub dave_dnd: XmppUser,
    pub dave_chat: XmppUser,
}

impl MixedCrowd {
    /// Needs the users alice, bob, dave and `gone` on `server`.
    pub async fn log_in(server: &impl XmppServer, tap: &mut EventTap, gone: &str) -> MixedCrowd {
        let alice = XmppUser::login_available(server, "alice", "desk").await;
        await_presence(tap, "alice@localhost/desk", Some("online")).await;
        let mut bob = XmppUser::login(server, "bob", "phone").await;
        bob.send_presence(Some("away"), 0).await;
        await_presence(tap, "bob@localhost/phone", Some("away")).await;
        let mut dave_dnd = XmppUser::login(server, "dave", "phone").await;
        dave_dnd.send_presence(Some("dnd"), 0).await;
        await_presence(tap, "dave@localhost/phone", Some("dnd")).await;
        let mut dave_chat = XmppUser::login(server, "dave", "desk").await;
        dave_chat.send_presence(Some("chat"), 0).await;
        await_presence(tap, "dave@localhost/desk", Some("chat")).await;
        let left = XmppUser::login_available(server, gone, "desk").await;
        let resource = format!("{gone}@localhost/desk");
        await_presence(tap, &resource, Some("online")).await;
        left.disconnect().await;
        await_presence(tap, &resource, None).await;
        MixedCrowd {
            alice,
            bob,
            dave_dnd,
            dave_chat,
        }
    }
}
