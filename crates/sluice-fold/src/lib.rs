//! Routing (which signal and window a record belongs to, or why it is dead) and folding
//! (collecting each partition's records per signal and window until a buffer is due to land).

mod buffers;
mod route;

pub use buffers::{Appended, Buffer, BufferKey, Buffers, Target};
pub use route::{dead_letter_line, DeadReason, Routed, Router};
