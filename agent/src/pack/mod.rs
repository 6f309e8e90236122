//! The pack station workflow: a pure state machine (in progress).
