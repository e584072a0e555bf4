//! The crisis zone published in the métropole's own authoritative DNS: RFC 2136 dynamic
//! updates signed with TSIG (RFC 8945, HMAC-SHA256 or -SHA512) sent to the zone's primary
//! server, then checked on every authoritative server, without recursion, until each serves
//! exactly what was published. BIND, Knot and PowerDNS all accept such updates (docs/DNS.md).
//!
//! Only names under the crisis's own domain are ever written: every record set is replaced
//! whole (delete the RRset, add the records) in one update, which the server applies
//! atomically; removal deletes the names Microsoft 365 and Repli use under that domain.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::{CNAME, MX, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use repli_core::m365::{OWNED_KINDS, Observed, ServerSurvey, crisis_names};

use crate::{BoxFut, DnsPublisher, DnsRecord, Error, Result};

/// How to reach and sign for the zone.
#[derive(Clone)]
pub struct Rfc2136Config {
    /// The zone's primary server (`address:port`), where updates go; `None`: the SOA's primary
    /// name (MNAME), asked of the configured servers or else of the system's resolvers.
    pub primary: Option<SocketAddr>,
    /// The zone the crisis domains live in (`secours-amp.fr`).
    pub zone: String,
    /// The TSIG key's name, as the servers know it.
    pub key_name: String,
    /// The TSIG key's secret, decoded from base64.
    pub key: Vec<u8>,
    /// `hmac-sha256` (default) or `hmac-sha512`.
    pub algorithm: String,
    /// The authoritative servers to check (`address:port`); when empty, the zone's NS records
    /// (asked of the primary, each name's address from the zone's glue or the system
    /// resolver, port 53) and the primary.
    pub servers: Vec<SocketAddr>,
    /// How long to wait for every server to serve the records.
    pub propagation_timeout: Duration,
}

impl std::fmt::Debug for Rfc2136Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Rfc2136Config")
            .field("primary", &self.primary)
            .field("zone", &self.zone)
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .field("servers", &self.servers)
            .field("propagation_timeout", &self.propagation_timeout)
            .finish_non_exhaustive()
    }
}

/// The RFC 2136 adapter of the [`DnsPublisher`] port.
#[derive(Debug)]
pub struct Rfc2136Dns {
    config: Rfc2136Config,
    zone: Name,
    signer: TSignerDebug,
    /// Added to the clock that signs updates: only tests move it (a BADTIME).
    clock_skew: i64,
    /// The primary found from the zone's SOA, once found (when none is configured).
    found_primary: tokio::sync::OnceCell<SocketAddr>,
}

/// `TSigner` holds the key: not printed.
struct TSignerDebug(TSigner);

impl std::fmt::Debug for TSignerDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TSigner(…)")
    }
}

/// How long one exchange with a server may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the preflight's canary waits for every server to serve it: the preflight must end
/// well within a client's request timeout, whatever `propagation_timeout` says.
pub const CANARY_PROPAGATION: Duration = Duration::from_secs(15);
/// Between two looks at the servers while waiting for propagation.
const PROPAGATION_POLL: Duration = Duration::from_millis(250);

