//! `herald group ...`: the group requests of the control plane from the
//! command line. Each builds the request's JSON and checks it as Herald
//! will, so a mistake is told before anything is sent.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::{read_input, recipients, SendError};
use crate::control::{self, Request, DEFAULT_PAGE};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group, or make an existing one hold exactly these members
    Put(Members),
    /// Add members to a group (creating it)
    Add(Members),
    /// Remove members from a group
    Remove(Members),
    /// Delete a group
    Delete { name: String },
    /// A page of a group's members, in JID order ("next" is the --after of the next page)
    Get {
        /// The group's name
        name: String,
        /// Members in the page
        #[arg(long, default_value_t = DEFAULT_PAGE)]
        limit: usize,
        /// Members after this JID
        #[arg(long, value_name = "JID")]
        after: Option<String>,
    },
    /// A page of the groups' names and sizes, in name order
    List {
        /// Groups in the page
        #[arg(long, default_value_t = DEFAULT_PAGE)]
        limit: usize,
        /// Groups after this name
        #[arg(long, value_name = "NAME")]
        after: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct Members {
    /// The group's name: 1 to 64 characters of A-Z a-z 0-9 . _ -
    pub name: String,
    /// Members, as users' bare JIDs
    #[arg(value_name = "JID")]
    pub members: Vec<String>,
    /// Read members from a file, one JID per line ("-": standard input);
    /// blank lines and lines starting with # are skipped
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

impl GroupCommand {
    /// The request, checked as Herald checks it.
    pub fn request(&self) -> Result<Request, SendError> {
        let members = |op: &str, args: &Members| -> Result<Value, SendError> {
            let mut members = args.members.clone();
            if let Some(path) = &args.file {
                members.extend(recipients(&read_input(path)?));
            }
            Ok(json!({"op": op, "group": args.name, "members": members}))
        };
        let value = match self {
            GroupCommand::Put(args) => members("group.put", args)?,
            GroupCommand::Add(args) => members("group.add", args)?,
            GroupCommand::Remove(args) => members("group.remove", args)?,
            GroupCommand::Delete { name } => json!({"op": "group.delete", "group": name}),
            GroupCommand::Get { name, limit, after } => control::paged(
                json!({"op": "group.get", "group": name, "limit": limit}),
                after.as_deref(),
            ),
            GroupCommand::List { limit, after } => control::paged(
                json!({"op": "group.list", "limit": limit}),
                after.as_deref(),
            ),
        };
        control::parse(value.to_string().as_bytes()).map_err(|e| SendError::Input(e.to_string()))
    }
}
