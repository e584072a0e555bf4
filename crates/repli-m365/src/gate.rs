//! The tenant's throttle gate: one per Graph connection, so every operation of every crisis
//! provisioned against the same tenant draws on what Graph admits, and none waits for the whole
//! of another.
//!
//! Graph throttles per app and tenant and answers 429 with a `Retry-After` (Microsoft Graph
//! throttling guidance: honour the wait, then reduce the rate). A client that sends in rounds
//! and waits the full `Retry-After` after each (often whole seconds, or an HTTP-date) idles for
//! most of every second. The gate instead:
//! - before anything is known, lets at most [`PROBE_ITEMS`] batched items go unanswered at
//!   once, until that many came back unthrottled (then it is open: no limit until a 429), so a
//!   tenant throttled at a low rate answers 429 to a few dozen items, not to a wave of 200;
//! - on a 429, stays closed for the `Retry-After` Graph asked, and learns what Graph admitted in
//!   that window: the requests sent in the window up to the moment the 429 arrived, less those
//!   Graph throttled. A `$batch` counts as its items, not as one more: Graph evaluates "requests
//!   in a batch … individually against throttling limits" (throttling.md, "Throttling and
//!   batching"), and its limits are those of the services the requests reach ("Service-specific
//!   limits"), which the envelope reaches none of. A tenant that counts it anyway shows it by
//!   refusing a `$batch` whole with a 429 (its items then never reached a limit): from then on
//!   the gate counts each `$batch` as one more, so that it does not learn a limit of items
//!   that every smaller batch would overrun;
//! - from then on sends no more than that within any [`WINDOW`] of its own clock — a little
//!   longer than Graph's second, for the spread of the network —, as soon as the window allows,
//!   instead of in rounds;
//! - grows the limit by a quarter only after [`GROWTH_QUIET`] without a 429 while work waited
//!   on it (demand resuming after [`IDLE`] starts that clock again), so a loosened limit is found again without overrunning a steady one; a growth that
//!   Graph refuses at once (a 429 within [`GROWTH_PROVEN`]) doubles the quiet before the next
//!   one, up to [`GROWTH_QUIET_MAX`], and one that holds brings it back: each refused growth
//!   costs a whole `Retry-After`, and an hour-long export against a steady limit would
//!   otherwise pay one every ten seconds;
//! - serves batches first come, first served, one at a time: a 200-agent kit and a
//!   20-agent kit activated together take turns, the small one is not queued behind the whole
//!   of the large one;
//! - lets a lone request (one call, or a batch of one) that is not part of a bulk stream go
//!   ahead of the batches, and holds back from them the room the lone requests waiting need, up
//!   to a quarter of the limit: those are the steps of some kit's chain (group, Team, channels,
//!   isolation), each waiting on the one before, while a wave of licences has nothing waiting
//!   on it but the meeting. Behind a wave, the chain would lose a whole window at each of its
//!   steps. A bulk stream of single requests (an export's listings and downloads) takes its
//!   turn with the batches instead, or it would starve every other crisis's waves.

use std::collections::VecDeque;
use std::time::Duration;

use repli_core::m365::GraphPace;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Graph's limit of requests per `$batch`.
pub(crate) const MAX_BATCH: usize = 20;

/// Batched items that may be unanswered at once before any limit is known (three batches: a
/// 50-agent kit's waves fit and are never held back).
pub(crate) const PROBE_ITEMS: usize = 3 * MAX_BATCH;

/// The window the gate counts in: Graph's second, plus a margin for the spread of arrival
/// times (a request sent within one window of ours must arrive within one of Graph's).
pub(crate) const WINDOW: Duration = Duration::from_millis(1025);

/// A gate that gave no leave for this long is idle: demand that resumes (the next kit, hours
/// later, or the first after a restart that recalled a kept limit) has not yet proven
/// anything, and the limit grows only after [`GROWTH_QUIET`] of it.
pub(crate) const IDLE: Duration = Duration::from_millis(2 * 1025);

/// Without a 429 for this long, and with work waiting, the limit grows by a quarter.
pub(crate) const GROWTH_QUIET: Duration = Duration::from_secs(10);

/// The longest quiet before growing, after growths Graph refused one after the other.
pub(crate) const GROWTH_QUIET_MAX: Duration = Duration::from_secs(160);

/// A growth is proven once Graph admitted this long of it without a 429.
pub(crate) const GROWTH_PROVEN: Duration = Duration::from_millis(3 * 1025);

