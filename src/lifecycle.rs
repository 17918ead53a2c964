//! The alert lifecycle, pure: what a message does to its incident, whether an operator's
//! request still applies, and whether a delivery may still go out. The store loads an
//! incident's snapshot ([`Incident`]), calls these functions and applies the [`Verdict`]
//! in the same transaction; nothing here does I/O, and every state is an enum that meets
//! its string only at the store boundary.
//!
//! An *incident* is everything said about one happening (an alert, its updates, its
//! cancellation, an operator's retraction). It is opened by its first message, which fixes
//! its status class, its trust and its event type.
//!
//! The rules (also in docs/ARCHITECTURE.md):
//! 1. A message changes only an incident of its own status class (actual, or practice:
//!    test, exercise, system, draft), and only when its source is at least as trusted
//!    (signed over unsigned) as the one that opened the incident.
//! 2. A follow-up (an update, a cancel) takes its incident's type and rule: the pipeline
//!    decides that before rendering, against committed state and what is ahead of it.
//! 3. Once an incident is cancelled or retracted, nothing of its alert or updates goes out
//!    again, whatever path tries (a later message, a retry, an approval, the hold timer, a
//!    restart): later messages are recorded, not posted.
//! 4. A cancellation or retraction goes to every channel where something of the incident
//!    is or may be out, and neither expires nor ages out.
//! 5. What is meant for staff (a non-actual or restricted event, a staff notice) never
//!    goes out on a public channel: checked again when its request begins, against the
//!    channel as configured then.
//! 6. A pause covers a request if it is in force in the transaction that begins it.

use crate::event::{MsgType, Priority, Status};

/// Whether a message is about something real. Messages of one class never change an
/// incident of the other: an exercise cannot cancel a real alert, nor a real message an
/// exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    Actual,
    /// Test, exercise, system and draft messages.
    Practice,
}

impl StatusClass {
    pub fn of(status: Status) -> Self {
        match status {
            Status::Actual => StatusClass::Actual,
            Status::Exercise | Status::Test | Status::System | Status::Draft => StatusClass::Practice,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Actual => "actual",
            StatusClass::Practice => "practice",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "actual" => Some(StatusClass::Actual),
            "practice" => Some(StatusClass::Practice),
            _ => None,
        }
    }
}

/// How far a message's source is trusted. Ordered: a message may change an incident only
/// if its trust is at least the opener's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trust {
    /// From a subscription that takes unsigned messages.
    Unsigned,
    /// Verified against a subscription's signing key.
    Signed,
    /// An operator's own request (a retraction) or the daemon's (a staff notice).
    Operator,
}

impl Trust {
    pub fn rank(self) -> i64 {
        match self {
            Trust::Unsigned => 0,
            Trust::Signed => 1,
            Trust::Operator => 2,
        }
    }

    pub fn from_rank(rank: i64) -> Self {
        match rank {
            ..=0 => Trust::Unsigned,
            1 => Trust::Signed,
            _ => Trust::Operator,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Unsigned => "unsigned",
            Trust::Signed => "signed",
            Trust::Operator => "operator",
        }
    }
}

/// What became of an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// It took effect (posted where its rule and the incident say so).
    Deliver,
    /// Past its `expires`: recorded, not posted (it still supersedes what is queued).
    Expired,
    /// Older than the rule's `max_age`: recorded, not posted (it still supersedes).
    Stale,
    /// Older than what the incident already has (a lower revision, or a message a stored
    /// one names as earlier).
    Superseded,
    /// A CAD snapshot with nothing new for the public.
    Unchanged,
    /// Nothing to post at all (a CAP Ack, an EIDO without an incident, an unmapped code).
    Ignored,
    /// Its incident was retracted by an operator.
    Retracted,
    /// Its incident was already cancelled or closed.
    Closed,
    /// From a less trusted source than the one that opened its incident.
    Untrusted,
    /// Names an incident of the other status class (never expected: the pipeline only
    /// joins incidents of the message's own class).
    OtherClass,
    /// A cancellation of an incident never seen: recorded, and it stops the alert should
    /// that still arrive.
    Unmatched,
}

