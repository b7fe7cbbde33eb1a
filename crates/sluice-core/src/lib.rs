//! The small types every Sluice stage shares. Nothing here performs I/O.

mod offsets;
mod record;
mod signal;
mod window;

pub use offsets::{LandedRanges, OffsetLedger, PartitionLedgers};
pub use record::{Record, RecordView, TopicPartition};
pub use signal::SignalName;
pub use window::{Granularity, Window};
mod template;
pub use template::{
    parse_any_offset_file_name, parse_offset_file_name, PathTemplate, PathValues, TemplateError,
    LATE_PREFIX, OFFSET_FILE_NAME, PLACEHOLDERS,
};
