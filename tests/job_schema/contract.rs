//! The job contract's two judges side by side: docs/job.schema.json
//! compiled by boon (with the event definitions), and `Job::parse`.

use std::path::Path;

use boon::{Compiler, SchemaIndex, Schemas};
use herald::broadcast::{Job, JobError};
use herald_testkit::job_check::limits;
use serde_json::Value;

const SCHEMA_URL: &str = "file:///herald/docs/job.schema.json";

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn schema_json() -> Value {
    serde_json::from_str(&read("docs/job.schema.json")).expect("docs/job.schema.json is JSON")
}

/// The job schema and its event definitions, compiled (which also checks the
/// schema against the draft 2020-12 meta-schema).
pub struct Contract {
    schemas: Schemas,
    job: SchemaIndex,
    pub events: Vec<(&'static str, SchemaIndex)>,
}

impl Contract {
    pub fn new() -> Contract {
        let mut schemas = Schemas::new();
        let mut compiler = Compiler::new();
        compiler.add_resource(SCHEMA_URL, schema_json()).unwrap();
        let mut compile = |fragment: &str| {
            compiler
                .compile(&format!("{SCHEMA_URL}{fragment}"), &mut schemas)
                .unwrap_or_else(|e| panic!("schema {fragment}: {e:#}"))
        };
        let job = compile("");
        let events = [
            "report",
            "namesPart",
            "finalReport",
            "finalNamesPart",
            "presenceChanged",
            "messageReceived",
            "messageReceipt",
        ]
        .into_iter()
        .map(|name| (name, compile(&format!("#/$defs/{name}"))))
        .collect();
        Contract {
            schemas,
            job,
            events,
        }
    }

    pub fn job_valid(&self, job: &Value) -> bool {
        self.schemas.validate(job, self.job).is_ok()
    }

    pub fn event(&self, name: &str, event: &Value) -> Result<(), String> {
        let (_, index) = self.events.iter().find(|(n, _)| *n == name).unwrap();
        self.schemas
            .validate(event, *index)
            .map_err(|e| format!("{e:#}"))
    }
}

pub fn parse(payload: &[u8]) -> Result<Job, JobError> {
    Job::parse(payload, &limits())
}

/// The schema's and Herald's verdicts on `job` are the same.
pub fn assert_agree(contract: &Contract, job: &Value, accepted: bool) {
    let herald = parse(job.to_string().as_bytes());
    assert_eq!(herald.is_ok(), accepted, "Herald on {job}: {herald:?}");
    assert_eq!(contract.job_valid(job), accepted, "schema on {job}");
}

/// The field of a refusal by `Job::parse`, or `json` for the JSON reader's.
pub fn refused_field(error: &JobError) -> &'static str {
    match error {
        JobError::Json(_) => "json",
        JobError::Field { field, .. } => field,
        JobError::Recipient { .. } => "recipient",
    }
}
