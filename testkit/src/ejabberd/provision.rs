//! ejabberd's users and rosters, provisioned in one RPC from a short-lived
//! hidden node that loops inside ejabberd: one `ejabberdctl` call per user
//! boots an Erlang node each time, far too slow for the load test's 15,000
//! users.

use std::ffi::OsStr;
use std::fs;

use super::Ejabberd;
use crate::server::{user_entry, XmppServer, ROSTER_CONTACT};

/// Runs in a hidden Erlang node: reads `user<TAB>password<TAB>host` lines, then makes
/// one RPC to the ejabberd node with a function that loops over them there.
/// Prints the number of users provisioned, or why it failed.
const PROVISION: &str = r#"
Env = fun(Name) -> unicode:characters_to_binary(os:getenv(Name)) end,
Node = binary_to_atom(Env("HERALD_EJABBERD_NODE")),
[ContactUser, ContactServer] = binary:split(Env("HERALD_EJABBERD_CONTACT"), <<"@">>),
Contact = {ContactUser, ContactServer, <<>>},
{ok, Text} = file:read_file(Env("HERALD_EJABBERD_USERS")),
Accounts = [list_to_tuple(binary:split(Line, <<"\t">>, [global]))
            || Line <- binary:split(Text, <<"\n">>, [global, trim_all])],
Provision = fun() ->
    lists:foreach(
      fun({User, Password, Host}) ->
          ok = ejabberd_auth:try_register(User, Host, Password),
          {atomic, _} = mod_roster:set_roster(
                          {roster, {User, Host, Contact}, {User, Host}, Contact,
                           <<"Herald">>, both, none, [], <<>>, []})
      end, Accounts),
    ok = dets:sync(passwd),
    ok = dets:sync(roster),
    length(Accounts)
end,
Expected = length(Accounts),
case rpc:call(Node, erlang, apply, [Provision, []], infinity) of
    Expected -> io:format("provisioned ~b users~n", [Expected]), halt(0);
    Other -> io:format("provisioning failed: ~p~n", [Other]), halt(1)
end.
"#;

impl Ejabberd {
    /// Registers every user with a roster, in one RPC (see the module docs).
    pub(super) fn provision(&mut self) {
        if self.passwords.is_empty() {
            return;
        }
        let users_file = self.root.join("users.tsv");
        let lines: String = self
            .passwords
            .iter()
            .map(|(user, password)| {
                let (local, domain) = user_entry(user);
                format!("{local}\t{password}\t{domain}\n")
            })
            .collect();
        fs::write(&users_file, lines).expect("write the user list for ejabberd");
        let output = self.eval_hidden(
            PROVISION,
            &[
                ("HERALD_EJABBERD_CONTACT", OsStr::new(ROSTER_CONTACT)),
                ("HERALD_EJABBERD_USERS", users_file.as_os_str()),
            ],
        );
        if !output.status.success() {
            let msg = self.failure_report(&format!(
                "provisioning {} users failed ({}): {}{}",
                self.passwords.len(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            ));
            self.kill();
            panic!("{msg}");
        }
    }
}