impl std::fmt::Display for Disposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Deliver => "deliver",
            Disposition::Expired => "expired",
            Disposition::Stale => "stale",
            Disposition::Superseded => "superseded",
            Disposition::Unchanged => "unchanged",
            Disposition::Ignored => "ignored",
            Disposition::Retracted => "retracted",
            Disposition::Closed => "closed",
            Disposition::Untrusted => "untrusted",
            Disposition::OtherClass => "other_class",
            Disposition::Unmatched => "unmatched",
        }
    }

    pub const ALL: [Disposition; 11] = [
        Disposition::Deliver,
        Disposition::Expired,
        Disposition::Stale,
        Disposition::Superseded,
        Disposition::Unchanged,
        Disposition::Ignored,
        Disposition::Retracted,
        Disposition::Closed,
        Disposition::Untrusted,
        Disposition::OtherClass,
        Disposition::Unmatched,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for a person's approval.
    Held,
    Queued,
    /// An attempt was begun and its outcome is not recorded yet.
    InFlight,
    Sent,
    /// Failed for good (dead-lettered); `retry` may queue it again.
    Dead,
    Expired,
    Suppressed,
    /// Shadow mode: recorded, not posted.
    Shadow,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Held => "held",
            DeliveryState::Queued => "queued",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Sent => "sent",
            DeliveryState::Dead => "dead",
            DeliveryState::Expired => "expired",
            DeliveryState::Suppressed => "suppressed",
            DeliveryState::Shadow => "shadow",
        }
    }

    pub const ALL: [DeliveryState; 8] = [
        DeliveryState::Held,
        DeliveryState::Queued,
        DeliveryState::InFlight,
        DeliveryState::Sent,
        DeliveryState::Dead,
        DeliveryState::Expired,
        DeliveryState::Suppressed,
        DeliveryState::Shadow,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Not finished: it may still make a request.
    pub fn is_open(self) -> bool {
        matches!(self, DeliveryState::Held | DeliveryState::Queued | DeliveryState::InFlight)
    }
}

/// What a delivery does on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    /// The first post about an incident.
    Post,
    /// A follow-up: a reply to the channel's original post where the platform threads.
    Update,
    /// A cancellation notice; queued originals are suppressed instead of posted.
    Cancel,
    /// An operator's retraction or correction: a reply to the channel's original, then
    /// every post of the incident deleted where the platform allows. Never routed from an
    /// event; created by `bullhorn retract` / `correct`.
    Retract,
}

impl DeliveryKind {
    pub fn for_msg_type(m: MsgType) -> Self {
        match m {
            MsgType::Alert => DeliveryKind::Post,
            MsgType::Update => DeliveryKind::Update,
            MsgType::Cancel => DeliveryKind::Cancel,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Post => "post",
            DeliveryKind::Update => "update",
            DeliveryKind::Cancel => "cancel",
            DeliveryKind::Retract => "retract",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "post" => Some(DeliveryKind::Post),
            "update" => Some(DeliveryKind::Update),
            "cancel" => Some(DeliveryKind::Cancel),
            "retract" => Some(DeliveryKind::Retract),
            _ => None,
        }
    }

    /// Says what the incident is (an alert or its update), as opposed to ending it.
    pub fn is_news(self) -> bool {
        matches!(self, DeliveryKind::Post | DeliveryKind::Update)
    }
}

/// Who may see a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Any channel its rule names.
    Public,
    /// Only channels marked `public = false`: tests, exercises, drafts, restricted alerts,
    /// staff notices.
    Staff,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Public => "public",
            Audience::Staff => "staff",
        }
    }

    /// Unknown values read as `Staff`: the safe side.
    pub fn parse(s: &str) -> Self {
        if s == "public" { Audience::Public } else { Audience::Staff }
    }

    /// Whether a delivery for this audience may go out on a channel that is `public`.
    pub fn allows(self, public: bool) -> bool {
        self == Audience::Public || !public
    }
}

