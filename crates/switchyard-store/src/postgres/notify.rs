//! Notices between nodes on PostgreSQL's `LISTEN`/`NOTIFY`: sending one (inside a transaction
//! it is delivered at commit, and not at all if the transaction rolls back), and the one
//! connection per node that listens, reconnecting when it is lost.

use super::*;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_postgres::AsyncMessage;

/// The channel every Switchyard node listens on.
const CHANNEL: &str = "switchyard";
/// PostgreSQL refuses payloads of 8000 bytes or more; a `Due` notice naming more endpoints
/// than fit is sent in parts.
const MAX_PAYLOAD: usize = 7_000;

/// Sends `notice` to every listening node (inside `db`'s transaction, if it is one).
pub(super) async fn send(db: Db<'_>, notice: &Notice) -> Result<()> {
    for payload in payloads(notice)? {
        db.exec("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await?;
    }
    Ok(())
}

/// `notice` as payloads that each fit in one `NOTIFY`.
fn payloads(notice: &Notice) -> Result<Vec<String>> {
    let encode = |n: &Notice| {
        serde_json::to_string(n).map_err(|e| StoreError::database(format!("notice: {e}")))
    };
    let whole = encode(notice)?;
    if whole.len() < MAX_PAYLOAD {
        return Ok(vec![whole]);
    }
    let Notice::Due {
        org,
        endpoints,
        hooks,
    } = notice
    else {
        return Err(StoreError::database(format!(
            "a notice of {} bytes is too large to send",
            whole.len()
        )));
    };
    // Endpoint ids are short (about 40 bytes): parts of 100 stay well under the limit.
    endpoints
        .chunks(100)
        .enumerate()
        .map(|(i, part)| {
            encode(&Notice::Due {
                org: org.clone(),
                endpoints: part.to_vec(),
                hooks: *hooks && i == 0,
            })
        })
        .collect()
}

/// Listens on its own connection and forwards every notice to `tx` until `tx`'s receiver is
/// dropped. Each time `LISTEN` takes effect — the first time too, since the node may have
/// filled caches before it — [`Notice::Lost`] is forwarded first: what was sent before was
/// missed. A lost connection is made again, every second until it succeeds.
pub(super) async fn listen(config: tokio_postgres::Config, tx: UnboundedSender<Notice>) {
    while !tx.is_closed() {
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, mut conn)) => {
                let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel::<String>();
                // The connection delivers notifications only while it is polled.
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if ptx.send(n.payload().to_owned()).is_err() {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "the connection listening for other nodes' notices failed");
                                return;
                            }
                            None => return,
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        if tx.send(Notice::Lost).is_err() {
                            driver.abort();
                            return;
                        }
                        loop {
                            tokio::select! {
                                p = prx.recv() => match p {
                                    Some(p) => match serde_json::from_str::<Notice>(&p) {
                                        Ok(n) => if tx.send(n).is_err() { break },
                                        Err(e) => tracing::warn!(error = %e, "a notice that is not one of ours"),
                                    },
                                    None => break,
                                },
                                _ = tx.closed() => break,
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for other nodes' notices failed")
                    }
                }
                driver.abort();
                drop(client);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect to listen for other nodes' notices");
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tx.closed() => return,
        }
    }
}
