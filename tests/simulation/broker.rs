//! A simulated RabbitMQ: a jobs queue consumed with a prefetch window,
//! acknowledgements (`multiple` too) and requeues, publishes confirmed or
//! refused, and connections that are lost, which requeue every
//! unacknowledged job as redelivered and take unconfirmed publishes with
//! them (a publish is taken by the broker exactly when it is confirmed).

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use herald::core::{Delivery, Destination, JobId, Lane, Publish, Request, RequestId};

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
    /// Each lane's queue and unacknowledged deliveries (by [`Lane::index`]):
    /// each lane is consumed on a channel of its own, with its own tags.
    pub queues: [VecDeque<Message>; 2],
    pub unacked: [BTreeMap<u64, Message>; 2],
    next_tag: [u64; 2],
    pub in_flight: VecDeque<Publish>,
    /// Each lane's prefetch.
    pub prefetch: [usize; 2],
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
    pub fn new(prefetch: [usize; 2]) -> Self {
        Broker {
            generation: 0,
            connected: false,
            queues: Default::default(),
            unacked: Default::default(),
            next_tag: [0; 2],
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
        self.next_tag = [0; 2];
        self.next_request_tag = 0;
        self.generation
    }

    /// The connection is gone: unacknowledged jobs go back to the head of
    /// the queue, in order, marked redelivered; unconfirmed publishes are lost.
    pub fn lose(&mut self) {
        self.connected = false;
        for lane in Lane::ALL {
            let unacked = std::mem::take(&mut self.unacked[lane.index()]);
            for (_, mut message) in unacked.into_iter().rev() {
                message.redelivered = true;
                self.queues[lane.index()].push_front(message);
            }
        }
        self.in_flight.clear();
        self.open_requests.clear();
        self.answers.clear();
    }

    /// A control request from the control queue, if connected, taken when
    /// the wall clock reads `now`.
    pub fn request(
        &mut self,
        now: SystemTime,
        payload: Vec<u8>,
        reply_to: bool,
    ) -> Option<Request> {
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
            user_id: None,
            received_at: now,
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
            Destination::Events { .. }
            | Destination::DeadLetter { .. }
            | Destination::Job { .. } => return Ok(()),
        };
        match self.open_requests.remove(&request.tag) {
            Some(reply_to) if reply_to == reply => Ok(()),
            Some(_) => Err(format!(
                "request {request:?} answered the wrong way: {publish:?}"
            )),
            None => Err(format!("an answer to no open request: {publish:?}")),
        }
    }

    /// The next job for the consumer, within its lane's prefetch window
    /// and of a lane Herald takes (`takes`, by lane), urgent first, taken
    /// when the wall clock reads `now`.
    pub fn deliver(&mut self, now: SystemTime, takes: [bool; 2]) -> Option<Delivery> {
        if !self.connected {
            return None;
        }
        let lane = Lane::ALL.into_iter().find(|lane| {
            let i = lane.index();
            takes[i] && self.unacked[i].len() < self.prefetch[i] && !self.queues[i].is_empty()
        })?;
        let i = lane.index();
        let message = self.queues[i].pop_front()?;
        self.next_tag[i] += 1;
        let delivery = Delivery {
            id: JobId {
                generation: self.generation,
                lane,
                tag: self.next_tag[i],
            },
            payload: message.payload.clone(),
            redelivered: message.redelivered,
            age: None,
            received_at: now,
            user_id: None,
        };
        self.unacked[i].insert(self.next_tag[i], message);
        Some(delivery)
    }

    /// Acknowledges `job` (and with `multiple` every earlier unacknowledged
    /// one of its lane); returns the jobs settled. Stale connections' acks
    /// do nothing.
    pub fn ack(&mut self, job: JobId, multiple: bool) -> Result<Vec<Message>, String> {
        if job.generation != self.generation || !self.connected {
            return Ok(Vec::new());
        }
        let unacked = &mut self.unacked[job.lane.index()];
        if !unacked.contains_key(&job.tag) {
            return Err(format!("ack of unknown delivery tag {job:?}"));
        }
        if multiple {
            let later = unacked.split_off(&(job.tag + 1));
            let acked = std::mem::replace(unacked, later);
            Ok(acked.into_values().collect())
        } else {
            Ok(unacked.remove(&job.tag).into_iter().collect())
        }
    }

    pub fn requeue(&mut self, job: JobId) -> Result<(), String> {
        if job.generation != self.generation || !self.connected {
            return Ok(());
        }
        let mut message = self.unacked[job.lane.index()]
            .remove(&job.tag)
            .ok_or_else(|| format!("requeue of unknown delivery tag {job:?}"))?;
        message.redelivered = true;
        self.queues[job.lane.index()].push_front(message);
        Ok(())
    }

    /// Jobs queued or delivered and not acknowledged, of every lane.
    pub fn pending(&self) -> impl Iterator<Item = &Message> {
        self.queues
            .iter()
            .flatten()
            .chain(self.unacked.iter().flat_map(BTreeMap::values))
    }

    pub fn publish(&mut self, publish: Publish) {
        if !self.connected || publish.generation != self.generation {
            return;
        }
        match publish.destination {
            Destination::Reply { .. } | Destination::DeadRequest { .. } => {
                self.answers.push_back(publish)
            }
            Destination::Events { .. }
            | Destination::DeadLetter { .. }
            | Destination::Job { .. } => self.in_flight.push_back(publish),
        }
    }

    /// The broker takes the oldest publish; returns it.
    pub fn take_publish(&mut self) -> Option<Publish> {
        let publish = self.in_flight.pop_front()?;
        match &publish.destination {
            Destination::Events { routing_key } if routing_key == "job.report" => {
                self.reports.push(publish.payload.clone());
            }
            // The worlds run no ad-hoc commands: no job of Herald's own.
            Destination::Events { .. } | Destination::Job { .. } => {}
            Destination::DeadLetter { job, reason } => {
                if let Some(message) = self.unacked[job.lane.index()].get(&job.tag) {
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