/// Whether an incident goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentState {
    Open,
    /// A cancel (or a CAD snapshot saying closed) arrived: final.
    Cancelled,
    /// An operator retracted it: final.
    Retracted,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Cancelled => "cancelled",
            IncidentState::Retracted => "retracted",
        }
    }

    /// Unknown values read as retracted: the safe side.
    pub fn parse(s: &str) -> Self {
        match s {
            "open" => IncidentState::Open,
            "cancelled" => IncidentState::Cancelled,
            _ => IncidentState::Retracted,
        }
    }
}

/// What an event did to its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Post,
    Update,
    Cancel,
    Retract,
    Correct,
    /// Nothing (superseded, unchanged, refused, ...).
    None,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Post => "post",
            Effect::Update => "update",
            Effect::Cancel => "cancel",
            Effect::Retract => "retract",
            Effect::Correct => "correct",
            Effect::None => "none",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "post" => Effect::Post,
            "update" => Effect::Update,
            "cancel" => Effect::Cancel,
            "retract" => Effect::Retract,
            "correct" => Effect::Correct,
            _ => Effect::None,
        }
    }

    /// The kind of delivery this effect posts.
    pub fn kind(self) -> Option<DeliveryKind> {
        match self {
            Effect::Post => Some(DeliveryKind::Post),
            Effect::Update => Some(DeliveryKind::Update),
            Effect::Cancel => Some(DeliveryKind::Cancel),
            Effect::Retract | Effect::Correct => Some(DeliveryKind::Retract),
            Effect::None => None,
        }
    }
}

/// A CAD snapshot (EIDO, mapped JSON): the digest of what a post may say, compared with
/// the incident's last one, and whether it closes the incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub digest: String,
    pub closed: bool,
}

/// An incident as the store holds it, with its earlier events and their deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub class: StatusClass,
    pub trust: Trust,
    pub event_type: String,
    pub state: IncidentState,
    pub events: Vec<PriorEvent>,
    pub deliveries: Vec<PriorDelivery>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorEvent {
    pub id: i64,
    pub revision: Option<i64>,
    pub effect: Effect,
    /// How far its source was trusted.
    pub trust: Trust,
    pub digest: Option<String>,
    /// A later event of the incident replaced it.
    pub superseded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorDelivery {
    pub id: i64,
    pub event_id: i64,
    pub channel: String,
    pub language: String,
    pub kind: DeliveryKind,
    pub state: DeliveryState,
    /// It has a post on record (sent, or a thread cut short).
    pub posted: bool,
    /// It may be out though not `sent`: a post on record, or an attempt whose outcome was
    /// never known.
    pub maybe_posted: bool,
}

impl PriorDelivery {
    /// Is or may be out on its channel.
    fn out(&self) -> bool {
        matches!(self.state, DeliveryState::Sent | DeliveryState::InFlight) || self.maybe_posted
    }
}

/// A delivery the pipeline rendered for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub channel: String,
    pub kind: DeliveryKind,
    pub language: String,
}

/// A message about to be recorded, as the lifecycle sees it.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Its store id (already inserted), for reasons such as "cancelled by event 12".
    pub event_id: i64,
    pub class: StatusClass,
    pub trust: Trust,
    pub msg_type: MsgType,
    pub revision: Option<i64>,
    pub snapshot: Option<&'a Snapshot>,
    /// The policy's view: deliver, expired or stale.
    pub assessed: Disposition,
    /// A stored message of its incident names this one as earlier (it arrived late).
    pub older_than_known: bool,
    /// Its rule holds it for approval.
    pub hold: bool,
    /// What was rendered for it, of every kind it may turn out to be.
    pub planned: &'a [Planned],
}

