//! The network of a package install: the installer runs in a sandbox whose network namespace
//! holds only its loopback, where a forwarder (`switchyard sandbox-forward`, started by the
//! helper as nobody) listens on [`INDEX_PROXY_PORT`] as the installer's HTTP proxy. Each
//! connection it accepts, it hands to the hub over an inherited Unix socket (the descriptor
//! itself, `SCM_RIGHTS`); the hub's [`IndexProxy`] answers it as a forward proxy that reaches
//! only the configured package indexes (host and port), through the egress policy (no private
//! address unless allow-listed). Nothing else of the network exists for the installer.

use crate::sandbox_exec::INDEX_PROXY_PORT;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::egress::EgressPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest request head a client may send the proxy.
const MAX_HEAD: usize = 16 * 1024;
/// How long connecting to an index may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// Connections the forwarder keeps open at once.
const MAX_FORWARDED: usize = 32;

/// A package index the proxy lets installs reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub host: String,
    pub port: u16,
}

impl Index {
    /// The index of `url` (its host and port, the scheme's default when it names none).
    pub fn of(url: &url::Url) -> Option<Index> {
        Some(Index {
            host: url
                .host_str()?
                .trim_matches(['[', ']'])
                .to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }
}

/// What one install may take through the proxy: each connection ends at the install's deadline
/// and after `max_bytes` from the index (an index that sends without end, or never stops
/// answering, holds nothing of the hub's past them).
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub deadline: Duration,
    pub max_bytes: u64,
}

/// The hub's side: a forward proxy to the package indexes only.
#[derive(Clone)]
pub struct IndexProxy {
    indexes: Arc<Vec<Index>>,
    policy: EgressPolicy,
}

impl IndexProxy {
    pub fn new(indexes: Vec<Index>, policy: EgressPolicy) -> IndexProxy {
        IndexProxy {
            indexes: Arc::new(indexes),
            policy,
        }
    }

    /// Answers the connections a sandbox's forwarder hands over `channel`, each in a task of
    /// its own within `allowance`, until the channel closes (the sandbox ended).
    pub fn serve(
        &self,
        channel: std::os::unix::net::UnixStream,
        allowance: Allowance,
    ) -> tokio::task::JoinHandle<()> {
        let proxy = self.clone();
        tokio::spawn(async move {
            if channel.set_nonblocking(true).is_err() {
                return;
            }
            let Ok(channel) = tokio::net::UnixStream::from_std(channel) else {
                return;
            };
            loop {
                if channel.readable().await.is_err() {
                    return;
                }
                match channel.try_io(tokio::io::Interest::READABLE, || receive_fd(&channel)) {
                    Ok(Some(fd)) => {
                        let proxy = proxy.clone();
                        tokio::spawn(async move {
                            let answered = tokio::time::timeout(
                                allowance.deadline,
                                proxy.answer(fd, allowance.max_bytes),
                            );
                            match answered.await {
                                Ok(Ok(())) => {}
                                Ok(Err(why)) => {
                                    tracing::debug!(%why, "an install's proxy connection ended")
                                }
                                Err(_) => tracing::debug!(
                                    "an install's proxy connection outlived the install"
                                ),
                            }
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Ok(None) | Err(_) => return,
                }
            }
        })
    }

    /// One client connection: `CONNECT host:port` (HTTPS) or a request in absolute form
    /// (`GET http://host:port/…`, plain HTTP), to an index, or a 403 naming why not; at most
    /// `max_bytes` from the index.
    async fn answer(&self, fd: OwnedFd, max_bytes: u64) -> std::io::Result<()> {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true)?;
        let mut client = tokio::net::UnixStream::from_std(std)?;
        let mut buf = Vec::with_capacity(2048);
        let head_len = loop {
            let mut chunk = [0u8; 2048];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > MAX_HEAD {
                return refuse(&mut client, 431, "the request head is too large").await;
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(
            req.parse(&buf[..head_len]),
            Ok(httparse::Status::Complete(_))
        ) {
            return refuse(&mut client, 400, "not an HTTP request").await;
        }
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return refuse(&mut client, 400, "not an HTTP request").await;
        };
        let connect = method.eq_ignore_ascii_case("CONNECT");
        let (index, origin_form) = if connect {
            let Some((host, port)) = target.rsplit_once(':') else {
                return refuse(&mut client, 400, "CONNECT needs host:port").await;
            };
            let Ok(port) = port.parse() else {
                return refuse(&mut client, 400, "CONNECT needs host:port").await;
            };
            let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
            (Index { host, port }, String::new())
        } else {
            let Some(url) = url::Url::parse(target)
                .ok()
                .filter(|u| u.scheme() == "http")
            else {
                return refuse(
                    &mut client,
                    400,
                    "only CONNECT and http:// URLs are proxied",
                )
                .await;
            };
            let Some(index) = Index::of(&url) else {
                return refuse(&mut client, 400, "the URL has no host").await;
            };
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            (index, path)
        };
        if !self.indexes.contains(&index) {
            let why = format!(
                "{}:{} is not a package index of this hub",
                index.host, index.port
            );
            return refuse(&mut client, 403, &why).await;
        }
        let mut upstream = match self.connect(&index).await {
            Ok(s) => s,
            Err(why) => return refuse(&mut client, 502, &why).await,
        };
        if connect {
            client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await?;
        } else {
            // The request in origin form, for this one exchange (the next request on a proxy
            // connection may name another host).
            let mut head = format!("{method} {origin_form} HTTP/1.1\r\n");
            for h in req.headers.iter() {
                let name = h.name.to_ascii_lowercase();
                if name.starts_with("proxy-") || name == "connection" || name == "keep-alive" {
                    continue;
                }
                head.push_str(h.name);
                head.push_str(": ");
                head.push_str(&String::from_utf8_lossy(h.value));
                head.push_str("\r\n");
            }
            head.push_str("Connection: close\r\n\r\n");
            upstream.write_all(head.as_bytes()).await?;
        }
        upstream.write_all(&buf[head_len..]).await?;
        let (mut from_client, mut to_client) = client.split();
        let (from_index, mut to_index) = upstream.split();
        let up = async {
            tokio::io::copy(&mut from_client, &mut to_index).await?;
            to_index.shutdown().await
        };
        let down = async {
            tokio::io::copy(&mut from_index.take(max_bytes), &mut to_client).await?;
            to_client.shutdown().await
        };
        tokio::try_join!(up, down).map(|_| ())
    }

    /// A connection to `index` at an address the egress policy allows.
    async fn connect(&self, index: &Index) -> Result<tokio::net::TcpStream, String> {
        let addrs: Vec<std::net::SocketAddr> =
            tokio::net::lookup_host((index.host.as_str(), index.port))
                .await
                .map_err(|e| format!("cannot resolve {}: {e}", index.host))?
                .collect();
        let mut why = format!("{} has no address", index.host);
        for addr in addrs {
            if let Err(e) = self.policy.check(addr.ip()) {
                why = e.to_string();
                continue;
            }
            match tokio::time::timeout(CONNECT_WITHIN, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => why = format!("cannot connect to {addr}: {e}"),
                Err(_) => why = format!("{addr} did not answer in time"),
            }
        }
        Err(why)
    }
}

async fn refuse(
    client: &mut tokio::net::UnixStream,
    status: u16,
    why: &str,
) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        _ => "Bad Gateway",
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{why}",
        why.len()
    );
    client.write_all(answer.as_bytes()).await
}

/// One descriptor sent over `channel`, `None` at its end.
fn receive_fd(channel: &impl AsFd) -> std::io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        channel,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if got.bytes == 0 {
        return Ok(None);
    }
    let mut fd = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for received in fds {
                fd.get_or_insert(received);
            }
        }
    }
    // A message without a descriptor hands over nothing: wait for the next.
    fd.map_or_else(|| receive_fd(channel), |fd| Ok(Some(fd)))
}

