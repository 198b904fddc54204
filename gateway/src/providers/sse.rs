//! Incremental Server-Sent Events parser over arbitrary byte chunks (lines and UTF-8 may split anywhere).

use memchr::memchr2;

/// Largest event (line or accumulated `data`) accepted; bigger means a broken or hostile upstream.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One dispatched event. `event` is `"message"` when the stream names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub event: &'a str,
    pub data: &'a str,
}

/// An event exceeded [`MAX_EVENT_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server-sent event larger than {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLarge;

/// Appends `bytes` as text. Valid UTF-8 (every real stream) takes the fast validator; anything else is
/// replaced lossily rather than failing the stream.
fn push_utf8(target: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => target.push_str(text),
        Err(_) => target.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// Stateful parser: feed chunks as they arrive, receive complete events through a callback.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unterminated line.
    partial_line: Vec<u8>,
    data: String,
    event: String,
    has_data: bool,
    /// The previous chunk ended in `\r`: a leading `\n` in the next chunk belongs to the same terminator.
    skip_leading_lf: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `bytes`, calling `on_event` for every event completed by them.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut on_event: impl FnMut(SseEvent<'_>),
    ) -> Result<(), EventTooLarge> {
        let mut rest = bytes;
        if self.skip_leading_lf && !rest.is_empty() {
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
            self.skip_leading_lf = false;
        }
        while let Some(position) = memchr2(b'\n', b'\r', rest) {
            if self.partial_line.is_empty() {
                self.process_line(&rest[..position], &mut on_event)?;
            } else {
                self.partial_line.extend_from_slice(&rest[..position]);
                let line = std::mem::take(&mut self.partial_line);
                let result = self.process_line(&line, &mut on_event);
                self.partial_line = line;
                self.partial_line.clear();
                result?;
            }
            let terminator = rest[position];
            rest = &rest[position + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.skip_leading_lf = true,
                }
            }
        }
        if self.partial_line.len() + rest.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        self.partial_line.extend_from_slice(rest);
        Ok(())
    }

    /// Ends the stream. An event missing its final blank line is still dispatched (lenient: some servers omit it).
    pub fn finish(&mut self, mut on_event: impl FnMut(SseEvent<'_>)) -> Result<(), EventTooLarge> {
        if !self.partial_line.is_empty() {
            let line = std::mem::take(&mut self.partial_line);
            self.process_line(&line, &mut on_event)?;
        }
        self.dispatch(&mut on_event);
        Ok(())
    }

    fn process_line(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>),
    ) -> Result<(), EventTooLarge> {
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() > MAX_EVENT_BYTES {
                    return Err(EventTooLarge);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                push_utf8(&mut self.data, value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                push_utf8(&mut self.event, value);
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.has_data {
            let event = if self.event.is_empty() {
                "message"
            } else {
                self.event.as_str()
            };
            on_event(SseEvent {
                event,
                data: &self.data,
            });
        }
        self.data.clear();
        self.event.clear();
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            parser
                .feed(chunk, |event| {
                    events.push((event.event.to_owned(), event.data.to_owned()))
                })
                .unwrap();
        }
        parser
            .finish(|event| events.push((event.event.to_owned(), event.data.to_owned())))
            .unwrap();
        events
    }

    #[test]
    fn every_split_position_yields_the_same_events() {
        let stream = "event: message_start\ndata: {\"a\":\"h\u{e9}\u{1f600}\"}\n\n: comment\r\nevent: ping\r\ndata: {}\r\n\r\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
        let bytes = stream.as_bytes();
        let expected = vec![
            (
                "message_start".to_owned(),
                "{\"a\":\"h\u{e9}\u{1f600}\"}".to_owned(),
            ),
            ("ping".to_owned(), "{}".to_owned()),
            ("message".to_owned(), "line1\nline2".to_owned()),
            ("message".to_owned(), "[DONE]".to_owned()),
        ];
        assert_eq!(collect(&[bytes]), expected);
        for split in 1..bytes.len() {
            for second in split..bytes.len() {
                let parts = [&bytes[..split], &bytes[split..second], &bytes[second..]];
                assert_eq!(collect(&parts), expected, "split at {split}/{second}");
            }
        }
    }

    #[test]
    fn byte_at_a_time_with_bare_carriage_returns() {
        let stream = b"data: a\r\rdata: b\r\n\r\n";
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            collect(&chunks),
            vec![
                ("message".to_owned(), "a".to_owned()),
                ("message".to_owned(), "b".to_owned())
            ]
        );
    }

    #[test]
    fn unterminated_final_event_is_dispatched_at_finish() {
        assert_eq!(
            collect(&[b"data: {\"x\":1}"]),
            vec![("message".to_owned(), "{\"x\":1}".to_owned())]
        );
    }

    #[test]
    fn oversized_lines_are_rejected() {
        let mut parser = SseParser::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert_eq!(parser.feed(&big, |_| {}), Err(EventTooLarge));
    }
}
