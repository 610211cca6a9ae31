//! The scenarios, named after the paper's tables, and their default sizes.

use clap::ValueEnum;

use crate::servers::ServerKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 10,000 users online, 10,000 jobs of one recipient each (Table I).
    Table1,
    /// Table I plus 5,000 users logging in and out (Table II); ejabberd.
    Table2,
    /// One job to 10,000 recipients.
    Fanout,
    /// Table I's shape at 1,000, 5,000, 10,000, 15,000 and 50,000 users.
    Scale,
}

/// Sizes of one scenario setup (before repetitions and components).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub users: usize,
    pub churn: usize,
    pub jobs: u64,
    pub recipients_per_job: usize,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub users: Vec<usize>,
    pub jobs: Option<u64>,
    pub recipients: Option<usize>,
    pub churn: Option<usize>,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Table1 => "table1",
            Scenario::Table2 => "table2",
            Scenario::Fanout => "fanout",
            Scenario::Scale => "scale",
        }
    }

    /// Prosody, except under churn: Prosody stops reading the component
    /// for seconds at a time while users log in and out, which would
    /// measure that stall rather than the component.
    pub fn default_server(self) -> ServerKind {
        match self {
            Scenario::Table2 => ServerKind::Ejabberd,
            _ => ServerKind::Prosody,
        }
    }

    /// The setups to run: one per user count. Unless overridden, table
    /// shapes send one job per user with one recipient each, and fan-out
    /// one job to every user.
    pub fn shapes(self, o: &Overrides) -> Vec<Shape> {
        let users = if !o.users.is_empty() {
            o.users.clone()
        } else if self == Scenario::Scale {
            vec![1_000, 5_000, 10_000, 15_000, 50_000]
        } else {
            vec![10_000]
        };
        users
            .into_iter()
            .map(|users| {
                let (jobs, recipients) = match self {
                    Scenario::Fanout => (1, users),
                    _ => (users as u64, 1),
                };
                Shape {
                    users,
                    churn: o
                        .churn
                        .unwrap_or(if self == Scenario::Table2 { 5_000 } else { 0 }),
                    jobs: o.jobs.unwrap_or(jobs),
                    recipients_per_job: o.recipients.unwrap_or(recipients),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_sizes_by_default() {
        let none = Overrides::default();
        let t1 = Scenario::Table1.shapes(&none);
        assert_eq!(
            t1,
            vec![Shape {
                users: 10_000,
                churn: 0,
                jobs: 10_000,
                recipients_per_job: 1
            }]
        );
        assert_eq!(Scenario::Table2.shapes(&none)[0].churn, 5_000);
        assert_eq!(Scenario::Table2.default_server(), ServerKind::Ejabberd);
        let fanout = &Scenario::Fanout.shapes(&none)[0];
        assert_eq!((fanout.jobs, fanout.recipients_per_job), (1, 10_000));
        let scale: Vec<usize> = Scenario::Scale
            .shapes(&none)
            .iter()
            .map(|s| s.users)
            .collect();
        assert_eq!(scale, vec![1_000, 5_000, 10_000, 15_000, 50_000]);
    }

    #[test]
    fn overrides_apply_to_every_size() {
        let o = Overrides {
            users: vec![500, 800],
            jobs: Some(100),
            recipients: None,
            churn: Some(50),
        };
        let shapes = Scenario::Fanout.shapes(&o);
        assert_eq!(shapes.len(), 2);
        assert_eq!(
            shapes[1],
            Shape {
                users: 800,
                churn: 50,
                jobs: 100,
                recipients_per_job: 800
            }
        );
    }
}
