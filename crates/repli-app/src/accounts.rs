//! Accounts: users and their API tokens, web passwords and sessions, one-time password links,
//! the sign-in throttle, and authentication (a token or a session id → the acting user).
//!
//! Every rule about an account lives here: who may have a commune, what a login and a password
//! look like, how secrets are stored (a token's or session's SHA-256, a password's argon2id PHC
//! string; never the secret itself), how many sign-in attempts are allowed. replid only reads
//! the header or the cookie and renders the answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use repli_core::run::By;
use repli_core::{Actor, FieldError, InseeCode, Role};
use repli_proto::ProblemCode;
use repli_proto::api::{CreatedUser, NewUserRequest, TokenView, UserView};
use repli_store::{NewUser, StoreError, UserSummary};
use sha2::{Digest, Sha256};

use crate::{AppError, Services};

/// Prefix of every Repli token, so secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "rpl_";
/// The login and password limits: the validators below and the OpenAPI document's schema both
/// read them from `repli_core::schema`.
pub use repli_core::schema::{LOGIN_MAX, PASSWORD_MAX, PASSWORD_MIN};
/// How long a password link works.
pub const LINK_HOURS: i64 = 72;
/// How long a web session lasts.
pub const SESSION_HOURS: i64 = 8;
/// Failed sign-ins allowed per login, and per client address, in [`THROTTLE_WINDOW_MINUTES`].
pub const MAX_FAILURES_PER_LOGIN: usize = 5;
/// Failed sign-ins allowed per client address in the window.
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
/// The sign-in throttle's window.
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;
/// Password checks running at once (each argon2id verification takes 19 MiB).
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 4;

/// 32 random bytes, hex.
pub fn random_hex() -> Result<String, AppError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| AppError::Internal(format!("no randomness available: {e}")))?;
    Ok(hex::encode(b))
}

/// A new random API token (or password link secret).
pub fn generate_token() -> Result<String, AppError> {
    Ok(format!("{TOKEN_PREFIX}{}", random_hex()?))
}

/// What is stored for a token, a session id or a link secret.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two secrets without stopping at the first difference.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// argon2id with explicit parameters (OWASP's recommended minimum: 19 MiB, 2 passes, 1 lane).
fn argon2() -> Result<argon2::Argon2<'static>, String> {
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).map_err(|e| e.to_string())?;
    Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
}

/// The PHC string of `password` with a fresh random salt.
fn hash_password_now(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    argon2()?.hash_password_with_salt(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `phc`.
fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), phc).is_ok())
}

/// The argon2id hash, computed off the async workers (it is deliberately slow).
async fn hash_password(password: &str) -> Result<String, AppError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password_now(&password))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(AppError::Internal)
}

/// A web login: 1 to 64 letters, digits, `.`, `-`, `_` or `@`.
pub fn login_errors(login: &str) -> Vec<FieldError> {
    let login = login.trim();
    let ok = !login.is_empty()
        && login.len() <= LOGIN_MAX
        && login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok { Vec::new() } else { vec![FieldError::new("login", "1 à 64 caractères : lettres, chiffres, . - _ @")] }
}

/// A password of [`PASSWORD_MIN`] to [`PASSWORD_MAX`] characters, without control characters.
pub fn password_errors(password: &str) -> Vec<FieldError> {
    let n = password.chars().count();
    if (PASSWORD_MIN..=PASSWORD_MAX).contains(&n) && !password.chars().any(char::is_control) {
        Vec::new()
    } else {
        vec![FieldError::new(
            "password",
            format!("{PASSWORD_MIN} à {PASSWORD_MAX} caractères, sans caractère de contrôle"),
        )]
    }
}

/// A login suggested from a person's name (« Anne Martin » → `anne.martin`), for the accounts
/// page; it still goes through [`login_errors`] when submitted.
pub fn suggested_login(name: &str) -> String {
    repli_core::text::ascii_slug(name, '.').chars().take(LOGIN_MAX).collect()
}

fn expiry(now: Timestamp, days: Option<u16>) -> Result<Option<Timestamp>, AppError> {
    days.map(|d| {
        now.checked_add(SignedDuration::from_hours(24 * i64::from(d)))
            .map_err(|_| AppError::Validation(vec![FieldError::new("expires_days", "durée hors limites")]))
    })
    .transpose()
}

