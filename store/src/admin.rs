//! Creating and dropping whole PostgreSQL databases: the test kit's fresh
//! database per test (`convergio_tests::postgres`) goes through here so that
//! only this crate speaks to the database.

use convergio_schemas::{StorageError, StorageFailure};
use sqlx::{Connection, Executor, PgConnection};

use crate::error::typed;

/// Whether `name` is a plain lower-case identifier, safe to splice into DDL.
fn plain_identifier(name: &str) -> Result<(), StorageError> {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if plain {
        Ok(())
    } else {
        Err(StorageError::plain(
            StorageFailure::InvalidUrl,
            format!("database name {name:?} is not a plain lower-case identifier"),
        ))
    }
}

async fn connect(admin_url: &str) -> Result<PgConnection, StorageError> {
    PgConnection::connect(admin_url)
        .await
        .map_err(|error| typed(format!("connecting to {}", crate::redact(admin_url)), error))
}

/// Creates the database `name` through the server `admin_url` points at.
pub async fn create_database(admin_url: &str, name: &str) -> Result<(), StorageError> {
    plain_identifier(name)?;
    let mut admin = connect(admin_url).await?;
    let created = admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .map(|_| ())
        .map_err(|error| typed(format!("creating database {name}"), error));
    let _ = admin.close().await;
    created
}

/// Drops the database `name`, ending any connection still open on it.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), StorageError> {
    plain_identifier(name)?;
    let mut admin = connect(admin_url).await?;
    let dropped = admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .map(|_| ())
        .map_err(|error| typed(format!("dropping database {name}"), error));
    let _ = admin.close().await;
    dropped
}

/// Whether a database named `name` exists on the server.
pub async fn database_exists(admin_url: &str, name: &str) -> Result<bool, StorageError> {
    let mut admin = connect(admin_url).await?;
    let found: Result<Option<i32>, _> =
        sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut admin)
            .await;
    let _ = admin.close().await;
    Ok(found
        .map_err(|error| typed("reading pg_database", error))?
        .is_some())
}