fn fqdn(name: &str) -> Result<Name> {
    let mut n = Name::from_str(name.trim_end_matches('.'))
        .map_err(|e| Error::Invalid(format!("nom DNS invalide « {name} » : {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

impl Rfc2136Dns {
    pub fn new(config: Rfc2136Config) -> Result<Self> {
        let algorithm = match config.algorithm.to_ascii_lowercase().as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => return Err(Error::Invalid(format!("algorithme TSIG « {other} » : hmac-sha256 ou hmac-sha512"))),
        };
        if config.key.len() < 16 {
            return Err(Error::Invalid("la clé TSIG fait moins de 16 octets".into()));
        }
        let signer = TSigner::new(config.key.clone(), algorithm, fqdn(&config.key_name)?, 300)
            .map_err(|e| Error::Invalid(format!("clé TSIG : {e}")))?;
        let zone = fqdn(&config.zone)?;
        Ok(Rfc2136Dns {
            config,
            zone,
            signer: TSignerDebug(signer),
            clock_skew: 0,
            found_primary: tokio::sync::OnceCell::new(),
        })
    }

    /// Signs with a clock `seconds` off the real one: what a server whose clock drifted sees
    /// (tests of BADTIME).
    pub fn with_clock_skew(mut self, seconds: i64) -> Self {
        self.clock_skew = seconds;
        self
    }

    /// The servers whose answers count: the configured ones, or the zone's authoritative
    /// servers found from its NS records (the primary alone if they cannot be found); an
    /// error when not even the primary can be found (nothing to look at is not "all agree").
    async fn servers(&self) -> Result<Vec<SocketAddr>> {
        if !self.config.servers.is_empty() {
            return Ok(self.config.servers.clone());
        }
        let primary = self.primary().await?;
        match self.authoritative_servers().await {
            Ok(found) => Ok(found),
            Err(e) => {
                tracing::warn!(error = %e, zone = %self.config.zone, "NS records not found: checking the primary only");
                Ok(vec![primary])
            }
        }
    }

    /// Where updates go: the configured primary, or the one the zone's SOA names (found once).
    pub async fn primary(&self) -> Result<SocketAddr> {
        if let Some(p) = self.config.primary {
            return Ok(p);
        }
        self.found_primary.get_or_try_init(|| self.find_primary()).await.copied()
    }

    /// The zone's primary from its SOA record (RFC 1035: MNAME, "the name server that was the
    /// original or primary source of data for this zone"), asked without recursion of the
    /// configured servers, or else with recursion of the system's resolvers
    /// (`/etc/resolv.conf`). Its address comes from the same server (glue) or the system
    /// resolver; its port is that of a configured server at the same address, else 53.
    async fn find_primary(&self) -> Result<SocketAddr> {
        let zone = &self.config.zone;
        let (sources, recursive) = if self.config.servers.is_empty() {
            (system_resolvers(), true)
        } else {
            (self.config.servers.clone(), false)
        };
        if sources.is_empty() {
            return Err(Error::Dns(format!(
                "primaire de la zone {zone} introuvable : ni [dns] primary, ni [dns] servers, ni résolveur système (/etc/resolv.conf)"
            )));
        }
        let mut why = Vec::new();
        for source in sources {
            let found = async {
                let soa = self.ask(source, zone, RecordType::SOA, recursive).await?;
                let mname = soa
                    .answers
                    .iter()
                    .find_map(|r| if let RData::SOA(soa) = &r.data { Some(soa.mname.to_string()) } else { None })
                    .ok_or_else(|| Error::Dns(format!("{source} ne donne pas le SOA de la zone {zone}")))?;
                let mut ips: Vec<std::net::IpAddr> = Vec::new();
                for kind in [RecordType::A, RecordType::AAAA] {
                    if let Ok(m) = self.ask(source, &mname, kind, recursive).await {
                        ips.extend(m.answers.iter().filter_map(|r| match &r.data {
                            RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
                            RData::AAAA(a) => Some(std::net::IpAddr::V6(a.0)),
                            _ => None,
                        }));
                    }
                }
                if ips.is_empty()
                    && let Ok(Ok(found)) =
                        tokio::time::timeout(EXCHANGE_TIMEOUT, tokio::net::lookup_host((mname.trim_end_matches('.'), 53)))
                            .await
                {
                    ips.extend(found.map(|a| a.ip()));
                }
                let ip = ips
                    .first()
                    .copied()
                    .ok_or_else(|| Error::Dns(format!("primaire {mname} de la zone {zone} : aucune adresse")))?;
                let port = self.config.servers.iter().find(|s| s.ip() == ip).map_or(53, SocketAddr::port);
                tracing::info!(zone = %zone, primary = %mname, address = %ip, port, "primary found from the zone's SOA");
                Ok::<SocketAddr, Error>(SocketAddr::new(ip, port))
            }
            .await;
            match found {
                Ok(primary) => return Ok(primary),
                Err(e) => why.push(e.to_string()),
            }
        }
        Err(Error::Dns(format!(
            "primaire de la zone {zone} introuvable par son SOA ({}) : déclarer [dns] primary",
            why.join(" ; ")
        )))
    }

    /// The primary, and the zone's NS records as addresses (port 53): the glue the zone holds,
    /// else the system resolver's answer.
    pub async fn authoritative_servers(&self) -> Result<Vec<SocketAddr>> {
        let primary = self.primary().await?;
        let mut out = vec![primary];
        let names = self.served(primary, &self.config.zone, RecordType::NS).await?;
        for ns in names {
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for kind in [RecordType::A, RecordType::AAAA] {
                for ip in self.served(primary, &ns, kind).await.unwrap_or_default() {
                    if let Ok(ip) = ip.parse::<std::net::IpAddr>() {
                        addrs.push(SocketAddr::new(ip, 53));
                    }
                }
            }
            if addrs.is_empty() {
                let host = ns.trim_end_matches('.').to_owned();
                if let Ok(Ok(found)) =
                    tokio::time::timeout(EXCHANGE_TIMEOUT, tokio::net::lookup_host((host.as_str(), 53))).await
                {
                    addrs.extend(found);
                }
            }
            if addrs.is_empty() {
                return Err(Error::Dns(format!("serveur {ns} de la zone {} : aucune adresse", self.config.zone)));
            }
            for a in addrs {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }

    /// `domain`, checked to be strictly inside the configured zone.
    fn crisis_name(&self, domain: &str) -> Result<Name> {
        let name = fqdn(domain)?;
        if name == self.zone || !self.zone.zone_of(&name) {
            return Err(Error::Invalid(format!(
                "le domaine {domain} n'est pas sous la zone {} : Repli n'écrit que sous le nom de la crise",
                self.config.zone
            )));
        }
        Ok(name)
    }

    fn update_message(&self) -> Message {
        let mut zone = Query::new();
        zone.set_name(self.zone.clone()).set_query_class(DNSClass::IN).set_query_type(RecordType::SOA);
        let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
        m.metadata.recursion_desired = false;
        m.add_zone(zone);
        m
    }

    /// Sends a signed update to the primary and checks its signed answer. A refusal says
    /// which of three it is: the key (TSIG BADKEY/BADSIG/BADTIME, or an answer not signed by
    /// it), the server's policy (REFUSED; NOTAUTH under a valid signature: the key is known but
    /// not granted this name or type, or the server is not authoritative for the zone; NOTAUTH
    /// with BADKEY from a server that proves to know the key: a Knot ACL), or the server itself
    /// (unreachable, SERVFAIL: transient).
    async fn update(&self, mut message: Message) -> Result<()> {
        #[allow(clippy::disallowed_methods)] // the server checks TSIG's time against its wall clock
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let now = now.saturating_add_signed(self.clock_skew);
        let mut verifier = message
            .finalize(&self.signer.0, now)
            .map_err(|e| Error::DnsTsig(format!("signature TSIG impossible : {e}")))?;
        let bytes = message.to_vec().map_err(|e| Error::Invalid(format!("mise à jour DNS : {e}")))?;
        let primary = self.primary().await?;
        let answer = tcp_exchange(primary, &bytes).await?;
        let parsed =
            Message::from_bytes(&answer).map_err(|e| Error::Dns(format!("réponse illisible de {primary} : {e}")))?;
        let code = parsed.metadata.response_code;
        let zone = &self.config.zone;
        // The TSIG error the server put in its answer's TSIG record (RFC 8945 §5.3.2).
        if let Some(tsig) = parsed.signature().and_then(|r| r.data.error) {
            // Knot answers an update its ACL denies with NOTAUTH and BADKEY, as it would a key
            // it does not know: a harmless update signed with the key tells the two apart.
            if tsig == TsigError::BadKey && code == ResponseCode::NotAuth && self.key_known(primary).await {
                return Err(Error::DnsRefused(format!(
                    "mise à jour de la zone {zone} refusée par {primary} — politique — NOTAUTH : la clé « {} » est reconnue (une mise à jour sans effet passe) mais l'ACL ne lui accorde pas ce nom ou ce type",
                    self.config.key_name
                )));
            }
            let why = match tsig {
                TsigError::BadKey => format!(
                    "BADKEY : {primary} ne connaît pas la clé « {} » avec l'algorithme {} (nom ou algorithme de [dns] key_name/algorithm)",
                    self.config.key_name, self.config.algorithm
                ),
                TsigError::BadSig => format!(
                    "BADSIG : {primary} connaît la clé « {} » mais la signature ne correspond pas à son secret (secret de [dns] key_file ou REPLI_DNS_TSIG_SECRET)",
                    self.config.key_name
                ),
                TsigError::BadTime => format!(
                    "BADTIME : l'horloge de replid et celle de {primary} diffèrent de plus de 5 minutes (synchroniser l'heure, NTP)"
                ),
                other => format!("{primary} refuse la signature TSIG ({other:?})"),
            };
            return Err(Error::DnsTsig(format!("mise à jour de la zone {zone} refusée — clé TSIG — {why}")));
        }
        // Any other answer must carry the key's signature: otherwise it is not the server's.
        let signed = match verifier.as_mut() {
            Some(v) => v.verify(&answer).map(|_| ()).map_err(|e| e.to_string()),
            None => Ok(()),
        };
        if let Err(e) = signed {
            // Unsigned REFUSED: some servers refuse before looking at the key (no TSIG record).
            if code == ResponseCode::Refused || code == ResponseCode::NotAuth {
                return Err(Error::DnsTsig(format!(
                    "mise à jour de la zone {zone} refusée par {primary} ({code}) sans réponse signée par la clé « {} » : clé inconnue du serveur, ou serveur non maître de la zone ({e})",
                    self.config.key_name
                )));
            }
            return Err(Error::DnsTsig(format!(
                "la réponse de {primary} n'est pas signée par la clé TSIG attendue : {e}"
            )));
        }
        // A primary deduced from the SOA may be a secondary that refuses updates: say so.
        let found = if self.config.primary.is_none() {
            format!(
                " (primaire {primary} déduit du SOA de la zone : si ce n'est pas le maître, déclarer [dns] primary)"
            )
        } else {
            String::new()
        };
        match code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::Refused => Err(Error::DnsRefused(format!(
                "mise à jour de la zone {zone} refusée par {primary} — politique — REFUSED : la clé est reconnue mais la politique de mise à jour (update-policy, ACL) ne lui accorde pas ce nom ou ce type{found}"
            ))),
            ResponseCode::NotAuth => {
                // A valid signature: the key is fine. Either the server does not serve the
                // zone with authority, or its ACL (Knot) refuses the key this update.
                let why = match self.soa_serial(primary).await {
                    Err(e) => format!(
                        "{primary} ne fait pas autorité pour la zone {zone} ({e}) : vérifier [dns] primary et zone"
                    ),
                    Ok(_) => format!(
                        "{primary} fait autorité pour {zone} mais refuse cette mise à jour à la clé (ACL ou update-policy : nom ou type non accordé)"
                    ),
                };
                Err(Error::DnsRefused(format!(
                    "mise à jour de la zone {zone} refusée — politique — NOTAUTH : {why}{found}"
                )))
            }
            ResponseCode::NotZone => Err(Error::DnsRefused(format!(
                "mise à jour de la zone {zone} refusée par {primary} — NOTZONE : un nom est hors de la zone"
            ))),
            ResponseCode::ServFail => Err(Error::Dns(format!(
                "mise à jour de la zone {zone} : {primary} répond SERVFAIL (le serveur n'a pas pu l'appliquer)"
            ))),
            other => Err(Error::DnsRefused(format!("mise à jour de la zone {zone} refusée par {primary} : {other}"))),
        }
    }

    /// Whether `server` knows the key: an update that every policy of docs/DNS.md grants and
    /// that changes nothing (the deletion of a TXT set at `_repli-probe.<zone>`, which Repli
    /// never publishes) gets NOERROR signed with the key; an unknown key gets BADKEY. (A
    /// signed query would not do: Knot answers BADKEY to a key its ACLs give no query right.)
    async fn key_known(&self, server: SocketAddr) -> bool {
        let known = async {
            let probe = Name::from_str("_repli-probe").ok()?.append_domain(&self.zone).ok()?;
            let mut message = self.update_message();
            message.add_update(delete_rrset(probe, RecordType::TXT));
            #[allow(clippy::disallowed_methods)] // TSIG's time is the wall clock
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            let mut verifier = message.finalize(&self.signer.0, now.saturating_add_signed(self.clock_skew)).ok()?;
            let answer = tcp_exchange(server, &message.to_vec().ok()?).await.ok()?;
            let parsed = Message::from_bytes(&answer).ok()?;
            let signed = verifier.as_mut().is_some_and(|v| v.verify(&answer).is_ok());
            Some(signed && parsed.metadata.response_code == ResponseCode::NoError)
        };
        known.await.unwrap_or(false)
    }

    /// The zone's SOA serial as `server` serves it, with authority (an error otherwise).
    pub async fn soa_serial(&self, server: SocketAddr) -> Result<u32> {
        let m = self.query(server, &self.config.zone, RecordType::SOA).await?;
        m.answers
            .iter()
            .find_map(|r| if let RData::SOA(soa) = &r.data { Some(soa.serial) } else { None })
            .ok_or_else(|| Error::Dns(format!("{server} ne sert pas le SOA de la zone {}", self.config.zone)))
    }

    /// One query without recursion; the answer must come with authority (AA) and a code
    /// that means "here is the zone's data" (NOERROR, NXDOMAIN).
    async fn query(&self, server: SocketAddr, name: &str, kind: RecordType) -> Result<Message> {
        self.ask(server, name, kind, false).await
    }

    /// One query; with `recursive`, of a resolver (recursion desired, authority not required).
    async fn ask(&self, server: SocketAddr, name: &str, kind: RecordType, recursive: bool) -> Result<Message> {
        let mut q = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = recursive;
        q.add_query(Query::query(fqdn(name)?, kind));
        let bytes = q.to_vec().map_err(|e| Error::Invalid(format!("requête DNS : {e}")))?;
        let answer = udp_exchange(server, &bytes).await?;
        let mut m =
            Message::from_bytes(&answer).map_err(|e| Error::Dns(format!("réponse illisible de {server} : {e}")))?;
        if m.metadata.truncation {
            let answer = tcp_exchange(server, &bytes).await?;
            m = Message::from_bytes(&answer).map_err(|e| Error::Dns(format!("réponse illisible de {server} : {e}")))?;
        }
        let code = m.metadata.response_code;
        if code == ResponseCode::Refused {
            return Err(Error::Dns(format!(
                "{server} refuse la requête (REFUSED) pour {name} {kind} : il ne sert pas la zone {}",
                self.config.zone
            )));
        }
        if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
            return Err(Error::Dns(format!("{server} répond {code} pour {name} {kind}")));
        }
        if !recursive && !m.metadata.authoritative {
            return Err(Error::Dns(format!(
                "{server} ne fait pas autorité pour la zone {} (réponse sans AA)",
                self.config.zone
            )));
        }
        Ok(m)
    }

    /// What `server` serves for `name`/`kind`, without recursion, in zone-file form; an
    /// error when it does not answer with authority.
    pub async fn served(&self, server: SocketAddr, name: &str, kind: RecordType) -> Result<BTreeSet<String>> {
        let m = self.query(server, name, kind).await?;
        Ok(m.answers.iter().filter(|r| r.record_type() == kind).filter_map(|r| zone_form(&r.data)).collect())
    }

    /// Waits until every server serves exactly `expected` (by name and type).
    async fn propagated(
        &self,
        expected: &BTreeMap<(String, RecordType), BTreeSet<String>>,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Found once (NS records, addresses), not at every look.
        let servers = self.servers().await?;
        loop {
            let mut lagging = None;
            'servers: for &server in &servers {
                for ((name, kind), want) in expected {
                    let got = match self.served(server, name, *kind).await {
                        Ok(got) => got,
                        Err(e) => {
                            lagging = Some(format!("{server} ne répond pas ({e})"));
                            break 'servers;
                        }
                    };
                    if &got != want {
                        let shown = if got.is_empty() {
                            "rien".to_owned()
                        } else {
                            got.iter().map(|v| format!("« {v} »")).collect::<Vec<_>>().join(", ")
                        };
                        lagging = Some(format!("{server} sert pour {name} {kind} : {shown}"));
                        break 'servers;
                    }
                }
            }
            let Some(lagging) = lagging else { return Ok(()) };
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Dns(format!("propagation non constatée après {} s : {lagging}", timeout.as_secs())));
            }
            tokio::time::sleep(PROPAGATION_POLL).await;
        }
    }

    /// Writes a TXT record at `name` (inside the zone, any depth), checks that every server
    /// serves it, then deletes it: the preflight's canary.
    pub async fn canary(&self, name: &str, value: &str) -> Result<()> {
        let owner = fqdn(name)?;
        if !self.zone.zone_of(&owner) {
            return Err(Error::Invalid(format!("{name} n'est pas dans la zone {}", self.config.zone)));
        }
        let record = DnsRecord {
            name: name.trim_end_matches('.').to_owned(),
            kind: "TXT".into(),
            ttl: 60,
            value: value.to_owned(),
            service: "Repli".into(),
            optional: false,
        };
        let mut m = self.update_message();
        m.add_update(delete_rrset(owner.clone(), RecordType::TXT));
        m.add_update(to_record(&record)?);
        self.update(m).await?;
        let mut expected = BTreeMap::new();
        expected.insert((record.name.clone(), RecordType::TXT), BTreeSet::from([value.to_owned()]));
        let seen = self.propagated(&expected, self.config.propagation_timeout.min(CANARY_PROPAGATION)).await;
        let mut m = self.update_message();
        m.add_update(delete_rrset(owner, RecordType::TXT));
        self.update(m).await?;
        seen
    }
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).unwrap_or_default();
    u16::from_be_bytes(b)
}