fn view(u: UserSummary) -> UserView {
    UserView {
        id: u.id,
        name: u.name,
        role: u.role,
        commune: u.commune,
        login: u.login,
        has_password: u.has_password,
        active_tokens: u.active_tokens,
        created_at: Some(u.created_at),
        second_factor: u.second_factor,
    }
}

fn unknown_user() -> AppError {
    AppError::problem(ProblemCode::UnknownUser, "Utilisateur inconnu.")
}

/// Every user, as admins see them (never a token or a password hash).
pub async fn list(s: &Services) -> Result<Vec<UserView>, AppError> {
    Ok(s.store.users(s.clock.now()).await?.into_iter().map(view).collect())
}

async fn summary(s: &Services, id: i64) -> Result<UserView, AppError> {
    list(s).await?.into_iter().find(|u| u.id == id).ok_or_else(unknown_user)
}

/// A user to create, checked (a DGS is bound to one commune and no other role has one; the name
/// follows the name rule), with its first API token.
pub(crate) fn new_user(
    name: &str,
    role: Role,
    commune: Option<InseeCode>,
    token_expires_at: Option<Timestamp>,
) -> Result<(NewUser, String), AppError> {
    if (role == Role::Dgs) != commune.is_some() {
        return Err(AppError::Validation(vec![FieldError::new(
            "commune",
            "obligatoire pour un DGS, interdit pour les autres rôles",
        )]));
    }
    let name = repli_core::text::name("name", name).map_err(|e| AppError::Validation(vec![e]))?;
    let token = generate_token()?;
    Ok((NewUser { name, role, commune, token_sha256: token_hash(&token), token_expires_at }, token))
}

/// Creates a user with a first API token: the token is in the answer, the only time it is
/// ever seen. A DGS is bound to one commune; no other role has one.
pub async fn create(s: &Services, by: By<'_>, req: &NewUserRequest) -> Result<CreatedUser, AppError> {
    let now = s.clock.now();
    let expires_at = expiry(now, req.expires_days)?;
    let (user, token) = new_user(&req.name, req.role, req.commune.clone(), expires_at)?;
    let rec = s.store.create_user(&user, by, now).await?;
    tracing::info!(user = rec.id, role = %rec.role, "user created");
    let user = summary(s, rec.id).await?;
    Ok(CreatedUser { user, token: TokenView { user_id: rec.id, token, expires_at } })
}

/// Whether an admin exists already (`replid init` makes the first one).
pub async fn has_admin(s: &Services) -> Result<bool, AppError> {
    Ok(s.store.users(s.clock.now()).await?.iter().any(|u| u.role == Role::Admin))
}

/// A new API token for user `id` (shown once).
pub async fn issue_token(s: &Services, a: &Actor, id: i64, expires_days: Option<u16>) -> Result<TokenView, AppError> {
    let now = s.clock.now();
    let expires_at = expiry(now, expires_days)?;
    let token = generate_token()?;
    s.store.issue_token(id, &token_hash(&token), expires_at, By::User(a), now).await?;
    Ok(TokenView { user_id: id, token, expires_at })
}

/// Revokes every API token and web session of a user; returns how many.
pub async fn revoke(s: &Services, a: &Actor, id: i64) -> Result<u64, AppError> {
    let revoked = s.store.revoke_tokens(id, By::User(a), s.clock.now()).await?;
    s.auth_cache.clear();
    tracing::info!(user = id, revoked, "tokens revoked");
    Ok(revoked)
}

/// Sets a user's web login and password (admins, through the API).
pub async fn set_password(s: &Services, a: &Actor, id: i64, login: &str, password: &str) -> Result<UserView, AppError> {
    let mut errors = login_errors(login);
    errors.extend(password_errors(password));
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let phc = hash_password(password).await?;
    s.auth_cache.clear();
    // Another account's login answers `login_taken` (409): a conflict with the data, not a
    // malformed request.
    s.store.set_password(id, login.trim(), &phc, By::User(a), s.clock.now()).await?;
    summary(s, id).await
}