/// How an earlier delivery stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopHow {
    /// Queued or held, nothing out: closed as suppressed.
    Suppress,
    /// Queued between the steps of a thread: what went out stays on record as sent, so it
    /// can be replied to and cancelled.
    KeepPartial,
    /// In flight: marked withdrawn, so it stops after its request instead of retrying.
    Withdraw,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub delivery: i64,
    pub how: StopHow,
}

/// A delivery to create: `planned[index]`, replying to `reply_to`; in `language` when it
/// stands in for a language the message itself does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    pub index: usize,
    pub reply_to: Option<i64>,
    pub state: DeliveryState,
    pub language: Option<String>,
}

/// What a message (or an operator's retraction) does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub disposition: Disposition,
    pub effect: Effect,
    /// The incident's state after it, when it changes (`Open`: a more trusted message
    /// takes over an incident a less trusted one had closed).
    pub closes: Option<IncidentState>,
    /// The incident's trust after it, when a more trusted message takes it over.
    pub trust: Option<Trust>,
    /// Earlier events it replaces.
    pub supersedes: Vec<i64>,
    /// Earlier deliveries it stops, with `reason`.
    pub stop: Vec<Stop>,
    pub reason: String,
    pub create: Vec<Create>,
}

impl Verdict {
    fn only(disposition: Disposition, reason: impl Into<String>) -> Verdict {
        Verdict {
            disposition,
            effect: Effect::None,
            closes: None,
            trust: None,
            supersedes: Vec::new(),
            stop: Vec::new(),
            reason: reason.into(),
            create: Vec::new(),
        }
    }
}

/// What `msg` does to `incident` (`None`: it opens a new one).
pub fn on_message(msg: &Message<'_>, incident: Option<&Incident>) -> Verdict {
    let Some(inc) = incident else { return opening(msg) };
    if inc.class != msg.class {
        return Verdict::only(
            Disposition::OtherClass,
            format!("names an incident of the other status class ({})", inc.class.as_str()),
        );
    }
    if msg.trust < inc.trust {
        return Verdict::only(
            Disposition::Untrusted,
            format!(
                "from a {} source; the incident was opened by a {} one, so only such a source may change it",
                msg.trust.as_str(),
                inc.trust.as_str()
            ),
        );
    }
    // What a less trusted source did binds no more trusted one: a more trusted message
    // takes the incident over (an unsigned cancel or "revision 99" sent ahead of the
    // signed alert neither closes it nor makes it look old). Refused messages count for
    // nothing either.
    let binding = |e: &&PriorEvent| e.effect != Effect::None && e.trust >= msg.trust;
    let takeover = msg.trust > inc.trust;
    let retracted = inc.events.iter().filter(binding).any(|e| e.effect == Effect::Retract);
    let cancelled = inc.events.iter().filter(binding).any(|e| e.effect == Effect::Cancel);
    match inc.state {
        IncidentState::Retracted if retracted || !takeover => {
            return Verdict::only(Disposition::Retracted, "the incident was retracted");
        }
        IncidentState::Cancelled if cancelled || !takeover => {
            return Verdict::only(Disposition::Closed, "the incident was already cancelled");
        }
        _ => {}
    }
    let reopens = inc.state != IncidentState::Open;
    if msg.older_than_known {
        return Verdict::only(Disposition::Superseded, "a later message of the incident names this one");
    }
    if let Some(rev) = msg.revision
        && let Some(newest) = inc.events.iter().filter(binding).filter_map(|e| e.revision).max()
        && newest > rev
    {
        return Verdict::only(Disposition::Superseded, format!("revision {rev} is older than revision {newest}"));
    }
    let said = |e: &&PriorEvent| matches!(e.effect, Effect::Post | Effect::Update);
    let effect = match msg.snapshot {
        Some(s) if s.closed => Effect::Cancel,
        Some(s) => {
            let last = inc.events.iter().filter(binding).filter(|e| e.digest.is_some()).max_by_key(|e| e.id);
            if last.and_then(|e| e.digest.as_deref()) == Some(s.digest.as_str()) {
                return Verdict::only(Disposition::Unchanged, "no material change");
            }
            if inc.events.iter().any(|e| said(&e)) { Effect::Update } else { Effect::Post }
        }
        None => match msg.msg_type {
            MsgType::Cancel => Effect::Cancel,
            // An update of an incident nothing was said of yet is its first post.
            MsgType::Update if inc.events.iter().any(|e| said(&e)) => Effect::Update,
            MsgType::Update | MsgType::Alert => Effect::Post,
        },
    };
    let reason = match effect {
        Effect::Cancel => format!("cancelled by event {}", msg.event_id),
        _ => format!("superseded by event {}", msg.event_id),
    };
    // What of the incident has not gone out is stale now: a newer message replaces it, a
    // cancel stops it. Corrections and retractions are the operator's and stay.
    let stop = stops(inc, |d| d.kind.is_news());
    let supersedes = inc.events.iter().filter(|e| said(e) && !e.superseded).map(|e| e.id).collect();
    // A cancellation is posted whatever its own expiry says: what it cancels is out.
    let disposition = if effect == Effect::Cancel { Disposition::Deliver } else { msg.assessed };
    let create = if disposition == Disposition::Deliver { creations(msg, inc, effect) } else { Vec::new() };
    let closes = match effect {
        Effect::Cancel => Some(IncidentState::Cancelled),
        _ if reopens => Some(IncidentState::Open),
        _ => None,
    };
    Verdict { disposition, effect, closes, trust: takeover.then_some(msg.trust), supersedes, stop, reason, create }
}

