//! RabbitMQ: one shared connection that reconnects on demand, the topology
//! payd declares, and the outbox relay. RabbitMQ carries work, never state:
//! every message can be rebuilt from Postgres rows.

pub(crate) mod consumer;
pub(crate) mod raw;
pub(crate) mod relay;

use std::sync::Arc;

use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use crate::config::AmqpSettings;
/// Longest wait for connecting (handshake and topology) or closing.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

use crate::domain::messages::{
    ATTEMPTS_DEAD_QUEUE, ATTEMPTS_QUEUE, COMMANDS_DEAD_QUEUE, COMMANDS_EXCHANGE, COMMANDS_QUEUE, EVENTS_EXCHANGE,
};

/// Redeliveries after which the broker dead-letters a message that keeps
/// failing (a crash loop), so it cannot block the queue forever.
pub const DELIVERY_LIMIT: i64 = 20;

/// The broker connection, shared by every role of a process.
pub struct Amqp {
    url: String,
    /// Extra CAs for `amqps://` (`amqp.ca_file`).
    ca_pem: Option<String>,
    prefix: String,
    conn: Mutex<Option<Connection>>,
    publisher: Mutex<Option<Channel>>,
}

impl Amqp {
    /// The broker, for the reader of unparseable messages.
    pub(crate) fn broker(&self) -> raw::Broker<'_> {
        raw::Broker { url: &self.url, ca_pem: self.ca_pem.as_deref() }
    }

    /// A handle; nothing is connected until first use.
    pub fn new(settings: &AmqpSettings) -> Arc<Self> {
        Arc::new(Self {
            url: settings.url.clone(),
            ca_pem: settings.ca_pem.clone(),
            prefix: settings.prefix.clone(),
            conn: Mutex::new(None),
            publisher: Mutex::new(None),
        })
    }

    /// A queue or exchange name with the configured prefix.
    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// True when the broker answers (connecting if needed).
    pub async fn check(&self) -> bool {
        match self.channel().await {
            Ok(ch) => {
                let _ = ch.close(200, "health check".into()).await;
                true
            }
            Err(_) => false,
        }
    }

    /// Connects if needed (declaring the topology on each new connection)
    /// and opens a channel.
    pub async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref().filter(|c| c.status().connected()) {
            return conn.create_channel().await;
        }
        // Bounded: a broker that is starting up can accept the TCP connection
        // and stall the handshake, and every user of the connection (relay,
        // consumers, readiness, shutdown) waits on this lock meanwhile.
        let connect = async {
            let tls = OwnedTLSConfig { identity: None, cert_chain: self.ca_pem.clone() };
            let conn = lapin::DefaultConnectionBuilder::new()?
                .with_uri_str(self.url.clone())
                .with_properties(ConnectionProperties::default())
                .with_tls_config(tls)
                .connect()
                .await?;
            let channel = conn.create_channel().await?;
            self.declare(&channel).await?;
            Ok::<_, lapin::Error>((conn, channel))
        };
        let (conn, channel) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await.map_err(|_| {
            lapin::Error::from(lapin::ErrorKind::IOError(Arc::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to RabbitMQ timed out",
            ))))
        })??;
        tracing::info!("connected to RabbitMQ");
        *guard = Some(conn);
        Ok(channel)
    }

    /// The channel the relay publishes on, in confirm mode; reopened when closed.
    pub async fn publisher(&self) -> Result<Channel, lapin::Error> {
        let mut guard = self.publisher.lock().await;
        if let Some(ch) = guard.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let ch = self.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *guard = Some(ch.clone());
        Ok(ch)
    }

    /// Declares payd's topology, idempotently: durable quorum queues, each
    /// dead-lettering into its `.dead` queue, and the producers' topic
    /// exchange bound to the command queue with `#`, and the events exchange.
    async fn declare(&self, ch: &Channel) -> Result<(), lapin::Error> {
        self.declare_queue(ch, ATTEMPTS_QUEUE, ATTEMPTS_DEAD_QUEUE).await?;
        self.declare_queue(ch, COMMANDS_QUEUE, COMMANDS_DEAD_QUEUE).await?;
        let exchange = self.name(COMMANDS_EXCHANGE);
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        ch.exchange_declare(exchange.as_str().into(), lapin::ExchangeKind::Topic, durable, FieldTable::default())
            .await?;
        ch.queue_bind(
            self.name(COMMANDS_QUEUE).as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        // Declared whatever `amqp.publish_events` says, so consumers can bind
        // their queues before it is turned on.
        let events = self.name(EVENTS_EXCHANGE);
        ch.exchange_declare(events.as_str().into(), lapin::ExchangeKind::Topic, durable, FieldTable::default()).await?;
        Ok(())
    }

    async fn declare_queue(&self, ch: &Channel, queue: &str, dead_queue: &str) -> Result<(), lapin::Error> {
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let dead = self.name(dead_queue);
        ch.queue_declare(dead.as_str().into(), durable, quorum_args()).await?;
        let mut args = quorum_args();
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dead.as_str().into()));
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
        ch.queue_declare(self.name(queue).as_str().into(), durable, args).await?;
        Ok(())
    }

    /// Deletes this prefix's queues and exchange (load tests and test
    /// clean-up; never done by a running payd). Best effort.
    pub async fn delete_topology(&self) {
        let Ok(ch) = self.channel().await else { return };
        for q in [ATTEMPTS_QUEUE, ATTEMPTS_DEAD_QUEUE, COMMANDS_QUEUE, COMMANDS_DEAD_QUEUE] {
            let _ = ch.queue_delete(self.name(q).as_str().into(), lapin::options::QueueDeleteOptions::default()).await;
        }
        for exchange in [COMMANDS_EXCHANGE, EVENTS_EXCHANGE] {
            let options = lapin::options::ExchangeDeleteOptions::default();
            let _ = ch.exchange_delete(self.name(exchange).as_str().into(), options).await;
        }
        self.close().await;
    }

    /// Closes the connection (at shutdown).
    pub async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            // A half-dead connection may never answer close-ok.
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.close(200, ShortString::from("shutdown"))).await;
        }
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    args
}
