//! Server-sent events: an incremental reader for upstream streams (events may straddle reads)
//! and the writer for the streams the gateway sends.

use bytes::{Buf, BytesMut};

/// One event. Comments and `retry`-only events come out with empty `data`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

/// Accumulates bytes and yields complete events.
#[derive(Debug, Default)]
pub struct Reader {
    buf: BytesMut,
}

impl Reader {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes held for an event not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let (end, sep) = find_blank_line(&self.buf)?;
            let block = self.buf.split_to(end);
            self.buf.advance(sep);
            let text = String::from_utf8_lossy(&block);
            let mut ev = Event::default();
            let mut has_data = false;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.is_empty() || line.starts_with(':') {
                    continue;
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "data" => {
                        if has_data {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(value);
                        has_data = true;
                    }
                    "event" => ev.event = Some(value.to_string()),
                    "id" => ev.id = Some(value.to_string()),
                    _ => {}
                }
            }
            if has_data || ev.id.is_some() {
                return Some(ev);
            }
        }
    }
}

/// Position of the first blank line: (end of the block, length of the separator).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some((i, 2));
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

/// Appends one `message` event carrying `data`, split into `data:` lines at every line end SSE
/// knows (LF, CRLF and a lone CR), so no byte of `data` can end the event or start a field.
pub fn write_event(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"event: message\n");
    let mut rest = data;
    loop {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..end.unwrap_or(rest.len())]);
        out.push(b'\n');
        let Some(end) = end else { break };
        let skip = if rest[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunks_and_line_endings() {
        let mut r = Reader::default();
        r.push(b"id: 1\r\nevent: message\r\ndata: {\"a\":");
        assert_eq!(r.next_event(), None);
        r.push(b"1}\r\n\r\n: keepalive\n\ndata: x\ndata: y\n\nretry: 5\n\n");
        let e = r.next_event().unwrap();
        assert_eq!(e.data, "{\"a\":1}");
        assert_eq!(e.id.as_deref(), Some("1"));
        assert_eq!(r.next_event().unwrap().data, "x\ny");
        assert_eq!(r.next_event(), None);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn writer_splits_multiline_data() {
        let mut out = Vec::new();
        write_event(&mut out, b"{\n\"a\": 1\n}");
        assert_eq!(out, b"event: message\ndata: {\ndata: \"a\": 1\ndata: }\n\n");
        let mut r = Reader::default();
        r.push(&out);
        assert_eq!(r.next_event().unwrap().data, "{\n\"a\": 1\n}");
        let mut out = Vec::new();
        write_event(&mut out, b"a\rb\r\nc");
        assert_eq!(
            out, b"event: message\ndata: a\ndata: b\ndata: c\n\n",
            "a lone CR ends a line too"
        );
    }
}