/// What the gate has let through: one request (or `$batch`) and what Graph counts for it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    id: u64,
    at: Instant,
    /// Requests as Graph counts them: 1, or a batch's items (plus the batch, on a tenant that
    /// counts it). Once answered, only those Graph admitted.
    units: usize,
    answered: bool,
    batch: bool,
    /// Answered, and Graph served the `$batch` itself (not refused whole with a 429).
    outer_admitted: bool,
}

/// A 429 being learnt from: the requests sent up to `until` (when the first 429 arrived) in
/// the window before `first` (the throttled request sent first).
#[derive(Debug, Clone, Copy)]
struct Episode {
    first: Instant,
    until: Instant,
    /// The limit before this 429 (it can only come down from there).
    before: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    /// Requests Graph admits per [`WINDOW`], once a 429 told (None: no limit seen).
    limit: Option<usize>,
    /// [`PROBE_ITEMS`] came back unthrottled: batches go out whole until a 429.
    open: bool,
    answered_clean: usize,
    /// Batched items sent and not answered yet.
    unanswered: usize,
    log: VecDeque<Sent>,
    closed_until: Option<Instant>,
    episode: Option<Episode>,
    /// The last 429, the last growth of the limit, or the end of an idle spell: the growth
    /// clock.
    last_change: Option<Instant>,
    /// The last leave given: after [`IDLE`] without one, the growth clock starts again.
    last_sent: Option<Instant>,
    next_id: u64,
    /// Lone requests waiting for room: held back from the batches.
    lone_waiting: usize,
    /// The quiet before the next growth (None: [`GROWTH_QUIET`]).
    growth_quiet: Option<Duration>,
    /// The last growth, while not yet proven.
    grown_at: Option<Instant>,
    /// Graph refused a `$batch` whole with a 429: this tenant counts the batch itself against
    /// its limit, besides its items (not documented: see the module doc).
    batch_counted: bool,
}

/// Why a request cannot go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The window (or a `Retry-After`) ends then.
    At(Instant),
    /// The probe is full: an answer frees it.
    Answer,
}

/// Leave to send `items` (a batch, or one request): answer it with [`Gate::answered`].
#[derive(Debug)]
pub(crate) struct Ticket {
    id: u64,
    at: Instant,
    pub items: usize,
    batch: bool,
}

/// How Graph answered what a [`Ticket`] let through.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Answer {
    /// Items Graph served (any status but 429).
    pub admitted: usize,
    /// The `$batch` request itself was served (its items then have their own answers); false
    /// when it was refused whole with a 429.
    pub outer_admitted: bool,
    /// The `Retry-After` of a 429 (None: nothing throttled).
    pub throttled: Option<Duration>,
}

impl State {
    /// What this gate has settled on, as replid keeps it: no limit while a growth is not yet
    /// proven or a 429 is still being learnt from (its limit may be higher than what Graph
    /// admits), only whether batches count.
    fn pace(&self, now: Instant) -> GraphPace {
        let unsettled = self.episode.is_some_and(|e| now <= e.until + 2 * WINDOW)
            || self.grown_at.is_some_and(|t| now.duration_since(t) < GROWTH_PROVEN);
        if unsettled {
            // A `$batch` refused whole is a fact, whatever the limit turns out to be.
            return GraphPace { batch_counted: self.batch_counted, ..GraphPace::default() };
        }
        GraphPace {
            limit_per_second: self.limit.and_then(|l| u32::try_from(l).ok()),
            open: self.limit.is_none() && self.open,
            batch_counted: self.batch_counted,
        }
    }

    /// Starts from a pace kept from an earlier run, unless this gate has learnt one itself. A
    /// recalled limit grows only after [`GROWTH_QUIET`] of demand (the gate starts idle), so
    /// the first wave of the next kit fills the window without overrunning it.
    fn recall(&mut self, pace: GraphPace) {
        if self.limit.is_some() || self.open || self.episode.is_some() {
            return;
        }
        match pace.limit_per_second {
            Some(l) => self.limit = Some((l as usize).max(1)),
            None => self.open = pace.open,
        }
        self.batch_counted |= pace.batch_counted;
    }

    fn purge(&mut self, now: Instant) {
        while self.log.front().is_some_and(|s| s.at + WINDOW <= now && (s.answered || s.at + 4 * WINDOW <= now)) {
            self.log.pop_front();
        }
    }

    fn used(&self, now: Instant) -> usize {
        self.log.iter().filter(|s| s.at + WINDOW > now).map(|s| s.units).sum()
    }

