//! A minimal AMQP 0-9-1 publisher over a plain socket, for what a real
//! client library refuses to send: properties that are not UTF-8, as a
//! hostile or broken producer may (RabbitMQ passes them on untouched).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FRAME_END: u8 = 0xCE;

fn short(out: &mut Vec<u8>, s: &[u8]) {
    out.push(u8::try_from(s.len()).expect("a short string"));
    out.extend_from_slice(s);
}

fn long(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

async fn frame(sock: &mut TcpStream, kind: u8, channel: u16, payload: &[u8]) {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    long(&mut f, payload);
    f.push(FRAME_END);
    sock.write_all(&f).await.unwrap();
}

async fn method(sock: &mut TcpStream, channel: u16, class: u16, id: u16, args: &[u8]) {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(args);
    frame(sock, 1, channel, &p).await;
}

/// Reads one frame; answers its class and method ids (0, 0 for others).
async fn read_method(sock: &mut TcpStream) -> (u16, u16) {
    let mut head = [0u8; 7];
    sock.read_exact(&mut head).await.unwrap();
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    let mut payload = vec![0u8; size + 1];
    sock.read_exact(&mut payload).await.unwrap();
    if head[0] != 1 || size < 4 {
        return (0, 0);
    }
    (u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]]))
}

/// Publishes one persistent message to `exchange` with `routing_key`, the
/// raw `message_id` bytes, an `authorization` header and `body`.
pub async fn publish(
    addr: &str,
    exchange: &str,
    routing_key: &str,
    message_id: &[u8],
    authorization: &str,
    body: &[u8],
) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    assert_eq!(read_method(&mut sock).await, (10, 10), "connection.start");
    let mut args = 0u32.to_be_bytes().to_vec(); // client properties: an empty table
    short(&mut args, b"PLAIN");
    long(&mut args, b"\x00guest\x00guest");
    short(&mut args, b"en_US");
    method(&mut sock, 0, 10, 11, &args).await;
    assert_eq!(read_method(&mut sock).await, (10, 30), "connection.tune");
    let mut tune = 16u16.to_be_bytes().to_vec(); // channel_max
    tune.extend_from_slice(&131_072u32.to_be_bytes());
    tune.extend_from_slice(&0u16.to_be_bytes());
    method(&mut sock, 0, 10, 31, &tune).await;
    let mut open = Vec::new();
    short(&mut open, b"/");
    short(&mut open, b"");
    open.push(0);
    method(&mut sock, 0, 10, 40, &open).await;
    assert_eq!(read_method(&mut sock).await, (10, 41), "connection.open-ok");
    let mut ch = Vec::new();
    short(&mut ch, b"");
    method(&mut sock, 1, 20, 10, &ch).await;
    assert_eq!(read_method(&mut sock).await, (20, 11), "channel.open-ok");
    let mut publish = 0u16.to_be_bytes().to_vec();
    short(&mut publish, exchange.as_bytes());
    short(&mut publish, routing_key.as_bytes());
    publish.push(0);
    method(&mut sock, 1, 60, 40, &publish).await;
    // Content header: class, weight, body size, then the properties whose
    // flag bits are set: content-type (15), headers (13), delivery-mode (12),
    // message-id (7).
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(body.len() as u64).to_be_bytes());
    header.extend_from_slice(&(1u16 << 15 | 1 << 13 | 1 << 12 | 1 << 7).to_be_bytes());
    short(&mut header, b"application/json");
    let mut table = Vec::new();
    short(&mut table, b"authorization");
    table.push(b'S');
    long(&mut table, authorization.as_bytes());
    long(&mut header, &table);
    header.push(2);
    short(&mut header, message_id);
    frame(&mut sock, 2, 1, &header).await;
    frame(&mut sock, 3, 1, body).await;
    // connection.close, and its close-ok: the message was taken.
    let mut close = 200u16.to_be_bytes().to_vec();
    short(&mut close, b"bye");
    close.extend_from_slice(&[0, 0, 0, 0]);
    method(&mut sock, 0, 10, 50, &close).await;
    loop {
        if read_method(&mut sock).await == (10, 51) {
            break;
        }
    }
}