/// Creates a one-time link for user `id` to choose their web password under `login`; returns
/// the link's secret (shown once to the admin, who hands it over) and when it expires.
pub async fn password_link(s: &Services, a: &Actor, id: i64, login: &str) -> Result<(String, Timestamp), AppError> {
    let errors = login_errors(login);
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let secret = generate_token()?;
    let now = s.clock.now();
    let expires = now.checked_add(SignedDuration::from_hours(LINK_HOURS)).unwrap_or(now);
    match s.store.create_password_link(id, login.trim(), &token_hash(&secret), expires, By::User(a), now).await {
        Err(StoreError::LoginTaken(_)) => {
            Err(AppError::Validation(vec![FieldError::new("login", "identifiant déjà utilisé par un autre compte")]))
        }
        Err(StoreError::UnknownUser(_)) => Err(unknown_user()),
        Err(e) => Err(e.into()),
        Ok(()) => Ok((secret, expires)),
    }
}

/// Who a password link is for, and the login it sets; None once spent or expired.
pub async fn link_holder(s: &Services, secret: &str) -> Result<Option<(Actor, String)>, AppError> {
    Ok(s.store.password_link(&token_hash(secret), s.clock.now()).await?)
}

/// What choosing a password through a link came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUse {
    /// The password is set under this login; the link is spent.
    Set { login: String },
    /// The link was already used or has expired.
    Spent,
    /// The login was given to another account since the link was made.
    LoginTaken,
}

