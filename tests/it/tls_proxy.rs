//! A TLS-terminating proxy in front of the local RabbitMQ, with a server
//! certificate from the test CA in `tests/fixtures/tls` (trusted by nothing
//! but `amqp.ca_file`), so payd's `amqps://` paths run against the real broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

/// Where the fixtures are.
pub const CA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
const CERT_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/server.pem");
const KEY_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/server.key");

/// A running proxy; stops when dropped.
pub struct TlsProxy {
    pub port: u16,
    handshakes: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (host:port).
    pub async fn start(upstream: String) -> Self {
        payd::install_crypto();
        let certs = CertificateDer::pem_file_iter(CERT_FILE).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(KEY_FILE).unwrap();
        let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (handshakes, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (ok, bad) = (handshakes.clone(), failed.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (acceptor, upstream, ok, bad) = (acceptor.clone(), upstream.clone(), ok.clone(), bad.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        bad.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    ok.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut broker) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                    }
                });
            }
        });
        Self { port, handshakes, failed, task }
    }

    /// TLS sessions accepted so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// Handshakes the client broke off (it did not trust the certificate).
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
