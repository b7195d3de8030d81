//! Just enough AMQP 0-9-1 to take away one message lapin cannot parse.
//!
//! AMQP short strings (`message_id`, `reply_to`, header names, …) must be
//! UTF-8; lapin refuses a message that breaks the rule by dropping its
//! whole connection, so the message comes back and does it again. After
//! such a drop the consumer asks here: one `basic.get` over a plain socket
//! reads the head of the queue without interpreting it; if amq-protocol
//! (lapin's parser) cannot parse its properties, a copy of its body goes to
//! the dead-letter queue with `x-payd-error` and no other header (so no
//! `authorization`), confirmed, and the original is acked. A message that
//! parses is handed back untouched. With `amqps://` the socket speaks TLS,
//! trusting what lapin trusts: the platform's roots and `amqp.ca_file`.

use std::sync::Arc;
use std::time::Duration;

use lapin::uri::{AMQPScheme, AMQPUri};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const FRAME_END: u8 = 0xCE;
/// Longest frame accepted from the broker (what payd announces).
const FRAME_MAX: u32 = 131_072;
/// Longest body taken this way.
const BODY_MAX: u64 = 1 << 20;
/// Bound of the whole exchange with the broker.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What was at the head of the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// The queue was empty.
    Empty,
    /// It parses: handed back, untouched.
    Parseable,
    /// It did not parse: dead-lettered and acked.
    DeadLettered,
}

/// The broker to read from: its URL and the extra CAs trusted with `amqps://`.
pub struct Broker<'a> {
    /// `amqp://` or `amqps://`.
    pub url: &'a str,
    /// PEM certificates trusted beside the platform's (`amqp.ca_file`).
    pub ca_pem: Option<&'a str>,
}

