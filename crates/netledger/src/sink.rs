//! Where intervals go. Every output (the text formats, the history store,
//! Prometheus, IPFIX) implements [`Sink`]; a command hands each cut's
//! [`Interval`] to its sinks in turn.

use crate::record::Interval;

/// What a sink's failure carries: its own error, whatever it is.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A writer of intervals.
pub trait Sink {
    /// Take one interval (called once per cut, in order).
    fn interval(&mut self, iv: &Interval) -> Result<(), SinkError>;

    /// Flush and release what the sink holds; no interval follows.
    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn interval(&mut self, iv: &Interval) -> Result<(), SinkError> {
        (**self).interval(iv)
    }

    fn close(&mut self) -> Result<(), SinkError> {
        (**self).close()
    }
}
