//! Redis backend: replicas of a gateway share entries through one Redis, with the TTL enforced by Redis
//! itself (`SET … PX`). Every command is bounded by a short timeout so a slow Redis degrades to misses.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use super::{CacheError, CacheKey, CachedResponse, ResponseCache};

/// Key prefix when none is configured. Gateways that share a Redis but must not share entries use
/// different prefixes (e.g. one per gateway name).
pub const DEFAULT_PREFIX: &str = "sluice:cache:v1:";

/// Longest wait for Redis per command before the request carries on as a miss: a cache that waits longer
/// than a typical hit saves costs the latency it was meant to save.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// Where and how to reach Redis.
#[derive(Clone)]
pub struct RedisCacheOptions {
    /// `redis://[:password@]host:port[/db]`; may hold a password, so it is never printed.
    pub url: String,
    pub prefix: String,
    pub timeout: Duration,
}

impl RedisCacheOptions {
    /// Options with the default prefix and timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for RedisCacheOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCacheOptions")
            .field("url", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A response cache in Redis. Cloning shares the connection, which reconnects by itself after failures.
#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

/// What is stored under a key: versioned so an incompatible entry reads as a decode error, not garbage.
#[derive(Serialize, Deserialize)]
struct Stored<T> {
    v: u32,
    entry: T,
}

const STORED_VERSION: u32 = 1;

impl RedisCache {
    /// Connects (within the timeout) and returns the cache; fails if Redis cannot be reached now.
    pub async fn connect(options: RedisCacheOptions) -> Result<Self, CacheError> {
        let client = redis::Client::open(options.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(2);
        let connection = tokio::time::timeout(
            options.timeout * 4,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| CacheError::Timeout(options.timeout * 4))??;
        Ok(Self {
            connection,
            prefix: options.prefix,
            timeout: options.timeout,
        })
    }

    /// The Redis key of an entry.
    pub fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.prefix, key.to_hex())
    }

    async fn command<T: redis::FromRedisValue>(
        &self,
        command: redis::Cmd,
    ) -> Result<T, CacheError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(self.timeout, command.query_async(&mut connection))
            .await
            .map_err(|_| CacheError::Timeout(self.timeout))?
            .map_err(CacheError::from)
    }

    async fn fetch(&self, key: &CacheKey) -> Result<Option<Arc<CachedResponse>>, CacheError> {
        let mut get = redis::cmd("GET");
        get.arg(self.redis_key(key));
        let Some(bytes) = self.command::<Option<Vec<u8>>>(get).await? else {
            return Ok(None);
        };
        let stored: Stored<CachedResponse> =
            serde_json::from_slice(&bytes).map_err(CacheError::Decode)?;
        if stored.v != STORED_VERSION {
            return Ok(None);
        }
        Ok(Some(Arc::new(stored.entry)))
    }

    async fn save(
        &self,
        key: &CacheKey,
        response: &CachedResponse,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let body = serde_json::to_vec(&Stored {
            v: STORED_VERSION,
            entry: response,
        })
        .map_err(CacheError::Encode)?;
        // PX takes whole milliseconds and rejects 0.
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut set = redis::cmd("SET");
        set.arg(self.redis_key(key)).arg(body).arg("PX").arg(ttl_ms);
        self.command::<()>(set).await
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ResponseCache for RedisCache {
    fn get<'a>(
        &'a self,
        key: &'a CacheKey,
    ) -> BoxFuture<'a, Result<Option<Arc<CachedResponse>>, CacheError>> {
        self.fetch(key).boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a CacheKey,
        response: Arc<CachedResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        async move { self.save(key, &response, ttl).await }.boxed()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use super::*;
    use crate::api::openai::{
        ChatCompletion, ChatRequest, Choice, FinishReason, ResponseMessage, Usage,
    };
    use crate::cache::Tenant;

    /// A `redis-server` on a free loopback port, stopped on drop.
    pub(crate) struct RedisServer {
        child: Child,
        pub(crate) url: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn redis_server_binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("SLUICE_REDIS_SERVER") {
            return Some(PathBuf::from(path));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    }

    /// Starts a server, or returns `None` (after saying why) when the binary is absent outside CI. In CI
    /// (`CI` set) a missing binary fails the test: scripts/tools.sh installs it.
    pub(crate) async fn start_redis() -> Option<RedisServer> {
        let Some(binary) = redis_server_binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is required in CI; scripts/tools.sh installs it (apt-get install redis-server)"
            );
            eprintln!(
                "SKIPPED: redis-server not found (set SLUICE_REDIS_SERVER or run scripts/tools.sh to install it)"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(client) = redis::Client::open(server.url.as_str())
                && let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return Some(server);
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not answer PING within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn key(text: &str) -> CacheKey {
        let request: ChatRequest = serde_json::from_value(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]}),
        )
        .unwrap();
        CacheKey::chat("ns/route", "m", Tenant::Namespace("ns"), &request)
    }

