//! The harness: the only module that knows both the model and the system. It generates op
//! sequences, applies each op to both, compares outcomes and checks the session invariant.

pub mod call;
pub mod coverage;
pub mod fuzz;
pub mod machine;
pub mod op;
pub mod replay;
pub mod runner;
pub mod state;
pub mod strategy;

pub use op::Op;
pub use runner::{Coverage, Failure, Runner, Violation};