/// A message with no incident yet opens one.
fn opening(msg: &Message<'_>) -> Verdict {
    let cancels = msg.msg_type == MsgType::Cancel || msg.snapshot.is_some_and(|s| s.closed);
    if cancels {
        // Nothing to cancel now; recorded as the incident's end, so an alert arriving
        // after its own cancellation is not posted.
        let mut v = Verdict::only(Disposition::Unmatched, "a cancellation of an incident never seen");
        v.effect = Effect::Cancel;
        v.closes = Some(IncidentState::Cancelled);
        return v;
    }
    let incident = Incident {
        class: msg.class,
        trust: msg.trust,
        event_type: String::new(),
        state: IncidentState::Open,
        events: Vec::new(),
        deliveries: Vec::new(),
    };
    let create =
        if msg.assessed == Disposition::Deliver { creations(msg, &incident, Effect::Post) } else { Vec::new() };
    Verdict {
        disposition: msg.assessed,
        effect: Effect::Post,
        closes: None,
        trust: None,
        supersedes: Vec::new(),
        stop: Vec::new(),
        reason: String::new(),
        create,
    }
}

/// How each open delivery of `inc` that `which` picks stops.
fn stops(inc: &Incident, which: impl Fn(&PriorDelivery) -> bool) -> Vec<Stop> {
    inc.deliveries
        .iter()
        .filter(|d| d.state.is_open() && which(d))
        .map(|d| Stop {
            delivery: d.id,
            how: match d.state {
                DeliveryState::InFlight => StopHow::Withdraw,
                _ if d.posted => StopHow::KeepPartial,
                _ => StopHow::Suppress,
            },
        })
        .collect()
}