/// The record types Repli publishes, and so the only ones it removes.
const PUBLISHED_TYPES: [RecordType; 4] = [RecordType::TXT, RecordType::MX, RecordType::CNAME, RecordType::SRV];

fn delete_rrset(name: Name, kind: RecordType) -> Record {
    let mut r = Record::update0(name, 0, kind);
    r.dns_class = DNSClass::ANY;
    r
}

fn record_type(kind: &str) -> Result<RecordType> {
    match kind.to_ascii_uppercase().as_str() {
        "TXT" => Ok(RecordType::TXT),
        "MX" => Ok(RecordType::MX),
        "CNAME" => Ok(RecordType::CNAME),
        "SRV" => Ok(RecordType::SRV),
        other => Err(Error::Invalid(format!("type d'enregistrement DNS non pris en charge : {other}"))),
    }
}

fn number<T: FromStr>(field: Option<&str>, what: &str, value: &str) -> Result<T> {
    field.and_then(|f| f.parse().ok()).ok_or_else(|| Error::Invalid(format!("{what} illisible dans « {value} »")))
}

/// The record in wire form, from its zone-file form (`10 mail.example.`).
fn to_record(r: &DnsRecord) -> Result<Record> {
    let name = fqdn(&r.name)?;
    let data = match record_type(&r.kind)? {
        RecordType::TXT => {
            // A character-string holds at most 255 bytes: longer texts are split, as zone files do.
            let chunks: Vec<String> =
                r.value.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            RData::TXT(TXT::new(chunks))
        }
        RecordType::MX => {
            let mut f = r.value.split_whitespace();
            let pref = number(f.next(), "préférence MX", &r.value)?;
            RData::MX(MX::new(pref, fqdn(f.next().unwrap_or_default())?))
        }
        RecordType::CNAME => RData::CNAME(CNAME(fqdn(&r.value)?)),
        _ => {
            let mut f = r.value.split_whitespace();
            let (p, w, port) = (
                number(f.next(), "priorité SRV", &r.value)?,
                number(f.next(), "poids SRV", &r.value)?,
                number(f.next(), "port SRV", &r.value)?,
            );
            RData::SRV(SRV::new(p, w, port, fqdn(f.next().unwrap_or_default())?))
        }
    };
    Ok(Record::from_rdata(name, r.ttl, data))
}

