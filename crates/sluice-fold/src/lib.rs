//! Routing (which signal and window a record belongs to, or why it is dead) and folding
//! (collecting each partition's records per signal and window until a buffer is due to land).

mod ahead;
mod buffers;
mod event_time;
mod lines;
mod names;
mod nesting;
mod route;
mod scan;

pub use buffers::{Appended, Buffer, BufferKey, Buffers, Target};
pub use lines::{Lines, Sealer};
pub use nesting::{nests_deeper_than, MAX_NESTING};
pub use route::{dead_letter_line, refused_line, DeadReason, Routed, Router};
