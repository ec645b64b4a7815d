//! Where an HTTP/1.1 message body ends (RFC 9112 §6.3), so bytes can be
//! relayed as they come without buffering or re-encoding the body.

/// How a message's body is delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 1xx, 204, 304, or a request without a length).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, relayed as is.
    Chunked(ChunkedDecoder),
    /// Everything until the sender closes (a response with neither length
    /// nor chunking).
    UntilClose,
}

/// What one slice of body bytes held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Consumed {
    /// All of it is body and the body goes on.
    More,
    /// The body ends after this many bytes of the slice.
    Done(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed chunked body")]
pub(crate) struct ChunkedError;

impl Framing {
    /// Feeds body bytes as they arrive; says where the body ends.
    pub(crate) fn consume(&mut self, bytes: &[u8]) -> Result<Consumed, ChunkedError> {
        match self {
            Framing::Empty => Ok(Consumed::Done(0)),
            Framing::Length(left) => {
                if (bytes.len() as u64) < *left {
                    *left -= bytes.len() as u64;
                    Ok(Consumed::More)
                } else {
                    let n = *left as usize;
                    *left = 0;
                    Ok(Consumed::Done(n))
                }
            }
            Framing::Chunked(decoder) => decoder.consume(bytes),
            Framing::UntilClose => Ok(Consumed::More),
        }
    }
}

/// Longest chunk-size line (size, extensions) or trailer line accepted.
const MAX_LINE: u32 = 4096;

/// Follows a chunked body's structure byte by byte — sizes, data, trailers —
/// without copying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Data bytes left in the current chunk, or the size being read.
    size: u64,
    /// Length of the current size or trailer line, against endless lines.
    line: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// Chunk extensions (ignored) up to the line's end.
    Extension,
    /// The size line's LF.
    SizeLf,
    Data,
    /// CR then LF after a chunk's data.
    DataCr,
    DataLf,
    /// Start of a trailer line (an empty one ends the body).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// The LF ending a trailer line.
    TrailerLf,
    /// The final LF.
    EndLf,
    End,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            line: 0,
        }
    }
}

impl ChunkedDecoder {
    fn consume(&mut self, bytes: &[u8]) -> Result<Consumed, ChunkedError> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (b as char).to_digit(16).ok_or(ChunkedError)? as u64;
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(digit))
                            .ok_or(ChunkedError)?;
                        self.line = self.line.checked_add(1).ok_or(ChunkedError)?;
                    }
                    _ if self.line == 0 => return Err(ChunkedError),
                    b'\r' => self.state = State::SizeLf,
                    b';' | b' ' | b'\t' => self.state = State::Extension,
                    _ => return Err(ChunkedError),
                },
                State::Extension => {
                    self.line += 1;
                    // A bare LF would end the line for a lenient reader.
                    if self.line > MAX_LINE || b == b'\n' {
                        return Err(ChunkedError);
                    }
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError);
                    }
                    self.line = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    // Skip the chunk's data in one step.
                    let take = (bytes.len() - i).min(self.size as usize);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError);
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => {
                    self.line = 0;
                    self.state = if b == b'\r' {
                        State::EndLf
                    } else {
                        State::Trailer
                    };
                }
                State::Trailer => {
                    self.line += 1;
                    if self.line > MAX_LINE || b == b'\n' {
                        return Err(ChunkedError);
                    }
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkedError);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkedError);
                    }
                    self.state = State::End;
                    return Ok(Consumed::Done(i + 1));
                }
                State::End => return Ok(Consumed::Done(i)),
            }
            i += 1;
        }
        Ok(if self.state == State::End {
            Consumed::Done(i)
        } else {
            Consumed::More
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked() -> Framing {
        Framing::Chunked(ChunkedDecoder::default())
    }

    #[test]
    fn a_whole_chunked_body_ends_after_the_last_chunk() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
        let mut f = chunked();
        assert_eq!(f.consume(body), Ok(Consumed::Done(body.len() - 4)));
    }

    #[test]
    fn a_chunked_body_split_at_every_byte_ends_at_the_same_place() {
        let body = b"a\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let mut f = chunked();
        for (i, b) in body.iter().enumerate() {
            let got = f.consume(std::slice::from_ref(b)).unwrap();
            if i + 1 == body.len() {
                assert_eq!(got, Consumed::Done(1));
            } else {
                assert_eq!(got, Consumed::More, "at byte {i}");
            }
        }
    }

    #[test]
    fn malformed_chunk_sizes_are_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello",
            b"5;a\nb\r\nhello\r\n",
            b"0\r\nx-a: 1\nx-b: 2\r\n\r\n",
        ] {
            assert_eq!(chunked().consume(bad), Err(ChunkedError), "{bad:?}");
        }
        assert_eq!(
            chunked().consume(b"fffffffffffffffff\r\n"),
            Err(ChunkedError),
            "a size that overflows"
        );
    }

    #[test]
    fn a_length_body_ends_after_its_length() {
        let mut f = Framing::Length(10);
        assert_eq!(f.consume(b"01234"), Ok(Consumed::More));
        assert_eq!(f.consume(b"56789GET /"), Ok(Consumed::Done(5)));
    }
}