/// Takes the head of `queue` away to `dead_queue` if lapin cannot parse it.
pub async fn take_unparseable(broker: Broker<'_>, queue: &str, dead_queue: &str, code: &str) -> std::io::Result<Taken> {
    let uri: AMQPUri = broker.url.parse().map_err(std::io::Error::other)?;
    tokio::time::timeout(TIMEOUT, async {
        let sock = connect(&uri, broker.ca_pem).await?;
        take(Conn { sock }, &uri, queue, dead_queue, code).await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the broker did not answer in time"))?
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(uri: &AMQPUri, ca_pem: Option<&str>) -> std::io::Result<Box<dyn Stream>> {
    let host = uri.authority.host.as_str();
    let tcp = TcpStream::connect((host, uri.authority.port)).await?;
    if uri.scheme == AMQPScheme::AMQP {
        return Ok(Box::new(tcp));
    }
    let name =
        ServerName::try_from(host.to_owned()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tls = tokio_rustls::TlsConnector::from(client_config(ca_pem)?).connect(name, tcp).await?;
    Ok(Box::new(tls))
}

/// lapin's trust (rustls-platform-verifier plus the configured CAs), for this socket.
fn client_config(ca_pem: Option<&str>) -> std::io::Result<Arc<rustls::ClientConfig>> {
    let extra = match ca_pem {
        Some(pem) => CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        .map_err(std::io::Error::other)?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous() // a verifier of our choosing; it verifies, as lapin's does
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn take(mut c: Conn, uri: &AMQPUri, queue: &str, dead_queue: &str, code: &str) -> std::io::Result<Taken> {
    c.open(&uri.authority.userinfo.username, &uri.authority.userinfo.password, &uri.vhost).await?;
    // basic.get, acknowledged explicitly.
    let mut get = 0u16.to_be_bytes().to_vec();
    short(&mut get, queue.as_bytes())?;
    get.push(0);
    c.method(1, 60, 70, &get).await?;
    let (class, id, args) = c.read_method().await?;
    if (class, id) == (60, 72) {
        c.close().await;
        return Ok(Taken::Empty);
    }
    expect((class, id), (60, 71), "basic.get-ok")?;
    let tag = u64::from_be_bytes(args.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("basic.get-ok"))?);
    let header = c.read_frame().await?;
    if header.0 != 2 {
        return Err(bad("content header"));
    }
    let size = u64::from_be_bytes(header.2.get(4..12).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("header"))?);
    if size > BODY_MAX {
        return Err(bad("body too large"));
    }
    let mut body = Vec::new();
    while (body.len() as u64) < size {
        let (kind, _, payload) = c.read_frame().await?;
        if kind != 3 {
            return Err(bad("body frame"));
        }
        body.extend_from_slice(&payload);
    }
    // Is it what lapin chokes on? Ask lapin's own parser.
    let whole = encode_frame(2, 1, &header.2);
    if amq_protocol::frame::parse_frame(whole.as_slice()).is_ok() {
        let mut reject = tag.to_be_bytes().to_vec();
        reject.push(1); // requeue
        c.method(1, 60, 90, &reject).await?;
        c.close().await;
        return Ok(Taken::Parseable);
    }
    c.method(1, 85, 10, &[0]).await?; // confirm.select
    expect(c.read_method().await?.pair(), (85, 11), "confirm.select-ok")?;
    let mut publish = 0u16.to_be_bytes().to_vec();
    short(&mut publish, b"")?;
    short(&mut publish, dead_queue.as_bytes())?;
    publish.push(1); // mandatory: a missing dead queue is a return, not a silent drop
    c.method(1, 60, 40, &publish).await?;
    // Properties: content-type (bit 15), headers (13), delivery-mode (12).
    let mut props = 60u16.to_be_bytes().to_vec();
    props.extend_from_slice(&0u16.to_be_bytes());
    props.extend_from_slice(&size.to_be_bytes());
    props.extend_from_slice(&(1u16 << 15 | 1 << 13 | 1 << 12).to_be_bytes());
    short(&mut props, b"application/octet-stream")?;
    let mut table = Vec::new();
    short(&mut table, b"x-payd-error")?;
    table.push(b'S');
    long(&mut table, code.as_bytes());
    long(&mut props, &table);
    props.push(2);
    c.frame(2, 1, &props).await?;
    for chunk in body.chunks(FRAME_MAX as usize - 8) {
        c.frame(3, 1, chunk).await?;
    }
    // basic.ack; a nack or a return is an error, and the message stays.
    expect(c.read_method().await?.pair(), (60, 80), "the dead letter's confirm")?;
    let mut ack = tag.to_be_bytes().to_vec();
    ack.push(0);
    c.method(1, 60, 80, &ack).await?;
    c.close().await;
    Ok(Taken::DeadLettered)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected AMQP frame: {what}"))
}

fn expect(got: (u16, u16), want: (u16, u16), what: &str) -> std::io::Result<()> {
    if got == want { Ok(()) } else { Err(bad(&format!("{what} (got {got:?})"))) }
}

fn short(out: &mut Vec<u8>, s: &[u8]) -> std::io::Result<()> {
    out.push(u8::try_from(s.len()).map_err(|_| bad("a short string over 255 bytes"))?);
    out.extend_from_slice(s);
    Ok(())
}

fn long(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn encode_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    long(&mut f, payload);
    f.push(FRAME_END);
    f
}

trait Pair {
    fn pair(&self) -> (u16, u16);
}

impl Pair for (u16, u16, Vec<u8>) {
    fn pair(&self) -> (u16, u16) {
        (self.0, self.1)
    }
}

struct Conn {
    sock: Box<dyn Stream>,
}

impl Conn {
    async fn frame(&mut self, kind: u8, channel: u16, payload: &[u8]) -> std::io::Result<()> {
        self.sock.write_all(&encode_frame(kind, channel, payload)).await
    }

    async fn method(&mut self, channel: u16, class: u16, id: u16, args: &[u8]) -> std::io::Result<()> {
        let mut p = class.to_be_bytes().to_vec();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(args);
        self.frame(1, channel, &p).await
    }

    /// One frame: type, channel, payload (heartbeats skipped).
    async fn read_frame(&mut self) -> std::io::Result<(u8, u16, Vec<u8>)> {
        loop {
            let mut head = [0u8; 7];
            self.sock.read_exact(&mut head).await?;
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
            if size > FRAME_MAX {
                return Err(bad("frame too large"));
            }
            let mut payload = vec![0u8; size as usize + 1];
            self.sock.read_exact(&mut payload).await?;
            if payload.pop() != Some(FRAME_END) {
                return Err(bad("frame end"));
            }
            if head[0] != 8 {
                return Ok((head[0], u16::from_be_bytes([head[1], head[2]]), payload));
            }
        }
    }

    /// One method frame: class, method, arguments.
    async fn read_method(&mut self) -> std::io::Result<(u16, u16, Vec<u8>)> {
        let (kind, _, payload) = self.read_frame().await?;
        if kind != 1 || payload.len() < 4 {
            return Err(bad("method frame"));
        }
        let (class, id) = (u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]]));
        if (class, id) == (10, 50) || (class, id) == (20, 40) {
            return Err(bad("the broker closed the connection or channel"));
        }
        Ok((class, id, payload[4..].to_vec()))
    }

    async fn open(&mut self, user: &str, password: &str, vhost: &str) -> std::io::Result<()> {
        self.sock.write_all(b"AMQP\x00\x00\x09\x01").await?;
        expect(self.read_method().await?.pair(), (10, 10), "connection.start")?;
        let mut start_ok = 0u32.to_be_bytes().to_vec();
        short(&mut start_ok, b"PLAIN")?;
        long(&mut start_ok, format!("\0{user}\0{password}").as_bytes());
        short(&mut start_ok, b"en_US")?;
        self.method(0, 10, 11, &start_ok).await?;
        expect(self.read_method().await?.pair(), (10, 30), "connection.tune")?;
        let mut tune = 16u16.to_be_bytes().to_vec();
        tune.extend_from_slice(&FRAME_MAX.to_be_bytes());
        tune.extend_from_slice(&0u16.to_be_bytes());
        self.method(0, 10, 31, &tune).await?;
        let mut open = Vec::new();
        short(&mut open, vhost.as_bytes())?;
        short(&mut open, b"")?;
        open.push(0);
        self.method(0, 10, 40, &open).await?;
        expect(self.read_method().await?.pair(), (10, 41), "connection.open-ok")?;
        self.method(1, 20, 10, &[0]).await?;
        expect(self.read_method().await?.pair(), (20, 11), "channel.open-ok")
    }

    async fn close(mut self) {
        let mut close = 200u16.to_be_bytes().to_vec();
        let _ = short(&mut close, b"done");
        close.extend_from_slice(&[0, 0, 0, 0]);
        if self.method(0, 10, 50, &close).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.read_frame()).await;
        }
    }
}
