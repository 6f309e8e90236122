//! The TCP fault proxy for link-fault tests: the agent crate's `demo::proxy`, which the
//! demo uses to cut the agents' broker link.

pub use floorhand::demo::proxy::{FaultProxy, Mode};