/// Sets the password a link's holder chose (checked against the password rule, and against the
/// confirmation typed twice); the link is then spent. Field errors come back as a validation
/// error naming `password` or `confirmation`.
pub async fn use_link(s: &Services, secret: &str, password: &str, confirmation: &str) -> Result<LinkUse, AppError> {
    let mut errors = password_errors(password);
    if confirmation != password {
        errors.push(FieldError::new("confirmation", "les deux saisies diffèrent"));
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let phc = hash_password(password).await?;
    match s.store.use_password_link(&token_hash(secret), &phc, s.clock.now()).await {
        Ok(Some(login)) => {
            s.auth_cache.clear();
            Ok(LinkUse::Set { login })
        }
        Ok(None) => Ok(LinkUse::Spent),
        Err(StoreError::LoginTaken(_)) => Ok(LinkUse::LoginTaken),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- authentication

/// How long a credential found valid is trusted without asking the database again. Revocations
/// and sign-outs made through replid clear the cache at once; this bounds only changes made to
/// the database by another process.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most credentials remembered (the cache is emptied when full).
const AUTH_CACHE_MAX: usize = 10_000;
/// Longest bearer token looked at.
const TOKEN_MAX: usize = 128;

/// Credentials recently found valid, by the SHA-256 of the token or session id (never the
/// secret itself): each API call then costs no database read for its authentication.
#[derive(Debug, Default)]
pub struct AuthCache(Mutex<HashMap<String, Cached>>);

#[derive(Debug, Clone)]
struct Cached {
    actor: Actor,
    csrf: Option<String>,
    expires_at: Option<Timestamp>,
    fetched: Instant,
}

impl AuthCache {
    fn get(&self, key: &str, now: Timestamp) -> Option<(Actor, Option<String>)> {
        let map = self.0.lock().ok()?;
        let c = map.get(key)?;
        let fresh = c.fetched.elapsed() < AUTH_CACHE_TTL && c.expires_at.is_none_or(|e| e > now);
        fresh.then(|| (c.actor.clone(), c.csrf.clone()))
    }

    fn put(&self, key: String, actor: &Actor, csrf: Option<&str>, expires_at: Option<Timestamp>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= AUTH_CACHE_MAX {
                map.clear();
            }
            let c = Cached { actor: actor.clone(), csrf: csrf.map(str::to_owned), expires_at, fetched: Instant::now() };
            map.insert(key, c);
        }
    }

    /// Forgets every credential: after a revocation, a sign-out or any change to accounts.
    pub fn clear(&self) {
        if let Ok(mut map) = self.0.lock() {
            map.clear();
        }
    }
}

/// What a request presents to prove who it is.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// `Authorization: Bearer …` (the header's value after `Bearer `).
    Bearer(&'a str),
    /// The web session cookie's value.
    Session(&'a str),
}

/// Who is calling, and the CSRF token of their web session when they came with a session.
pub async fn authenticate(s: &Services, credential: Credential<'_>) -> Result<(Actor, Option<String>), AppError> {
    let now = s.clock.now();
    match credential {
        Credential::Bearer(token) => {
            let token = token.trim();
            if !token.starts_with(TOKEN_PREFIX) || token.len() >= TOKEN_MAX {
                return Err(AppError::Unauthenticated);
            }
            let hash = token_hash(token);
            let key = format!("t:{hash}");
            if let Some(hit) = s.auth_cache.get(&key, now) {
                return Ok(hit);
            }
            let (actor, expires_at) = s.store.token_actor(&hash, now).await?.ok_or(AppError::Unauthenticated)?;
            s.auth_cache.put(key, &actor, None, expires_at);
            Ok((actor, None))
        }
        Credential::Session(sid) => {
            if sid.len() != 64 {
                return Err(AppError::Unauthenticated);
            }
            let hash = token_hash(sid);
            let key = format!("s:{hash}");
            if let Some(hit) = s.auth_cache.get(&key, now) {
                return Ok(hit);
            }
            let session = s.store.session(&hash, now).await?.ok_or(AppError::Unauthenticated)?;
            s.auth_cache.put(key, &session.actor, Some(&session.csrf), Some(session.expires_at));
            Ok((session.actor, Some(session.csrf)))
        }
    }
}

// ---------------------------------------------------------------- sign-in

/// Sign-in attempts, remembered for a window (in memory: a restart forgets them), and the bound
/// on concurrent password checks.
#[derive(Debug)]
pub struct Throttle {
    attempts: Mutex<HashMap<String, Vec<Timestamp>>>,
    verifications: tokio::sync::Semaphore,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            attempts: Mutex::default(),
            verifications: tokio::sync::Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
        }
    }
}

impl Throttle {
    /// Reserves an attempt for `login` from `addr`, counted as a failure until
    /// [`Throttle::succeeded`]: the check and the count are one step under the lock, so a burst
    /// of parallel attempts cannot all pass the check before any is counted.
    pub fn reserve(&self, login: &str, addr: &str, now: Timestamp) -> bool {
        let window = SignedDuration::from_mins(THROTTLE_WINDOW_MINUTES);
        let Ok(mut map) = self.attempts.lock() else { return false };
        let (by_login, by_addr) = (format!("login:{login}"), format!("addr:{addr}"));
        let mut recent = |key: &str| {
            let list = map.entry(key.to_owned()).or_default();
            list.retain(|t| now.duration_since(*t) < window);
            list.len()
        };
        if recent(&by_login) >= MAX_FAILURES_PER_LOGIN || recent(&by_addr) >= MAX_FAILURES_PER_ADDRESS {
            return false;
        }
        map.entry(by_login).or_default().push(now);
        map.entry(by_addr).or_default().push(now);
        true
    }

    /// The reserved attempt succeeded: the login's failures are forgotten, and this attempt no
    /// longer counts against the address.
    pub fn succeeded(&self, login: &str, addr: &str, now: Timestamp) {
        if let Ok(mut map) = self.attempts.lock() {
            map.remove(&format!("login:{login}"));
            if let Some(list) = map.get_mut(&format!("addr:{addr}"))
                && let Some(i) = list.iter().rposition(|t| *t == now)
            {
                list.remove(i);
            }
        }
    }
}

/// A hash to verify against when the login is unknown, so that both paths take as long.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2VsZGUtZmljdGlm$0b4KqXU9q0x3YkVqz4bQ3nZPj4nY2QvLkq1m3f6u3hA";

/// A web session just opened: the cookie's value (its SHA-256 alone is stored) and the
/// session's CSRF token.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    pub sid: String,
    pub csrf: String,
    pub expires_at: Timestamp,
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInRefusal {
    /// Too many failures for this login or from this address in the window.
    Throttled,
    /// Unknown login or wrong password (the same answer for both).
    Wrong,
}

/// Where a sign-in stands once the password was right.
#[derive(Debug, Clone)]
pub enum SignedIn {
    /// Signed in (no second factor for this account).
    Session(OpenedSession),
    /// A TOTP or recovery code is asked for next, under this ticket ([`prove_second_factor`]).
    Code { ticket: String },
    /// The account enrols its second factor first, under this ticket ([`enrolment`]).
    Enrol { ticket: String },
}

/// Whether accounts of `role` need a second factor on the web: ops, admin and auditor ones
/// unless `accounts.second_factor = "off"`. A DGS never does; API tokens never do.
pub fn second_factor_required(s: &Services, role: Role) -> bool {
    s.config.accounts.second_factor == repli_config::SecondFactor::Required
        && matches!(role, Role::Ops | Role::Admin | Role::Auditor)
}

/// Signs in with a login and password from `addr`: throttled per login and per address, the
/// password checked with a bounded number of argon2 verifications at once (a burst waits; it
/// does not grow memory without bound), an unknown login taking as long as a wrong password.
/// An account with a second factor gets a ticket instead of a session; its attempt stays
/// counted by the throttle until the second factor is proven.
pub async fn sign_in(
    s: &Services,
    login: &str,
    password: &str,
    addr: &str,
) -> Result<Result<SignedIn, SignInRefusal>, AppError> {
    let login: String = login.trim().chars().take(LOGIN_MAX).collect();
    let now = s.clock.now();
    if !s.throttle.reserve(&login, addr, now) {
        tracing::warn!(login = %login, addr = %addr, "sign-in throttled");
        s.telemetry.sign_in_failed(crate::metrics::SignInFailure::Throttled);
        return Ok(Err(SignInRefusal::Throttled));
    }
    let found = s.store.password_for_login(&login).await?;
    let phc = found.as_ref().map_or(DUMMY_PHC.to_owned(), |(_, p)| p.clone());
    let password = password.to_owned();
    let ok = match s.throttle.verifications.acquire().await {
        Ok(_permit) => tokio::task::spawn_blocking(move || verify_password(&password, &phc)).await.unwrap_or(false),
        Err(_) => false,
    };
    let Some((user_id, _)) = found.filter(|_| ok) else {
        // The reserved attempt stays counted as a failure.
        tracing::info!(login = %login, addr = %addr, "sign-in refused");
        s.telemetry.sign_in_failed(crate::metrics::SignInFailure::Password);
        return Ok(Err(SignInRefusal::Wrong));
    };
    let role = s.store.users(now).await?.into_iter().find(|u| u.id == user_id).map(|u| u.role);
    if role.is_some_and(|r| second_factor_required(s, r)) {
        // The password alone opens nothing: the attempt stays reserved until the code.
        let enrolling = match s.store.second_factor(user_id).await? {
            Some(_) => None,
            None => Some(crate::second_factor::new_secret()?),
        };
        let enrol = enrolling.is_some();
        let pending = crate::second_factor::Pending { user_id, login: login.clone(), created: now, enrolling };
        let ticket = s.tickets.open(pending)?;
        tracing::info!(login = %login, enrol, "password accepted, second factor next");
        return Ok(Ok(if enrol { SignedIn::Enrol { ticket } } else { SignedIn::Code { ticket } }));
    }
    s.throttle.succeeded(&login, addr, now);
    let (sid, csrf) = (random_hex()?, random_hex()?);
    let expires_at = now.checked_add(SignedDuration::from_hours(SESSION_HOURS)).unwrap_or(now);
    s.store.create_session(user_id, &token_hash(&sid), &csrf, expires_at, now).await?;
    Ok(Ok(SignedIn::Session(OpenedSession { sid, csrf, expires_at })))
}

/// Why a second factor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorRefusal {
    /// Too many failures for this login or from this address in the window.
    Throttled,
    /// The ticket is unknown or older than five minutes: type the password again.
    Expired,
    /// Not the code of this moment, nor an unused recovery code.
    Wrong,
    /// The code was already used (wait for the next one).
    Replayed,
    /// The stored secret does not open with this host's key (the key file was replaced): an
    /// admin resets the second factor.
    Unreadable,
}

