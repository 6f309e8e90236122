//! What each agent committed, read back from its copy of the outbox
//! (`Db::keep_outbox_copy`: every outbox row, written in the row's own transaction and kept after the OMS's ack
//! deletes the row). The stations run unchanged; this is how the demo knows, for the
//! exactly-once check, every event each one wrote.

use std::collections::BTreeMap;

use floorhand_protocol::oms::{EventKind, Up, decode_up};

use super::DemoError;
use crate::store::Store;

/// Per device, `(seq, operator, kind)` of each committed event.
pub type Committed = BTreeMap<String, Written>;

/// `(seq, operator, kind)` of committed events, in seq order.
pub type Written = Vec<(u64, u32, EventKind)>;

/// One agent's committed events, read as they are written.
pub struct Commits {
    device: String,
    store: Store,
    events: Written,
    /// The highest row of the copy read (events and other up messages alike).
    read_to: u64,
}

impl Commits {
    /// What the agent `device` whose store is `store` committed.
    pub fn new(device: &str, store: Store) -> Commits {
        Commits {
            device: device.to_string(),
            store,
            events: Vec::new(),
            read_to: 0,
        }
    }

    /// Reads the rows written since the last read.
    pub async fn read(&mut self) -> Result<(), DemoError> {
        let after = self.read_to;
        let rows = self
            .store
            .call(move |db| db.outbox_copy(after))
            .await
            .map_err(|e| DemoError::Agent(format!("{}: {e}", self.device)))?
            .map_err(|e| DemoError::Agent(format!("{}: {e}", self.device)))?;
        for (seq, payload) in rows {
            self.read_to = seq;
            match decode_up(&payload) {
                Ok(env) => {
                    if let Up::Event(e) = env.body.body {
                        self.events.push((seq, e.operator, e.kind));
                    }
                }
                Err(e) => tracing::error!(seq, "outbox copy row does not decode: {e}"),
            }
        }
        Ok(())
    }

    /// The events read so far.
    pub fn events(&self) -> &Written {
        &self.events
    }

    /// How many of the events read so far `f` picks.
    pub fn count(&self, f: impl Fn(&EventKind) -> bool) -> u64 {
        self.events.iter().filter(|(_, _, k)| f(k)).count() as u64
    }

    /// The agent's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The device id.
    pub fn device(&self) -> &str {
        &self.device
    }
}