    fn response() -> Arc<CachedResponse> {
        let completion = ChatCompletion {
            id: "chatcmpl-r".into(),
            object: "chat.completion".into(),
            created: 1_700_000_000,
            model: "gpt-4o-2024-08-06".into(),
            choices: vec![Choice {
                message: ResponseMessage {
                    content: Some("Paris.".into()),
                    ..ResponseMessage::default()
                },
                finish_reason: Some(FinishReason::Stop),
                ..Choice::default()
            }],
            usage: Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 2,
                total_tokens: 14,
                ..Usage::default()
            }),
            ..ChatCompletion::default()
        };
        Arc::new(CachedResponse::new(completion, "openai-primary").unwrap())
    }

    #[tokio::test]
    async fn two_replicas_share_entries_through_redis() {
        let Some(server) = start_redis().await else {
            return;
        };
        let replica_a = RedisCache::connect(RedisCacheOptions::new(&server.url))
            .await
            .unwrap();
        let replica_b = RedisCache::connect(RedisCacheOptions::new(&server.url))
            .await
            .unwrap();
        let key = key("capital of France?");
        assert!(replica_b.get(&key).await.unwrap().is_none());
        replica_a
            .put(&key, response(), Duration::from_secs(60))
            .await
            .unwrap();
        let hit = replica_b
            .get(&key)
            .await
            .unwrap()
            .expect("replica B sees replica A's entry");
        assert_eq!(*hit, *response());

        let isolated = RedisCache::connect(RedisCacheOptions {
            prefix: "sluice:cache:v1:other-gateway:".into(),
            ..RedisCacheOptions::new(&server.url)
        })
        .await
        .unwrap();
        assert!(
            isolated.get(&key).await.unwrap().is_none(),
            "another prefix is another cache"
        );
    }

    #[tokio::test]
    async fn the_ttl_is_set_in_redis() {
        let Some(server) = start_redis().await else {
            return;
        };
        let cache = RedisCache::connect(RedisCacheOptions::new(&server.url))
            .await
            .unwrap();
        let key = key("ttl");
        cache
            .put(&key, response(), Duration::from_millis(1500))
            .await
            .unwrap();
        let mut pttl = redis::cmd("PTTL");
        pttl.arg(cache.redis_key(&key));
        let remaining: i64 = cache.command(pttl).await.unwrap();
        assert!((1..=1500).contains(&remaining), "PTTL {remaining}");

        // An entry with a 1 ms TTL is gone once Redis has expired it.
        let short = self::key("short");
        cache
            .put(&short, response(), Duration::from_millis(1))
            .await
            .unwrap();
        let started = Instant::now();
        while cache.get(&short).await.unwrap().is_some() {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "entry outlived its TTL"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_corrupt_entry_is_a_decode_error() {
        let Some(server) = start_redis().await else {
            return;
        };
        let cache = RedisCache::connect(RedisCacheOptions::new(&server.url))
            .await
            .unwrap();
        let key = key("corrupt");
        let mut set = redis::cmd("SET");
        set.arg(cache.redis_key(&key)).arg("not json");
        cache.command::<()>(set).await.unwrap();
        let error = cache.get(&key).await.unwrap_err();
        assert_eq!(error.metric_label(), "decode");
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let options = RedisCacheOptions {
            timeout: Duration::from_millis(100),
            ..RedisCacheOptions::new(format!("redis://127.0.0.1:{port}/"))
        };
        assert!(RedisCache::connect(options.clone()).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            !format!("{options:?}").contains("127.0.0.1"),
            "the URL is never printed"
        );
    }
}