/// What an account enrolling its second factor is shown.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub login: String,
    /// The otpauth:// address, as an inline SVG QR code.
    pub qr_svg: String,
    /// The secret in base32, for apps that cannot scan.
    pub secret: String,
}

/// The enrolment a ticket waits for; None when the ticket is unknown, expired, or is not an
/// enrolment.
pub fn enrolment(s: &Services, ticket: &str) -> Result<Option<Enrolment>, AppError> {
    let Some(p) = s.tickets.get(ticket, s.clock.now()) else { return Ok(None) };
    let Some(secret) = &p.enrolling else { return Ok(None) };
    let url = crate::second_factor::otpauth_url(secret, &p.login)?;
    let qr_svg = repli_docs::qr_svg(&url)
        .ok_or_else(|| AppError::Internal("cannot draw the QR code".into()))?
        .replacen("Code QR du lien", "Code QR à scanner avec votre application d'authentification", 1);
    Ok(Some(Enrolment { login: p.login.clone(), qr_svg, secret: crate::second_factor::secret_for_typing(secret) }))
}

/// The login of a ticket waiting for a code (not an enrolment); None when unknown or expired.
pub fn code_ticket_login(s: &Services, ticket: &str) -> Option<String> {
    s.tickets.get(ticket, s.clock.now()).filter(|p| p.enrolling.is_none()).map(|p| p.login)
}

