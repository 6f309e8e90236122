//! Sync with the OMS over MQTT: the only code that knows MQTT and its topics.
//!
//! - [`agent`]: the agent's link (down messages in, outbox events out).
//! - [`mqtt`]: broker URL, credentials and TLS to rumqttc options; [`probe`]: the
//!   doctor's one-off broker check.
//! - [`oms`]: the durable OMS side (`OmsSession`); [`tools`]: `floorhand oms ...`.
//! - [`backoff`]: reconnect delays; [`pubacks`]: which PUBACK belongs to which event
//!   (both pure). The channel bookkeeping is [`crate::ledger`].

pub mod agent;
pub mod backoff;
pub mod link;
pub mod mqtt;
#[cfg(feature = "oms")]
pub mod oms;
pub mod probe;
pub mod pubacks;
#[cfg(feature = "sim")]
pub mod tools;