/// What a reply on `channel` in `language` goes to, if something of the incident is or
/// may be out there: the latest correction (it replaced the alert, which it deleted where
/// the platform allows), else the post, else whatever is out.
fn original<'a>(inc: &'a Incident, channel: &str, language: &str) -> Option<&'a PriorDelivery> {
    let mut out: Vec<&PriorDelivery> =
        inc.deliveries.iter().filter(|d| d.channel == channel && d.language == language && d.out()).collect();
    out.sort_by_key(|d| d.id);
    if let Some(correction) = out.iter().rev().find(|d| d.kind == DeliveryKind::Retract) {
        return Some(correction);
    }
    out.iter().find(|d| d.kind == DeliveryKind::Post).or_else(|| out.first()).copied()
}

/// The deliveries of `effect`'s kind to create.
fn creations(msg: &Message<'_>, inc: &Incident, effect: Effect) -> Vec<Create> {
    let Some(kind) = effect.kind() else { return Vec::new() };
    msg.planned
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == kind)
        .filter_map(|(index, p)| {
            let original = original(inc, &p.channel, &p.language);
            // A cancellation goes only where something of the incident is or may be out.
            if kind == DeliveryKind::Cancel && original.is_none() {
                return None;
            }
            // A cancellation of what went out does not wait for approval: the post it
            // cancels is public already.
            let state =
                if msg.hold && kind != DeliveryKind::Cancel { DeliveryState::Held } else { DeliveryState::Queued };
            Some(Create { index, reply_to: original.map(|o| o.id), state, language: None })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .chain(if kind == DeliveryKind::Cancel { other_languages(msg.planned, inc) } else { Vec::new() })
        .collect()
}

/// Cancellations for posts in languages the cancel itself does not have (an alert in
/// English and Spanish, a cancel in English only): each gets the channel's cancellation
/// in the first language the cancel has, replying to the post in its own language.
fn other_languages(planned: &[Planned], inc: &Incident) -> Vec<Create> {
    let mut out: Vec<Create> = Vec::new();
    for d in inc.deliveries.iter().filter(|d| d.kind != DeliveryKind::Retract && d.out()) {
        let covered = planned
            .iter()
            .any(|p| p.kind == DeliveryKind::Cancel && p.channel == d.channel && p.language == d.language)
            || out
                .iter()
                .any(|c| planned[c.index].channel == d.channel && c.language.as_deref() == Some(d.language.as_str()));
        if covered {
            continue;
        }
        let Some(index) = planned.iter().position(|p| p.kind == DeliveryKind::Cancel && p.channel == d.channel) else {
            continue;
        };
        let Some(original) = original(inc, &d.channel, &d.language) else { continue };
        out.push(Create {
            index,
            reply_to: Some(original.id),
            state: DeliveryState::Queued,
            language: Some(d.language.clone()),
        });
    }
    out
}

/// An operator's retraction (or correction, `correction`), as event `event_id`, with a
/// retract delivery rendered per channel and language in `planned`.
pub fn on_retract(inc: &Incident, event_id: i64, correction: bool, planned: &[Planned]) -> Result<Verdict, String> {
    if inc.state == IncidentState::Retracted {
        return Err("the incident was already retracted".to_owned());
    }
    let verb = if correction { "corrected" } else { "retracted" };
    let stop = stops(inc, |d| d.kind != DeliveryKind::Retract);
    let create = planned
        .iter()
        .enumerate()
        .filter_map(|(index, p)| {
            let original = original(inc, &p.channel, &p.language)?;
            Some(Create { index, reply_to: Some(original.id), state: DeliveryState::Queued, language: None })
        })
        .collect();
    Ok(Verdict {
        disposition: Disposition::Deliver,
        effect: if correction { Effect::Correct } else { Effect::Retract },
        closes: (!correction).then_some(IncidentState::Retracted),
        trust: None,
        supersedes: inc
            .events
            .iter()
            .filter(|e| e.effect.kind().is_some_and(DeliveryKind::is_news))
            .map(|e| e.id)
            .collect(),
        stop,
        reason: format!("{verb} by an operator (event {event_id})"),
        create,
    })
}

/// Whether a delivery of `kind` may still be queued (by an approval, a retry, the hold
/// timer) or sent, given its incident's state and whether a later event superseded its
/// own. `Err` says why not.
pub fn still_valid(kind: DeliveryKind, incident: IncidentState, superseded_by: Option<i64>) -> Result<(), String> {
    match (kind, incident) {
        (DeliveryKind::Retract, _) => Ok(()),
        (_, IncidentState::Retracted) => Err("the incident was retracted".to_owned()),
        (DeliveryKind::Post | DeliveryKind::Update, IncidentState::Cancelled) => {
            Err("the incident was cancelled".to_owned())
        }
        (DeliveryKind::Post | DeliveryKind::Update, IncidentState::Open) => match superseded_by {
            Some(by) => Err(format!("superseded by event {by}")),
            None => Ok(()),
        },
        (DeliveryKind::Cancel, IncidentState::Open | IncidentState::Cancelled) => Ok(()),
    }
}

/// What is known of earlier messages, to place a new one in its incident before it is
/// rendered: what is committed, and what is ahead of it in the writer's queue (so a
/// cancellation right behind its alert finds it).
pub trait Known {
    /// A message of `class` by its CAP `sender,identifier,sent`.
    fn message(&self, key: &str, class: StatusClass) -> Option<KnownMessage>;
    /// The newest message of `class`, from a source at least as trusted as `trust`,
    /// that names `key` among its references.
    fn referencing(&self, key: &str, class: StatusClass, trust: Trust) -> Option<KnownMessage>;
    /// The incident `key`, if it was opened.
    fn incident(&self, key: &str) -> Option<KnownIncident>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownMessage {
    pub incident_key: String,
    pub class: StatusClass,
    pub trust: Trust,
    /// The normalised event (docs/event.schema.json).
    pub event_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownIncident {
    pub class: StatusClass,
    pub trust: Trust,
    pub event_type: String,
}

/// Nothing known (previews, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingKnown;

impl Known for NothingKnown {
    fn message(&self, _: &str, _: StatusClass) -> Option<KnownMessage> {
        None
    }

    fn referencing(&self, _: &str, _: StatusClass, _: Trust) -> Option<KnownMessage> {
        None
    }

    fn incident(&self, _: &str) -> Option<KnownIncident> {
        None
    }
}

/// What is known, in the transaction that would begin a request, about its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginFacts {
    pub kind: DeliveryKind,
    pub priority: Priority,
    pub audience: Audience,
    pub incident: IncidentState,
    pub superseded_by: Option<i64>,
    /// The channel as configured now.
    pub channel_public: bool,
    /// A pause in force covers this delivery (see [`pause_scopes`]).
    pub paused: bool,
}

/// Whether a request may begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    Go,
    /// A pause covers it: it waits, queued.
    Paused,
    /// It must never go out: closed as suppressed, with the reason.
    Close(String),
}

pub fn may_begin(f: &BeginFacts) -> Begin {
    if !f.audience.allows(f.channel_public) {
        return Begin::Close(
            "for staff only (a test, exercise, restricted alert or staff notice) and the channel is public now"
                .to_owned(),
        );
    }
    if let Err(why) = still_valid(f.kind, f.incident, f.superseded_by) {
        return Begin::Close(why);
    }
    // Retractions go through any pause: a false alarm must come down.
    if f.paused && f.priority != Priority::Retraction {
        return Begin::Paused;
    }
    Begin::Go
}

/// The pause scopes (`all`, `channel:NAME`, `type:NAME`) that cover a delivery of
/// `event_type` on channel `channel`: the kill switch and type pauses cover public
/// channels only; a channel pause covers its channel.
pub fn pause_scopes(channel: &str, public: bool, event_type: &str) -> Vec<String> {
    let mut scopes = vec![format!("channel:{channel}")];
    if public {
        scopes.push("all".to_owned());
        scopes.push(format!("type:{event_type}"));
    }
    scopes
}

#[cfg(test)]
mod tests;
