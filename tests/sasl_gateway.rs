//! A TLS + SASL/PLAIN front for a plaintext Kafka broker, the way Event Hubs' Kafka endpoint
//! authenticates (SASL_SSL, PLAIN). No local broker here serves SASL: librdkafka's mock
//! cluster has no SaslHandshake, and Tansu 0.6 with `--authentication` and memory storage
//! refuses to create users. So tests put this in front of Tansu: it terminates TLS, answers
//! SaslHandshake and SaslAuthenticate itself (v0–v2), checks the PLAIN credentials, and then
//! relays bytes both ways. Before authentication it forwards ApiVersions only and closes the
//! connection on any other request, as a broker requiring SASL does.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// Counts what the gateway saw, for assertions.
#[derive(Debug, Default)]
pub struct GatewayCounts {
    pub authenticated: AtomicU64,
    pub refused: AtomicU64,
}

pub struct SaslGateway {
    /// `127.0.0.1:<port>`
    pub address: String,
    pub counts: Arc<GatewayCounts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SaslGateway {
    /// Listens on a free loopback port with the given certificate and relays connections that
    /// authenticate as `username` with `password(own address)` to `upstream` (the password
    /// may name the gateway: an Event Hubs connection string does). Runs on a thread of its
    /// own, so sync and async tests alike can use it.
    pub fn start(
        upstream: &str,
        cert: &Path,
        key: &Path,
        username: &str,
        password: impl FnOnce(&str) -> String,
    ) -> Self {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("certificate file")
            .collect::<Result<_, _>>()
            .expect("PEM certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("PEM private key");
        // The provider is named: delta-rs's HTTP client enables rustls's `ring` beside our
        // `aws-lc-rs`, and with both there is no process default.
        let provider = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider();
        let tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address").to_string();
        let counts = Arc::new(GatewayCounts::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let credentials = Arc::new((
            upstream.to_string(),
            username.to_string(),
            password(&address),
        ));
        let thread_counts = counts.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((socket, peer)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, credentials, counts) =
                            (acceptor.clone(), credentials.clone(), thread_counts.clone());
                        tokio::spawn(async move {
                            if let Err(e) = serve(socket, acceptor, &credentials, &counts).await {
                                eprintln!("sasl gateway: {peer}: {e}");
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            address,
            counts,
            stop: Some(stop),
        }
    }
}

impl Drop for SaslGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    socket: TcpStream,
    acceptor: TlsAcceptor,
    credentials: &(String, String, String),
    counts: &GatewayCounts,
) -> io::Result<()> {
    let (upstream, username, password) = credentials;
    let mut client = acceptor.accept(socket).await?;
    let mut broker = TcpStream::connect(upstream).await?;
    loop {
        let Some(frame) = read_frame(&mut client).await? else {
            return Ok(());
        };
        let mut r = Reader(&frame);
        let (api_key, version, correlation) = (r.i16()?, r.i16()?, r.i32()?);
        match api_key {
            API_VERSIONS => {
                write_frame(&mut broker, &frame).await?;
                let Some(reply) = read_frame(&mut broker).await? else {
                    return Ok(());
                };
                write_frame(&mut client, &reply).await?;
            }
            SASL_HANDSHAKE => {
                r.nullable_string()?; // client id
                let mechanism = r.string()?;
                let error = if mechanism == "PLAIN" {
                    0
                } else {
                    UNSUPPORTED_SASL_MECHANISM
                };
                let mut reply = correlation.to_be_bytes().to_vec();
                reply.extend(error.to_be_bytes());
                reply.extend(1i32.to_be_bytes());
                put_string(&mut reply, "PLAIN");
                write_frame(&mut client, &reply).await?;
                // v0 would exchange raw tokens next; librdkafka uses v1.
                if error != 0 || version == 0 {
                    return Ok(());
                }
            }
            SASL_AUTHENTICATE => {
                let flexible = version >= 2;
                r.nullable_string()?; // client id
                if flexible {
                    r.skip_tags()?;
                }
                let token = if flexible {
                    r.compact_bytes()?
                } else {
                    r.bytes()?
                };
                // PLAIN: authzid NUL authcid NUL password.
                let parts: Vec<&[u8]> = token.splitn(3, |b| *b == 0).collect();
                let ok = parts.len() == 3
                    && parts[1] == username.as_bytes()
                    && parts[2] == password.as_bytes();
                let (error, message) = if ok {
                    (0i16, None)
                } else {
                    (
                        SASL_AUTHENTICATION_FAILED,
                        Some("Authentication failed: invalid username or password"),
                    )
                };
                let mut reply = correlation.to_be_bytes().to_vec();
                if flexible {
                    reply.push(0); // response header tags
                }
                reply.extend(error.to_be_bytes());
                match (flexible, message) {
                    (false, None) => reply.extend((-1i16).to_be_bytes()),
                    (false, Some(m)) => put_string(&mut reply, m),
                    (true, None) => reply.push(0),
                    (true, Some(m)) => {
                        reply.push(m.len() as u8 + 1);
                        reply.extend(m.as_bytes());
                    }
                }
                if flexible {
                    reply.push(1); // empty compact bytes
                } else {
                    reply.extend(0i32.to_be_bytes());
                }
                if version >= 1 {
                    reply.extend(0i64.to_be_bytes()); // session_lifetime_ms: none
                }
                if flexible {
                    reply.push(0); // body tags
                }
                write_frame(&mut client, &reply).await?;
                if !ok {
                    counts.refused.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                counts.authenticated.fetch_add(1, Ordering::SeqCst);
                break;
            }
            // Anything else before authentication: a SASL broker hangs up.
            _ => return Ok(()),
        }
    }
    tokio::io::copy_bidirectional(&mut client, &mut broker).await?;
    Ok(())
}

async fn read_frame(s: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = i32::from_be_bytes(len);
    if !(0..=100 << 20).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut frame = vec![0; len as usize];
    s.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

async fn write_frame(s: &mut (impl AsyncWrite + Unpin), frame: &[u8]) -> io::Result<()> {
    s.write_all(&(frame.len() as i32).to_be_bytes()).await?;
    s.write_all(frame).await?;
    s.flush().await
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short request"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> io::Result<i16> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn uvarint(&mut self) -> io::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(io::Error::new(io::ErrorKind::InvalidData, "bad varint"))
    }
    fn nullable_string(&mut self) -> io::Result<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(
            String::from_utf8_lossy(self.take(len as usize)?).into_owned(),
        ))
    }
    fn string(&mut self) -> io::Result<String> {
        Ok(self.nullable_string()?.unwrap_or_default())
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let len = self.i32()?.max(0) as usize;
        self.take(len)
    }
    fn compact_bytes(&mut self) -> io::Result<&'a [u8]> {
        let len = self.uvarint()?.saturating_sub(1) as usize;
        self.take(len)
    }
    fn skip_tags(&mut self) -> io::Result<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let len = self.uvarint()? as usize;
            self.take(len)?;
        }
        Ok(())
    }
}