/// Zone-file form of served data, as [`DnsRecord::value`] spells it (host names lower-case,
/// with their final dot).
fn zone_form(data: &RData) -> Option<String> {
    let host = |n: &Name| {
        let mut s = n.to_ascii().to_ascii_lowercase();
        if !s.ends_with('.') {
            s.push('.');
        }
        s
    };
    Some(match data {
        RData::TXT(t) => t.txt_data.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<String>(),
        RData::MX(m) => format!("{} {}", m.preference, host(&m.exchange)),
        RData::CNAME(c) => host(&c.0),
        RData::SRV(s) => format!("{} {} {} {}", s.priority, s.weight, s.port, host(&s.target)),
        RData::NS(n) => host(&n.0),
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        _ => return None,
    })
}

/// The expected form of a record's value (host names lower-case, with their final dot).
fn expected_form(r: &DnsRecord) -> Result<String> {
    zone_form(&to_record(r)?.data).ok_or_else(|| Error::Invalid(format!("type {}", r.kind)))
}

/// The system's resolvers: each `nameserver` line of `/etc/resolv.conf`, port 53.
fn system_resolvers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf").map(|text| parse_resolv_conf(&text)).unwrap_or_default()
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next()?.split('%').next()?.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

async fn tcp_exchange(server: SocketAddr, request: &[u8]) -> Result<Vec<u8>> {
    let unreachable = |e: std::io::Error| Error::Dns(format!("serveur DNS {server} injoignable : {e}"));
    let exchange = async {
        let mut s = TcpStream::connect(server).await.map_err(unreachable)?;
        let len = u16::try_from(request.len()).map_err(|_| Error::Invalid("message DNS trop long".into()))?;
        s.write_all(&len.to_be_bytes()).await.map_err(unreachable)?;
        s.write_all(request).await.map_err(unreachable)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(unreachable)?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut answer).await.map_err(unreachable)?;
        Ok(answer)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::Dns(format!("serveur DNS {server} : pas de réponse en {} s", EXCHANGE_TIMEOUT.as_secs())))?
}

