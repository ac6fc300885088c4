//! The message channel between the hub and one run's user code (a child's SDK socket, a
//! JavaScript worker's stdout): newline-delimited JSON, read with a maximum message size and a
//! per-run byte budget, so code that floods the hub costs it at most one message of memory and
//! ends as a failed run that names the limit.

use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Largest single message from user code (an SDK request, a JavaScript run's result).
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
/// Most bytes one run may send the hub over its channel in all.
pub const RUN_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// Reads messages from user code within the limits.
pub struct Channel<R> {
    lines: FramedRead<R, LinesCodec>,
    /// Bytes left of the run's budget.
    left: usize,
}

/// Why a channel stopped giving messages.
#[derive(Debug, PartialEq)]
pub enum ChannelEnd {
    /// The other side closed it (or it broke).
    Closed,
    /// A limit was passed; the text names it.
    Limit(String),
}

impl<R: AsyncRead + Unpin> Channel<R> {
    pub fn new(reader: R) -> Channel<R> {
        Channel {
            lines: FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_MESSAGE_BYTES)),
            left: RUN_BUDGET_BYTES,
        }
    }

    /// The next message, or why there is none.
    pub async fn next(&mut self) -> Result<String, ChannelEnd> {
        match self.lines.next().await {
            Some(Ok(line)) => {
                if line.len() + 1 > self.left {
                    self.left = 0;
                    return Err(ChannelEnd::Limit(format!(
                        "output too large: the code sent the hub more than {} MiB in one run",
                        RUN_BUDGET_BYTES >> 20
                    )));
                }
                self.left -= line.len() + 1;
                Ok(line)
            }
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => Err(ChannelEnd::Limit(format!(
                "output too large: a message to the hub is longer than {} MiB",
                MAX_MESSAGE_BYTES >> 20
            ))),
            Some(Err(LinesCodecError::Io(_))) | None => Err(ChannelEnd::Closed),
        }
    }

    /// Starts a new run's budget (a worker that behaved is reused).
    pub fn reset_budget(&mut self) {
        self.left = RUN_BUDGET_BYTES;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_long_line_is_refused_without_being_buffered_whole() {
        let mut data = vec![b'x'; MAX_MESSAGE_BYTES + 10];
        data.push(b'\n');
        let mut ch = Channel::new(&data[..]);
        assert!(matches!(ch.next().await, Err(ChannelEnd::Limit(m)) if m.contains("longer than")));
    }

    #[tokio::test]
    async fn the_budget_ends_a_flood_of_small_lines() {
        let line = format!("{}\n", "y".repeat(1023));
        let data = line.repeat(RUN_BUDGET_BYTES / 1024 + 2);
        let mut ch = Channel::new(data.as_bytes());
        let mut n = 0;
        let end = loop {
            match ch.next().await {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(n, RUN_BUDGET_BYTES / 1024);
        assert!(matches!(end, ChannelEnd::Limit(m) if m.contains("64 MiB")));
        assert_eq!(Channel::new(&b"a\n"[..]).next().await, Ok("a".to_string()));
        let mut empty = Channel::new(&b""[..]);
        assert_eq!(empty.next().await, Err(ChannelEnd::Closed));
    }
}
