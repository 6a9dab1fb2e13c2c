//! What a dialect supplies to the shared store (`flows`): a connection that
//! runs statements with neutral values ([`Conn`]), and the SQL text that
//! differs between databases ([`Dialect`]). Statements use `?` placeholders,
//! bound in order.

use super::ColumnType;
use crate::error::StoreError;

/// A statement parameter or a column value, whatever the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Statement parameters: `params![a, b]`.
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::store::sql::Value::from($v)),*][..] };
}
pub(crate) use params;

/// A column value converted to a Rust type. Numbers may arrive as text
/// (MySQL's text protocol) and are parsed.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(*i),
            Value::Text(s) => s.parse().ok(),
            Value::Null => None,
        }
    }
}

impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<u32> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<String> {
        match v {
            Value::Text(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Null => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Option<T>> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as `T`; a missing column, or NULL/garbage where `T` does
    /// not allow it, is an error.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::Other(format!("column {i} missing")))?;
        T::from_value(v).ok_or_else(|| StoreError::Other(format!("column {i}: unexpected {v:?}")))
    }
}

/// One database connection, taken for one store operation.
pub trait Conn {
    /// Runs a statement; returns the rows it matched (not only the ones it
    /// changed).
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// Runs an INSERT; returns the new row's id.
    fn insert(&mut self, sql: &str, params: &[Value]) -> Result<i64, StoreError>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// Starts a write transaction (READ COMMITTED on MySQL; on SQLite,
    /// `BEGIN IMMEDIATE`: the database's write lock, taken at once).
    fn begin(&mut self) -> Result<(), StoreError>;
    /// A connection lost during COMMIT is [`StoreError::CommitUnknown`].
    fn commit(&mut self) -> Result<(), StoreError>;
    fn rollback(&mut self) -> Result<(), StoreError>;
    /// Whether the operation that just failed with `e` on this connection
    /// may run again, once, on a fresh one: the connection was found dead
    /// before anything of the operation could have been committed.
    fn retry_on_fresh(&self, e: &StoreError) -> bool;
}

/// The SQL text that differs between databases. Each method documents what
/// the shared statements need from it.
pub trait Dialect {
    /// `/health`'s name of the store.
    const KIND: &'static str;
    /// Appended to a SELECT whose rows the transaction changes next: locks
    /// them until COMMIT (empty where `begin` locked the whole database).
    const FOR_UPDATE: &'static str;
    /// Like [`Dialect::FOR_UPDATE`], but rows another transaction holds
    /// are skipped instead of waited for (claims, timeouts).
    const FOR_UPDATE_SKIP_LOCKED: &'static str;
    /// `DDL` creating the marketplace's three tables and hone-build's log
    /// tables (with their indexes) when absent.
    const CREATE_TABLES: &'static [&'static str];
    /// A query listing `buildJobs`' column names.
    const LIST_JOB_COLUMNS: &'static str;
    /// A query listing `buildJobs`' index names.
    const LIST_JOB_INDEXES: &'static str;
    /// A query listing `(table, column, width in characters)` of the text
    /// columns of the three tables, or `None` where widths are not enforced
    /// (SQLite: the marketplace's widths apply).
    const LIST_COLUMN_WIDTHS: Option<&'static str>;

    /// What follows an INSERT into a table with the unique key `key` so
    /// that an existing row is updated by the `SET` list that follows.
    fn upsert(key: &str) -> String;
    /// What follows an INSERT into a table with the unique key `key` so
    /// that an existing row is kept as it is, and locked by the transaction
    /// in either case.
    fn insert_keep_existing(key: &str) -> String;
    /// SQL concatenating the SQL expressions `parts`.
    fn concat(parts: &[&str]) -> String;
    /// SQL giving the length in bytes (of its UTF-8 text) of the text expression `expr`.
    fn byte_length(expr: &str) -> String;
    fn column_type(ty: ColumnType) -> String;
}

/// What a flow inside a transaction asks for at its end.
pub enum Txn<T> {
    Commit(T),
    /// Nothing the transaction did is kept.
    Rollback(T),
}

/// A database: connections plus its dialect.
pub trait Backend: Dialect + Send + Sync {
    type Conn<'a>: Conn
    where
        Self: 'a;
    fn connect(&self) -> Result<Self::Conn<'_>, StoreError>;
}

/// `?, ?, ?` for `n` parameters.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