async fn udp_exchange(server: SocketAddr, request: &[u8]) -> Result<Vec<u8>> {
    let unreachable = |e: std::io::Error| Error::Dns(format!("serveur DNS {server} injoignable : {e}"));
    let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let exchange = async {
        let s = UdpSocket::bind(bind).await.map_err(unreachable)?;
        s.connect(server).await.map_err(unreachable)?;
        s.send(request).await.map_err(unreachable)?;
        let mut buf = vec![0u8; 4096];
        let n = s.recv(&mut buf).await.map_err(unreachable)?;
        buf.truncate(n);
        Ok(buf)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::Dns(format!("serveur DNS {server} : pas de réponse en {} s", EXCHANGE_TIMEOUT.as_secs())))?
}

impl DnsPublisher for Rfc2136Dns {
    fn publish<'a>(&'a self, domain: &'a str, records: &'a [DnsRecord]) -> BoxFut<'a, Result<bool>> {
        Box::pin(async move {
            let crisis = self.crisis_name(domain)?;
            let mut expected: BTreeMap<(String, RecordType), BTreeSet<String>> = BTreeMap::new();
            let mut adds = Vec::new();
            for r in records {
                let record = to_record(r)?;
                if !crisis.zone_of(&record.name) {
                    return Err(Error::Invalid(format!(
                        "l'enregistrement {} {} n'est pas sous le domaine de la crise {domain}",
                        r.name, r.kind
                    )));
                }
                let key = (r.name.trim_end_matches('.').to_ascii_lowercase(), record.record_type());
                expected.entry(key).or_default().insert(expected_form(r)?);
                adds.push(record);
            }
            let mut m = self.update_message();
            for (name, kind) in expected.keys() {
                m.add_update(delete_rrset(fqdn(name)?, *kind));
            }
            for r in adds {
                m.add_update(r);
            }
            self.update(m).await?;
            self.propagated(&expected, self.config.propagation_timeout).await?;
            Ok(true)
        })
    }

    fn observe<'a>(&'a self, names: &'a [String]) -> BoxFut<'a, Result<Vec<ServerSurvey>>> {
        Box::pin(async move {
            let mut keys: BTreeSet<(String, RecordType)> = BTreeSet::new();
            for name in names {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                fqdn(&name)?;
                for kind in OWNED_KINDS {
                    keys.insert((name.clone(), record_type(kind)?));
                }
            }
            let servers = match self.servers().await {
                Ok(servers) => servers,
                // No server to ask is a check that cannot pass, said as such.
                Err(e) => {
                    return Ok(vec![ServerSurvey {
                        server: format!("primaire de la zone {}", self.config.zone),
                        serial: Err(e.to_string()),
                        records: Vec::new(),
                    }]);
                }
            };
            let mut out = Vec::new();
            for server in servers {
                let serial = match self.soa_serial(server).await {
                    Ok(serial) => serial,
                    Err(e) => {
                        out.push(ServerSurvey {
                            server: server.to_string(),
                            serial: Err(e.to_string()),
                            records: Vec::new(),
                        });
                        continue;
                    }
                };
                let mut records = Vec::new();
                for (name, kind) in &keys {
                    let served = self
                        .served(server, name, *kind)
                        .await
                        .map(|s| s.into_iter().collect())
                        .map_err(|e| e.to_string());
                    records.push(Observed {
                        server: server.to_string(),
                        name: name.clone(),
                        kind: kind.to_string(),
                        served,
                    });
                }
                out.push(ServerSurvey { server: server.to_string(), serial: Ok(serial), records });
            }
            Ok(out)
        })
    }

    fn canary<'a>(&'a self, name: &'a str, value: &'a str) -> BoxFut<'a, Result<bool>> {
        Box::pin(async move { Rfc2136Dns::canary(self, name, value).await.map(|()| true) })
    }

    fn zone(&self) -> Option<&str> {
        Some(&self.config.zone)
    }

    fn remove<'a>(&'a self, domain: &'a str, records: &'a [DnsRecord]) -> BoxFut<'a, Result<bool>> {
        Box::pin(async move {
            let crisis = self.crisis_name(domain)?;
            let mut names: BTreeSet<String> =
                crisis_names(domain).into_iter().map(|n| n.to_ascii_lowercase()).collect();
            for r in records {
                if crisis.zone_of(&fqdn(&r.name)?) {
                    names.insert(r.name.trim_end_matches('.').to_ascii_lowercase());
                }
            }
            // Only the types Repli publishes, set by set: the key needs no right to delete
            // anything else (a Knot ACL with `update-type` refuses a delete-all, type ANY).
            let mut m = self.update_message();
            for name in &names {
                for kind in PUBLISHED_TYPES {
                    m.add_update(delete_rrset(fqdn(name)?, kind));
                }
            }
            self.update(m).await?;
            // Gone from every server: nothing of the kinds Repli publishes at any of these names.
            let mut expected = BTreeMap::new();
            for name in names {
                for kind in PUBLISHED_TYPES {
                    expected.insert((name.clone(), kind), BTreeSet::new());
                }
            }
            self.propagated(&expected, self.config.propagation_timeout).await?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Rfc2136Config {
        Rfc2136Config {
            primary: Some("127.0.0.1:53".parse().unwrap()),
            zone: "secours-amp.test".into(),
            key_name: "repli".into(),
            key: b"a-secret-that-must-never-be-printed".to_vec(),
            algorithm: "hmac-sha256".into(),
            servers: Vec::new(),
            propagation_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_system_resolvers_are_read_from_resolv_conf() {
        let text = "# comment\nsearch exemple.fr\nnameserver 192.0.2.1\nnameserver  2001:db8::1\nnameserver fe80::1%eth0\nnameserver pas-une-adresse\noptions edns0\n";
        let found: Vec<String> = parse_resolv_conf(text).iter().map(ToString::to_string).collect();
        assert_eq!(found, ["192.0.2.1:53", "[2001:db8::1]:53", "[fe80::1]:53"]);
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn the_key_is_never_printed() {
        let dns = Rfc2136Dns::new(config()).unwrap();
        for shown in [format!("{dns:?}"), format!("{:?}", config())] {
            assert!(!shown.contains("a-secret") && !shown.contains("97, 45, 115"), "{shown}");
        }
    }

    #[test]
    fn bad_settings_and_values_are_refused_with_their_reason() {
        let mut c = config();
        c.algorithm = "hmac-md5".into();
        assert!(matches!(Rfc2136Dns::new(c), Err(Error::Invalid(m)) if m.contains("hmac-md5")));
        let mut c = config();
        c.key = vec![1; 8];
        assert!(matches!(Rfc2136Dns::new(c), Err(Error::Invalid(m)) if m.contains("16 octets")));
        let rec = |kind: &str, value: &str| DnsRecord {
            name: "a.secours-amp.test".into(),
            kind: kind.into(),
            ttl: 60,
            value: value.into(),
            service: String::new(),
            optional: false,
        };
        assert!(to_record(&rec("MX", "dix mail.example.")).is_err());
        assert!(to_record(&rec("SRV", "100 1")).is_err());
        assert!(to_record(&rec("A", "192.0.2.1")).is_err(), "only what Microsoft 365 asks for");
        assert!(to_record(&rec("CNAME", "a..b")).is_err());
        assert_eq!(expected_form(&rec("MX", "10 Mail.Example")).unwrap(), "10 mail.example.");
    }
}