fn refused_factor(s: &Services, login: &str, addr: &str, why: SecondFactorRefusal) -> SecondFactorRefusal {
    tracing::info!(login = %login, addr = %addr, reason = ?why, "second factor refused");
    s.telemetry.sign_in_failed(crate::metrics::SignInFailure::SecondFactor);
    why
}

fn new_session(now: Timestamp) -> Result<OpenedSession, AppError> {
    let (sid, csrf) = (random_hex()?, random_hex()?);
    let expires_at = now.checked_add(SignedDuration::from_hours(SESSION_HOURS)).unwrap_or(now);
    Ok(OpenedSession { sid, csrf, expires_at })
}

/// Completes an enrolment: the first code from the authenticator proves it holds the secret;
/// the secret is sealed and stored with ten recovery codes (returned, to show once), and the
/// session opens — one audited transaction. Throttled like a password.
pub async fn confirm_enrolment(
    s: &Services,
    ticket: &str,
    code: &str,
    addr: &str,
) -> Result<Result<(OpenedSession, Vec<String>), SecondFactorRefusal>, AppError> {
    let now = s.clock.now();
    let Some(p) = s.tickets.get(ticket, now) else { return Ok(Err(SecondFactorRefusal::Expired)) };
    let Some(secret) = p.enrolling.clone() else { return Ok(Err(SecondFactorRefusal::Expired)) };
    if !s.throttle.reserve(&p.login, addr, now) {
        return Ok(Err(refused_factor(s, &p.login, addr, SecondFactorRefusal::Throttled)));
    }
    let totp = crate::second_factor::totp(&secret, &p.login)?;
    let Some(step) = crate::second_factor::check(&totp, code, now) else {
        return Ok(Err(refused_factor(s, &p.login, addr, SecondFactorRefusal::Wrong)));
    };
    let sealed = s.seal_key.seal(p.user_id, &secret)?;
    let codes = crate::second_factor::recovery_codes()?;
    let hashes: Vec<String> = codes
        .iter()
        .filter_map(|c| crate::second_factor::normalize_recovery(c))
        .map(|n| crate::second_factor::recovery_hash(&n))
        .collect();
    let opened = new_session(now)?;
    let sid_hash = token_hash(&opened.sid);
    let session = repli_store::NewSession {
        user_id: p.user_id,
        id_sha256: &sid_hash,
        csrf: &opened.csrf,
        expires_at: opened.expires_at,
    };
    if !s.store.enrol_second_factor(&session, &sealed, step, &hashes, now).await? {
        // Enrolled meanwhile (another tab): sign in with a code.
        s.tickets.close(ticket);
        return Ok(Err(SecondFactorRefusal::Expired));
    }
    s.tickets.close(ticket);
    s.throttle.succeeded(&p.login, addr, now);
    tracing::info!(user = p.user_id, "second factor enrolled");
    Ok(Ok((opened, codes)))
}