/// `switchyard sandbox-forward`: started by the helper inside an installer's sandbox with the
/// channel to the hub's proxy as stdin. Listens on the loopback's [`INDEX_PROXY_PORT`] and
/// hands each connection to the hub as one end of a new socket pair, relaying the other end.
pub fn sandbox_forward_main() -> i32 {
    let listener = match std::net::TcpListener::bind(("127.0.0.1", INDEX_PROXY_PORT)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sandbox-forward: cannot listen on 127.0.0.1:{INDEX_PROXY_PORT}: {e}");
            return 1;
        }
    };
    let channel = std::io::stdin();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        use std::sync::atomic::Ordering;
        if open.load(Ordering::Relaxed) >= MAX_FORWARDED {
            continue;
        }
        let Ok((ours, theirs)) = std::os::unix::net::UnixStream::pair() else {
            continue;
        };
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [theirs.as_fd()];
        control.push(SendAncillaryMessage::ScmRights(&fds));
        if rustix::net::sendmsg(
            channel.as_fd(),
            &[IoSlice::new(b"c")],
            &mut control,
            SendFlags::empty(),
        )
        .is_err()
        {
            // The hub is gone: so is the install.
            return 0;
        }
        drop(theirs);
        open.fetch_add(1, Ordering::Relaxed);
        let open = open.clone();
        std::thread::spawn(move || {
            relay(conn, ours);
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    0
}

/// Copies both ways between a client and the hub until either side ends.
fn relay(conn: std::net::TcpStream, hub: std::os::unix::net::UnixStream) {
    let (Ok(mut conn_r), Ok(mut hub_w)) = (conn.try_clone(), hub.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut conn_r, &mut hub_w);
        let _ = hub_w.shutdown(std::net::Shutdown::Write);
    });
    let (mut hub_r, mut conn_w) = (hub, conn);
    let _ = std::io::copy(&mut hub_r, &mut conn_w);
    let _ = conn_w.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_is_its_host_and_port() {
        let of = |u: &str| Index::of(&url::Url::parse(u).expect("url")).expect("index");
        assert_eq!(
            of("https://PyPI.org/simple"),
            Index {
                host: "pypi.org".into(),
                port: 443
            }
        );
        assert_eq!(of("http://127.0.0.1:8080/simple").port, 8080);
        assert_eq!(of("http://[::1]:81/").host, "::1");
    }
}
