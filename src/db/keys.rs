//! Merchants and API keys. Keys are stored as SHA-256 hashes and shown once.

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::domain::{ApiKeyId, KeyKind, MerchantId, Principal};

/// The development test merchant's secret key (contract §2).
pub const DEV_SECRET_KEY: &str = "sk_test_1234567890abcdefghijklmnop";

fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A new random key: the kind's prefix and 32 alphanumerics (~190 bits).
pub fn generate_key(kind: KeyKind, livemode: bool) -> String {
    let body: String = rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
    format!("{}{body}", kind.prefix(livemode))
}

/// How long a verified key is trusted without asking Postgres again: every
/// request would otherwise cost a round trip. A revoked key stops working
/// within this time on every process (contract §11: within a second); the
/// process that revokes it forgets it at once.
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_millis(500);
/// Cached keys at most; the cache is emptied when full.
const KEY_CACHE_MAX: usize = 10_000;

type KeyCache = std::collections::HashMap<(String, Vec<u8>), (Principal, std::time::Instant)>;
static KEY_CACHE: std::sync::LazyLock<std::sync::Mutex<KeyCache>> = std::sync::LazyLock::new(Default::default);

/// Looks a presented key up; `None` for unknown or revoked keys. Known keys
/// are remembered for [`KEY_CACHE_TTL`] (per database).
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Option<Principal>, sqlx::Error> {
    let cache_key = (super::identity(pool), hash_key(key));
    if let Some((p, at)) = KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key)
        && at.elapsed() < KEY_CACHE_TTL
    {
        return Ok(Some(p.clone()));
    }
    let found = lookup(pool, key).await?;
    if let Some(p) = &found {
        let mut cache = KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(cache_key, (p.clone(), std::time::Instant::now()));
    }
    Ok(found)
}

async fn lookup(pool: &PgPool, key: &str) -> Result<Option<Principal>, sqlx::Error> {
    let row: Option<(ApiKeyId, KeyKind, Option<MerchantId>, bool)> = sqlx::query_as(
        "SELECT id, kind, merchant_id, livemode FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash_key(key))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(key_id, kind, merchant_id, livemode)| Principal { key_id, kind, merchant_id, livemode }))
}

/// Stores a key (its hash) and answers its id.
pub async fn insert_key(
    conn: &mut PgConnection,
    merchant: Option<&MerchantId>,
    kind: KeyKind,
    livemode: bool,
    key: &str,
) -> Result<ApiKeyId, sqlx::Error> {
    Ok(insert_named(conn, merchant, kind, livemode, key, None).await?.id)
}

/// The API key object (contract §11): never the key itself.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ApiKey {
    pub object: String,
    pub id: ApiKeyId,
    pub kind: KeyKind,
    pub livemode: bool,
    pub name: Option<String>,
    /// The key's last four characters (`None` for keys made before names).
    pub last4: Option<String>,
    #[serde(serialize_with = "crate::timefmt::ser")]
    pub created_at: time::OffsetDateTime,
}

const KEY_COLUMNS: &str = "'api_key' AS object, id, kind, livemode, name, last4, created_at";

/// Stores a key (its hash, its first 12 and last 4 characters) with a name.
pub async fn insert_named(
    conn: &mut PgConnection,
    merchant: Option<&MerchantId>,
    kind: KeyKind,
    livemode: bool,
    key: &str,
    name: Option<&str>,
) -> Result<ApiKey, sqlx::Error> {
    let last4 = key.get(key.len().saturating_sub(4)..).unwrap_or_default();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_keys (id, merchant_id, kind, livemode, key_hash, key_prefix, name, last4)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {KEY_COLUMNS}"
    )))
    .bind(ApiKeyId::generate())
    .bind(merchant)
    .bind(kind)
    .bind(livemode)
    .bind(hash_key(key))
    .bind(&key[..key.len().min(12)])
    .bind(name)
    .bind(last4)
    .fetch_one(conn)
    .await
}

/// A merchant's live (not revoked) keys in one mode, newest first.
pub async fn list_keys(pool: &PgPool, merchant: &MerchantId, livemode: bool) -> Result<Vec<ApiKey>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE merchant_id = $1 AND livemode = $2 AND revoked_at IS NULL
         ORDER BY created_at DESC, id DESC LIMIT 1000"
    )))
    .bind(merchant)
    .bind(livemode)
    .fetch_all(pool)
    .await
}

/// Not revoked → revoked, for the merchant and mode when given (operators
/// revoke any key); false when there is no such live key. This process
/// forgets the key at once; the others within [`KEY_CACHE_TTL`].
pub async fn revoke(pool: &PgPool, id: &ApiKeyId, tenant: Option<(&MerchantId, bool)>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
           AND ($2::text IS NULL OR (merchant_id = $2 AND livemode = $3))",
    )
    .bind(id)
    .bind(tenant.map(|t| t.0))
    .bind(tenant.map(|t| t.1))
    .execute(pool)
    .await?;
    KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, (p, _)| &p.key_id != id);
    Ok(done.rows_affected() == 1)
}

/// A new merchant with its test secret and publishable keys.
pub struct NewMerchant {
    /// The merchant.
    pub id: MerchantId,
    /// Test secret key, shown once.
    pub secret_key: String,
    /// Test publishable key, shown once.
    pub publishable_key: String,
}

/// Creates a merchant and its test-mode keys in one transaction.
pub async fn create_merchant(pool: &PgPool, name: &str, secret_key: Option<&str>) -> Result<NewMerchant, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let id = MerchantId::generate();
    sqlx::query("INSERT INTO merchants (id, name) VALUES ($1, $2)").bind(&id).bind(name).execute(&mut *tx).await?;
    let secret_key = secret_key.map_or_else(|| generate_key(KeyKind::Secret, false), str::to_owned);
    let publishable_key = generate_key(KeyKind::Publishable, false);
    insert_key(&mut tx, Some(&id), KeyKind::Secret, false, &secret_key).await?;
    insert_key(&mut tx, Some(&id), KeyKind::Publishable, false, &publishable_key).await?;
    tx.commit().await?;
    Ok(NewMerchant { id, secret_key, publishable_key })
}

/// True when the merchant exists.
pub async fn merchant_exists(pool: &PgPool, id: &MerchantId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM merchants WHERE id = $1)").bind(id).fetch_one(pool).await
}

/// Creates the development merchant with [`DEV_SECRET_KEY`] unless it exists.
/// Several processes may start at once: an advisory lock makes it happen once.
pub async fn ensure_dev_merchant(pool: &PgPool) -> Result<Option<MerchantId>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('payd.dev_merchant'))").execute(&mut *tx).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = $1)")
        .bind(hash_key(DEV_SECRET_KEY))
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        return Ok(None);
    }
    let id = MerchantId::generate();
    sqlx::query("INSERT INTO merchants (id, name) VALUES ($1, 'Test merchant')").bind(&id).execute(&mut *tx).await?;
    insert_key(&mut tx, Some(&id), KeyKind::Secret, false, DEV_SECRET_KEY).await?;
    insert_key(&mut tx, Some(&id), KeyKind::Publishable, false, &generate_key(KeyKind::Publishable, false)).await?;
    tx.commit().await?;
    Ok(Some(id))
}
