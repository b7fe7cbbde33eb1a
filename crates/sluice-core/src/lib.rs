//! The small types every Sluice stage shares. Nothing here performs I/O.

mod offsets;
mod record;
mod signal;
mod window;

pub use offsets::{OffsetLedger, PartitionLedgers};
pub use record::{Record, TopicPartition};
pub use signal::SignalName;
pub use window::{Granularity, Window};
mod template;
pub use template::{PathTemplate, PathValues, TemplateError, PLACEHOLDERS};
