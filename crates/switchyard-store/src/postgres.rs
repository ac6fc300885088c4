//! The PostgreSQL backend, as far as it has landed: its schema, migrated by the same runner as
//! SQLite's. The store itself (every role of [`crate::Store`]) is not written yet.

use crate::{Result, StoreError};

/// The PostgreSQL schema's migrations (`migrations/postgres/V{n}__{name}.sql`).
mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Brings the database `client` is connected to up to the current schema: runs the migrations
/// it has not run yet (refinery's history table says which), each in its own transaction.
/// Safe to run from several nodes at once: PostgreSQL serializes them on an advisory lock,
/// so a node that starts second finds the migrations done.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    // Any 64-bit constant of ours: the lock only serializes Switchyard's own migrations.
    const MIGRATION_LOCK: i64 = 0x5377_6974_6368_7964;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    let ran = embedded::migrations::runner()
        .run_async(client)
        .await
        .map_err(|e| StoreError::Database(format!("migration failed: {e}")));
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err);
    ran?;
    unlocked?;
    Ok(())
}

/// A PostgreSQL error as the store reports it, with the server's message.
fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Database(e.to_string()),
    }
}