    fn grant(&mut self, now: Instant, want: usize, batch: bool) -> Result<Ticket, Wake> {
        if let Some(t) = self.closed_until.filter(|t| *t > now) {
            return Err(Wake::At(t));
        }
        self.purge(now);
        let want = want.max(1);
        let own = usize::from(batch && self.batch_counted);
        let items = match self.limit {
            None if self.open || !batch => want,
            None => match PROBE_ITEMS.saturating_sub(self.unanswered) {
                0 => return Err(Wake::Answer),
                left => want.min(left),
            },
            Some(limit) => {
                if self.last_sent.is_none_or(|t| now.duration_since(t) > IDLE) {
                    self.last_change = Some(now);
                }
                let used = self.used(now);
                let mut limit = limit;
                if self.grown_at.is_some_and(|t| now.duration_since(t) >= GROWTH_PROVEN) {
                    // The last growth held: the tenant admits it.
                    self.grown_at = None;
                    self.growth_quiet = None;
                }
                let quiet = self.growth_quiet.unwrap_or(GROWTH_QUIET);
                if used + own >= limit && self.last_change.is_none_or(|t| now.duration_since(t) >= quiet) {
                    // Work waits on the limit and Graph has not throttled for a while.
                    limit += limit.div_ceil(4);
                    self.limit = Some(limit);
                    self.last_change = Some(now);
                    self.grown_at = Some(now);
                }
                let held = if batch && want > 1 { self.lone_waiting.min(limit / 4) } else { 0 };
                let room = limit.saturating_sub(used + own + held);
                if room == 0 && used > 0 {
                    let next = self.log.iter().find(|s| s.at + WINDOW > now).map_or(now, |s| s.at + WINDOW);
                    return Err(Wake::At(next));
                }
                // An empty window always lets one request (or a batch of one) through.
                want.min(room.max(1))
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.last_sent = Some(now);
        self.log.push_back(Sent { id, at: now, units: items + own, answered: false, batch, outer_admitted: false });
        if batch {
            self.unanswered += items;
        }
        Ok(Ticket { id, at: now, items, batch })
    }

    fn answered(&mut self, ticket: &Ticket, answer: Answer, now: Instant) {
        if ticket.batch {
            self.unanswered = self.unanswered.saturating_sub(ticket.items);
        }
        if ticket.batch && !answer.outer_admitted && !self.batch_counted {
            // The batch itself was throttled: it counts. The batches Graph served in the
            // window counted one more than their items, and the limit this 429 corrects was
            // one of items: what the window admitted decides alone.
            self.batch_counted = true;
            for s in self.log.iter_mut().filter(|s| s.batch && s.outer_admitted) {
                s.units += 1;
            }
            if let Some(e) = self.episode.as_mut() {
                e.before = None;
            }
            tracing::debug!("graph throttled a $batch whole: each batch counts against the limit");
        }
        let own = usize::from(ticket.batch && self.batch_counted && answer.outer_admitted);
        if let Some(s) = self.log.iter_mut().find(|s| s.id == ticket.id) {
            s.units = if ticket.batch { answer.admitted + own } else { usize::from(answer.throttled.is_none()) };
            s.answered = true;
            s.outer_admitted = ticket.batch && answer.outer_admitted;
        }
        match answer.throttled {
            Some(wait) => {
                // Only a request sent after the growth tells that Graph refused it.
                if self.grown_at.is_some_and(|t| ticket.at >= t)
                    && self.grown_at.take().is_some_and(|t| now.duration_since(t) < GROWTH_PROVEN)
                {
                    // Refused at once: the limit is steady; probe it less often.
                    let quiet = self.growth_quiet.unwrap_or(GROWTH_QUIET);
                    self.growth_quiet = Some((quiet * 2).min(GROWTH_QUIET_MAX));
                }
                self.closed_until = Some(self.closed_until.map_or(now + wait, |t| t.max(now + wait)));
                self.last_change = Some(now);
                self.open = false;
                self.answered_clean = 0;
                self.episode = Some(match self.episode {
                    Some(e) if ticket.at <= e.until => Episode { first: e.first.min(ticket.at), ..e },
                    _ => Episode { first: ticket.at, until: now, before: self.limit },
                });
            }
            None if ticket.batch && self.limit.is_none() => {
                self.answered_clean += ticket.items;
                self.open |= self.answered_clean >= PROBE_ITEMS;
            }
            None => {}
        }
        self.learn(now);
        if answer.throttled.is_some() {
            tracing::debug!(limit = ?self.limit, admitted = answer.admitted, "graph throttled: pace learnt");
        }
    }

    /// While a 429 is being learnt from: what Graph admitted in its window, as answers come in.
    fn learn(&mut self, now: Instant) {
        let Some(e) = self.episode else { return };
        let from = e.first.checked_sub(WINDOW).unwrap_or(e.first);
        let in_range = |s: &&Sent| s.at > from && s.at <= e.until;
        let seen: usize = self.log.iter().filter(in_range).map(|s| s.units).sum();
        let seen = seen.max(1);
        self.limit = Some(e.before.map_or(seen, |b| b.min(seen)));
        let settled = self.log.iter().filter(in_range).all(|s| s.answered);
        if settled || now > e.until + 2 * WINDOW {
            self.episode = None;
        }
    }
}

/// A lone request waiting at the gate, counted while it waits.
struct LoneWaiting<'a>(&'a std::sync::Mutex<State>);

impl<'a> LoneWaiting<'a> {
    fn new(state: &'a std::sync::Mutex<State>) -> Self {
        if let Ok(mut s) = state.lock() {
            s.lone_waiting += 1;
        }
        Self(state)
    }
}

impl Drop for LoneWaiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.lone_waiting = s.lone_waiting.saturating_sub(1);
        }
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: std::sync::Mutex<State>,
    /// Waiters in arrival order (tokio's mutex is fair).
    turn: tokio::sync::Mutex<()>,
    answers: Notify,
}