/// Proves the second factor of a ticket with a TOTP code or a recovery code, and opens the
/// session. A code is accepted once; a recovery code is spent. Throttled like a password.
pub async fn prove_second_factor(
    s: &Services,
    ticket: &str,
    code: &str,
    addr: &str,
) -> Result<Result<OpenedSession, SecondFactorRefusal>, AppError> {
    let now = s.clock.now();
    let Some(p) = s.tickets.get(ticket, now).filter(|p| p.enrolling.is_none()) else {
        return Ok(Err(SecondFactorRefusal::Expired));
    };
    if !s.throttle.reserve(&p.login, addr, now) {
        return Ok(Err(refused_factor(s, &p.login, addr, SecondFactorRefusal::Throttled)));
    }
    let Some(record) = s.store.second_factor(p.user_id).await? else {
        // Reset by an admin meanwhile: start again (and enrol).
        s.tickets.close(ticket);
        return Ok(Err(SecondFactorRefusal::Expired));
    };
    let proof = match crate::second_factor::normalize_recovery(code) {
        Some(n) => repli_store::SecondFactorProof::Recovery { code_sha256: crate::second_factor::recovery_hash(&n) },
        None => {
            let Some(secret) = s.seal_key.open(p.user_id, &record.sealed) else {
                tracing::error!(user = p.user_id, "a TOTP secret does not open with this host's key");
                return Ok(Err(refused_factor(s, &p.login, addr, SecondFactorRefusal::Unreadable)));
            };
            let totp = crate::second_factor::totp(&secret, &p.login)?;
            match crate::second_factor::check(&totp, code, now) {
                Some(step) if step <= record.last_step => {
                    return Ok(Err(refused_factor(s, &p.login, addr, SecondFactorRefusal::Replayed)));
                }
                Some(step) => repli_store::SecondFactorProof::Totp { step },
                None => return Ok(Err(refused_factor(s, &p.login, addr, SecondFactorRefusal::Wrong))),
            }
        }
    };
    let opened = new_session(now)?;
    let sid_hash = token_hash(&opened.sid);
    let session = repli_store::NewSession {
        user_id: p.user_id,
        id_sha256: &sid_hash,
        csrf: &opened.csrf,
        expires_at: opened.expires_at,
    };
    if !s.store.open_session_with(&session, &proof, now).await? {
        // Two sign-ins raced with one code, or a recovery code already spent.
        let why = match proof {
            repli_store::SecondFactorProof::Totp { .. } => SecondFactorRefusal::Replayed,
            repli_store::SecondFactorProof::Recovery { .. } => SecondFactorRefusal::Wrong,
        };
        return Ok(Err(refused_factor(s, &p.login, addr, why)));
    }
    s.tickets.close(ticket);
    s.throttle.succeeded(&p.login, addr, now);
    Ok(Ok(opened))
}

/// Removes a user's second factor (a lost phone, an unreadable secret): they enrol again at
/// their next sign-in; their sessions are closed. Audited. False when they had none.
pub async fn reset_second_factor(s: &Services, a: &Actor, id: i64) -> Result<bool, AppError> {
    let done = match s.store.reset_second_factor(id, By::User(a), s.clock.now()).await {
        Err(StoreError::UnknownUser(_)) => return Err(unknown_user()),
        other => other?,
    };
    s.auth_cache.clear();
    tracing::info!(user = id, done, "second factor reset");
    Ok(done)
}

/// How many unused recovery codes a user holds.
pub async fn recovery_codes_left(s: &Services, id: i64) -> Result<i64, AppError> {
    Ok(s.store.recovery_codes_left(id).await?)
}

