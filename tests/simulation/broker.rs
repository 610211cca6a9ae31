//! A simulated RabbitMQ: a jobs queue consumed with a prefetch window,
//! acknowledgements (`multiple` too) and requeues, publishes confirmed or
//! refused, and connections that are lost, which requeue every
//! unacknowledged job as redelivered and take unconfirmed publishes with
//! them (a publish is taken by the broker exactly when it is confirmed).

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use herald::core::{Delivery, Destination, JobId, Publish, Request, RequestId};

#[derive(Debug, Clone)]
pub struct Message {
    /// Index of the job in the world's list.
    pub job: usize,
    pub payload: Vec<u8>,
    pub redelivered: bool,
}

pub struct Broker {
    pub generation: u64,
    pub connected: bool,
    pub queue: VecDeque<Message>,
    pub unacked: BTreeMap<u64, Message>,
    next_tag: u64,
    pub in_flight: VecDeque<Publish>,
    pub prefetch: usize,
    /// Reports confirmed on the events exchange, in order.
    pub reports: Vec<Vec<u8>>,
    /// Dead letters confirmed: (job, reason).
    pub dead: Vec<(usize, String)>,
    /// Control requests of this connection not answered yet, by delivery
    /// tag: whether each has a reply_to. (A lost connection's are not
    /// redelivered here: a requester asks again.)
    open_requests: BTreeMap<u64, bool>,
    next_request_tag: u64,
    /// Answers to control requests, apart from the jobs' publishes so
    /// that they take no turn of theirs (nor their faults).
    pub answers: VecDeque<Publish>,
}

impl Broker {
    pub fn new(prefetch: usize) -> Self {
        Broker {
            generation: 0,
            connected: false,
            queue: VecDeque::new(),
            unacked: BTreeMap::new(),
            next_tag: 0,
            in_flight: VecDeque::new(),
            prefetch,
            reports: Vec::new(),
            dead: Vec::new(),
            open_requests: BTreeMap::new(),
            next_request_tag: 0,
            answers: VecDeque::new(),
        }
    }

    pub fn connect(&mut self) -> u64 {
        self.generation += 1;
        self.connected = true;
        self.next_tag = 0;
        self.next_request_tag = 0;
        self.generation
    }

    /// The connection is gone: unacknowledged jobs go back to the head of
    /// the queue, in order, marked redelivered; unconfirmed publishes are lost.
    pub fn lose(&mut self) {
        self.connected = false;
        let unacked = std::mem::take(&mut self.unacked);
        for (_, mut message) in unacked.into_iter().rev() {
            message.redelivered = true;
            self.queue.push_front(message);
        }
        self.in_flight.clear();
        self.open_requests.clear();
        self.answers.clear();
    }

    /// A control request from the control queue, if connected.
    pub fn request(&mut self, payload: Vec<u8>, reply_to: bool) -> Option<Request> {
        if !self.connected {
            return None;
        }
        self.next_request_tag += 1;
        self.open_requests.insert(self.next_request_tag, reply_to);
        Some(Request {
            id: RequestId {
                generation: self.generation,
                tag: self.next_request_tag,
            },
            payload,
            reply_to: reply_to.then(|| "amq.rabbitmq.reply-to.sim".to_string()),
            correlation_id: Some(format!("c{}", self.next_request_tag)),
        })
    }

    /// Some request of the live connection has no answer published yet
    /// (one that changes a group waits for a store commit).
    pub fn awaits_answers(&self) -> bool {
        self.open_requests.len() > self.answers.len()
    }

    /// Every request of the live connection has been answered.
    pub fn all_answered(&self) -> Result<(), String> {
        match self.open_requests.keys().next() {
            Some(tag) => Err(format!("control request {tag} never answered")),
            None => Ok(()),
        }
    }

    /// The broker took `publish`: if it answers a control request, that
    /// request is open on this connection, is answered once, and as it
    /// asked (a reply to its reply_to, else a dead letter).
    pub fn answered(&mut self, publish: &Publish) -> Result<(), String> {
        let (request, reply) = match &publish.destination {
            Destination::Reply { request, .. } => (request, true),
            Destination::DeadRequest { request, .. } => (request, false),
            Destination::Events { .. } | Destination::DeadLetter { .. } => return Ok(()),
        };
        match self.open_requests.remove(&request.tag) {
            Some(reply_to) if reply_to == reply => Ok(()),
            Some(_) => Err(format!(
                "request {request:?} answered the wrong way: {publish:?}"
            )),
            None => Err(format!("an answer to no open request: {publish:?}")),
        }
    }

    /// The next job for the consumer, within the prefetch window, taken
    /// when the wall clock reads `now`.
    pub fn deliver(&mut self, now: SystemTime) -> Option<Delivery> {
        if !self.connected || self.unacked.len() >= self.prefetch {
            return None;
        }
        let message = self.queue.pop_front()?;
        self.next_tag += 1;
        let delivery = Delivery {
            id: JobId {
                generation: self.generation,
                tag: self.next_tag,
            },
            payload: message.payload.clone(),
            redelivered: message.redelivered,
            age: None,
            received_at: now,
        };
        self.unacked.insert(self.next_tag, message);
        Some(delivery)
    }

    /// Acknowledges `job` (and with `multiple` every earlier unacknowledged
    /// one); returns the jobs settled. Stale connections' acks do nothing.
    pub fn ack(&mut self, job: JobId, multiple: bool) -> Result<Vec<Message>, String> {
        if job.generation != self.generation || !self.connected {
            return Ok(Vec::new());
        }
        if !self.unacked.contains_key(&job.tag) {
            return Err(format!("ack of unknown delivery tag {}", job.tag));
        }
        if multiple {
            let later = self.unacked.split_off(&(job.tag + 1));
            let acked = std::mem::replace(&mut self.unacked, later);
            Ok(acked.into_values().collect())
        } else {
            Ok(self.unacked.remove(&job.tag).into_iter().collect())
        }
    }

    pub fn requeue(&mut self, job: JobId) -> Result<(), String> {
        if job.generation != self.generation || !self.connected {
            return Ok(());
        }
        let mut message = self
            .unacked
            .remove(&job.tag)
            .ok_or_else(|| format!("requeue of unknown delivery tag {}", job.tag))?;
        message.redelivered = true;
        self.queue.push_front(message);
        Ok(())
    }

    pub fn publish(&mut self, publish: Publish) {
        if !self.connected || publish.generation != self.generation {
            return;
        }
        match publish.destination {
            Destination::Reply { .. } | Destination::DeadRequest { .. } => {
                self.answers.push_back(publish)
            }
            Destination::Events { .. } | Destination::DeadLetter { .. } => {
                self.in_flight.push_back(publish)
            }
        }
    }

    /// The broker takes the oldest publish; returns it.
    pub fn take_publish(&mut self) -> Option<Publish> {
        let publish = self.in_flight.pop_front()?;
        match &publish.destination {
            Destination::Events { routing_key } if routing_key == "job.report" => {
                self.reports.push(publish.payload.clone());
            }
            Destination::Events { .. } => {}
            Destination::DeadLetter { job, reason } => {
                if let Some(message) = self.unacked.get(&job.tag) {
                    self.dead.push((message.job, reason.clone()));
                }
            }
            // Kept apart, in `answers`.
            Destination::Reply { .. } | Destination::DeadRequest { .. } => {}
        }
        Some(publish)
    }

    /// The broker refuses the oldest publish; returns it.
    pub fn refuse_publish(&mut self) -> Option<Publish> {
        self.in_flight.pop_front()
    }
}