impl Gate {
    /// The limit learnt from 429s, in requests per window (about a second).
    pub fn limit(&self) -> Option<usize> {
        self.state.lock().ok().and_then(|s| s.limit)
    }

    /// What the gate knows of the tenant's pace ([`GraphPace`]).
    pub fn pace(&self) -> GraphPace {
        self.state.lock().map(|s| s.pace(Instant::now())).unwrap_or_default()
    }

    /// Starts from a pace kept from an earlier run (nothing changes once this gate learnt one).
    pub fn recall(&self, pace: GraphPace) {
        if let Ok(mut s) = self.state.lock() {
            s.recall(pace);
        }
    }

    /// Requests sent in the current window, as Graph counts them.
    pub fn sent_in_window(&self) -> usize {
        self.state.lock().map(|s| s.used(Instant::now())).unwrap_or(0)
    }

    /// Waits for leave to send up to `want` items (`batch`: as one `$batch`; otherwise one
    /// request). The ticket may carry fewer items than asked: as many as the window has room for.
    /// `bulk`: one of a long stream of single requests (an export), which takes its turn with
    /// the batches instead of going ahead of them.
    pub async fn admit(&self, want: usize, batch: bool, bulk: bool) -> Ticket {
        let lone = want <= 1 && !bulk;
        // Batches take turns; a lone request does not queue behind them (see the module doc).
        let _turn = if lone { None } else { Some(self.turn.lock().await) };
        let _waiting = lone.then(|| LoneWaiting::new(&self.state));
        loop {
            let notified = self.answers.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake = match self.state.lock() {
                Ok(mut s) => match s.grant(Instant::now(), want, batch) {
                    Ok(ticket) => return ticket,
                    Err(wake) => wake,
                },
                // A poisoned gate paces nothing rather than stopping every crisis.
                Err(_) => return Ticket { id: u64::MAX, at: Instant::now(), items: want.max(1), batch },
            };
            match wake {
                Wake::At(t) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(t) => {}
                        () = &mut notified => {}
                    }
                }
                // An answer frees the probe; a lost one (a request dropped with its caller) is
                // given up on after a while.
                Wake::Answer => {
                    tokio::select! {
                        () = tokio::time::sleep(4 * WINDOW) => {
                            if let Ok(mut s) = self.state.lock() {
                                s.unanswered = 0;
                            }
                        }
                        () = &mut notified => {}
                    }
                }
            }
        }
    }

    /// How Graph answered what `ticket` let through.
    pub fn answered(&self, ticket: &Ticket, answer: Answer) {
        if let Ok(mut s) = self.state.lock() {
            s.answered(ticket, answer, Instant::now());
        }
        self.answers.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(admitted: usize, throttled: bool) -> Answer {
        Answer { admitted, outer_admitted: true, throttled: throttled.then_some(Duration::from_secs(1)) }
    }

    /// Batches of 20 asked at `at` until the gate says no: the leave each was given.
    fn wave(s: &mut State, at: Instant) -> Vec<Ticket> {
        std::iter::from_fn(|| s.grant(at, 20, true).ok()).collect()
    }

    /// The items a wave at `at` was let through.
    fn items(s: &mut State, at: Instant) -> Vec<usize> {
        wave(s, at).iter().map(|t| t.items).collect()
    }

    #[test]
    fn a_large_first_wave_is_probed_then_goes_out_whole() {
        let t0 = Instant::now();
        let mut s = State::default();
        let a = s.grant(t0, 20, true).unwrap();
        let b = s.grant(t0, 20, true).unwrap();
        let c = s.grant(t0, 20, true).unwrap();
        assert_eq!(s.grant(t0, 20, true).unwrap_err(), Wake::Answer, "three batches unanswered: the probe is full");
        assert!(s.grant(t0, 1, false).is_ok(), "single requests are not held by the probe");
        for t in [&a, &b] {
            s.answered(t, answer(20, false), t0);
        }
        assert_eq!(s.grant(t0, 20, true).unwrap().items, 20, "answers free the probe");
        s.answered(&c, answer(20, false), t0);
        assert!(s.open, "sixty items admitted: no limit in sight");
        for _ in 0..10 {
            assert_eq!(s.grant(t0, 20, true).unwrap().items, 20);
        }
    }

    #[test]
    fn a_kept_pace_paces_the_first_wave_and_never_overrides_a_lesson() {
        let t0 = Instant::now();
        let mut s = State::default();
        s.recall(GraphPace { limit_per_second: Some(40), ..GraphPace::default() });
        assert_eq!(s.pace(t0), GraphPace { limit_per_second: Some(40), ..GraphPace::default() });
        // The first wave fills the window, no more, and no probe holds it back.
        let sent: usize = items(&mut s, t0).iter().sum();
        assert_eq!(sent, 40);
        // Not grown at once: a recalled limit is as fresh as a learnt one.
        let t1 = t0 + WINDOW;
        let sent: usize = items(&mut s, t1).iter().sum();
        assert_eq!(sent, 40);
        // A gate that has learnt for itself keeps its own lesson.
        s.recall(GraphPace { limit_per_second: Some(400), ..GraphPace::default() });
        assert_eq!(s.limit, Some(40));

        let mut open = State::default();
        open.recall(GraphPace { open: true, ..GraphPace::default() });
        for _ in 0..10 {
            assert_eq!(open.grant(t0, 20, true).unwrap().items, 20, "a tenant that never throttled: no probe");
        }
        assert_eq!(open.pace(t0), GraphPace { open: true, ..GraphPace::default() });
        let mut fresh = State::default();
        fresh.recall(GraphPace::default());
        assert!(fresh.pace(t0).is_unknown());
        assert!(fresh.grant(t0, 20, true).is_ok() && fresh.grant(t0, 20, true).is_ok());
        assert!(fresh.grant(t0, 20, true).is_ok());
        assert_eq!(fresh.grant(t0, 20, true).unwrap_err(), Wake::Answer, "nothing recalled: the probe holds");
    }

    #[test]
    fn a_429_teaches_what_graph_admitted_and_the_pace_follows_it() {
        let t0 = Instant::now();
        let mut s = State { open: true, ..State::default() };
        let head = s.grant(t0, 1, false).unwrap();
        s.answered(&head, answer(0, false), t0);
        // Five batches at once; Graph admits 40 requests in its window: the head, the first
        // batch's 20 items and 19 of the second's; every item of the others is throttled.
        let burst: Vec<Ticket> = (0..5).map(|_| s.grant(t0, 20, true).unwrap()).collect();
        let late = t0 + Duration::from_millis(100);
        // Answers arrive in any order; the limit settles once all are in.
        s.answered(
            &burst[3],
            Answer { admitted: 0, outer_admitted: true, throttled: Some(Duration::from_secs(1)) },
            late,
        );
        s.answered(&burst[1], answer(19, true), late);
        s.answered(&burst[0], answer(20, false), late);
        s.answered(
            &burst[4],
            Answer { admitted: 0, outer_admitted: true, throttled: Some(Duration::from_secs(1)) },
            late,
        );
        s.answered(
            &burst[2],
            Answer { admitted: 0, outer_admitted: true, throttled: Some(Duration::from_secs(1)) },
            late,
        );
        assert_eq!(s.limit, Some(1 + 20 + 19), "the head request and what the window admitted");
        assert!(s.episode.is_none(), "every answer of the window is in");
        assert_eq!(
            s.grant(late, 20, true).unwrap_err(),
            Wake::At(late + Duration::from_secs(1)),
            "Retry-After honoured"
        );
        // From the end of the wait: no more than the limit per window, as soon as it has room.
        let t1 = late + Duration::from_secs(1);
        let sent: usize = items(&mut s, t1).iter().sum();
        assert_eq!(sent, 40);
        let Err(Wake::At(next)) = s.grant(t1, 20, true) else { panic!("the window is full") };
        assert_eq!(next, t1 + WINDOW);
        assert!(s.grant(next, 20, true).is_ok());
    }

    #[test]
    fn a_batch_refused_whole_teaches_that_the_tenant_counts_each_batch() {
        // Documented: a batch's requests count, the batch does not. A tenant counting it too
        // (40 a window) shows it by refusing the third batch whole; answers in any order.
        for c_first in [false, true] {
            let t0 = Instant::now();
            let mut s = State { open: true, ..State::default() };
            let burst: Vec<Ticket> = (0..3).map(|_| s.grant(t0, 20, true).unwrap()).collect();
            let late = t0 + Duration::from_millis(100);
            let refused = Answer { admitted: 0, outer_admitted: false, throttled: Some(Duration::from_secs(1)) };
            if c_first {
                s.answered(&burst[2], refused, late);
            }
            s.answered(&burst[0], answer(20, false), late);
            s.answered(&burst[1], answer(18, true), late);
            if !c_first {
                s.answered(&burst[2], refused, late);
            }
            assert!(s.batch_counted);
            assert_eq!(s.limit, Some(21 + 19), "each served batch and its admitted items ({c_first})");
            // From then on a batch is its items and itself: 21 and 19 fill the window.
            let t1 = late + Duration::from_secs(1);
            assert_eq!(items(&mut s, t1), [20, 18], "{c_first}");
            // Kept, and recalled by a restarted gate: its first wave is paced so.
            let kept = s.pace(t1);
            assert_eq!(kept, GraphPace { limit_per_second: Some(40), open: false, batch_counted: true });
            let mut restarted = State::default();
            restarted.recall(kept);
            assert_eq!(items(&mut restarted, t1), [20, 18], "{c_first}");
        }
        // A tenant that does not count it never refuses a batch whole, even when it throttles
        // every item of one: items only.
        let t0 = Instant::now();
        let mut s = State { limit: Some(40), ..State::default() };
        let sent = wave(&mut s, t0);
        assert_eq!(sent.iter().map(|t| t.items).collect::<Vec<_>>(), [20, 20]);
        s.answered(&sent[0], answer(20, false), t0 + Duration::from_millis(100));
        s.answered(&sent[1], answer(0, true), t0 + Duration::from_millis(100));
        assert!(!s.batch_counted);
        assert_eq!(s.limit, Some(20), "the items Graph admitted");
    }

    #[test]
    fn a_batch_served_with_every_item_throttled_still_counted_once_batches_are_found_to() {
        // 11 a window, each batch counted: the first batch and its 9 items take 10; the second
        // is served (its envelope the 11th) with every item throttled; the third is refused
        // whole. Answered in that order, before the gate knows batches count.
        let t0 = Instant::now();
        let mut s = State { open: true, ..State::default() };
        let sent: Vec<Ticket> = (0..3).map(|_| s.grant(t0, 9, true).unwrap()).collect();
        let late = t0 + Duration::from_millis(100);
        s.answered(&sent[0], answer(9, false), late);
        s.answered(&sent[1], answer(0, true), late);
        s.answered(
            &sent[2],
            Answer { admitted: 0, outer_admitted: false, throttled: Some(Duration::from_secs(1)) },
            late,
        );
        assert!(s.batch_counted);
        assert_eq!(s.limit, Some(9 + 1 + 1), "each batch Graph served, and the items it admitted");
    }

    #[test]
    fn the_limit_grows_only_after_a_quiet_stretch_under_demand() {
        let t0 = Instant::now();
        let mut s = State { limit: Some(40), last_change: Some(t0), ..State::default() };
        let mut at = t0;
        let mut grew = None;
        for _ in 0..15 {
            while s.grant(at, 20, true).is_ok() {}
            if s.limit != Some(40) && grew.is_none() {
                grew = Some(at);
            }
            at += WINDOW;
        }
        let grew = grew.expect("the limit grew");
        assert!(grew.duration_since(t0) >= GROWTH_QUIET, "not before {GROWTH_QUIET:?}");
        assert_eq!(s.limit, Some(50), "by a quarter, then quiet again");
        // A 429 brings it back to what Graph admitted.
        let t = s.grant(at, 20, true).unwrap();
        s.answered(&t, answer(5, true), at);
        assert_eq!(s.limit, Some(5), "the five items Graph admitted in its window");
    }

    #[test]
    fn demand_after_an_idle_spell_waits_its_quiet_before_growing_and_an_unproven_growth_is_not_kept() {
        let t0 = Instant::now();
        let mut s = State::default();
        s.recall(GraphPace { limit_per_second: Some(40), ..GraphPace::default() });
        // The first kit comes a minute after the restart: its waves fill the window, no more,
        // until it has kept the gate busy for the quiet.
        let start = t0 + Duration::from_secs(60);
        let mut at = start;
        let grew = loop {
            let sent: usize = items(&mut s, at).iter().sum();
            if sent > 40 {
                break at;
            }
            assert!(at.duration_since(start) < 2 * GROWTH_QUIET, "the limit never grew under sustained demand");
            at += WINDOW;
        };
        assert!(grew.duration_since(start) >= GROWTH_QUIET, "not at the first wave");
        assert_eq!(s.limit, Some(50));
        // The growth is not proven yet: nothing to keep, not 50.
        assert!(s.pace(grew).is_unknown(), "{:?}", s.pace(grew));
        at = grew + GROWTH_PROVEN;
        assert!(s.grant(at, 1, false).is_ok());
        assert_eq!(s.pace(at).limit_per_second, Some(50), "held: kept");
        // An hour of silence, then demand again: the clock starts over.
        let later = at + Duration::from_secs(3600);
        let sent: usize = items(&mut s, later).iter().sum();
        assert_eq!(sent, 50, "no growth at the first wave after an idle spell");
    }

    #[test]
    fn a_refused_growth_doubles_the_quiet_before_the_next_and_a_held_one_resets_it() {
        let t0 = Instant::now();
        let mut s = State { limit: Some(40), last_change: Some(t0), ..State::default() };
        // Demand at the limit, every window; Graph refuses any growth (a steady limit of 40).
        let mut at = t0;
        let mut growths = Vec::new();
        while at.duration_since(t0) < Duration::from_secs(120) {
            let sent = wave(&mut s, at);
            if s.grown_at == Some(at) {
                growths.push(at.duration_since(t0).as_secs());
            }
            // Graph admits 40 per window, a batch's items one by one.
            let mut room = 40usize;
            for t in &sent {
                let admitted = t.items.min(room);
                room -= admitted;
                let throttled = (admitted < t.items).then_some(Duration::from_secs(1));
                s.answered(t, Answer { admitted, outer_admitted: true, throttled }, at + Duration::from_millis(100));
            }
            at = s.closed_until.filter(|c| *c > at).unwrap_or(at + WINDOW).max(at + WINDOW);
        }
        assert!(growths.len() >= 3, "{growths:?}");
        let gaps: Vec<u64> = growths.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "each refused growth waits longer: {gaps:?}");
        assert!(gaps.last().is_some_and(|g| *g >= 35), "{gaps:?}");
        assert!(growths.len() <= 5, "five growths or fewer in two minutes, not twelve: {growths:?}");
        // A growth that holds (Graph loosened) brings the quiet back to its start.
        let quiet = s.growth_quiet.expect("lengthened");
        assert!(quiet > GROWTH_QUIET);
        s.closed_until = None;
        s.last_change = Some(at - quiet);
        s.log.clear();
        while s.grant(at, 20, true).is_ok() {}
        assert!(s.grown_at.is_some(), "grew");
        let later = at + GROWTH_PROVEN;
        let _ = s.grant(later, 1, false);
        assert_eq!(s.growth_quiet, None, "proven: back to {GROWTH_QUIET:?}");
    }

    #[test]
    fn lone_requests_waiting_hold_room_back_from_the_batches() {
        let t0 = Instant::now();
        let mut s = State { limit: Some(30), last_change: Some(t0), ..State::default() };
        let first = s.grant(t0, 20, true).unwrap();
        assert_eq!(first.items, 20);
        // Two steps of a chain wait: a batch leaves them their room.
        s.lone_waiting = 2;
        assert_eq!(s.grant(t0, 20, true).unwrap().items, 30 - 20 - 2, "the batch takes what the lone ones leave");
        assert!(s.grant(t0, 1, false).is_ok());
        assert!(s.grant(t0, 1, false).is_ok());
        // However many wait, a batch keeps three quarters of the limit.
        let mut s3 = State { limit: Some(40), last_change: Some(t0), lone_waiting: 100, ..State::default() };
        assert_eq!(s3.grant(t0, 20, true).unwrap().items, 20);
        assert_eq!(s3.grant(t0, 20, true).unwrap().items, 40 - 20 - 10);
        // A lone request is not held back by the others waiting.
        let mut s2 = State { limit: Some(8), last_change: Some(t0), lone_waiting: 2, ..State::default() };
        assert!(s2.grant(t0, 1, false).is_ok());
        assert_eq!(s2.grant(t0, 20, true).unwrap().items, 8 - 1 - 2, "the batch leaves the two waiting their room");
    }

    type Order = std::sync::Arc<std::sync::Mutex<Vec<(&'static str, usize, Instant)>>>;

    /// A gate that has learnt `limit` (as after a 429), and the order its waiters get through.
    fn gate_with_limit(limit: usize) -> (std::sync::Arc<Gate>, Order) {
        let gate = std::sync::Arc::new(Gate::default());
        {
            let mut s = gate.state.lock().unwrap();
            s.limit = Some(limit);
            s.last_change = Some(Instant::now());
        }
        (gate, Order::default())
    }

    /// A waiter asking the gate for `want` items, recorded as `name` once let through.
    fn waiter(
        gate: &std::sync::Arc<Gate>,
        order: &Order,
        name: &'static str,
        want: usize,
        batch: bool,
        bulk: bool,
    ) -> tokio::task::JoinHandle<()> {
        let (g, o) = (gate.clone(), order.clone());
        tokio::spawn(async move {
            let t = g.admit(want, batch, bulk).await;
            o.lock().unwrap().push((name, t.items, t.at));
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_goes_ahead_of_the_queued_batches() {
        let (gate, order) = gate_with_limit(20);
        let full = gate.admit(20, true, false).await;
        // Two batches wait for the next window; then a step of a chain arrives.
        let first = waiter(&gate, &order, "first", 20, true, false);
        tokio::task::yield_now().await;
        let second = waiter(&gate, &order, "second", 20, true, false);
        tokio::task::yield_now().await;
        let lone = waiter(&gate, &order, "lone", 1, false, false);
        for w in [lone, first, second] {
            w.await.unwrap();
        }
        let order = order.lock().unwrap();
        let at = |name: &str| order.iter().find(|o| o.0 == name).unwrap_or_else(|| panic!("{order:?}"));
        let next = full.at + WINDOW;
        assert_eq!(at("lone").2, next, "the lone request goes in the next window: {order:?}");
        assert_eq!((at("first").1, at("first").2), (19, next), "the batch leaves it its room: {order:?}");
        assert_eq!(at("second").2, next + WINDOW, "the other batch waits its window: {order:?}");
        assert_eq!(gate.state.lock().unwrap().lone_waiting, 0, "no lone request counted once served");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bulk_stream_of_single_requests_takes_its_turn_with_the_batches() {
        let (gate, order) = gate_with_limit(20);
        let _full = gate.admit(20, true, false).await;
        let batch = waiter(&gate, &order, "batch", 20, true, false);
        tokio::task::yield_now().await;
        // An export's downloads, many at once: in line behind the batch, holding nothing back.
        let downloads: Vec<_> = (0..5).map(|_| waiter(&gate, &order, "download", 1, false, true)).collect();
        tokio::task::yield_now().await;
        assert_eq!(gate.state.lock().unwrap().lone_waiting, 0, "bulk requests do not hold room back");
        batch.await.unwrap();
        for d in downloads {
            d.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!((order[0].0, order[0].1), ("batch", 20), "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_turn() {
        let (gate, order) = gate_with_limit(20);
        // A large kit asks first and fills the window; a small one asks next; the large one
        // asks again: the small one goes first.
        let first = gate.admit(20, true, false).await;
        assert_eq!(first.items, 20);
        let small = waiter(&gate, &order, "small", 5, true, false);
        tokio::task::yield_now().await;
        let large = waiter(&gate, &order, "large", 20, true, false);
        small.await.unwrap();
        large.await.unwrap();
        let order = order.lock().unwrap();
        assert_eq!((order[0].0, order[0].1), ("small", 5), "{order:?}");
        assert_eq!((order[1].0, order[1].1), ("large", 15), "{order:?}");
        assert_eq!(gate.limit(), Some(20));
    }
}