/// Ends the web session whose cookie value is `sid` (audited as `a`).
pub async fn sign_out(s: &Services, a: &Actor, sid: &str) -> Result<(), AppError> {
    s.auth_cache.clear();
    s.store.close_session(&token_hash(sid), a, s.clock.now()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_cache_honours_expiry_and_clearing() {
        let cache = AuthCache::default();
        let a = Actor {
            user_id: 1,
            name: "Claire".into(),
            role: Role::Ops,
            commune: None,
            auth: repli_core::AuthMethod::Token,
        };
        let now: Timestamp = "2026-11-23T08:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
        cache.put("t:x".into(), &a, None, Some(later));
        assert_eq!(cache.get("t:x", now).map(|(a, _)| a.user_id), Some(1));
        assert!(cache.get("t:x", later).is_none(), "an expired token is not served from the cache");
        assert!(cache.get("t:y", now).is_none());
        cache.clear();
        assert!(cache.get("t:x", now).is_none(), "cleared");
    }

    #[test]
    fn passwords_hash_with_argon2id_and_salt() {
        let a = hash_password_now("correct horse battery staple").unwrap();
        let b = hash_password_now("correct horse battery staple").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse battery staple", &a));
        assert!(!verify_password("correct horse battery stapl", &a));
        assert!(!verify_password("x", "not a phc string"));
        assert!(!verify_password("x", DUMMY_PHC), "the dummy hash matches nothing typed");
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }

    #[test]
    fn logins_and_passwords_follow_the_rule() {
        assert!(login_errors("anne.martin@aubagne").is_empty());
        assert!(login_errors("  anne  ").is_empty(), "trimmed");
        for bad in ["", " ", "anne martin", "anne<script>", "é", &"a".repeat(LOGIN_MAX + 1)] {
            assert_eq!(login_errors(bad).len(), 1, "{bad:?}");
        }
        assert!(login_errors(&"a".repeat(LOGIN_MAX)).is_empty());
        assert!(password_errors(&"x".repeat(PASSWORD_MIN)).is_empty());
        assert!(password_errors(&"é".repeat(PASSWORD_MAX)).is_empty(), "characters, not bytes");
        for bad in ["x".repeat(PASSWORD_MIN - 1), "x".repeat(PASSWORD_MAX + 1), format!("{}\u{7}", "x".repeat(20))] {
            assert_eq!(password_errors(&bad)[0].field, "password");
        }
    }

    #[test]
    fn suggested_logins_pass_the_login_rule() {
        assert_eq!(suggested_login("Anne Martin"), "anne.martin");
        assert_eq!(suggested_login("Astreinte DSI"), "astreinte.dsi");
        for name in ["Anne Martin", "Jean-Ève Çà", "x", &"Long Nom ".repeat(20)] {
            let s = suggested_login(name);
            assert!(login_errors(&s).is_empty(), "{name:?} → {s:?}");
        }
    }

    #[test]
    fn a_burst_of_parallel_attempts_gets_the_limit_and_no_more() {
        let t = std::sync::Arc::new(Throttle::default());
        let now: Timestamp = "2026-11-23T08:00:00Z".parse().unwrap();
        let granted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..99)
                .map(|i| {
                    let t = t.clone();
                    scope.spawn(move || t.reserve("anne", &format!("10.0.{}.{}", i / 250, i % 250), now))
                })
                .collect();
            handles.into_iter().map(|h| usize::from(h.join().unwrap_or(false))).sum()
        });
        assert_eq!(granted, MAX_FAILURES_PER_LOGIN, "only as many attempts as the limit are checked");
        // The right password in the same burst is refused too: no reservation is left.
        assert!(!t.reserve("anne", "10.9.9.9", now));
    }

    #[test]
    fn throttle_counts_failures_per_login_and_address() {
        let t = Throttle::default();
        let now: Timestamp = "2026-11-23T08:00:00Z".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_LOGIN {
            assert!(t.reserve("anne", "10.0.0.1", now));
        }
        assert!(!t.reserve("anne", "10.0.0.2", now));
        assert!(t.reserve("paul", "10.0.0.1", now));
        // A success no longer counts against the address, and forgets the login's failures.
        t.succeeded("paul", "10.0.0.1", now);
        assert!(t.reserve("paul", "10.0.0.1", now));
        let later = now.checked_add(SignedDuration::from_mins(THROTTLE_WINDOW_MINUTES)).unwrap();
        assert!(t.reserve("anne", "10.0.0.1", later));
    }
}
